//! `props-pipeline backtest`: walk-forward backtest of the model over a range of game dates.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::messages::GameDate;
use props_pipeline::nba::backtest::{calibration_svg, render_text, run_backtest};
use props_pipeline::nba::data::load_logs;
use props_pipeline::nba::model::ModelConfig;

use super::output::outln;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// First game date of the range (YYYY-MM-DD, inclusive).
    #[arg(long)]
    pub from: String,
    /// Last game date of the range (YYYY-MM-DD, inclusive).
    #[arg(long)]
    pub to: String,
    /// Folder with the NBA game logs (see its README).
    #[arg(long, env = "PROPS_DATA_DIR", default_value = "../shared/data/nba")]
    pub data: PathBuf,
    /// Print the figures as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write a calibration chart (reliability diagram) to this SVG file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Skip malformed rows (reported with file and line) instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

fn parse_date(flag: &str, text: &str) -> anyhow::Result<chrono::NaiveDate> {
    text.parse::<GameDate>().map(GameDate::date).with_context(|| format!("invalid {flag} {text:?}"))
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let from = parse_date("--from", &args.from)?;
    let to = parse_date("--to", &args.to)?;
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    if !args.data.is_dir() {
        bail!("data folder {} does not exist (set --data or PROPS_DATA_DIR)", args.data.display());
    }

    let loaded = load_logs(&args.data, args.skip_bad_rows, &mut |_| {})
        .with_context(|| format!("reading {}", args.data.display()))?;
    for bad in loaded.bad_rows.iter().take(10) {
        eprintln!("skipped {bad}");
    }
    eprintln!("read {} game logs from {} files", loaded.logs.len(), loaded.files.len());

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("dates [{bar:40}] {pos}/{len}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = run_backtest(&loaded.logs, from, to, &ModelConfig::default(), &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .context("backtest")?;
    bar.finish_and_clear();
    if report.counts.dates == 0 {
        bail!("no games between {from} and {to} in {}", args.data.display());
    }

    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?)?;
    } else {
        use std::io::Write as _;
        write!(std::io::stdout().lock(), "{}", render_text(&report))?;
    }
    if let Some(path) = &args.chart {
        let title = format!("P(over) calibration, {from}..{to}, {} props", report.counts.props_scored);
        std::fs::write(path, calibration_svg(&report.calibration, &title))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("calibration chart written to {}", path.display());
    }
    eprintln!("done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
