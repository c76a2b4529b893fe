//! Command-line interface: clap definitions and one module per subcommand. Everything here is the
//! binary's edge (anyhow errors, printing); the work itself lives in the library.

mod audit;
mod backfill;
mod backtest;
mod dashboard;
mod load;
pub mod logging;
mod repair;
mod run;
mod setup;
mod status;
mod trigger;

use anyhow::Context;
use clap::{Parser, Subcommand};
use props_pipeline::config::{GcpSettings, TopicNames};
use props_pipeline::gcp::pubsub::PubSub;

/// Turns a Pub/Sub trigger into NBA player-prop predictions for a game date, on Pub/Sub + Firestore.
#[derive(Debug, Parser)]
#[command(name = "props-pipeline", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub gcp: GcpSettings,
    #[command(flatten)]
    pub topics: TopicNames,
    /// Log format: human-readable text, or JSON lines for Cloud Logging. Default: text when stderr is
    /// a terminal, JSON otherwise.
    #[arg(long, env = "PROPS_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<logging::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create every topic, subscription and dead-letter topic of the pipeline (idempotent).
    Setup(setup::SetupArgs),
    /// Publish a trigger for a game date, exactly as `gcloud pubsub topics publish` would.
    Trigger(trigger::TriggerArgs),
    /// List recent batches with their state and progress (done / failed / expected).
    Status(status::StatusArgs),
    /// Items of a batch that have no completion yet.
    Missing(repair::BatchArgs),
    /// Re-publish the requests of a RUNNING batch's pending items now (what the sweeper does when a batch stalls).
    Redrive(repair::BatchArgs),
    /// List what reached the dead-letter topics, with reasons and what was done about it.
    DeadLetters(repair::DeadLettersArgs),
    /// Run pipeline roles (coordinator, worker, exporter, dead-letter, sweeper, or all) until SIGTERM / ctrl-c.
    Run(run::RunArgs),
    /// Load the NBA game logs and build slates (players, synthetic prop lines) into Firestore.
    Load(load::LoadArgs),
    /// Walk-forward backtest of the model over a range of game dates (Brier, log loss, hit rate, calibration).
    Backtest(backtest::BacktestArgs),
    /// List the audit trail: one record per trigger the coordinator saw, with its outcome.
    Audit(audit::AuditArgs),
    /// Trigger every date of a range that has a slate, a bounded number at once; re-running resumes.
    Backfill(backfill::BackfillArgs),
    /// Serve the read-only operator dashboard (batches, items, lineage, dead letters, audit; JSON under /api/).
    Dashboard(dashboard::DashboardArgs),
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    cli.gcp.validate().context("invalid Google Cloud settings")?;
    cli.topics.validate().context("invalid topic names")?;
    match cli.command {
        Command::Setup(args) => setup::run(&cli.gcp, &cli.topics, args).await,
        Command::Trigger(args) => trigger::run(&cli.gcp, &cli.topics, args).await,
        Command::Status(args) => status::run(&cli.gcp, args).await,
        Command::Missing(args) => repair::missing(&cli.gcp, args).await,
        Command::Redrive(args) => repair::redrive(&cli.gcp, &cli.topics, args).await,
        Command::DeadLetters(args) => repair::dead_letters(&cli.gcp, args).await,
        Command::Run(args) => run::run(&cli.gcp, &cli.topics, args).await,
        Command::Load(args) => load::run(&cli.gcp, args).await,
        Command::Backtest(args) => backtest::run(args),
        Command::Audit(args) => audit::run(&cli.gcp, args).await,
        Command::Backfill(args) => backfill::run(&cli.gcp, &cli.topics, args).await,
        Command::Dashboard(args) => dashboard::run(&cli.gcp, args).await,
    }
}

/// Exit codes of commands that wait for batches, so scripts can tell how a wait ended.
pub mod exit {
    pub const FAILED: u8 = 3;
    pub const SUPERSEDED: u8 = 4;
    pub const TIMED_OUT: u8 = 5;
    pub const NOT_STARTED: u8 = 6;
}

/// An error that ends the process with its own exit code (any other error exits 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: String) -> Self {
        Self { code, message }
    }
}

/// The exit code for an error `dispatch` returned.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(1, |exit| exit.code)
}

async fn connect_pubsub(gcp: &GcpSettings) -> anyhow::Result<PubSub> {
    Ok(PubSub::connect(gcp).await?)
}
