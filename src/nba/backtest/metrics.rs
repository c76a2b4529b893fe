//! Proper scoring rules for a probability of OVER (Brier score, log loss) and the record of the
//! model's OVER/UNDER picks.

use serde::{Deserialize, Serialize};

use crate::nba::model::implied_probability;
use crate::nba::types::Recommendation;

/// Log loss clamps probabilities to [ε, 1 - ε] so a confident miss costs -ln ε ≈ 13.8, not infinity.
pub const LOG_LOSS_EPSILON: f64 = 1e-6;

fn indicator(over: bool) -> f64 {
    if over { 1.0 } else { 0.0 }
}

/// (p_over - outcome)², outcome 1 for OVER and 0 for UNDER.
pub fn brier(p_over: f64, over: bool) -> f64 {
    (p_over - indicator(over)).powi(2)
}

/// -ln of the probability given to what happened, p clamped to [ε, 1 - ε].
pub fn log_loss(p_over: f64, over: bool) -> f64 {
    let p = p_over.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
    -(if over { p } else { 1.0 - p }).ln()
}

/// Running sums behind [`Scores`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreSum {
    count: usize,
    brier: f64,
    log_loss: f64,
}

impl ScoreSum {
    pub fn add(&mut self, p_over: f64, over: bool) {
        self.count += 1;
        self.brier += brier(p_over, over);
        self.log_loss += log_loss(p_over, over);
    }

    pub fn scores(&self) -> Scores {
        let mean = |sum: f64| (self.count > 0).then(|| sum / self.count as f64);
        Scores { count: self.count, brier: mean(self.brier), log_loss: mean(self.log_loss) }
    }
}

/// Mean Brier score and log loss over `count` props (None without props). Lower is better; a
/// coin flip scores 0.25 and ln 2 ≈ 0.693.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub count: usize,
    pub brier: Option<f64>,
    pub log_loss: Option<f64>,
}

/// Net winnings of a 1-unit winning bet at American `odds`: -110 -> 100/110, +130 -> 1.3. Odds
/// that are not American (strictly between -100 and +100) count as even money.
pub fn payout(odds: i32) -> f64 {
    let implied = implied_probability(odds).unwrap_or(0.5);
    (1.0 - implied) / implied
}

/// Running sums behind [`PickRecord`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PickTally {
    picks: usize,
    wins: usize,
    units: f64,
}

impl PickTally {
    /// Records a pick (PASS is ignored): OVER wins when the prop went over, UNDER when it did not.
    /// A win earns [`payout`] of the side's odds, a loss costs 1 unit.
    pub fn add(&mut self, recommendation: Recommendation, over: bool, over_odds: i32, under_odds: i32) {
        let (won, odds) = match recommendation {
            Recommendation::Pass => return,
            Recommendation::Over => (over, over_odds),
            Recommendation::Under => (!over, under_odds),
        };
        self.picks += 1;
        if won {
            self.wins += 1;
            self.units += payout(odds);
        } else {
            self.units -= 1.0;
        }
    }

    pub fn record(&self) -> PickRecord {
        let per_pick = |value: f64| (self.picks > 0).then(|| value / self.picks as f64);
        PickRecord {
            picks: self.picks,
            wins: self.wins,
            hit_rate: per_pick(self.wins as f64),
            units: self.units,
            roi: per_pick(self.units),
        }
    }
}

/// The model's OVER/UNDER picks: how many, how many won, and the result of 1-unit flat bets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PickRecord {
    pub picks: usize,
    pub wins: usize,
    /// wins / picks, None without picks.
    pub hit_rate: Option<f64>,
    /// Net units won at the lines' odds.
    pub units: f64,
    /// units / picks, None without picks.
    pub roi: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn brier_and_log_loss_by_hand() {
        // (0.8, over), (0.3, under), (0.5, over), (0.9, under)
        let mut sum = ScoreSum::default();
        for (p, over) in [(0.8, true), (0.3, false), (0.5, true), (0.9, false)] {
            sum.add(p, over);
        }
        let scores = sum.scores();
        assert_eq!(scores.count, 4);
        // 0.04 + 0.09 + 0.25 + 0.81 = 1.19
        assert!(close(scores.brier.expect("brier"), 1.19 / 4.0), "{scores:?}");
        let expected = -(0.8f64.ln() + 0.7f64.ln() + 0.5f64.ln() + 0.1f64.ln()) / 4.0;
        assert!(close(scores.log_loss.expect("log loss"), expected), "{scores:?}");
        assert!(close(brier(0.5, false), 0.25));
        assert!(close(log_loss(0.5, true), std::f64::consts::LN_2));
    }

    #[test]
    fn log_loss_clamps_certain_misses() {
        assert!(close(log_loss(0.0, true), -(1e-6f64).ln()));
        // 1 - (1 - 1e-6) is 1e-6 only to about 1e-10 relative.
        assert!((log_loss(1.0, false) - -(1e-6f64).ln()).abs() < 1e-8);
        assert!(log_loss(1.0, true) > 0.0 && log_loss(1.0, true) < 1e-5);
        assert!(close(brier(0.0, true), 1.0));
    }

    #[test]
    fn empty_scores_are_none() {
        assert_eq!(ScoreSum::default().scores(), Scores { count: 0, brier: None, log_loss: None });
        let record = PickTally::default().record();
        assert_eq!((record.picks, record.hit_rate, record.roi), (0, None, None));
    }

    #[test]
    fn pick_record_by_hand() {
        let mut tally = PickTally::default();
        tally.add(Recommendation::Over, true, -110, -110); // win
        tally.add(Recommendation::Under, false, -110, -110); // win
        tally.add(Recommendation::Under, true, -110, -110); // loss
        tally.add(Recommendation::Over, false, -110, -110); // loss
        tally.add(Recommendation::Over, true, -110, -110); // win
        tally.add(Recommendation::Pass, true, -110, -110); // ignored
        tally.add(Recommendation::Pass, false, -110, -110); // ignored
        let record = tally.record();
        assert_eq!((record.picks, record.wins), (5, 3));
        assert!(close(record.hit_rate.expect("rate"), 0.6));
        assert!(close(record.units, 3.0 * 100.0 / 110.0 - 2.0), "{record:?}");
        assert!(close(record.roi.expect("roi"), (3.0 * 100.0 / 110.0 - 2.0) / 5.0));
    }

    #[test]
    fn payouts_follow_american_odds() {
        assert!(close(payout(-110), 100.0 / 110.0));
        assert!(close(payout(130), 1.3));
        assert!(close(payout(-200), 0.5));
        assert!(close(payout(100), 1.0));
        assert!(close(payout(0), 1.0));
    }
}
