//! Synthetic prop lines (no real sportsbook lines ship with the data).

use crate::nba::types::{GameLog, PropLine, Stat};

/// How many of a player's most recent games (before the slate's date) a synthetic line averages.
pub const LOOKBACK_GAMES: usize = 10;
/// American odds on both sides of every synthetic line.
pub const STANDARD_ODDS: i32 = -110;

/// The synthetic line for a set of past values: `floor(mean) + 0.5`, at least 0.5.
/// `None` when there are no values.
pub fn synthetic_line(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
    if n == 0 {
        return None;
    }
    let mean = sum / f64::from(n);
    Some((mean.floor() + 0.5).max(0.5))
}

/// One synthetic line per [`Stat`] (in [`Stat::ALL`] order) from `recent`, the player's games to
/// average: the caller passes the last up-to-[`LOOKBACK_GAMES`] games strictly before the date.
/// Empty when `recent` is empty.
pub fn synthetic_lines(recent: &[&GameLog]) -> Vec<PropLine> {
    Stat::ALL
        .iter()
        .filter_map(|&stat| {
            let line = synthetic_line(recent.iter().map(|log| stat.of(log)))?;
            Some(PropLine { stat, line, over_odds: STANDARD_ODDS, under_odds: STANDARD_ODDS })
        })
        .collect()
}
