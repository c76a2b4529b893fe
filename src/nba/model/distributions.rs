//! Outcome distributions for one stat line: Normal for points, Poisson or negative binomial for the
//! small counts, each fitted by the method of moments.

use serde::{Deserialize, Serialize};

/// Model probabilities never reach 0 or 1: a certain outcome would make any price look like an edge.
pub const P_MIN: f64 = 1e-6;
pub const P_MAX: f64 = 1.0 - 1e-6;

/// A fitted outcome distribution for one stat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedDistribution {
    Normal {
        mean: f64,
        sd: f64,
    },
    Poisson {
        mean: f64,
    },
    /// Number of failures before the `r`-th success with success probability `p`:
    /// mean r(1-p)/p, variance r(1-p)/p².
    NegativeBinomial {
        r: f64,
        p: f64,
    },
}

impl FittedDistribution {
    pub fn mean(&self) -> f64 {
        match *self {
            FittedDistribution::Normal { mean, .. } | FittedDistribution::Poisson { mean } => mean,
            FittedDistribution::NegativeBinomial { r, p } => r * (1.0 - p) / p,
        }
    }

    /// The name stored in `PropPrediction::distribution`.
    pub fn name(&self) -> &'static str {
        match self {
            FittedDistribution::Normal { .. } => "normal",
            FittedDistribution::Poisson { .. } => "poisson",
            FittedDistribution::NegativeBinomial { .. } => "negative_binomial",
        }
    }
}

/// Normal with the given moments; the sd is floored by the caller's policy, never zero here.
pub fn fit_normal(mean: f64, sd: f64) -> FittedDistribution {
    FittedDistribution::Normal { mean: mean.max(0.0), sd: sd.max(1e-9) }
}

/// Method of moments for a count: over-dispersed (variance > mean) -> negative binomial with
/// p = mean/variance, r = mean²/(variance - mean); otherwise Poisson, the least dispersed count
/// model we offer (under-dispersion is rare and a Poisson errs on the cautious, wider side).
pub fn fit_count(mean: f64, variance: f64) -> FittedDistribution {
    let mean = mean.max(0.0);
    if mean > 0.0 && variance.is_finite() && variance > mean {
        FittedDistribution::NegativeBinomial { r: mean * mean / (variance - mean), p: mean / variance }
    } else {
        FittedDistribution::Poisson { mean }
    }
}

/// P(X > line), clamped to [P_MIN, P_MAX].
///
/// Counts: P(X > line) = 1 - CDF(floor(line)). With the usual half-point lines this is exact and no
/// push exists; with an integer line n it is P(X > n), i.e. the push mass P(X = n) is counted on
/// neither side (it would be a refund, not a win).
///
/// Normal: 1 - Φ((line - mean)/sd) without continuity correction. The Normal stands in for points,
/// whose support is dense enough that half-point lines already sit between attainable totals, so a
/// ±0.5 shift would only move the line to the next integer and bias the tail.
pub fn prob_over(dist: &FittedDistribution, line: f64) -> f64 {
    let p = match *dist {
        // Φ(-z) instead of 1 - Φ(z) keeps relative precision in the upper tail.
        FittedDistribution::Normal { mean, sd } => normal_cdf((mean - line) / sd),
        FittedDistribution::Poisson { mean } => 1.0 - poisson_cdf(line.floor(), mean),
        FittedDistribution::NegativeBinomial { r, p } => 1.0 - neg_binomial_cdf(line.floor(), r, p),
    };
    clamp_probability(p)
}

pub fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.5 } else { p.clamp(P_MIN, P_MAX) }
}

/// Standard normal CDF Φ(z) = erfc(-z/√2)/2.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function, accurate to ~1e-14 relative: a positive-term series for small x and
/// a continued fraction in the tail, so neither side suffers cancellation.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 3.0 { 1.0 - erf_series(x) } else { erfc_continued_fraction(x) }
}

/// erf(x) = 2/√π · e^{-x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1)); every term is positive, so no
/// cancellation, and for x < 3 it converges within ~80 terms.
fn erf_series(x: f64) -> f64 {
    let two_x2 = 2.0 * x * x;
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= two_x2 / (2 * n + 1) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp() * sum
}

