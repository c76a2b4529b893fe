//! Summing the walk's per-date results into the report: counts, scores per stat and overall for the
//! model and the two baselines, pick records, calibration.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::calibration::{Calibration, CalibrationBucket};
use super::metrics::{PickRecord, PickTally, ScoreSum, Scores};
use super::walk::{DateResult, ScoredProp};
use crate::nba::data::STANDARD_ODDS;
use crate::nba::model::implied_probability;
use crate::nba::types::{Recommendation, Stat};

/// Hit rate a pick at American `odds` needs to break even: its implied probability (-110 -> 52.38%).
pub fn break_even_hit_rate(odds: i32) -> Option<f64> {
    implied_probability(odds)
}

/// How much the walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub dates: usize,
    pub slate_players: usize,
    pub predicted_players: usize,
    pub skipped_insufficient_history: usize,
    pub void_props: usize,
    pub pushes: usize,
    pub props_scored: usize,
}

/// Figures for one stat, or for all of them ("overall").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatSummary {
    /// "points", "rebounds", "assists", "threes" or "overall".
    pub stat: String,
    pub props: usize,
    /// Share of the props that went over, None without props.
    pub over_rate: Option<f64>,
    pub model: Scores,
    /// Baseline (a): p_over = 0.5 on every prop.
    pub always_half: Scores,
    /// Baseline (b): the market's de-vigged p_over, i.e. the line taken as the median.
    pub market: Scores,
    /// The model's OVER/UNDER picks (PASS excluded).
    pub picks: PickRecord,
    /// Mean de-vigged market P(over): a fair market's matches `over_rate`.
    pub market_mean_p_over: Option<f64>,
    /// Betting every prop OVER, and every prop UNDER, at the posted odds.
    pub always_over: PickRecord,
    pub always_under: PickRecord,
    /// The better of the two constant strategies ("OVER" or "UNDER"), printed beside the model's picks.
    pub best_constant: String,
    /// Mean CRPS of the model's distribution and of the naive one (lower is better).
    pub crps: CrpsScores,
}

/// Mean CRPS over `count` props, model and naive (see [`super::crps`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CrpsScores {
    pub count: usize,
    pub model: Option<f64>,
    pub naive: Option<f64>,
}

/// The backtest's figures (what the CLI prints as a table or as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub counts: Counts,
    /// True when every scored prop had a de-vigged market P(over) of exactly 0.5 (even odds on both
    /// sides, e.g. -110/-110): baselines (a) and (b) are then the same forecast.
    pub baselines_coincide: bool,
    /// The odds of the synthetic lines, both sides.
    pub standard_odds: i32,
    /// Hit rate needed to break even at `standard_odds`.
    pub break_even_hit_rate: Option<f64>,
    /// One per stat, in `Stat::ALL` order.
    pub per_stat: Vec<StatSummary>,
    pub overall: StatSummary,
    /// Of the model's p_over over every scored prop.
    pub calibration: Vec<CalibrationBucket>,
    /// Expected calibration error of the table above: Σ count·|mean predicted - observed| / props.
    pub calibration_ece: Option<f64>,
    /// The largest |mean predicted - observed| among buckets of at least [`WELL_FILLED_BUCKET`] props.
    pub worst_bucket_gap: Option<f64>,
    /// "overall", a season ("2021": its playoffs), or the range.
    #[serde(default)]
    pub label: String,
    /// With `--seasons`: one report per season (this one is their sum).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seasons: Vec<BacktestReport>,
}

/// Buckets with at least this many props must be within the calibration target.
pub const WELL_FILLED_BUCKET: usize = 100;

#[derive(Default)]
struct Tally {
    props: usize,
    overs: usize,
    model: ScoreSum,
    always_half: ScoreSum,
    market: ScoreSum,
    picks: PickTally,
    market_p_over: f64,
    always_over: PickTally,
    always_under: PickTally,
    crps_count: usize,
    model_crps: f64,
    naive_crps: f64,
}

impl Tally {
    fn add(&mut self, prop: &ScoredProp) {
        self.props += 1;
        self.overs += usize::from(prop.over);
        self.model.add(prop.p_over, prop.over);
        self.always_half.add(0.5, prop.over);
        self.market.add(prop.market_p_over, prop.over);
        self.picks.add(prop.recommendation, prop.over, prop.over_odds, prop.under_odds);
        self.market_p_over += prop.market_p_over;
        self.always_over.add(Recommendation::Over, prop.over, prop.over_odds, prop.under_odds);
        self.always_under.add(Recommendation::Under, prop.over, prop.over_odds, prop.under_odds);
        if prop.model_crps.is_finite() && prop.naive_crps.is_finite() {
            self.crps_count += 1;
            self.model_crps += prop.model_crps;
            self.naive_crps += prop.naive_crps;
        }
    }

