//! `make bench-model` (`cargo bench --bench model`, no harness): the worker's model cost per item.
//!
//! The worker's per-item CPU work is one call of `predict` (history, slate entry, the slate's league
//! context, the config); everything else is Firestore I/O. This times that call for every player of
//! the last `--dates` game dates of the 2025 playoffs (real logs from `--data`), as the worker makes it:
//! the player's whole log (future games included, which the model ignores) and the date's league
//! context, with the walk-forward calibration map `load` stores (the worker today) and without it
//! (the raw model). The two variants alternate pass by pass so machine noise hits both alike.
//! Prints microseconds per item (median and best pass of `--passes`) and one JSON line. Figures only:
//! nothing is asserted.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use props_pipeline::nba::backtest::{Backtester, SampleHistory};
use props_pipeline::nba::data::{build_slate, game_dates, load_logs};
use props_pipeline::nba::model::{LeagueContext, ModelConfig, league_model_version, predict};
use props_pipeline::nba::types::{GameLog, SlateEntry};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// One item as the worker sees it: the player's logs, his slate entry, the date's league context.
struct Item<'a> {
    history: &'a [GameLog],
    entry: SlateEntry,
    date: NaiveDate,
}

/// Seconds per item of one pass over every item.
fn pass(items: &[Item], leagues: &HashMap<NaiveDate, LeagueContext>, config: &ModelConfig) -> (f64, usize) {
    let started = Instant::now();
    let mut priced = 0;
    for item in items {
        if let Ok(prediction) = predict(item.history, &item.entry, &leagues[&item.date], config) {
            priced += 1;
            black_box(prediction);
        }
    }
    (started.elapsed().as_secs_f64() / items.len().max(1) as f64, priced)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = PathBuf::from(
        arg("--data").or_else(|| std::env::var("PROPS_DATA_DIR").ok()).unwrap_or_else(|| "../shared/data/nba".into()),
    );
    let dates_n: usize = arg("--dates").and_then(|v| v.parse().ok()).unwrap_or(10);
    let passes: usize = arg("--passes").and_then(|v| v.parse().ok()).unwrap_or(200);
    let config = ModelConfig::default();

    let logs = load_logs(&data, true, &mut |_| {})?.logs;
    let mut by_player: HashMap<&str, Vec<GameLog>> = HashMap::new();
    for log in &logs {
        by_player.entry(log.player_lookup.as_str()).or_default().push(log.clone());
    }
    let last = NaiveDate::from_ymd_opt(2025, 6, 30).ok_or("bad date")?;
    let all_dates: Vec<NaiveDate> = game_dates(&logs).into_iter().filter(|d| *d <= last).collect();
    let dates = &all_dates[all_dates.len().saturating_sub(dates_n)..];

    let backtester = Backtester::new(&logs, config.clone())?;
    let mut samples = SampleHistory::default();
    let mut raw = HashMap::new();
    let mut calibrated = HashMap::new();
    let mut items = Vec::new();
    for &date in dates {
        let before = logs.partition_point(|log| log.game_date < date);
        let through = logs.partition_point(|log| log.game_date <= date);
        let league = LeagueContext::build(&logs[..before], date);
        calibrated.insert(date, league.clone().with_calibration(backtester.calibration_with(date, &mut samples)?));
        raw.insert(date, league);
        for entry in build_slate(&logs[..through], date) {
            let history = by_player.get(entry.player_lookup.as_str()).map_or(&[][..], Vec::as_slice);
            items.push(Item { history, entry, date });
        }
    }
    let props: usize = items.iter().map(|i| i.entry.lines.len()).sum();

    let (mut with_map, mut without_map) = (Vec::with_capacity(passes), Vec::with_capacity(passes));
    let mut priced = 0;
    for _ in 0..passes {
        let (seconds, n) = pass(&items, &calibrated, &config);
        with_map.push(seconds * 1e6);
        priced = n;
        without_map.push(pass(&items, &raw, &config).0 * 1e6);
    }
    // The version string each prediction carries (a hash of the map, formatted): part of the above.
    let mut version = Vec::with_capacity(passes);
    for _ in 0..passes {
        let started = Instant::now();
        for item in &items {
            black_box(league_model_version(black_box(&calibrated[&item.date])));
        }
        version.push(started.elapsed().as_secs_f64() * 1e6 / items.len().max(1) as f64);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (cal_best, raw_best) = (best(&with_map), best(&without_map));
    let (cal_median, raw_median) = (median(&mut with_map), median(&mut without_map));
    let (version_best, version_median) = (best(&version), median(&mut version));
    let league_bytes = |l: &LeagueContext| serde_json::to_vec(l).map(|b| b.len()).unwrap_or(0);
    let date = dates.last().ok_or("no dates")?;

    println!(
        "model per item: {} items ({priced} priced, {props} props) on {} dates {}..{}, {passes} passes",
        items.len(),
        dates.len(),
        dates.first().ok_or("no dates")?,
        date
    );
    println!("{:<34} {:>12} {:>12}", "variant", "median µs", "best µs");
    println!("{:<34} {:>12.2} {:>12.2}", "calibrated (the worker today)", cal_median, cal_best);
    println!("{:<34} {:>12.2} {:>12.2}", "raw (no calibration map)", raw_median, raw_best);
    println!("{:<34} {:>12.2} {:>12.2}", "  of calibrated: version string", version_median, version_best);
    println!(
        "league context (read with the slate header): {} bytes JSON with the map, {} without",
        league_bytes(&calibrated[date]),
        league_bytes(&raw[date])
    );
    let json = serde_json::json!({
        "items": items.len(), "priced": priced, "props": props, "dates": dates.len(), "passes": passes,
        "calibrated_us_per_item": {"median": cal_median, "best": cal_best},
        "raw_us_per_item": {"median": raw_median, "best": raw_best},
        "version_string_us_per_item": {"median": version_median, "best": version_best},
        "league_context_bytes": {"calibrated": league_bytes(&calibrated[date]), "raw": league_bytes(&raw[date])},
    });
    println!("{json}");
    Ok(())
}
