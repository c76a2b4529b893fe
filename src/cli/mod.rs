//! Command-line interface: clap definitions and one module per subcommand. Everything here is the
//! binary's edge (anyhow errors, printing); the work itself lives in the library.

mod args;
mod audit;
mod backfill;
mod backtest;
mod dashboard;
pub mod errors;
pub mod exit;
mod load;
pub mod logging;
mod output;
mod predictions;
mod repair;
mod run;
mod setup;
mod status;
mod trigger;

use anyhow::Context;
use clap::{Parser, Subcommand};
use props_pipeline::config::GcpSettings;
use props_pipeline::gcp::pubsub::PubSub;

pub use exit::Exit;

/// Turns a Pub/Sub trigger into NBA player-prop predictions for a game date, on Pub/Sub + Firestore.
/// Each subcommand takes the flags of the services it uses (`props-pipeline status --help`).
#[derive(Debug, Parser)]
#[command(name = "props-pipeline", version, about)]
pub struct Cli {
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
    /// Items of a batch that have no completion yet, and the failed ones with their errors.
    Missing(repair::MissingArgs),
    /// Re-publish the requests of a RUNNING batch's pending items now (what the sweeper does when a batch stalls).
    Redrive(repair::RedriveArgs),
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
    /// Print a date's current predictions (the batch its pointer publishes), or a given generation's.
    Predictions(predictions::PredictionsArgs),
}

impl Command {
    /// The Google Cloud settings of the services this command uses; `None` for an offline command.
    pub fn gcp(&self) -> Option<GcpSettings> {
        Some(match self {
            Command::Setup(args) => args.google.settings(),
            Command::Trigger(args) => args.google.settings(),
            Command::Status(args) => args.google.settings(),
            Command::Missing(args) => args.google.settings(),
            Command::Redrive(args) => args.google.settings(),
            Command::DeadLetters(args) => args.google.settings(),
            Command::Run(args) => args.google.settings(),
            Command::Load(args) => args.google.settings(),
            Command::Backtest(_) => return None,
            Command::Audit(args) => args.google.settings(),
            Command::Backfill(args) => args.google.settings(),
            Command::Dashboard(args) => args.google.settings(),
            Command::Predictions(args) => args.google.settings(),
        })
    }
}

/// Checks the Google Cloud settings of the command (well-formed, emulators answering), then runs it.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Some(gcp) = cli.command.gcp() {
        gcp.validate().context("invalid Google Cloud settings")?;
        errors::probe_emulators(&gcp).await?;
    }
    match cli.command {
        Command::Setup(args) => setup::run(args).await,
        Command::Trigger(args) => trigger::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Missing(args) => repair::missing(args).await,
        Command::Redrive(args) => repair::redrive(args).await,
        Command::DeadLetters(args) => repair::dead_letters(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Backtest(args) => backtest::run(args),
        Command::Audit(args) => audit::run(args).await,
        Command::Backfill(args) => backfill::run(args).await,
        Command::Dashboard(args) => dashboard::run(args).await,
        Command::Predictions(args) => predictions::run(args).await,
    }
}

async fn connect_pubsub(gcp: &GcpSettings) -> anyhow::Result<PubSub> {
    Ok(PubSub::connect(gcp).await?)
}
