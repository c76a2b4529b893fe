//! `props-pipeline status`

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::status::{BatchStatus, StatusReport, one, recent};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::GcpSettings;
use props_pipeline::messages::GameDate;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show this batch only (its id, e.g. 2024-04-22-m123); with --watch, follow it to its final state.
    pub batch_id: Option<String>,
    /// Only batches of this game date (YYYY-MM-DD).
    #[arg(long)]
    pub game_date: Option<String>,
    /// How many batches to show, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Print the stable JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With a batch id: show a live progress bar until the batch is final (exit 1 if it ends FAILED).
    #[arg(long, requires = "batch_id")]
    pub watch: bool,
    /// With --watch: give up after this many seconds (also when the batch never appears).
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
}

pub async fn run(gcp: &GcpSettings, args: StatusArgs) -> anyhow::Result<()> {
    let game_date = match &args.game_date {
        Some(text) => Some(text.parse::<GameDate>().context("invalid --game-date")?.to_string()),
        None => None,
    };
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    if let Some(batch_id) = &args.batch_id {
        if args.watch {
            return watch(&store, batch_id, Duration::from_secs(args.timeout_secs)).await;
        }
        let status = one(&store, batch_id).await?.with_context(|| format!("no batch {batch_id}"))?;
        return print(&StatusReport { batches: vec![status] }, args.json);
    }
    let report = recent(&store, game_date.as_deref(), args.limit).await.context("reading batches")?;
    print(&report, args.json)
}

fn print(report: &StatusReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_table(report);
    }
    Ok(())
}

async fn watch(store: &BatchStore, batch_id: &str, timeout: Duration) -> anyhow::Result<()> {
    let Some(last) = follow(store, batch_id, timeout, async || Ok(())).await? else {
        bail!("batch {batch_id} not final after {}s", timeout.as_secs());
    };
    if last.state == BatchState::Failed {
        bail!("batch {batch_id} FAILED: {}", last.failure_reason.as_deref().unwrap_or("no reason recorded"));
    }
    Ok(())
}

/// Polls the batch once a second with a live progress bar (terminal items of the expected) until it
/// is final (returned) or `timeout` passed (`None`), then prints a one-line summary. While the batch does not exist,
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
    bar.finish();
    summarize(&last);
    Ok(Some(last))
}

fn summarize(status: &BatchStatus) {
    println!(
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
    );
}

/// A fraction as a percentage with one decimal, `-` when unknown.
pub(super) fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0))
}

fn print_table(report: &StatusReport) {
    if report.batches.is_empty() {
        println!("no batches");
        return;
    }
    println!(
        "{:<36} {:<10} {:>3} {:<11} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}  CREATED",
        "BATCH", "DATE", "GEN", "STATE", "DONE", "FAILED", "SKIPPED", "PENDING", "TOTAL", "COVERAGE"
    );
    for b in &report.batches {
        println!(
            "{:<36} {:<10} {:>3} {:<11} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}  {}",
            b.batch_id,
            b.game_date,
            b.generation,
            b.state,
            b.done,
            b.failed,
            b.skipped,
            b.pending,
            b.expected,
            percent(b.coverage),
            b.created_at
        );
    }
}
