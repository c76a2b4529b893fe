//! `props-pipeline trigger`

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use google_cloud_pubsub::model::Message;
use props_pipeline::batch::audit::AuditOutcome;
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::{GcpSettings, TopicNames};
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use rand::Rng;

use super::status::follow;
use super::{Exit, exit};

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
    /// Follow the batch this message creates to its final state with a progress bar. Exit codes:
    /// 0 COMPLETE, 3 FAILED, 4 SUPERSEDED, 5 not final within --wait-timeout-secs, 6 not started
    /// (no-op because a batch for the date is active, or rejected).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long the batch may take to appear and finish.
    #[arg(long, default_value_t = 600, requires = "wait")]
    pub wait_timeout_secs: u64,
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
    if args.wait {
        let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
        wait(&store, &trigger.game_date.to_string(), &message_id, Duration::from_secs(args.wait_timeout_secs)).await?;
    }
    Ok(())
}

/// Follows the batch created from `message_id` (not just any batch of the date). A trigger that will
/// never create one is recognised from its audit record instead of waiting out the timeout.
async fn wait(store: &BatchStore, game_date: &str, message_id: &str, timeout: Duration) -> anyhow::Result<()> {
    let batch_id = batch_id_for(game_date, message_id);
    let not_started = async || match store.audit_record(message_id).await? {
        Some(record) if record.outcome == AuditOutcome::NoOp => Err(Exit::new(
            exit::NOT_STARTED,
            format!(
                "no-op: batch {} for {game_date} is active, nothing started ({})",
                record.active_batch_id.as_deref().unwrap_or("?"),
                record.detail.as_deref().unwrap_or_default()
            ),
        )
        .into()),
        Some(record) if record.outcome == AuditOutcome::Rejected => Err(Exit::new(
            exit::NOT_STARTED,
            format!("rejected: {}", record.detail.as_deref().unwrap_or("no reason recorded")),
        )
        .into()),
        _ => Ok(()),
    };
    let Some(last) = follow(store, &batch_id, timeout, not_started).await? else {
        return Err(Exit::new(
            exit::TIMED_OUT,
            format!("batch {batch_id} not final after {}s (is the coordinator running?)", timeout.as_secs()),
        )
        .into());
    };
    match last.state {
        BatchState::Complete => Ok(()),
        BatchState::Failed => Err(Exit::new(
            exit::FAILED,
            format!("batch {batch_id} FAILED: {}", last.failure_reason.as_deref().unwrap_or("no reason recorded")),
        )
        .into()),
        state => Err(Exit::new(
            exit::SUPERSEDED,
            format!(
                "batch {batch_id} {state}: superseded by {}",
                last.superseded_by.as_deref().unwrap_or("a newer batch")
            ),
        )
        .into()),
    }
}

fn new_correlation_id() -> String {
    format!("trg-{:016x}", rand::rng().random::<u64>())
}