    fn summary(&self, stat: &str) -> StatSummary {
        StatSummary {
            stat: stat.to_string(),
            props: self.props,
            over_rate: (self.props > 0).then(|| self.overs as f64 / self.props as f64),
            model: self.model.scores(),
            always_half: self.always_half.scores(),
            market: self.market.scores(),
            picks: self.picks.record(),
            market_mean_p_over: (self.props > 0).then(|| self.market_p_over / self.props as f64),
            always_over: self.always_over.record(),
            always_under: self.always_under.record(),
            best_constant: if self.always_over.record().units > self.always_under.record().units {
                "OVER".into()
            } else {
                "UNDER".into()
            },
            crps: CrpsScores {
                count: self.crps_count,
                model: (self.crps_count > 0).then(|| self.model_crps / self.crps_count as f64),
                naive: (self.crps_count > 0).then(|| self.naive_crps / self.crps_count as f64),
            },
        }
    }
}

/// Sums per-date results (any order) into the report for `from..=to`.
pub fn summarize(from: NaiveDate, to: NaiveDate, results: &[DateResult]) -> BacktestReport {
    let mut counts = Counts { dates: results.len(), ..Counts::default() };
    let mut per_stat: Vec<Tally> = Stat::ALL.iter().map(|_| Tally::default()).collect();
    let mut overall = Tally::default();
    let mut calibration = Calibration::default();
    let mut baselines_coincide = true;
    for result in results {
        counts.slate_players += result.slate_players;
        counts.predicted_players += result.predicted_players;
        counts.skipped_insufficient_history += result.skipped_insufficient_history;
        counts.void_props += result.void_props;
        counts.pushes += result.pushes;
        counts.props_scored += result.props.len();
        for prop in &result.props {
            if let Some(i) = Stat::ALL.iter().position(|&s| s == prop.stat) {
                per_stat[i].add(prop);
            }
            overall.add(prop);
            calibration.add(prop.p_over, prop.over);
            baselines_coincide &= prop.market_p_over == 0.5;
        }
    }
    BacktestReport {
        from,
        to,
        counts,
        baselines_coincide,
        standard_odds: STANDARD_ODDS,
        break_even_hit_rate: break_even_hit_rate(STANDARD_ODDS),
        per_stat: Stat::ALL.iter().zip(&per_stat).map(|(stat, tally)| tally.summary(stat.as_str())).collect(),
        overall: overall.summary("overall"),
        calibration_ece: expected_calibration_error(&calibration.buckets()),
        worst_bucket_gap: worst_bucket_gap(&calibration.buckets(), WELL_FILLED_BUCKET),
        calibration: calibration.buckets(),
        label: format!("{from}..{to}"),
        seasons: Vec::new(),
    }
}

/// Σ count·|mean predicted - observed| / Σ count, None without props.
pub fn expected_calibration_error(buckets: &[CalibrationBucket]) -> Option<f64> {
    let total: usize = buckets.iter().map(|b| b.count).sum();
    let weighted: f64 =
        buckets.iter().filter_map(|b| Some(b.count as f64 * (b.mean_predicted? - b.observed_over_rate?).abs())).sum();
    (total > 0).then(|| weighted / total as f64)
}

/// The largest |mean predicted - observed| over buckets with at least `min_count` props.
pub fn worst_bucket_gap(buckets: &[CalibrationBucket], min_count: usize) -> Option<f64> {
    buckets
        .iter()
        .filter(|b| b.count >= min_count)
        .filter_map(|b| Some((b.mean_predicted? - b.observed_over_rate?).abs()))
        .max_by(f64::total_cmp)
}

/// The season of a playoff date: its calendar year (the 2025 playoffs are season "2025").
pub fn season_of(date: NaiveDate) -> i32 {
    date.year()
}

/// One report per season present in `results` (ascending), and their sum as the overall report
/// (labelled "overall", with the seasons inside).
pub fn summarize_seasons(results: &[DateResult]) -> Option<BacktestReport> {
    let (first, last) = (results.iter().map(|r| r.date).min()?, results.iter().map(|r| r.date).max()?);
    let mut seasons: Vec<i32> = results.iter().map(|r| season_of(r.date)).collect();
    seasons.dedup();
    seasons.sort_unstable();
    seasons.dedup();
    let per_season = seasons
        .iter()
        .filter_map(|&season| {
            let of_season: Vec<DateResult> = results.iter().filter(|r| season_of(r.date) == season).cloned().collect();
            let from = of_season.iter().map(|r| r.date).min()?;
            let to = of_season.iter().map(|r| r.date).max()?;
            Some(BacktestReport { label: season.to_string(), ..summarize(from, to, &of_season) })
        })
        .collect();
    Some(BacktestReport { label: "overall".into(), seasons: per_season, ..summarize(first, last, results) })
}
