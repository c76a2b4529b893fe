//! The market side: American odds to probabilities, removing the bookmaker's margin, and turning the
//! gap between model and market into a recommendation.

use crate::nba::types::Recommendation;

/// Implied probability of American odds: -110 -> 110/210, +130 -> 100/230. Odds strictly between
/// -100 and +100 do not exist in the American format, so they yield None rather than a guess.
pub fn implied_probability(odds: i32) -> Option<f64> {
    let odds = f64::from(odds);
    if odds >= 100.0 {
        Some(100.0 / (odds + 100.0))
    } else if odds <= -100.0 {
        Some(-odds / (-odds + 100.0))
    } else {
        None
    }
}

/// De-vigged (over, under) probabilities by proportional normalization: each implied probability is
/// divided by their sum (the overround), or None when either price is not valid American odds.
pub fn try_devig(over_odds: i32, under_odds: i32) -> Option<(f64, f64)> {
    let over = implied_probability(over_odds)?;
    let under = implied_probability(under_odds)?;
    let total = over + under;
    Some((over / total, under / total))
}

/// [`try_devig`] for callers that already validated the odds; invalid odds carry no information, so
/// they give an even market (0.5, 0.5). `predict` rejects invalid odds instead of using this fallback.
pub fn devig(over_odds: i32, under_odds: i32) -> (f64, f64) {
    try_devig(over_odds, under_odds).unwrap_or((0.5, 0.5))
}

/// OVER when edge ≥ threshold, UNDER when edge ≤ -threshold, otherwise PASS.
pub fn recommend(edge: f64, threshold: f64) -> Recommendation {
    if edge >= threshold {
        Recommendation::Over
    } else if edge <= -threshold {
        Recommendation::Under
    } else {
        Recommendation::Pass
    }
}

/// confidence = min(1, 2·|p_over - 0.5|) · n / (n + k): how decisive the model is, discounted by
/// how much of the estimate rests on the player's own n games rather than the k prior pseudo-games.
pub fn confidence(p_over: f64, games_used: usize, prior_games: f64) -> f64 {
    let decisiveness = (2.0 * (p_over - 0.5).abs()).min(1.0);
    let n = games_used as f64;
    let denominator = n + prior_games.max(0.0);
    let evidence = if denominator > 0.0 { n / denominator } else { 0.0 };
    (decisiveness * evidence).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_probabilities() {
        assert!((implied_probability(-110).expect("valid") - 110.0 / 210.0).abs() < 1e-15);
        assert!((implied_probability(-110).expect("valid") - 0.523_809_523_8).abs() < 1e-9);
        assert!((implied_probability(130).expect("valid") - 100.0 / 230.0).abs() < 1e-15);
        assert_eq!(implied_probability(100), Some(0.5));
        assert_eq!(implied_probability(-100), Some(0.5));
        assert_eq!(implied_probability(0), None);
        assert_eq!(implied_probability(-99), None);
    }

    #[test]
    fn devig_even_and_lopsided() {
        assert_eq!(devig(-110, -110), (0.5, 0.5));
        // -150 -> 0.6, +130 -> 10/23; sum 23.8/23 -> over 13.8/23.8, under 10/23.8.
        let (over, under) = devig(-150, 130);
        assert!((over - 0.579_831_932_773_109_2).abs() < 1e-12, "{over}");
        assert!((under - 0.420_168_067_226_890_8).abs() < 1e-12, "{under}");
        assert!((over + under - 1.0).abs() < 1e-15);
        assert_eq!(try_devig(50, -110), None);
        assert_eq!(devig(50, -110), (0.5, 0.5));
    }

    #[test]
    fn recommendation_thresholds() {
        assert_eq!(recommend(0.03, 0.03), Recommendation::Over);
        assert_eq!(recommend(0.10, 0.03), Recommendation::Over);
        assert_eq!(recommend(0.0299, 0.03), Recommendation::Pass);
        assert_eq!(recommend(0.0, 0.03), Recommendation::Pass);
        assert_eq!(recommend(-0.0299, 0.03), Recommendation::Pass);
        assert_eq!(recommend(-0.03, 0.03), Recommendation::Under);
        assert_eq!(recommend(-0.2, 0.03), Recommendation::Under);
    }

    #[test]
    fn confidence_scales_with_decisiveness_and_history() {
        assert_eq!(confidence(0.5, 30, 6.0), 0.0);
        assert!((confidence(0.75, 6, 6.0) - 0.25).abs() < 1e-15);
        assert!((confidence(0.25, 6, 6.0) - 0.25).abs() < 1e-15);
        assert!(confidence(0.75, 30, 6.0) > confidence(0.75, 3, 6.0));
        assert!((confidence(1.0, 10, 0.0) - 1.0).abs() < 1e-15);
    }
}
