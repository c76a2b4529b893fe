//! A player's own numbers: recency-weighted per-minute rates shrunk toward the league, per-game
//! dispersion, and projected minutes. Every function takes games already filtered to the past and
//! sorted most recent first.

use crate::nba::types::{GameLog, Stat};

/// w_i = 0.5^(i / half_life) for the i-th most recent game (i = 0 is the latest, weight 1), so a game
/// `half_life` games back counts half as much: form changes (role, injury) outweigh old samples.
pub fn recency_weights(n: usize, half_life: f64) -> Vec<f64> {
    (0..n).map(|i| 0.5f64.powf(i as f64 / half_life)).collect()
}

/// Σw·stat / Σw·minutes: the player's raw per-minute rate, None without minutes.
pub fn raw_rate(games: &[&GameLog], weights: &[f64], stat: Stat) -> Option<f64> {
    let (stat_sum, minutes_sum) =
        games.iter().zip(weights).fold((0.0, 0.0), |(s, m), (g, w)| (s + w * stat.of(g), m + w * g.minutes));
    (minutes_sum > 0.0).then(|| stat_sum / minutes_sum)
}

/// Per-minute rate shrunk toward the league rate λ with k = `prior_games` pseudo-games played at
/// the player's weighted average minutes m̄:
///
/// rate = (Σw·x + k·λ·m̄) / (Σw·min + k·m̄) = (W·r̂ + k·λ) / (W + k), with W = Σw and r̂ the raw rate.
///
/// That is the posterior mean of a Gamma-Poisson rate whose prior is worth k games: a short history
/// stays near the league, a long one is dominated by the player (W saturates near
/// 1/(1 - 0.5^(1/half_life)) effective games, about 12 for a half-life of 8). Without a league rate
/// (no earlier games at all) the raw rate stands alone.
pub fn shrunk_rate(games: &[&GameLog], weights: &[f64], stat: Stat, league_rate: Option<f64>, prior_games: f64) -> f64 {
    let raw = raw_rate(games, weights, stat).unwrap_or(0.0);
    let Some(league) = league_rate else { return raw };
    let w_total: f64 = weights.iter().take(games.len()).sum();
    let denominator = w_total + prior_games;
    if denominator <= 0.0 {
        return league;
    }
    (w_total * raw + prior_games * league) / denominator
}

/// Recency-weighted mean and variance of the per-game stat. The variance uses the reliability-weight
/// correction Σw(x - x̄)² / (V₁ - V₂/V₁), the weighted analogue of dividing by n - 1, because a
/// handful of games otherwise understates the spread and overstates confidence. One game gives 0.
pub fn weighted_moments(games: &[&GameLog], weights: &[f64], stat: Stat) -> (f64, f64) {
    let pairs: Vec<(f64, f64)> = games.iter().zip(weights).map(|(g, w)| (stat.of(g), *w)).collect();
    let v1: f64 = pairs.iter().map(|(_, w)| w).sum();
    if v1 <= 0.0 {
        return (0.0, 0.0);
    }
    let v2: f64 = pairs.iter().map(|(_, w)| w * w).sum();
    let mean = pairs.iter().map(|(x, w)| w * x).sum::<f64>() / v1;
    let squares: f64 = pairs.iter().map(|(x, w)| w * (x - mean).powi(2)).sum();
    let effective = v1 - v2 / v1;
    let variance = if effective > 1e-12 { squares / effective } else { 0.0 };
    (mean, variance)
}

/// Recency-weighted mean minutes of the last `recent_games` games; rest is applied by the caller.
pub fn project_minutes(games: &[&GameLog], half_life: f64, recent_games: usize) -> f64 {
    let recent = &games[..games.len().min(recent_games.max(1))];
    let weights = recency_weights(recent.len(), half_life);
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    recent.iter().zip(&weights).map(|(g, w)| w * g.minutes).sum::<f64>() / total
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn game(day: u32, minutes: f64, points: f64) -> GameLog {
        GameLog {
            player_lookup: "p".into(),
            player_name: "P".into(),
            player_id: "1".into(),
            team: "AAA".into(),
            opponent: "BBB".into(),
            home: true,
            game_date: NaiveDate::from_ymd_opt(2024, 1, day).expect("valid test date"),
            game_id: format!("g{day}"),
            season: "2023-24".into(),
            minutes,
            points,
            rebounds: 0.0,
            assists: 0.0,
            threes: 0.0,
        }
    }

    #[test]
    fn weights_halve_every_half_life() {
        let w = recency_weights(9, 4.0);
        assert_eq!(w[0], 1.0);
        assert!((w[4] - 0.5).abs() < 1e-15);
        assert!((w[8] - 0.25).abs() < 1e-15);
    }

    #[test]
    fn shrinkage_sits_between_player_and_league() {
        let logs: Vec<GameLog> = (1..=3).map(|d| game(d, 30.0, 30.0)).collect();
        let games: Vec<&GameLog> = logs.iter().collect();
        let w = recency_weights(3, 8.0);
        let rate = shrunk_rate(&games, &w, Stat::Points, Some(0.5), 6.0);
        let w_total: f64 = w.iter().sum();
        assert!((rate - (w_total * 1.0 + 6.0 * 0.5) / (w_total + 6.0)).abs() < 1e-12);
        assert!(rate > 0.5 && rate < 1.0);
        assert_eq!(shrunk_rate(&games, &w, Stat::Points, None, 6.0), 1.0);
        assert_eq!(shrunk_rate(&games, &w, Stat::Points, Some(0.5), 0.0), 1.0);
    }

    #[test]
    fn weighted_variance_is_unbiased_for_equal_weights() {
        let logs: Vec<GameLog> =
            [2.0, 4.0, 9.0].iter().enumerate().map(|(i, &p)| game(i as u32 + 1, 30.0, p)).collect();
        let games: Vec<&GameLog> = logs.iter().collect();
        let (mean, var) = weighted_moments(&games, &[1.0, 1.0, 1.0], Stat::Points);
        assert!((mean - 5.0).abs() < 1e-12);
        // Sample variance with n - 1: (9 + 1 + 16) / 2 = 13.
        assert!((var - 13.0).abs() < 1e-12);
        assert_eq!(weighted_moments(&games[..1], &[1.0], Stat::Points), (2.0, 0.0));
    }

    #[test]
    fn minutes_use_only_recent_games_with_recency_weights() {
        // Most recent first: 36, 30, then an old 10 outside a two-game window.
        let logs = [game(3, 36.0, 0.0), game(2, 30.0, 0.0), game(1, 10.0, 0.0)];
        let games: Vec<&GameLog> = logs.iter().collect();
        let expected = (36.0 + 0.5 * 30.0) / 1.5;
        assert!((project_minutes(&games, 1.0, 2) - expected).abs() < 1e-12);
    }
}
