//! A consumer whose handler takes a fixed time per message, run as a real process by the shutdown test
//! (and handy for watching the runtime drain by hand):
//!
//! ```text
//! cargo run --example slow_consumer -- --subscription prediction-requests-worker --handle-ms 1500
//! ```
//!
//! It prints `started <data>` and `finished <data>` lines on stdout and exits 0 after a graceful drain.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use props_pipeline::config::{ConsumerSettings, GcpSettings};
use props_pipeline::consumer::{Consumer, ConsumerTarget, Delivery, MessageHandler, Outcome, cancel_on_signals};
use props_pipeline::gcp::pubsub::PubSub;

#[derive(Debug, Parser)]
struct Args {
    /// Google Cloud project id.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", default_value = "props-local")]
    project: String,
    /// Pub/Sub emulator HOST:PORT; unset, Application Default Credentials.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pubsub_emulator_host: Option<String>,
    #[command(flatten)]
    consumer: ConsumerSettings,
    #[arg(long)]
    subscription: String,
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Time each message takes to handle.
    #[arg(long, default_value_t = 1000)]
    handle_ms: u64,
}

struct Slow(Duration);

impl MessageHandler for Slow {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let data = String::from_utf8_lossy(&delivery.data);
        say(&format!("started {data}"));
        tokio::time::sleep(self.0).await;
        say(&format!("finished {data}"));
        Outcome::Ack
    }
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The parent reads these lines as they come; a failed write only loses test output.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let gcp = GcpSettings::new(args.project, args.pubsub_emulator_host, None);
    gcp.validate()?;
    args.consumer.validate()?;
    let pubsub = PubSub::connect(&gcp).await?;
    let target = ConsumerTarget { subscription: args.subscription, dead_letter_topic: args.dead_letter_topic };
    let consumer = Consumer::new(pubsub, target, args.consumer, Slow(Duration::from_millis(args.handle_ms)));
    let stats = consumer.run(cancel_on_signals()).await?;
    say(&format!("stopped acked={} abandoned={}", stats.acked, stats.abandoned_on_shutdown));
    Ok(())
}
