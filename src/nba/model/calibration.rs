//! Walk-forward calibration of P(over): per stat, a logistic map from the model's raw P(over) and the
//! market's de-vigged P(over) to a calibrated one,
//!
//! `logit p = a + b·logit(p_model) + c·logit(p_market)`,
//!
//! fitted (ridge-regularized maximum likelihood, Newton's method) on props settled strictly before
//! the prediction date. The raw model is overconfident at both ends (its distributions are too
//! narrow); the map learns by how much, and how far the line itself carries information the model
//! misses. With too few props for a stat the map is the identity (a = 0, b = 1, c = 0).
//!
//! The parameters are data: stored with the slate (in [`super::LeagueContext`]) and versioned by a
//! hash of their values, so a prediction names the exact map that produced it (`model_version`).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::nba::types::Stat;

/// The model's code version; a calibration adds its own hash (see [`Calibration::model_version`]).
pub const MODEL_VERSION: &str = "props-model-2";
/// Game dates before the prediction date whose settled props train the map (about two playoffs).
pub const CALIBRATION_DATES: usize = 120;
/// Fewer settled props of a stat than this: identity map for it.
pub const MIN_CALIBRATION_PROPS: usize = 300;
/// Ridge penalty toward the identity map, in pseudo-props; keeps early fits tame.
const RIDGE: f64 = 20.0;
/// Probabilities are clipped before the logit so a certain raw p cannot dominate the fit.
const P_CLIP: f64 = 1e-4;

/// One settled prop, as the raw model and the market saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationSample {
    pub stat: Stat,
    pub p_model: f64,
    pub p_market: f64,
    pub over: bool,
}

/// The map of one stat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatCalibration {
    pub stat: Stat,
    pub intercept: f64,
    pub model_weight: f64,
    pub market_weight: f64,
    /// Settled props it was fitted on (0: the identity).
    pub props: usize,
}

impl StatCalibration {
    fn identity(stat: Stat) -> Self {
        Self { stat, intercept: 0.0, model_weight: 1.0, market_weight: 0.0, props: 0 }
    }
}

