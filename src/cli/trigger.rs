//! `props-pipeline trigger`

use anyhow::Context;
use clap::Args;
use google_cloud_pubsub::model::Message;
use props_pipeline::config::{GcpSettings, TopicNames};
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use rand::Rng;

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The game date to predict, YYYY-MM-DD.
    #[arg(long)]
    pub game_date: String,
    /// `start` runs a batch unless one is active; `regenerate_with_supersede` replaces the current one.
    #[arg(long, value_enum, default_value_t = TriggerMode::Start)]
    pub mode: TriggerMode,
    /// Why this trigger was sent (kept with the batch for operators).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// A JSON object stored with the batch, e.g. '{"force":true}'.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Correlation id for logs and records; generated when omitted.
    #[arg(long)]
    pub correlation_id: Option<String>,
}

pub async fn run(gcp: &GcpSettings, topics: &TopicNames, args: TriggerArgs) -> anyhow::Result<()> {
    let correlation_id = args.correlation_id.unwrap_or_else(new_correlation_id);
    let trigger =
        TriggerMessage::new(&args.game_date, args.mode, args.reason, args.metadata.as_deref(), correlation_id)
            .context("invalid trigger")?;
    let body = trigger.to_json();
    let pubsub = super::connect_pubsub(gcp).await?;
    let message_id = pubsub
        .publish(&topics.trigger_topic, Message::new().set_data(body.clone()))
        .await
        .with_context(|| format!("could not publish the trigger to {}", topics.trigger_topic))?;
    eprintln!("published to {}: {body}", topics.trigger_topic);
    println!("{message_id}");
    Ok(())
}

fn new_correlation_id() -> String {
    format!("trg-{:016x}", rand::rng().random::<u64>())
}
