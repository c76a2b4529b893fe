//! Summing the walk's per-date results into the report: counts, scores per stat and overall for the
//! model and the two baselines, pick records, calibration.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calibration::{Calibration, CalibrationBucket};
use super::metrics::{PickRecord, PickTally, ScoreSum, Scores};
use super::walk::{DateResult, ScoredProp};
use crate::nba::data::STANDARD_ODDS;
use crate::nba::model::implied_probability;
use crate::nba::types::Stat;

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
}

#[derive(Default)]
struct Tally {
    props: usize,
    overs: usize,
    model: ScoreSum,
    always_half: ScoreSum,
    market: ScoreSum,
    picks: PickTally,
}

impl Tally {
    fn add(&mut self, prop: &ScoredProp) {
        self.props += 1;
        self.overs += usize::from(prop.over);
        self.model.add(prop.p_over, prop.over);
        self.always_half.add(0.5, prop.over);
        self.market.add(prop.market_p_over, prop.over);
        self.picks.add(prop.recommendation, prop.over, prop.over_odds, prop.under_odds);
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
        calibration: calibration.buckets(),
    }
}
