//! A baseline player-prop model: shrunk per-minute rates × projected minutes × context, a fitted
//! outcome distribution, and a comparison against the de-vigged market.
//!
//! For one player and date, using only his games strictly before the date with minutes > 0, most
//! recent first (game i has weight wᵢ = 0.5^(i/h), h = `half_life_games`):
//!
//! 1. **Rate** per stat, shrunk toward the league per-minute rate λ (from [`LeagueContext`], built
//!    from games before the date) with k = `prior_games` pseudo-games at his average minutes m̄:
//!    `rate = (Σw·x + k·λ·m̄) / (Σw·min + k·m̄) = (W·r̂ + k·λ) / (W + k)`, W = Σw, r̂ = Σw·x / Σw·min.
//! 2. **Minutes**: recency-weighted mean of the last `recent_minutes_games` games, × the
//!    back-to-back factor when his previous game was the day before.
//! 3. **Projection** μ = rate × minutes × opponent × venue. Opponent = (stat per minute all players
//!    produced against that team) / λ, clamped, 1.0 under `min_opponent_games` games. Venue =
//!    `home_factor` at home and its reciprocal away.
//! 4. **Distribution**: the weighted per-game variance s² (reliability-weight corrected) is rescaled
//!    to μ by keeping the index of dispersion D = s²/x̄, so Var = D·μ. Points: Normal(μ, σ) with
//!    σ = max(√(D·μ), 2, 0.25·μ) so a few steady games cannot make the model overconfident.
//!    Rebounds, assists, threes: negative binomial by the method of moments (p = μ/Var,
//!    r = μ²/(Var - μ)) when D > 1, otherwise Poisson(μ).
//! 5. **P(over)**: counts 1 - F(⌊line⌋) (exact for half-point lines; an integer line's push counts as
//!    neither over nor under); Normal 1 - Φ((line - μ)/σ) with no continuity correction. Clamped to
//!    [1e-6, 1 - 1e-6].
//! 6. **Calibration**: the raw P(over) goes through the date's walk-forward calibration map (see
//!    [`calibration`]), fitted on props settled before the date and carried by the league context;
//!    `model_version` names the code and the map.
//! 7. **Market**: American odds -> implied probabilities, normalized to sum to 1 (proportional
//!    de-vig). edge = p_over - market_p_over; OVER if edge ≥ threshold, UNDER if ≤ -threshold, else
//!    PASS. confidence = min(1, 2·|p_over - 0.5|) · n / (n + k), n = games used.

mod calibration;
mod context;
mod distributions;
mod market;
mod predict;
mod rates;

use serde::{Deserialize, Serialize};

use crate::nba::types::Stat;

pub use calibration::{
    CALIBRATION_DATES, Calibration, CalibrationSample, MIN_CALIBRATION_PROPS, MODEL_VERSION, StatCalibration,
};
pub use context::{LeagueContext, OpponentAllowed, StatTotals, is_back_to_back, venue_factor};
pub use distributions::{
    FittedDistribution, P_MAX, P_MIN, clamp_probability, erfc, fit_count, fit_normal, ln_gamma, neg_binomial_cdf,
    neg_binomial_ln_pmf, normal_cdf, poisson_cdf, poisson_ln_pmf, prob_over,
};
pub use market::{confidence, devig, implied_probability, recommend, try_devig};
pub use predict::{
    OFFERED_MIN_MINUTES, PlayerProjection, league_model_version, model_version, predict, price, project,
};

/// Tuning knobs of the model; the defaults are the documented baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Games back at which a game's weight has halved.
    pub half_life_games: f64,
    /// Strength of the shrinkage toward the league rate, in games.
    pub prior_games: f64,
    /// Fewer usable games than this -> `InsufficientHistory` (the worker skips the player). The
    /// default is the line-setter's minimum: a player with fewer games has no lines to price.
    pub min_games: usize,
    /// Games averaged for projected minutes.
    pub recent_minutes_games: usize,
    /// |edge| needed for OVER/UNDER.
    pub edge_threshold: f64,
    pub back_to_back_minutes_factor: f64,
    /// Multiplier at home; away uses its reciprocal.
    pub home_factor: f64,
    pub opponent_factor_clamp: (f64, f64),
    /// Games an opponent needs before its factor departs from 1.0.
    pub min_opponent_games: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            half_life_games: 8.0,
            prior_games: 2.0,
            min_games: crate::nba::data::MIN_MARKET_GAMES,
            recent_minutes_games: 5,
            edge_threshold: 0.03,
            back_to_back_minutes_factor: 0.96,
            home_factor: 1.01,
            opponent_factor_clamp: (0.85, 1.15),
            min_opponent_games: 5,
        }
    }
}

impl ModelConfig {
    /// Rejects settings that would silently produce NaN or nonsense (a zero half-life, a negative
    /// prior, an inverted clamp).
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let (lo, hi) = self.opponent_factor_clamp;
        let problem = if !positive(self.half_life_games) {
            Some("half_life_games must be positive")
        } else if !(self.prior_games.is_finite() && self.prior_games >= 0.0) {
            Some("prior_games must be non-negative")
        } else if !(self.edge_threshold.is_finite() && self.edge_threshold >= 0.0) {
            Some("edge_threshold must be non-negative")
        } else if !positive(self.back_to_back_minutes_factor) || !positive(self.home_factor) {
            Some("back_to_back_minutes_factor and home_factor must be positive")
        } else if !(positive(lo) && positive(hi) && lo <= hi) {
            Some("opponent_factor_clamp must be positive with low <= high")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ModelError::InvalidConfig(reason.to_string())),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("{player}: {games} usable games before the game date, {required} required")]
    InsufficientHistory { player: String, games: usize, required: usize },
    #[error("{player}: {stat:?} odds {over_odds}/{under_odds} are not valid American odds")]
    InvalidOdds { player: String, stat: Stat, over_odds: i32, under_odds: i32 },
    #[error("{player}: {stat:?} line {line} is not a finite number")]
    InvalidLine { player: String, stat: Stat, line: f64 },
    /// The league context would leak games on or after the game date into the prior.
    #[error("league context built for {league_before} holds games on or after the game date {game_date}")]
    LookAhead { league_before: chrono::NaiveDate, game_date: chrono::NaiveDate },
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
}