/// erfc(x) = e^{-x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))), evaluated bottom-up; for x ≥ 3
/// 60 levels are far beyond double precision.
fn erfc_continued_fraction(x: f64) -> f64 {
    let mut f = x;
    for n in (1..=60).rev() {
        f = x + (n as f64 / 2.0) / f;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 terms, ~1e-15 relative), with the
/// reflection formula below 0.5 where the series loses accuracy.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln Γ(r + k) - ln Γ(r). For a huge r (a negative binomial close to Poisson) the difference of two
/// ~r·ln r sized numbers would lose most digits, so small k sums ln(r + j) directly.
fn ln_rising(r: f64, k: u64) -> f64 {
    if k <= 256 { (0..k).map(|j| (r + j as f64).ln()).sum() } else { ln_gamma(r + k as f64) - ln_gamma(r) }
}

pub fn poisson_ln_pmf(k: u64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let k = k as f64;
    k * mean.ln() - mean - ln_gamma(k + 1.0)
}

pub fn neg_binomial_ln_pmf(k: u64, r: f64, p: f64) -> f64 {
    ln_rising(r, k) - ln_gamma(k as f64 + 1.0) + r * p.ln() + k as f64 * (-p).ln_1p()
}

/// P(X ≤ k) for a Poisson; `k` is a whole number (already floored), negative gives 0.
pub fn poisson_cdf(k: f64, mean: f64) -> f64 {
    sum_pmf(k, mean, |i| poisson_ln_pmf(i, mean))
}

/// P(X ≤ k) for a negative binomial (failures before the r-th success).
pub fn neg_binomial_cdf(k: f64, r: f64, p: f64) -> f64 {
    let mean = r * (1.0 - p) / p;
    sum_pmf(k, mean, |i| neg_binomial_ln_pmf(i, r, p))
}

/// Sums exp(ln pmf) from 0 to k. Each term comes from log space so a large mean cannot overflow a
/// factorial or underflow an intermediate product. Past the mean the terms only shrink, so the loop
/// stops once they no longer change the sum, which bounds the work for absurd lines.
fn sum_pmf(k: f64, mean: f64, ln_pmf: impl Fn(u64) -> f64) -> f64 {
    if k.is_nan() || k < 0.0 {
        return 0.0;
    }
    let last = k.min(u64::MAX as f64) as u64;
    let mut sum = 0.0;
    for i in 0..=last {
        let term = ln_pmf(i).exp();
        sum += term;
        if i as f64 > mean && term < sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
    }

    #[test]
    fn normal_cdf_matches_tables() {
        close(normal_cdf(0.0), 0.5, 1e-15);
        close(normal_cdf(1.96), 0.975_002_104_851_779_5, 1e-12);
        close(normal_cdf(-1.96), 0.024_997_895_148_220_435, 1e-12);
        close(normal_cdf(0.1), 0.539_827_837_277_029, 1e-12);
        close(normal_cdf(-3.5), 2.326_290_790_355_25e-4, 1e-14);
        // Across the series/continued-fraction seam (x = 3 means z = 3√2).
        let z = 3.0 * std::f64::consts::SQRT_2;
        close(normal_cdf(-z + 1e-9), normal_cdf(-z - 1e-9), 1e-12);
        close(normal_cdf(-z), 0.5 * 2.209_049_699_858_544e-5, 1e-16);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        close(ln_gamma(1.0), 0.0, 1e-13);
        close(ln_gamma(5.0), 24f64.ln(), 1e-13);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13);
        close(ln_gamma(101.0), (1..=100).map(|i| (i as f64).ln()).sum::<f64>(), 1e-9);
    }

    #[test]
    fn poisson_over_hand_checked() {
        let dist = FittedDistribution::Poisson { mean: 2.0 };
        close(prob_over(&dist, 1.5), 1.0 - (-2f64).exp() * 3.0, 1e-14);
        close(prob_over(&dist, 1.5), 0.593_994_150_290_161_9, 1e-14);
    }

    #[test]
    fn negative_binomial_hand_checked() {
        // r = 2, p = 1/2: pmf(k) = (k + 1) / 2^(k + 2) -> 1/4, 1/4, 3/16.
        close(neg_binomial_cdf(2.0, 2.0, 0.5), 0.25 + 0.25 + 0.1875, 1e-14);
        close(prob_over(&FittedDistribution::NegativeBinomial { r: 2.0, p: 0.5 }, 2.5), 0.3125, 1e-14);
        // Non-integer r against the recurrence pmf(k) = pmf(k-1) (k-1+r)/k (1-p).
        let (r, p): (f64, f64) = (2.5, 0.4);
        let mut pmf = p.powf(r);
        let mut cdf = pmf;
        for k in 1..=4 {
            pmf *= (k as f64 - 1.0 + r) / k as f64 * (1.0 - p);
            cdf += pmf;
        }
        close(neg_binomial_cdf(4.0, r, p), cdf, 1e-13);
    }

    #[test]
    fn half_point_lines_split_all_mass() {
        for dist in
            [FittedDistribution::Poisson { mean: 3.2 }, FittedDistribution::NegativeBinomial { r: 1.7, p: 0.35 }]
        {
            let over = prob_over(&dist, 2.5);
            let under = match dist {
                FittedDistribution::Poisson { mean } => poisson_cdf(2.0, mean),
                FittedDistribution::NegativeBinomial { r, p } => neg_binomial_cdf(2.0, r, p),
                FittedDistribution::Normal { .. } => unreachable!(),
            };
            close(over + under, 1.0, 1e-14);
            let at_least_three: f64 = (3..400)
                .map(|k| match dist {
                    FittedDistribution::Poisson { mean } => poisson_ln_pmf(k, mean).exp(),
                    FittedDistribution::NegativeBinomial { r, p } => neg_binomial_ln_pmf(k, r, p).exp(),
                    FittedDistribution::Normal { .. } => unreachable!(),
                })
                .sum();
            close(over, at_least_three, 1e-13);
        }
    }

    #[test]
    fn integer_line_excludes_the_push() {
        let dist = FittedDistribution::Poisson { mean: 2.0 };
        // P(X > 2) = 1 - P(X <= 2); the push P(X = 2) belongs to neither side.
        close(prob_over(&dist, 2.0), 1.0 - (-2f64).exp() * 5.0, 1e-14);
        close(prob_over(&dist, 2.0), prob_over(&dist, 2.5), 1e-15);
    }

    #[test]
    fn normal_over_hand_checked() {
        close(prob_over(&fit_normal(25.0, 5.0), 24.5), 0.539_827_837_277_029, 1e-12);
    }

    #[test]
    fn method_of_moments_chooses_by_dispersion() {
        let nb = fit_count(4.0, 8.0);
        assert_eq!(nb, FittedDistribution::NegativeBinomial { r: 4.0, p: 0.5 });
        close(nb.mean(), 4.0, 1e-14);
        let (mut m1, mut m2) = (0.0, 0.0);
        for k in 0..500u64 {
            let w = neg_binomial_ln_pmf(k, 4.0, 0.5).exp();
            m1 += w * k as f64;
            m2 += w * (k * k) as f64;
        }
        close(m1, 4.0, 1e-10);
        close(m2 - m1 * m1, 8.0, 1e-9);
        assert_eq!(fit_count(4.0, 4.0).name(), "poisson");
        assert_eq!(fit_count(4.0, 2.0).name(), "poisson");
    }

    #[test]
    fn large_means_stay_finite_and_normalized() {
        close(poisson_cdf(5000.0, 1000.0), 1.0, 1e-12);
        let mid = poisson_cdf(1000.0, 1000.0);
        assert!(mid > 0.5 && mid < 0.52, "{mid}");
        close(neg_binomial_cdf(100_000.0, 1e7, 1e7 / (1e7 + 30.0)), 1.0, 1e-12);
        // A near-Poisson NB (huge r) must agree with the Poisson it approaches.
        close(neg_binomial_cdf(5.0, 1e9, 1e9 / (1e9 + 4.0)), poisson_cdf(5.0, 4.0), 1e-7);
        assert_eq!(prob_over(&FittedDistribution::Poisson { mean: 0.0 }, 0.5), P_MIN);
        assert_eq!(prob_over(&FittedDistribution::Poisson { mean: 3.0 }, -0.5), P_MAX);
    }
}
