//! `props-pipeline status`

use anyhow::Context;
use clap::Args;
use props_pipeline::batch::status::{StatusReport, recent};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::GcpSettings;
use props_pipeline::messages::GameDate;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only batches of this game date (YYYY-MM-DD).
    #[arg(long)]
    pub game_date: Option<String>,
    /// How many batches to show, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Print the stable JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(gcp: &GcpSettings, args: StatusArgs) -> anyhow::Result<()> {
    let game_date = match &args.game_date {
        Some(text) => Some(text.parse::<GameDate>().context("invalid --game-date")?.to_string()),
        None => None,
    };
    let db = props_pipeline::gcp::firestore::connect(gcp).await?;
    let report = recent(&BatchStore::new(db), game_date.as_deref(), args.limit).await.context("reading batches")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &StatusReport) {
    if report.batches.is_empty() {
        println!("no batches");
        return;
    }
    println!(
        "{:<36} {:<10} {:>3} {:<11} {:>7} {:>7} {:>7} {:>7}  CREATED",
        "BATCH", "DATE", "GEN", "STATE", "DONE", "FAILED", "PENDING", "TOTAL"
    );
    for b in &report.batches {
        println!(
            "{:<36} {:<10} {:>3} {:<11} {:>7} {:>7} {:>7} {:>7}  {}",
            b.batch_id, b.game_date, b.generation, b.state, b.done, b.failed, b.pending, b.expected, b.created_at
        );
    }
}
