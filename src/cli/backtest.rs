//! `props-pipeline backtest`: walk-forward backtest of the model over a range of game dates, or per
//! playoff season.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use props_pipeline::messages::GameDate;
use props_pipeline::nba::backtest::{
    BacktestReport, PostedLines, calibration_svg, render_seasons, render_text, run_backtest, run_seasons,
};
use props_pipeline::nba::data::load_logs;
use props_pipeline::nba::model::ModelConfig;

use super::output::outln;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// First game date of the range (YYYY-MM-DD, inclusive).
    #[arg(long, required_unless_present = "seasons", conflicts_with = "seasons")]
    pub from: Option<String>,
    /// Last game date of the range (YYYY-MM-DD, inclusive).
    #[arg(long, required_unless_present = "seasons", conflicts_with = "seasons")]
    pub to: Option<String>,
    /// Playoff seasons by calendar year, `2021..2025` (inclusive) or `2024`: one table per season
    /// and one overall, and a calibration chart per season in --chart-dir.
    #[arg(long)]
    pub seasons: Option<String>,
    /// Folder with the NBA game logs (see its README).
    #[arg(long, env = "PROPS_DATA_DIR", default_value = "../shared/data/nba")]
    pub data: PathBuf,
    /// Posted prop lines (CSV: game_date,player,stat,line,over_odds,under_odds) to score instead of
    /// the synthetic market; only the props it lists are scored.
    #[arg(long)]
    pub lines: Option<PathBuf>,
    /// Print the figures as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write a calibration chart (reliability diagram) to this SVG file (a range run).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Where --seasons writes `calibration-<season>.svg`.
    #[arg(long, default_value = "out/backtest")]
    pub chart_dir: PathBuf,
    /// Skip malformed rows (reported with file and line) instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

fn parse_date(flag: &str, text: &str) -> anyhow::Result<chrono::NaiveDate> {
    text.parse::<GameDate>().map(GameDate::date).with_context(|| format!("invalid {flag} {text:?}"))
}

/// `2021..2025` (inclusive) or a single `2024`.
fn parse_seasons(text: &str) -> anyhow::Result<(i32, i32)> {
    let year =
        |t: &str| t.trim().parse::<i32>().with_context(|| format!("invalid --seasons {text:?}: want 2021..2025"));
    let (first, last) = match text.split_once("..") {
        Some((first, last)) => (year(first)?, year(last.trim_start_matches('='))?),
        None => (year(text)?, year(text)?),
    };
    if first > last {
        bail!("--seasons {text}: the first season is after the last");
    }
    Ok((first, last))
}

pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if !args.data.is_dir() {
        bail!("data folder {} does not exist (set --data or PROPS_DATA_DIR)", args.data.display());
    }
    let seasons = args.seasons.as_deref().map(parse_seasons).transpose()?;
    let range = match (&args.from, &args.to) {
        (Some(from), Some(to)) => Some((parse_date("--from", from)?, parse_date("--to", to)?)),
        _ => None,
    };
    if let Some((from, to)) = range
        && from > to
    {
        bail!("--from {from} is after --to {to}");
    }
    let posted = match &args.lines {
        Some(path) => {
            let posted = PostedLines::read(path)?;
            eprintln!("scoring {} posted props from {}", posted.len(), path.display());
            Some(posted)
        }
        None => None,
    };

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
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let config = ModelConfig::default();
    let report = match (seasons, range) {
        (Some((first, last)), _) => run_seasons(&loaded.logs, first, last, &config, posted, &mut progress)
            .context("backtest")?
            .with_context(|| format!("no games in the {first}..{last} playoffs in {}", args.data.display()))?,
        (None, Some((from, to))) => {
            let report = run_backtest(&loaded.logs, from, to, &config, posted, &mut progress).context("backtest")?;
            if report.counts.dates == 0 {
                bail!("no games between {from} and {to} in {}", args.data.display());
            }
            report
        }
        (None, None) => bail!("give --from and --to, or --seasons"),
    };
    bar.finish_and_clear();

    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?)?;
    } else {
        use std::io::Write as _;
        let text = if report.seasons.is_empty() { render_text(&report) } else { render_seasons(&report) };
        write!(std::io::stdout().lock(), "{text}")?;
    }
    if let Some(path) = &args.chart {
        write_chart(path, &report)?;
    }
    if !report.seasons.is_empty() {
        std::fs::create_dir_all(&args.chart_dir).with_context(|| format!("creating {}", args.chart_dir.display()))?;
        for season in &report.seasons {
            write_chart(&args.chart_dir.join(format!("calibration-{}.svg", season.label)), season)?;
        }
    }
    eprintln!("done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn write_chart(path: &Path, report: &BacktestReport) -> anyhow::Result<()> {
    let title = format!(
        "P(over) calibration, {} ({}..{}), {} props",
        report.label, report.from, report.to, report.counts.props_scored
    );
    std::fs::write(path, calibration_svg(&report.calibration, &title))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("calibration chart written to {}", path.display());
    Ok(())
}
