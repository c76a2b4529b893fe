//! The walk itself: one game date at a time, predict the slate from the past, score against the day.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::BacktestError;
use crate::nba::data::{build_slate, game_dates};
use crate::nba::model::{LeagueContext, ModelConfig, ModelError, predict};
use crate::nba::types::{GameLog, Recommendation, Stat};

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
    /// The model's P(over).
    pub p_over: f64,
    /// The market's de-vigged P(over).
    pub market_p_over: f64,
    pub recommendation: Recommendation,
    /// The stat the player actually recorded.
    pub actual: f64,
    /// actual > line.
    pub over: bool,
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
        Ok(Backtester { logs: sorted, by_player, config })
    }

    /// The game dates in `from..=to`, ascending.
    pub fn dates(&self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        game_dates(&self.logs).into_iter().filter(|d| (from..=to).contains(d)).collect()
    }

    /// Predicts and scores the slate of `date`. The slate builder sees only logs up to `date` (it
    /// needs the day's rows to know who plays whom), the model only logs before it, and the day's
    /// rows are otherwise used for the outcome alone.
    pub fn score_date(&self, date: NaiveDate) -> Result<DateResult, BacktestError> {
        let before = self.logs.partition_point(|log| log.game_date < date);
        let through = self.logs.partition_point(|log| log.game_date <= date);
        let slate = build_slate(&self.logs[..through], date);
        let league = LeagueContext::build(&self.logs[..before], date);
        // The row build_slate used: the first of the player's rows on the date.
        let mut today: HashMap<&str, &GameLog> = HashMap::new();
        for log in &self.logs[before..through] {
            today.entry(log.player_lookup.as_str()).or_insert(log);
        }

        let mut result = DateResult {
            date,
            slate_players: slate.len(),
            predicted_players: 0,
            skipped_insufficient_history: 0,
            void_props: 0,
            pushes: 0,
            props: Vec::new(),
        };
        for entry in &slate {
            let history = self
                .by_player
                .get(&entry.player_lookup)
                .map_or(&[][..], |games| &games[..games.partition_point(|log| log.game_date < date)]);
            let prediction = match predict(history, entry, &league, &self.config) {
                Ok(prediction) => prediction,
                Err(ModelError::InsufficientHistory { .. }) => {
                    result.skipped_insufficient_history += 1;
                    continue;
                }
                Err(source) => return Err(BacktestError::Model { date, source }),
            };
            result.predicted_players += 1;
            // Every slate player played on the date, so the row exists.
            let Some(row) = today.get(entry.player_lookup.as_str()) else { continue };
            if row.minutes <= 0.0 {
                result.void_props += prediction.props.len();
                continue;
            }
            // predict prices the lines in order, one prop per line.
            for (prop, line) in prediction.props.iter().zip(&entry.lines) {
                let actual = prop.stat.of(row);
                if actual == prop.line {
                    result.pushes += 1;
                    continue;
                }
                result.props.push(ScoredProp {
                    game_date: date,
                    player_lookup: entry.player_lookup.clone(),
                    stat: prop.stat,
                    line: prop.line,
                    over_odds: line.over_odds,
                    under_odds: line.under_odds,
                    projection: prop.projection,
                    p_over: prop.p_over,
                    market_p_over: prop.market_p_over,
                    recommendation: prop.recommendation,
                    actual,
                    over: actual > prop.line,
                });
            }
        }
        Ok(result)
    }
}
