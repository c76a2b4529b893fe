//! Operator commands for a batch that does not finish: `missing` (which items are still pending),
//! `redrive` (re-publish their requests) and `dead-letters` (what reached a dead-letter topic).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use props_pipeline::batch::documents::ItemStatus;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::status::{SkippedItem, skipped_items};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::batch::sweep_policy::{RedriveDecision, RedriveRequest};
use props_pipeline::config::{GcpSettings, TopicNames};
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::nba::domain::NbaDomain;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The batch id (as `status` lists it, e.g. 2024-04-22-m123).
    pub batch_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// How many records to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct MissingReport<'a> {
    batch_id: &'a str,
    state: String,
    expected: u64,
    pending: Vec<String>,
    /// Items the domain declined, with the reason: terminal, so not redriven.
    skipped: Vec<SkippedItem>,
    redrive_count: u64,
}

async fn store(gcp: &GcpSettings) -> anyhow::Result<BatchStore> {
    Ok(BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?))
}

/// `props-pipeline missing BATCH`: the items without a completion, and the skipped ones with why.
pub async fn missing(gcp: &GcpSettings, args: BatchArgs) -> anyhow::Result<()> {
    let store = store(gcp).await?;
    let header = store.header(&args.batch_id).await?.with_context(|| format!("no batch {}", args.batch_id))?;
    let pending = store.items_in(&args.batch_id, ItemStatus::Pending).await.context("listing pending items")?;
    let skipped = skipped_items(&store, &args.batch_id).await.context("listing skipped items")?;
    let report = MissingReport {
        batch_id: &args.batch_id,
        state: header.state.to_string(),
        expected: header.expected_count,
        pending,
        skipped,
        redrive_count: header.redrive_count,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} of {} items pending (state {}, redriven {} times)",
        report.batch_id,
        report.pending.len(),
        report.expected,
        report.state,
        report.redrive_count
    );
    for item in &report.pending {
        println!("  {item}");
    }
    if !report.skipped.is_empty() {
        println!("{} items skipped (terminal, not redriven):", report.skipped.len());
        for skipped in &report.skipped {
            println!("  {}: {}", skipped.item, skipped.reason);
        }
    }
    Ok(())
}

/// `props-pipeline redrive BATCH`: re-publish the pending items' requests now.
pub async fn redrive(gcp: &GcpSettings, topics: &TopicNames, args: BatchArgs) -> anyhow::Result<()> {
    let store = store(gcp).await?;
    let pubsub = PubSub::connect(gcp).await?;
    let domain = Arc::new(NbaDomain::new(store.clone()));
    let engine = BatchEngine::new(store, pubsub, topics.clone(), domain, EngineSettings::default());
    let report = engine.redrive(&args.batch_id, RedriveRequest::Operator).await?;
    if args.json {
        let json = serde_json::json!({
            "batch_id": args.batch_id,
            "redriven": report.decision == RedriveDecision::Redrive,
            "republished": report.republished,
            "redrive_count": report.redrive_count,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    match report.decision {
        RedriveDecision::Redrive => {
            if !args.json {
                println!(
                    "{}: re-published {} pending requests (redrive #{})",
                    args.batch_id, report.republished, report.redrive_count
                );
            }
            Ok(())
        }
        RedriveDecision::NotRunning(state) => bail!(
            "batch {} is {state}, not RUNNING: nothing to redrive{}",
            args.batch_id,
            if state.is_final() {
                ""
            } else {
                " (a PUBLISHING batch is resumed by its trigger; publish a regenerate trigger if that was lost)"
            }
        ),
        // An operator redrive is neither delayed nor capped.
        RedriveDecision::NotDue | RedriveDecision::CapReached => {
            bail!("unexpected redrive decision {:?} for an operator request", report.decision)
        }
    }
}

/// `props-pipeline dead-letters`: the newest dead-letter records.
pub async fn dead_letters(gcp: &GcpSettings, args: DeadLettersArgs) -> anyhow::Result<()> {
    let records = store(gcp).await?.dead_letters(args.limit).await.context("reading dead letters")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no dead letters");
    }
    for record in records {
        println!(
            "{}  {:<10} {} (message {}, {} attempts): {} -> {}",
            record.recorded_at,
            record.channel,
            record.source_subscription,
            record.original_message_id,
            record.delivery_attempts.map_or_else(|| "?".to_string(), |n| n.to_string()),
            record.reason,
            record.action
        );
    }
    Ok(())
}