/// The calibration of one prediction date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Fitted only from props settled strictly before this date.
    pub fitted_before: NaiveDate,
    /// One per stat, in [`Stat::ALL`] order.
    pub per_stat: Vec<StatCalibration>,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(P_CLIP, 1.0 - P_CLIP);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Calibration {
    /// The identity map (raw probabilities pass through).
    pub fn identity(fitted_before: NaiveDate) -> Calibration {
        Calibration { fitted_before, per_stat: Stat::ALL.iter().map(|&s| StatCalibration::identity(s)).collect() }
    }

    /// Fits one map per stat from `samples` (all settled before `fitted_before`; the caller's promise).
    pub fn fit(samples: &[CalibrationSample], fitted_before: NaiveDate) -> Calibration {
        let per_stat = Stat::ALL
            .iter()
            .map(|&stat| {
                let rows: Vec<&CalibrationSample> = samples.iter().filter(|s| s.stat == stat).collect();
                if rows.len() < MIN_CALIBRATION_PROPS {
                    return StatCalibration::identity(stat);
                }
                let [intercept, model_weight, market_weight] = fit_logistic(&rows);
                StatCalibration { stat, intercept, model_weight, market_weight, props: rows.len() }
            })
            .collect();
        Calibration { fitted_before, per_stat }
    }

    /// The calibrated P(over) of a prop of `stat`.
    pub fn apply(&self, stat: Stat, p_model: f64, p_market: f64) -> f64 {
        match self.per_stat.iter().find(|c| c.stat == stat) {
            Some(c) if c.props > 0 => {
                sigmoid(c.intercept + c.model_weight * logit(p_model) + c.market_weight * logit(p_market))
            }
            _ => p_model,
        }
    }

    /// `props-model-2+cal.<hash>`: the code version and a hash of the fitted values, so two
    /// predictions with the same version were produced by the same map.
    ///
    /// Every prediction computes it, so it stays cheap: the FNV-1a 64 of the values' little-endian
    /// bytes (the same hash as [`crate::batch::documents::fnv1a64`] over them, without collecting
    /// them) and hex digits written by hand, one allocation in all.
    pub fn model_version(&self) -> String {
        let hash = self
            .per_stat
            .iter()
            .flat_map(|c| [c.intercept, c.model_weight, c.market_weight])
            .flat_map(|value| value.to_bits().to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let short = hash as u32;
        let mut version = String::with_capacity(MODEL_VERSION.len() + 13);
        version.push_str(MODEL_VERSION);
        version.push_str("+cal.");
        for shift in (0..8).rev() {
            version.push(char::from(b"0123456789abcdef"[((short >> (4 * shift)) & 0xf) as usize]));
        }
        version
    }
}

/// Ridge-regularized logistic regression on [1, logit p_model, logit p_market], penalized toward
/// the identity (0, 1, 0), by Newton's method (3×3 solves; a handful of iterations converge).
fn fit_logistic(rows: &[&CalibrationSample]) -> [f64; 3] {
    let prior = [0.0, 1.0, 0.0];
    let mut beta = prior;
    for _ in 0..30 {
        let mut gradient = [0.0; 3];
        let mut hessian = [[0.0; 3]; 3];
        for row in rows {
            let x = [1.0, logit(row.p_model), logit(row.p_market)];
            let p = sigmoid(beta[0] * x[0] + beta[1] * x[1] + beta[2] * x[2]);
            let residual = p - if row.over { 1.0 } else { 0.0 };
            let weight = (p * (1.0 - p)).max(1e-9);
            for i in 0..3 {
                gradient[i] += residual * x[i];
                for j in 0..3 {
                    hessian[i][j] += weight * x[i] * x[j];
                }
            }
        }
        for i in 0..3 {
            gradient[i] += RIDGE * (beta[i] - prior[i]);
            hessian[i][i] += RIDGE;
        }
        let Some(step) = solve3(hessian, gradient) else { break };
        for i in 0..3 {
            beta[i] -= step[i];
        }
        if step.iter().all(|s| s.abs() < 1e-10) {
            break;
        }
    }
    beta
}

/// Solves a 3×3 system by Cramer's rule; `None` when singular.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, slot) in x.iter_mut().enumerate() {
        let mut m = a;
        for i in 0..3 {
            m[i][k] = b[i];
        }
        *slot = det(m) / d;
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    /// Deterministic samples where the truth is p_true and the raw model reports an overconfident
    /// version of it (logit doubled).
    fn overconfident(n: usize) -> Vec<CalibrationSample> {
        (0..n)
            .map(|i| {
                let p_true = 0.2 + 0.6 * ((i * 7919) % 1000) as f64 / 1000.0;
                let u = ((i * 104_729 + 17) % 1009) as f64 / 1009.0;
                CalibrationSample {
                    stat: Stat::Points,
                    p_model: sigmoid(2.0 * logit(p_true)),
                    p_market: 0.5,
                    over: u < p_true,
                }
            })
            .collect()
    }

    #[test]
    fn too_few_props_leave_the_identity() {
        let calibration = Calibration::fit(&overconfident(MIN_CALIBRATION_PROPS - 1), day());
        assert_eq!(calibration, Calibration::identity(day()));
        assert_eq!(calibration.apply(Stat::Points, 0.9, 0.5), 0.9);
    }

    #[test]
    fn an_overconfident_model_is_pulled_back() {
        let calibration = Calibration::fit(&overconfident(5000), day());
        let points = calibration.per_stat[0];
        assert!((points.model_weight - 0.5).abs() < 0.1, "the doubled logit is halved: {points:?}");
        let p = calibration.apply(Stat::Points, sigmoid(2.0 * logit(0.7)), 0.5);
        assert!((p - 0.7).abs() < 0.03, "{p}");
        assert_eq!(calibration.per_stat[1].props, 0, "no rebounds samples: identity");
    }

    #[test]
    fn versions_name_the_fitted_values() {
        let a = Calibration::fit(&overconfident(5000), day());
        let b = Calibration::fit(&overconfident(4000), day());
        assert_eq!(a.model_version(), a.clone().model_version());
        assert_ne!(a.model_version(), b.model_version());
        assert!(a.model_version().starts_with("props-model-2+cal."));
        // The same string as hashing the collected bytes and formatting (how versions were made first).
        let bytes: Vec<u8> = a
            .per_stat
            .iter()
            .flat_map(|c| [c.intercept, c.model_weight, c.market_weight])
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        let hash = crate::batch::documents::fnv1a64(&bytes);
        assert_eq!(a.model_version(), format!("{MODEL_VERSION}+cal.{:08x}", hash as u32));
    }
}
