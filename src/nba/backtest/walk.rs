//! The walk itself: one game date at a time, predict the slate from the past, score against the day.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::BacktestError;
use super::crps::{crps, crps_empirical};
use super::posted::PostedLines;
use crate::nba::data::{MARKET_GAMES, build_slate, game_dates};
use crate::nba::model::{
    CALIBRATION_DATES, Calibration, CalibrationSample, LeagueContext, ModelConfig, ModelError, PlayerProjection, price,
    prob_over, project,
};
use crate::nba::types::{GameLog, PlayerPrediction, Recommendation, SlateEntry, Stat};

/// One prop the model priced and the game settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredProp {
    pub game_date: NaiveDate,
    pub player_lookup: String,
    pub stat: Stat,
    pub line: f64,
    pub over_odds: i32,
    pub under_odds: i32,
    pub projection: f64,
    /// The model's P(over), calibrated.
    pub p_over: f64,
    /// The model's P(over) before calibration (what the calibration of later dates learns from).
    pub raw_p_over: f64,
    /// The market's de-vigged P(over).
    pub market_p_over: f64,
    pub recommendation: Recommendation,
    /// The stat the player actually recorded.
    pub actual: f64,
    /// actual > line.
    pub over: bool,
    /// CRPS of the model's distribution of the stat at `actual` (see [`super::crps`]).
    pub model_crps: f64,
    /// CRPS of the naive distribution (the player's last games played, as the line-setter sees them).
    pub naive_crps: f64,
}

/// The predictions of one date before anything about the date's games is looked at, for scoring and
/// for the no-look-ahead test.
#[derive(Debug, Clone, PartialEq)]
pub struct DatePredictions {
    pub slate_players: usize,
    pub skipped_insufficient_history: usize,
    /// (slate entry as priced, projection, prediction), by `player_lookup`.
    pub players: Vec<(SlateEntry, PlayerProjection, PlayerPrediction)>,
}

/// Everything the walk produced for one date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DateResult {
    pub date: NaiveDate,
    pub slate_players: usize,
    pub predicted_players: usize,
    /// Slate players the model refused: fewer usable games than `min_games`.
    pub skipped_insufficient_history: usize,
    /// Props of predicted players whose row on the date has zero minutes (voided, not scored).
    pub void_props: usize,
    /// Props whose stat landed exactly on the line (not scored; never happens with half-point lines).
    pub pushes: usize,
    pub props: Vec<ScoredProp>,
}

/// The logs, indexed once for the walk, and the model settings.
#[derive(Debug, Clone)]
pub struct Backtester {
    /// Every log, stably sorted by game date (same-date rows keep their input order).
    logs: Vec<GameLog>,
    /// Each player's logs, sorted by game date.
    by_player: HashMap<String, Vec<GameLog>>,
    config: ModelConfig,
    /// Real lines replacing the synthetic market, when given.
    posted: Option<PostedLines>,
}

impl Backtester {
    pub fn new(logs: &[GameLog], config: ModelConfig) -> Result<Backtester, BacktestError> {
        config.validate().map_err(BacktestError::Config)?;
        let mut sorted = logs.to_vec();
        sorted.sort_by_key(|log| log.game_date);
        let mut by_player: HashMap<String, Vec<GameLog>> = HashMap::new();
        for log in &sorted {
            by_player.entry(log.player_lookup.clone()).or_default().push(log.clone());
        }
        Ok(Backtester { logs: sorted, by_player, config, posted: None })
    }

    /// Prices posted lines instead of the synthetic market (only the props they list are scored).
    pub fn with_posted_lines(mut self, posted: PostedLines) -> Backtester {
        self.posted = Some(posted);
        self
    }

    /// The player's games before `date`, sorted by date.
    fn history(&self, player: &str, date: NaiveDate) -> &[GameLog] {
        self.by_player.get(player).map_or(&[][..], |games| &games[..games.partition_point(|log| log.game_date < date)])
    }

    /// Predicts the slate of `date`. The slate builder sees only logs up to `date` (it needs the day's
    /// rows to know who plays whom), the model only logs before it.
    pub fn predict_date(
        &self,
        date: NaiveDate,
        calibration: Option<Calibration>,
    ) -> Result<DatePredictions, BacktestError> {
        let before = self.logs.partition_point(|log| log.game_date < date);
        let through = self.logs.partition_point(|log| log.game_date <= date);
        let mut slate = build_slate(&self.logs[..through], date);
        if let Some(posted) = &self.posted {
            for entry in &mut slate {
                entry.lines = posted.for_player(date, &entry.player_lookup);
            }
        }
        let mut league = LeagueContext::build(&self.logs[..before], date);
        if let Some(calibration) = calibration {
            league = league.with_calibration(calibration);
        }
        let mut predictions =
            DatePredictions { slate_players: slate.len(), skipped_insufficient_history: 0, players: Vec::new() };
        for entry in slate {
            let history = self.history(&entry.player_lookup, date);
            let projection = match project(history, &entry, &league, &self.config) {
                Ok(projection) => projection,
                Err(ModelError::InsufficientHistory { .. }) => {
                    predictions.skipped_insufficient_history += 1;
                    continue;
                }
                Err(source) => return Err(BacktestError::Model { date, source }),
            };
            let prediction = price(&projection, &entry, &league, &self.config)
                .map_err(|source| BacktestError::Model { date, source })?;
            predictions.players.push((entry, projection, prediction));
        }
        Ok(predictions)
    }

