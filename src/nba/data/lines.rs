//! The fair synthetic market (no real sportsbook lines ship with the data).
//!
//! A simple line-setter, fixed so that no one can weaken it: for each stat, the player's own last
//! [`MARKET_GAMES`] games played (minutes > 0) strictly before the date, at least
//! [`MIN_MARKET_GAMES`] of them.
//!
//! * **Line**: the half point nearest the median of those values (at least 0.5). An integer median
//!   sits between two half points; the one that splits the games closest to evenly wins, then the
//!   lower one.
//! * **Price**: P(over) is the smoothed share of those games above the line,
//!   `(overs + 1) / (n + 2)`; each side's implied probability is its fair probability times the
//!   standard overround of a -110/-110 market ([`STANDARD_OVERROUND`], 4.76%), turned into American
//!   odds. De-vigged (proportionally), the market's P(over) is the smoothed share again, up to the
//!   rounding of the odds to whole numbers.
//!
//! It is fair by construction: the share of a player's recent games above a line is an unbiased guess
//! of his next game going over, so over a season the mean implied probability tracks the observed
//! over rate (the backtest prints both). A model beats this market only by knowing more than the
//! player's recent distribution.

use crate::nba::types::{GameLog, PropLine, Stat};

/// Games the line-setter looks back over (the most recent games played before the date).
pub const MARKET_GAMES: usize = 20;
/// Fewer games played than this: no line for the player.
pub const MIN_MARKET_GAMES: usize = 5;
/// American odds on both sides of an even market; the vig every synthetic price carries.
pub const STANDARD_ODDS: i32 = -110;
/// Sum of the implied probabilities of a -110/-110 market: 2 · 110/210.
pub const STANDARD_OVERROUND: f64 = 2.0 * 110.0 / 210.0;

/// The median of `values` (any order), `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The half point nearest the median of `values` (see the module docs), `None` when empty.
pub fn market_line(values: &[f64]) -> Option<f64> {
    let median = median(values)?;
    let below = (median - 0.5).floor() + 0.5;
    let above = below + 1.0;
    let line = match (median - below).total_cmp(&(above - median)) {
        std::cmp::Ordering::Less => below,
        std::cmp::Ordering::Greater => above,
        // Equidistant (an integer median): the line that splits the games more evenly.
        std::cmp::Ordering::Equal => {
            // |overs - unders| in whole games, so float rounding cannot break the tie.
            let imbalance = |line: f64| (2 * overs(values, line)).abs_diff(values.len());
            if imbalance(above) < imbalance(below) { above } else { below }
        }
    };
    Some(line.max(0.5))
}

fn overs(values: &[f64], line: f64) -> usize {
    values.iter().filter(|&&v| v > line).count()
}

/// The fair P(over) of `line`: the share of `values` above it, smoothed with one pseudo-game on each
/// side (never 0 or 1).
pub fn fair_p_over(values: &[f64], line: f64) -> f64 {
    (overs(values, line) as f64 + 1.0) / (values.len() as f64 + 2.0)
}

/// American odds whose implied probability is `implied` (0 < implied < 1), rounded to the nearest
/// whole number: 0.5238 -> -110, 0.4 -> +150.
pub fn american_odds(implied: f64) -> i32 {
    let implied = implied.clamp(0.01, 0.99);
    let odds = if implied >= 0.5 { -100.0 * implied / (1.0 - implied) } else { 100.0 * (1.0 - implied) / implied };
    // |odds| ≥ 100 for any implied probability; whole numbers as sportsbooks quote them.
    odds.round() as i32
}

/// The priced line of one stat from the player's recent values, `None` under [`MIN_MARKET_GAMES`].
pub fn market_prop(stat: Stat, values: &[f64]) -> Option<PropLine> {
    if values.len() < MIN_MARKET_GAMES {
        return None;
    }
    let line = market_line(values)?;
    let p_over = fair_p_over(values, line);
    Some(PropLine {
        stat,
        line,
        over_odds: american_odds(p_over * STANDARD_OVERROUND),
        under_odds: american_odds((1.0 - p_over) * STANDARD_OVERROUND),
    })
}

/// One line per [`Stat`] (in [`Stat::ALL`] order) from `past`, the player's games before the date,
/// most recent first: the first [`MARKET_GAMES`] with minutes > 0 are used. Empty under
/// [`MIN_MARKET_GAMES`] games played.
pub fn market_lines(past: &[&GameLog]) -> Vec<PropLine> {
    let played: Vec<&GameLog> = past.iter().copied().filter(|g| g.minutes > 0.0).take(MARKET_GAMES).collect();
    Stat::ALL
        .iter()
        .filter_map(|&stat| {
            let values: Vec<f64> = played.iter().map(|g| stat.of(g)).collect();
            market_prop(stat, &values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nba::model::try_devig;

    #[test]
    fn the_line_is_the_half_point_nearest_the_median() {
        assert_eq!(market_line(&[10.0, 11.0, 14.0]), Some(10.5), "median 11: 10.5 and 11.5 split 1/3 vs 1/3");
        assert_eq!(market_line(&[10.0, 11.0, 12.0, 13.0]), Some(11.5), "median 11.5 is a half point");
        assert_eq!(market_line(&[0.0, 0.0, 0.0, 1.0, 2.0]), Some(0.5), "never below 0.5");
        assert_eq!(market_line(&[20.0, 22.0, 30.0, 31.0]), Some(25.5), "median 26: both split 2/2, the lower wins");
        assert_eq!(market_line(&[5.0, 6.0, 6.0, 6.0, 9.0]), Some(5.5), "median 6: 4 of 5 over vs 1 of 5, the lower");
        assert_eq!(market_line(&[5.0, 6.0, 6.0, 9.0, 9.0]), Some(6.5), "median 6: 2 of 5 over beats 4 of 5");
        assert_eq!(market_line(&[]), None);
    }

    #[test]
    fn prices_carry_the_smoothed_share_and_the_standard_vig() {
        let values = [3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0];
        let prop = market_prop(Stat::Points, &values).unwrap();
        assert_eq!(prop.line, 9.5);
        assert_eq!((prop.over_odds, prop.under_odds), (-110, -110), "an even split is the standard market");
        let skewed = market_prop(Stat::Threes, &[0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!(skewed.line, 0.5);
        let (p_over, _) = try_devig(skewed.over_odds, skewed.under_odds).unwrap();
        assert!((p_over - 6.0 / 9.0).abs() < 0.005, "de-vigged {p_over} is the smoothed share 6/9");
        let implied = |o: i32| crate::nba::model::implied_probability(o).unwrap();
        let overround = implied(skewed.over_odds) + implied(skewed.under_odds);
        assert!((overround - STANDARD_OVERROUND).abs() < 0.005, "{overround}");
        assert_eq!(market_prop(Stat::Points, &[1.0, 2.0, 3.0, 4.0]), None, "4 games are too few");
    }

    #[test]
    fn american_odds_round_trip() {
        assert_eq!(american_odds(110.0 / 210.0), -110);
        assert_eq!(american_odds(0.4), 150);
        assert_eq!(american_odds(0.75), -300);
        assert_eq!(american_odds(0.5), -100);
    }
}
