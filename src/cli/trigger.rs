//! `props-pipeline trigger`

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use google_cloud_pubsub::model::Message;
use props_pipeline::batch::audit::AuditOutcome;
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use rand::Rng;

use super::args::{PubsubAndFirestore, TriggerTopicArgs};
use super::output::outln;
use super::status::{follow, summary};
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
    /// (the coordinator recorded a no-op or rejected the trigger; README "Exit codes").
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long the batch may take to appear and finish.
    #[arg(long, default_value_t = 600, requires = "wait")]
    pub wait_timeout_secs: u64,
    #[command(flatten)]
    pub topic: TriggerTopicArgs,
    #[command(flatten)]
    pub google: PubsubAndFirestore,
}

pub async fn run(args: TriggerArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let topic = args.topic.name()?.to_string();
    let correlation_id = args.correlation_id.unwrap_or_else(new_correlation_id);
    let trigger =
        TriggerMessage::new(&args.game_date, args.mode, args.reason, args.metadata.as_deref(), correlation_id)
            .context("invalid trigger")?;
    let body = trigger.to_json();
    let pubsub = super::connect_pubsub(gcp).await?;
    let message_id = pubsub
        .publish(&topic, Message::new().set_data(body.clone()))
        .await
        .with_context(|| format!("could not publish the trigger to {topic}"))?;
    eprintln!("published to {topic}: {body}");
    outln!("{message_id}")?;
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
        // The detail names the batch and its state: it may be active, or the finished batch whose
        // correlation id this trigger repeats.
        Some(record) if record.outcome == AuditOutcome::NoOp => Err(Exit::new(
            exit::NOT_STARTED,
            format!(
                "no-op: nothing started for {game_date}: {}",
                record.detail.as_deref().unwrap_or("a batch for the date is active")
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
        return Err(timed_out(store, &batch_id, message_id, timeout).await?.into());
    };
    outln!("{}", summary(&last))?;
    Ok(exit::final_state(&last)?)
}

/// Says what the timeout found: a batch that is still running is named; a trigger no coordinator
/// recorded names the message, since no batch of that id exists for `status` to show.
async fn timed_out(store: &BatchStore, batch_id: &str, message_id: &str, timeout: Duration) -> anyhow::Result<Exit> {
    let after = timeout.as_secs();
    let message = match store.header(batch_id).await? {
        Some(header) => format!("batch {batch_id} still {} after {after}s", header.state),
        None => format!(
            "no coordinator recorded trigger {message_id} within {after}s, so no batch was created \
             (is `props-pipeline run coordinator` running for this project?)"
        ),
    };
    Ok(Exit::new(exit::TIMED_OUT, message))
}

fn new_correlation_id() -> String {
    format!("trg-{:016x}", rand::rng().random::<u64>())
}
