//! `props-pipeline backfill`

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::batch::backfill::{BackfillEvent, BackfillPlan, DateResult, patiently, run as run_backfill};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{GameDate, TriggerMode};
use props_pipeline::nba::store::slate_header;

use super::args::{PubsubAndFirestore, TriggerTopicArgs};
use super::output::{self, Column, dash, outln};
use super::status::percent;
use super::{Exit, exit};

/// Longest range accepted: a season and a half of dates, a guard against a typo in a year.
const MAX_DATES: i64 = 550;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First game date (YYYY-MM-DD), inclusive.
    #[arg(long)]
    pub from: String,
    /// Last game date (YYYY-MM-DD), inclusive.
    #[arg(long)]
    pub to: String,
    /// `start` runs dates that have no active batch; `regenerate_with_supersede` replaces their batches.
    #[arg(long, value_enum, default_value_t = TriggerMode::Start)]
    pub mode: TriggerMode,
    /// Why (kept on every batch and audit record). With the range and mode it names the backfill:
    /// the same values resume it, another reason starts a new one.
    #[arg(long)]
    pub reason: String,
    /// At most this many batches running at once (1-64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_in_flight: u64,
    /// A date whose batch does not appear or finish within this many seconds is reported TIMEOUT.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
    /// Print the final table as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub topic: TriggerTopicArgs,
    #[command(flatten)]
    pub google: PubsubAndFirestore,
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let topic = args.topic.name()?.to_string();
    let from: GameDate = args.from.parse().context("invalid --from")?;
    let to: GameDate = args.to.parse().context("invalid --to")?;
    let days = (to.date() - from.date()).num_days() + 1;
    if days < 1 {
        bail!("--to {to} is before --from {from}");
    }
    if days > MAX_DATES {
        bail!("{days} dates from {from} to {to}: at most {MAX_DATES} per backfill");
    }
    if args.reason.trim().is_empty() {
        bail!("--reason must say why (it is recorded, and names the backfill for resuming)");
    }
    let db = props_pipeline::gcp::firestore::connect(gcp).await?;
    let mut dates = Vec::new();
    for date in from.date().iter_days().take(days as usize) {
        let id = date.to_string();
        let has_slate =
            patiently("reading a slate", || slate_header(&db, &id)).await.context("reading slates")?.is_some();
        dates.push((GameDate::new(date), has_slate));
    }
    let plan = BackfillPlan {
        from,
        to,
        mode: args.mode,
        reason: args.reason,
        dates,
        max_in_flight: args.max_in_flight as usize,
        timeout: Duration::from_secs(args.timeout_secs),
        poll: Duration::from_secs(1),
    };
    let with_slate = plan.dates.iter().filter(|(_, has)| *has).count();
    eprintln!(
        "backfill {} ({from} .. {to}, {}): {with_slate} of {days} dates have a slate, at most {} at once",
        plan.key(),
        plan.mode.as_str(),
        plan.max_in_flight
    );
    let pubsub = super::connect_pubsub(gcp).await?;
    let store = BatchStore::new(db);
    let bar = ProgressBar::new(days as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} dates [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |event: BackfillEvent| match event {
        BackfillEvent::Published { game_date, message_id } => {
            bar.set_message(format!("published {game_date} ({message_id})"))
        }
        BackfillEvent::Settled(result) => {
            // `println` prints nothing when stderr is not a terminal; `suspend` prints either way.
            bar.suspend(|| eprintln!("{}", line(&result)));
            bar.inc(1);
        }
        BackfillEvent::InFlight(running) => {
            let text: Vec<String> = running.iter().map(|(d, n, of)| format!("{d} {n}/{of}")).collect();
            bar.set_message(format!("running: {}", text.join(", ")));
        }
    };
    let results = run_backfill(&store, &pubsub, &topic, &plan, &mut progress).await?;
    bar.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "key": plan.key(), "dates": results }))?)?;
    } else {
        outln!("{}", table(&results))?;
    }
    match exit::for_backfill(results.iter().map(|r| r.end)) {
        None => Ok(()),
        Some(code) => {
            let unsuccessful = results.iter().filter(|r| !r.end.is_success()).count();
            Err(Exit::new(code, format!("{unsuccessful} of {days} dates did not complete")).into())
        }
    }
}

/// The progress line of a settled date.
fn line(r: &DateResult) -> String {
    let counts = match (r.done, r.expected) {
        (Some(done), Some(expected)) => format!(" {done}/{expected} predicted, coverage {}", percent(r.coverage)),
        _ => String::new(),
    };
    let batch = r.batch_id.as_deref().map(|b| format!(" {b}")).unwrap_or_default();
    let note = r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    format!("{} {}{batch}{counts}{note}", r.game_date, r.end.as_str())
}

fn table(results: &[DateResult]) -> String {
    let columns = [
        Column::left("DATE", 10),
        Column::left("BATCH", 40),
        Column::right("GEN"),
        Column::left("STATE", 10),
        Column::right("PREDICTED"),
        Column::right("FAILED"),
        Column::right("COVERAGE"),
        Column::left("NOTE", 80),
    ];
    let rows = results.iter().map(|r| {
        vec![
            r.game_date.to_string(),
            dash(r.batch_id.as_ref()),
            dash(r.generation),
            r.end.as_str().to_string(),
            dash(r.done),
            dash(r.failed),
            percent(r.coverage),
            r.note.clone().unwrap_or_default(),
        ]
    });
    output::table(&columns, rows)
}