    /// The game dates in `from..=to`, ascending.
    pub fn dates(&self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        game_dates(&self.logs).into_iter().filter(|d| (from..=to).contains(d)).collect()
    }

    /// Predicts ([`Backtester::predict_date`]) and scores the slate of `date` with raw (uncalibrated)
    /// probabilities: the day's rows are used for the outcome alone.
    pub fn score_date(&self, date: NaiveDate) -> Result<DateResult, BacktestError> {
        self.score_date_with(date, None)
    }

    /// [`Backtester::score_date`] through `calibration` (fitted before `date`).
    pub fn score_date_with(
        &self,
        date: NaiveDate,
        calibration: Option<Calibration>,
    ) -> Result<DateResult, BacktestError> {
        let predicted = self.predict_date(date, calibration)?;
        let before = self.logs.partition_point(|log| log.game_date < date);
        let through = self.logs.partition_point(|log| log.game_date <= date);
        // The row build_slate used: the first of the player's rows on the date.
        let mut today: HashMap<&str, &GameLog> = HashMap::new();
        for log in &self.logs[before..through] {
            today.entry(log.player_lookup.as_str()).or_insert(log);
        }

        let mut result = DateResult {
            date,
            slate_players: predicted.slate_players,
            predicted_players: predicted.players.len(),
            skipped_insufficient_history: predicted.skipped_insufficient_history,
            void_props: 0,
            pushes: 0,
            props: Vec::new(),
        };
        for (entry, projection, prediction) in &predicted.players {
            // Every slate player played on the date, so the row exists.
            let Some(row) = today.get(entry.player_lookup.as_str()) else { continue };
            if row.minutes <= 0.0 {
                result.void_props += prediction.props.len();
                continue;
            }
            let recent: Vec<&GameLog> = self
                .history(&entry.player_lookup, date)
                .iter()
                .rev()
                .filter(|g| g.minutes > 0.0)
                .take(MARKET_GAMES)
                .collect();
            // price() prices the lines in order, one prop per line.
            for (prop, line) in prediction.props.iter().zip(&entry.lines) {
                let actual = prop.stat.of(row);
                if actual == prop.line {
                    result.pushes += 1;
                    continue;
                }
                let naive: Vec<f64> = recent.iter().map(|g| prop.stat.of(g)).collect();
                let distribution = projection.distribution(prop.stat);
                let model_crps = distribution.map_or(f64::NAN, |d| crps(d, actual));
                // What price() computed before calibrating.
                let raw_p_over = distribution.map_or(prop.p_over, |d| prob_over(d, prop.line));
                result.props.push(ScoredProp {
                    game_date: date,
                    player_lookup: entry.player_lookup.clone(),
                    stat: prop.stat,
                    line: prop.line,
                    over_odds: line.over_odds,
                    under_odds: line.under_odds,
                    projection: prop.projection,
                    p_over: prop.p_over,
                    raw_p_over,
                    market_p_over: prop.market_p_over,
                    recommendation: prop.recommendation,
                    actual,
                    over: actual > prop.line,
                    model_crps,
                    naive_crps: crps_empirical(&naive, actual).unwrap_or(f64::NAN),
                });
            }
        }
        Ok(result)
    }
}

/// The raw settled props of a result, as calibration samples.
pub fn samples_of(result: &DateResult) -> Vec<CalibrationSample> {
    result
        .props
        .iter()
        .map(|p| CalibrationSample { stat: p.stat, p_model: p.raw_p_over, p_market: p.market_p_over, over: p.over })
        .collect()
}

/// Raw settled props by date, so a walk fits each date's calibration from the dates before it
/// without predicting any date twice.
#[derive(Debug, Clone, Default)]
pub struct SampleHistory {
    by_date: BTreeMap<NaiveDate, Vec<CalibrationSample>>,
}

impl SampleHistory {
    pub fn insert(&mut self, date: NaiveDate, samples: Vec<CalibrationSample>) {
        self.by_date.insert(date, samples);
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.by_date.contains_key(&date)
    }
}

impl Backtester {
    /// The [`CALIBRATION_DATES`] game dates before `date`, ascending.
    pub fn calibration_window(&self, date: NaiveDate) -> Vec<NaiveDate> {
        let dates = game_dates(&self.logs[..self.logs.partition_point(|log| log.game_date < date)]);
        dates[dates.len().saturating_sub(CALIBRATION_DATES)..].to_vec()
    }

    /// The calibration of `date`: fitted on the raw settled props of the [`CALIBRATION_DATES`] game
    /// dates before it, which `history` caches (missing ones are scored and added).
    pub fn calibration_with(&self, date: NaiveDate, history: &mut SampleHistory) -> Result<Calibration, BacktestError> {
        let window = self.calibration_window(date);
        let mut samples = Vec::new();
        for day in window {
            if !history.contains(day) {
                let result = self.score_date(day)?;
                history.insert(day, samples_of(&result));
            }
            samples.extend(history.by_date.get(&day).into_iter().flatten().copied());
        }
        Ok(Calibration::fit(&samples, date))
    }

    /// The calibration of `date`, from scratch (what `load` stores with the slate).
    pub fn calibration_for(&self, date: NaiveDate) -> Result<Calibration, BacktestError> {
        self.calibration_with(date, &mut SampleHistory::default())
    }
}
