//! The model end to end: history -> per-stat distributions -> priced props.

use crate::nba::types::{GameLog, PlayerPrediction, PropPrediction, SlateEntry, Stat};

use super::calibration::{Calibration, MODEL_VERSION};
use super::context::{LeagueContext, is_back_to_back, venue_factor};
use super::distributions::{FittedDistribution, clamp_probability, fit_count, fit_normal, prob_over};
use super::market::{confidence, recommend, try_devig};
use super::rates::{project_minutes, recency_weights, shrunk_rate, weighted_moments};
use super::{ModelConfig, ModelError};

/// Floors on the points sd: σ = max(√Var, SD_FLOOR, SD_FLOOR_SHARE·μ).
const SD_FLOOR: f64 = 2.0;
const SD_FLOOR_SHARE: f64 = 0.25;

/// Projected minutes from which a player's props are marked offered: sportsbooks post props for
/// starters and the main rotation, not for deep-bench minutes (where a 0.5 threes line is noise).
pub const OFFERED_MIN_MINUTES: f64 = 15.0;

/// A player's fitted outcome distributions for one game, before any line or price.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerProjection {
    pub projected_minutes: f64,
    pub games_used: usize,
    /// One per stat, in `Stat::ALL` order.
    pub distributions: Vec<(Stat, FittedDistribution)>,
}

impl PlayerProjection {
    pub fn distribution(&self, stat: Stat) -> Option<&FittedDistribution> {
        self.distributions.iter().find(|(s, _)| *s == stat).map(|(_, d)| d)
    }
}

/// The distributions behind [`predict`], for a backtest that prices other lines. Uses only games with
/// game_date < entry.game_date and minutes > 0, whatever `history` holds.
pub fn project(
    history: &[GameLog],
    entry: &SlateEntry,
    league: &LeagueContext,
    config: &ModelConfig,
) -> Result<PlayerProjection, ModelError> {
    config.validate()?;
    let calibrated_before = league.calibration().map_or(league.before(), |c| c.fitted_before);
    if league.before() > entry.game_date || calibrated_before > entry.game_date {
        return Err(ModelError::LookAhead {
            league_before: league.before().max(calibrated_before),
            game_date: entry.game_date,
        });
    }
    let mut games: Vec<&GameLog> =
        history.iter().filter(|g| g.game_date < entry.game_date && g.minutes > 0.0 && g.minutes.is_finite()).collect();
    // Most recent first; game_id breaks same-day ties so the input order never changes the result.
    games.sort_by(|a, b| b.game_date.cmp(&a.game_date).then_with(|| b.game_id.cmp(&a.game_id)));
    // At least one game whatever the config: with none there is no minutes estimate at all.
    let required = config.min_games.max(1);
    let Some(latest) = games.first().filter(|_| games.len() >= required) else {
        return Err(ModelError::InsufficientHistory {
            player: entry.player_lookup.clone(),
            games: games.len(),
            required,
        });
    };

    let mut minutes = project_minutes(&games, config.half_life_games, config.recent_minutes_games);
    if is_back_to_back(latest.game_date, entry.game_date) {
        minutes *= config.back_to_back_minutes_factor;
    }
    let venue = venue_factor(entry.home, config.home_factor);
    let weights = recency_weights(games.len(), config.half_life_games);

    let distributions = Stat::ALL
        .iter()
        .map(|&stat| {
            let rate = shrunk_rate(&games, &weights, stat, league.league_rate(stat), config.prior_games);
            let opponent =
                league.opponent_factor(stat, &entry.opponent, config.opponent_factor_clamp, config.min_opponent_games);
            let mean = (rate * minutes * opponent * venue).max(0.0);
            let (history_mean, history_variance) = weighted_moments(&games, &weights, stat);
            // Keeping Var/mean fixed carries the player's spread over to a projection that moved
            // (more minutes, softer opponent) the way a count's variance moves with its mean. With
            // no history mean (never recorded the stat) Poisson dispersion is the neutral guess.
            let dispersion = if history_mean > 0.0 { history_variance / history_mean } else { 1.0 };
            let variance = dispersion * mean;
            let dist = match stat {
                Stat::Points => fit_normal(mean, variance.sqrt().max(SD_FLOOR).max(SD_FLOOR_SHARE * mean)),
                Stat::Rebounds | Stat::Assists | Stat::Threes => fit_count(mean, variance),
            };
            (stat, dist)
        })
        .collect();

    Ok(PlayerProjection { projected_minutes: minutes, games_used: games.len(), distributions })
}

/// Predicts every prop of `entry`. history: the player's games (any order); every game with
/// game_date >= entry.game_date is ignored, so there is no look-ahead.
pub fn predict(
    history: &[GameLog],
    entry: &SlateEntry,
    league: &LeagueContext,
    config: &ModelConfig,
) -> Result<PlayerPrediction, ModelError> {
    let projection = project(history, entry, league, config)?;
    price(&projection, entry, league, config)
}

/// Prices every line of `entry` against a projection (the second half of [`predict`]), through the
/// league context's calibration when it has one.
pub fn price(
    projection: &PlayerProjection,
    entry: &SlateEntry,
    league: &LeagueContext,
    config: &ModelConfig,
) -> Result<PlayerPrediction, ModelError> {
    let calibration = league.calibration();
    let props = entry
        .lines
        .iter()
        .map(|line| {
            if !line.line.is_finite() {
                return Err(ModelError::InvalidLine {
                    player: entry.player_lookup.clone(),
                    stat: line.stat,
                    line: line.line,
                });
            }
            let Some((market_p_over, _)) = try_devig(line.over_odds, line.under_odds) else {
                return Err(ModelError::InvalidOdds {
                    player: entry.player_lookup.clone(),
                    stat: line.stat,
                    over_odds: line.over_odds,
                    under_odds: line.under_odds,
                });
            };
            // `project` fits every stat in Stat::ALL, so the lookup always succeeds.
            let dist = projection.distribution(line.stat).copied().unwrap_or(FittedDistribution::Poisson { mean: 0.0 });
            let raw = prob_over(&dist, line.line);
            let p_over = calibration.map_or(raw, |c| clamp_probability(c.apply(line.stat, raw, market_p_over)));
            let edge = p_over - market_p_over;
            Ok(PropPrediction {
                stat: line.stat,
                line: line.line,
                projection: dist.mean(),
                p_over,
                market_p_over,
                edge,
                recommendation: recommend(edge, config.edge_threshold),
                confidence: confidence(p_over, projection.games_used, config.prior_games),
                distribution: dist.name().to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(PlayerPrediction {
        player_lookup: entry.player_lookup.clone(),
        player_name: entry.player_name.clone(),
        team: entry.team.clone(),
        opponent: entry.opponent.clone(),
        game_date: entry.game_date,
        projected_minutes: projection.projected_minutes,
        games_used: projection.games_used,
        props,
        offered: projection.projected_minutes >= OFFERED_MIN_MINUTES,
        model_version: model_version(calibration),
    })
}

/// The version a prediction carries: the code's, plus the calibration map's hash when there is one.
pub fn model_version(calibration: Option<&Calibration>) -> String {
    calibration.map_or_else(|| MODEL_VERSION.to_string(), Calibration::model_version)
}

/// The version every prediction priced with `league` carries (the batch records it).
pub fn league_model_version(league: &LeagueContext) -> String {
    model_version(league.calibration())
}

#[cfg(test)]
#[path = "predict_tests.rs"]
mod tests;
