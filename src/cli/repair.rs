//! Operator commands for a batch that does not finish: `missing` (which items are still pending),
//! `redrive` (re-publish their requests) and `dead-letters` (what reached a dead-letter topic).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use props_pipeline::batch::documents::ItemStatus;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::status::recent;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::batch::sweep_policy::{RedriveDecision, RedriveRequest};
use props_pipeline::config::GcpSettings;
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::messages::GameDate;
use props_pipeline::nba::domain::NbaDomain;
use serde::Serialize;

use super::args::{FirestoreOnly, PubsubAndFirestore, TopicArgs};
use super::output::{self, Column, dash, outln};
use super::{Exit, exit};

#[derive(Debug, Args)]
pub struct MissingArgs {
    /// The batch id (as `status` lists it, e.g. 2024-04-22-m123).
    #[arg(required_unless_present = "game_date")]
    pub batch_id: Option<String>,
    /// Instead of a batch id: the newest batch of this game date (YYYY-MM-DD).
    #[arg(long, conflicts_with = "batch_id")]
    pub game_date: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The batch id (as `status` lists it, e.g. 2024-04-22-m123).
    pub batch_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub google: PubsubAndFirestore,
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// How many records to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

/// `missing --json` (fields are only ever added).
#[derive(Debug, Serialize)]
struct MissingReport<'a> {
    batch_id: &'a str,
    state: String,
    expected: u64,
    /// Items without a completion.
    pending: Vec<String>,
    /// Items that ended failed, with why.
    failed: Vec<FailedItem>,
    redrive_count: u64,
    /// Pending items the dead-letter role already put back to work, with how many times.
    item_redrives: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct FailedItem {
    item: String,
    /// The worker's or dead-letter role's reason, whole.
    error: Option<String>,
    /// Completions recorded for the item (1 once terminal).
    attempts: u64,
}

async fn store(gcp: &GcpSettings) -> anyhow::Result<BatchStore> {
    Ok(BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?))
}

/// `props-pipeline missing BATCH`: the items without a completion, and the failed ones with their errors.
pub async fn missing(args: MissingArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let store = store(gcp).await?;
    let batch_id = match (&args.batch_id, &args.game_date) {
        (Some(batch_id), _) => batch_id.clone(),
        (None, Some(text)) => newest_batch(&store, text).await?,
        (None, None) => bail!("name a batch id or --game-date"),
    };
    let header = store.header(&batch_id).await?.ok_or_else(|| Exit::no_batch(&batch_id))?;
    let pending = store.markers_in(&batch_id, ItemStatus::Pending).await.context("listing pending items")?;
    let item_redrives =
        pending.iter().filter(|(_, m)| m.redrives > 0).map(|(id, m)| (id.clone(), m.redrives)).collect();
    let failed = store.markers_in(&batch_id, ItemStatus::Failed).await.context("listing failed items")?;
    let report = MissingReport {
        batch_id: &batch_id,
        state: header.state.to_string(),
        expected: header.expected_count,
        pending: pending.into_iter().map(|(id, _)| id).collect(),
        failed: failed
            .into_iter()
            .map(|(item, marker)| FailedItem { item, error: marker.error, attempts: marker.attempts })
            .collect(),
        redrive_count: header.redrive_count,
        item_redrives,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    outln!(
        "{}: {} of {} items pending, {} failed (state {}, redriven {} times)",
        report.batch_id,
        report.pending.len(),
        report.expected,
        report.failed.len(),
        report.state,
        report.redrive_count
    )?;
    if report.pending.is_empty() && report.failed.is_empty() {
        return Ok(());
    }
    let columns =
        [Column::left("ITEM", 32), Column::left("STATE", 7), Column::right("ATTEMPTS"), Column::left("ERROR", 100)];
    let pending = report.pending.iter().map(|item| {
        let note = match report.item_redrives.get(item) {
            Some(redrives) => format!("request redriven {redrives} times after running out of attempts"),
            None => "-".into(),
        };
        vec![item.clone(), "pending".into(), "0".into(), note]
    });
    let failed = report
        .failed
        .iter()
        .map(|f| vec![f.item.clone(), "failed".into(), f.attempts.to_string(), dash(f.error.as_ref())]);
    outln!("{}", output::table(&columns, pending.chain(failed)))?;
    Ok(())
}

/// The id of the newest batch of a game date.
async fn newest_batch(store: &BatchStore, game_date: &str) -> anyhow::Result<String> {
    let date = game_date.parse::<GameDate>().context("invalid --game-date")?.to_string();
    let report = recent(store, Some(date.as_str()), 1).await.context("reading batches")?;
    let newest = report.batches.into_iter().next().ok_or_else(|| {
        Exit::new(
            exit::NOT_STARTED,
            format!("no batch for {date} (`props-pipeline trigger --game-date {date}` starts one)"),
        )
    })?;
    Ok(newest.batch_id)
}

/// `props-pipeline redrive BATCH`: re-publish the pending items' requests now (or finish the fan-out
/// of a PUBLISHING batch).
pub async fn redrive(args: RedriveArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let store = store(gcp).await?;
    if store.header(&args.batch_id).await?.is_none() {
        return Err(Exit::no_batch(&args.batch_id).into());
    }
    let pubsub = PubSub::connect(gcp).await?;
    let domain = Arc::new(NbaDomain::new(store.clone()));
    let engine = BatchEngine::new(store, pubsub, args.topics.names()?, domain, EngineSettings::default());
    let report = engine.redrive(&args.batch_id, RedriveRequest::Operator).await?;
    if args.json {
        let json = serde_json::json!({
            "batch_id": args.batch_id,
            "redriven": report.decision == RedriveDecision::Redrive,
            "republished": report.republished,
            "redrive_count": report.redrive_count,
        });
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
    }
    match report.decision {
        RedriveDecision::Redrive => {
            if !args.json {
                outln!(
                    "{}: re-published {} pending requests (redrive #{})",
                    args.batch_id,
                    report.republished,
                    report.redrive_count
                )?;
            }
            Ok(())
        }
        RedriveDecision::NotRunning(state) => {
            bail!("batch {} is {state}, not PUBLISHING or RUNNING: nothing to redrive", args.batch_id)
        }
        // An operator redrive is neither delayed nor capped.
        RedriveDecision::NotDue | RedriveDecision::CapReached => {
            bail!("unexpected redrive decision {:?} for an operator request", report.decision)
        }
    }
}

/// `props-pipeline dead-letters`: the newest dead-letter records.
pub async fn dead_letters(args: DeadLettersArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let records = store(gcp).await?.dead_letters(args.limit).await.context("reading dead letters")?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&records)?)?;
        return Ok(());
    }
    if records.is_empty() {
        outln!("no dead letters")?;
        return Ok(());
    }
    let columns = [
        Column::left("RECORDED", 24),
        Column::left("CHANNEL", 10),
        Column::left("SUBSCRIPTION", 40),
        Column::left("MESSAGE", 20),
        Column::right("ATTEMPTS"),
        Column::left("REASON", 60),
        Column::left("ACTION", 50),
    ];
    let rows = records.iter().map(|r| {
        vec![
            format!("{:.3}", r.recorded_at),
            r.channel.clone(),
            r.source_subscription.clone(),
            r.original_message_id.clone(),
            dash(r.delivery_attempts),
            r.reason.clone(),
            r.action.clone(),
        ]
    });
    outln!("{}", output::table(&columns, rows))?;
    Ok(())
}
