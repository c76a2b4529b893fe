//! `props-pipeline load`

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::messages::GameDate;
use props_pipeline::nba::data::{game_dates, load_logs};
use props_pipeline::nba::load::{LoadStep, load};

use super::args::FirestoreOnly;
use super::output::outln;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Folder with the NBA game logs (see its README).
    #[arg(long, env = "PROPS_DATA_DIR", default_value = "../shared/data/nba")]
    pub data: PathBuf,
    /// Build the slate of this date only (repeatable); default: every date with games.
    #[arg(long = "game-date")]
    pub game_dates: Vec<String>,
    /// Skip malformed rows (reported with file and line) instead of failing the load.
    #[arg(long)]
    pub skip_bad_rows: bool,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let requested = args
        .game_dates
        .iter()
        .map(|text| {
            text.parse::<GameDate>().map(GameDate::date).with_context(|| format!("invalid --game-date {text:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !args.data.is_dir() {
        bail!("data folder {} does not exist (set --data or PROPS_DATA_DIR)", args.data.display());
    }

    let reading = spinner("reading game logs");
    let loaded =
        load_logs(&args.data, args.skip_bad_rows, &mut |rows| reading.set_message(format!("{rows} rows read")))
            .with_context(|| format!("reading {}", args.data.display()))?;
    reading.finish_and_clear();
    for bad in loaded.bad_rows.iter().take(10) {
        eprintln!("skipped {bad}");
    }
    eprintln!(
        "read {} game logs from {} files ({} duplicate rows across sources dropped, {} malformed rows skipped)",
        loaded.logs.len(),
        loaded.files.len(),
        loaded.duplicates_dropped,
        loaded.bad_rows.len()
    );

    let available = game_dates(&loaded.logs);
    let dates = if requested.is_empty() { available.clone() } else { requested };
    if let Some(missing) = dates.iter().find(|d| !available.contains(d)) {
        bail!("no games on {missing} in {}; nothing to build a slate from", args.data.display());
    }

    let db = props_pipeline::gcp::firestore::connect(gcp).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = load(&db, &loaded.logs, &dates, &mut |step| match step {
        LoadStep::Players { done, total } => {
            bar.set_message("players");
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        LoadStep::Slates { done, total } => {
            bar.set_message("slates");
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })
    .await
    .context("writing to Firestore")?;
    bar.finish_and_clear();
    outln!(
        "players: {} written, {} unchanged; slates: {} written ({} players), {} unchanged",
        report.players_written,
        report.players_unchanged,
        report.slates_written,
        report.slate_players_written,
        report.slates_unchanged
    )?;
    Ok(())
}

fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}
