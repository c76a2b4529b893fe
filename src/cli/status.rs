//! `props-pipeline status`

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::batch::status::{BatchStatus, StatusReport, one, recent};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::GameDate;

use super::args::FirestoreOnly;
use super::output::{self, Column, dash, outln};
use super::{Exit, exit};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show this batch only (its id, e.g. 2024-04-22-m123); with --watch, follow it to its final state.
    pub batch_id: Option<String>,
    /// Only batches of this game date (YYYY-MM-DD).
    #[arg(long, conflicts_with = "batch_id")]
    pub game_date: Option<String>,
    /// How many batches to show, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500), conflicts_with = "batch_id")]
    pub limit: u32,
    /// Print the stable JSON document instead of a table (with --watch: the final state, once).
    #[arg(long)]
    pub json: bool,
    /// With a batch id: show a live progress bar until the batch is final. Exits like `trigger --wait`:
    /// 0 COMPLETE, 3 FAILED, 4 SUPERSEDED, 5 not final within --timeout-secs.
    #[arg(long, requires = "batch_id")]
    pub watch: bool,
    /// With --watch: give up after this many seconds (also when the batch never appears).
    #[arg(long, default_value_t = 3600, requires = "watch")]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let game_date = match &args.game_date {
        Some(text) => Some(text.parse::<GameDate>().context("invalid --game-date")?.to_string()),
        None => None,
    };
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    if let Some(batch_id) = &args.batch_id {
        if args.watch {
            return watch(&store, batch_id, Duration::from_secs(args.timeout_secs), args.json).await;
        }
        let status = one(&store, batch_id).await?.ok_or_else(|| Exit::no_batch(batch_id))?;
        return print(&StatusReport { batches: vec![status] }, args.json);
    }
    let report = recent(&store, game_date.as_deref(), args.limit).await.context("reading batches")?;
    print(&report, args.json)
}

fn print(report: &StatusReport, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else if report.batches.is_empty() {
        outln!("no batches")?;
    } else {
        outln!("{}", table(&report.batches))?;
    }
    Ok(())
}

async fn watch(store: &BatchStore, batch_id: &str, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let Some(last) = follow(store, batch_id, timeout, async || Ok(())).await? else {
        let after = timeout.as_secs();
        let message = match store.header(batch_id).await? {
            Some(header) => format!("batch {batch_id} still {} after {after}s", header.state),
            None => {
                format!("no batch {batch_id} appeared within {after}s (`props-pipeline status` lists the recent ones)")
            }
        };
        return Err(Exit::new(exit::TIMED_OUT, message).into());
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&StatusReport { batches: vec![last.clone()] })?)?;
    } else {
        outln!("{}", summary(&last))?;
    }
    Ok(exit::final_state(&last)?)
}

/// Polls the batch once a second with a live progress bar on stderr (terminal items of the expected)
/// until it is final (returned) or `timeout` passed (`None`). While the batch does not exist,
/// `while_absent` runs each poll; its error ends the wait (a trigger that will never create it).
pub(super) async fn follow(
    store: &BatchStore,
    batch_id: &str,
    timeout: Duration,
    mut while_absent: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Option<BatchStatus>> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:<22} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("waiting for the batch");
    let deadline = tokio::time::Instant::now() + timeout;
    let last = loop {
        match one(store, batch_id).await? {
            Some(status) => {
                bar.set_length(status.expected);
                bar.set_position(status.expected.saturating_sub(status.pending));
                bar.set_message(format!("{} ({} failed, {} skipped)", status.state, status.failed, status.skipped));
                if status.state.is_final() {
                    break status;
                }
            }
            None => {
                if let Err(error) = while_absent().await {
                    bar.abandon();
                    return Err(error);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bar.abandon();
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bar.finish_and_clear();
    Ok(Some(last))
}

/// The one line that ends a wait: `BATCH STATE: n done, m failed[, k skipped] of N (generation g, coverage c)`.
pub(super) fn summary(status: &BatchStatus) -> String {
    format!(
        "{} {}: {} done, {} failed{} of {} (generation {}, coverage {})",
        status.batch_id,
        status.state,
        status.done,
        status.failed,
        // Only batches with skipped items say so, so the usual line stays as it was.
        if status.skipped > 0 { format!(", {} skipped", status.skipped) } else { String::new() },
        status.expected,
        status.generation,
        percent(status.coverage)
    )
}

/// A fraction as a percentage with one decimal, `-` when unknown.
pub(super) fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0))
}

fn table(batches: &[BatchStatus]) -> String {
    let columns = [
        Column::left("BATCH", 40),
        Column::left("DATE", 10),
        Column::right("GEN"),
        Column::left("STATE", 11),
        Column::right("DONE"),
        Column::right("FAILED"),
        Column::right("SKIPPED"),
        Column::right("PENDING"),
        Column::right("TOTAL"),
        Column::right("COVERAGE"),
        Column::left("CREATED", 30),
        Column::left("MODEL", 30),
    ];
    let rows = batches.iter().map(|b| {
        vec![
            b.batch_id.clone(),
            b.game_date.clone(),
            b.generation.to_string(),
            b.state.to_string(),
            b.done.to_string(),
            b.failed.to_string(),
            b.skipped.to_string(),
            b.pending.to_string(),
            b.expected.to_string(),
            percent(b.coverage),
            b.created_at.clone(),
            dash(b.model_version.as_deref()),
        ]
    });
    output::table(&columns, rows)
}
