//! A score of the whole predicted distribution, independent of any line: the continuous ranked
//! probability score, CRPS(F, y) = ∫ (F(x) - 1{y ≤ x})² dx, in the stat's own units (lower is
//! better; a point forecast's CRPS is its absolute error). The model's distribution is scored beside
//! a naive one, the player's own recent empirical distribution (the games the line-setter uses).

use crate::nba::model::{FittedDistribution, neg_binomial_ln_pmf, poisson_ln_pmf};

/// Counts are summed up to this value at most (no stat line comes near it).
const MAX_COUNT: u64 = 400;

/// CRPS of a fitted distribution at the observed value `y`.
pub fn crps(dist: &FittedDistribution, y: f64) -> f64 {
    match *dist {
        FittedDistribution::Normal { mean, sd } => crps_normal(mean, sd, y),
        FittedDistribution::Poisson { mean } => crps_count(|k| poisson_ln_pmf(k, mean), mean, y),
        FittedDistribution::NegativeBinomial { r, p } => crps_count(|k| neg_binomial_ln_pmf(k, r, p), dist.mean(), y),
    }
}

/// Closed form for a Normal: σ·(z(2Φ(z) - 1) + 2φ(z) - 1/√π), z = (y - μ)/σ (Gneiting & Raftery 2007).
pub fn crps_normal(mean: f64, sd: f64, y: f64) -> f64 {
    let z = (y - mean) / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = crate::nba::model::normal_cdf(z);
    sd * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / std::f64::consts::PI.sqrt())
}

/// A distribution on 0, 1, 2, ...: its CDF is constant on [k, k+1), so the integral is the sum of
/// (F(k) - 1{y ≤ k})² over k ≥ 0, stopped once past `y` and the mean with a negligible tail.
fn crps_count(ln_pmf: impl Fn(u64) -> f64, mean: f64, y: f64) -> f64 {
    let mut cdf = 0.0;
    let mut sum = 0.0;
    for k in 0..=MAX_COUNT {
        cdf += ln_pmf(k).exp();
        let step = if y <= k as f64 { 1.0 } else { 0.0 };
        sum += (cdf.min(1.0) - step).powi(2);
        if k as f64 >= y && k as f64 > mean && 1.0 - cdf < 1e-12 {
            break;
        }
    }
    // Values below 0 have F = 0 and y ≥ 0: nothing to add there.
    sum
}

/// CRPS of the empirical distribution of `values` at `y`: mean |X - y| - ½ mean |X - X'|. `None`
/// without values.
pub fn crps_empirical(values: &[f64], y: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let spread: f64 = values.iter().map(|&a| values.iter().map(|&b| (a - b).abs()).sum::<f64>()).sum();
    Some(values.iter().map(|&x| (x - y).abs()).sum::<f64>() / n - spread / (2.0 * n * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() < tolerance
    }

    #[test]
    fn a_point_mass_scores_its_absolute_error() {
        assert_eq!(crps_empirical(&[3.0], 5.0), Some(2.0));
        assert_eq!(crps_empirical(&[], 5.0), None);
        // Poisson with mean 0 is a point mass at 0.
        assert!(close(crps(&FittedDistribution::Poisson { mean: 0.0 }, 3.0), 3.0, 1e-12));
    }

    #[test]
    fn empirical_by_hand() {
        // {0, 2} at y = 1: mean |x - y| = 1, mean |x - x'| = (0 + 2 + 2 + 0)/4 = 1, so 1 - 0.5.
        assert_eq!(crps_empirical(&[0.0, 2.0], 1.0), Some(0.5));
    }

    #[test]
    fn normal_closed_form_matches_known_values() {
        // At z = 0: σ(2φ(0) - 1/√π) = σ(0.797885 - 0.564190) = 0.233695σ.
        assert!(close(crps_normal(10.0, 2.0, 10.0), 2.0 * 0.233_695, 1e-5));
        // Far in the tail it approaches |y - μ|.
        assert!(close(crps_normal(0.0, 1.0, 50.0), 50.0 - 1.0 / std::f64::consts::PI.sqrt(), 1e-6));
    }

    #[test]
    fn count_sum_matches_the_empirical_formula_on_a_two_point_law() {
        // A "count law" with P(0) = P(2) = ½ is the empirical {0, 2}.
        let ln_pmf = |k: u64| if k == 0 || k == 2 { 0.5f64.ln() } else { f64::NEG_INFINITY };
        for y in [0.0, 1.0, 2.0, 3.0] {
            assert!(close(crps_count(ln_pmf, 1.0, y), crps_empirical(&[0.0, 2.0], y).unwrap(), 1e-12), "{y}");
        }
    }

    #[test]
    fn a_sharper_correct_forecast_scores_better() {
        let wide = FittedDistribution::NegativeBinomial { r: 2.0, p: 2.0 / 7.0 }; // mean 5, var 17.5
        let sharp = FittedDistribution::Poisson { mean: 5.0 };
        assert!(crps(&sharp, 5.0) < crps(&wide, 5.0));
    }
}
