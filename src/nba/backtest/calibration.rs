//! Calibration (reliability) table: predicted P(over) in ten buckets of width 0.1 against the share
//! of those props that actually went over.

use serde::{Deserialize, Serialize};

/// Buckets [0, 0.1), [0.1, 0.2), ..., [0.8, 0.9), [0.9, 1.0].
pub const BUCKETS: usize = 10;

/// The bucket of `p`: the number of bounds 0.1, 0.2, ..., 0.9 (as written in decimal) that p reaches,
/// so 0.3 is in [0.3, 0.4) however 0.3 · 10 rounds. p ≤ 0 (or NaN) goes to the first bucket, p ≥ 1
/// to the last.
pub fn bucket_index(p: f64) -> usize {
    (1..BUCKETS).filter(|&k| p >= k as f64 / BUCKETS as f64).count()
}

/// One bucket of the table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBucket {
    pub lower: f64,
    /// Exclusive, except 1.0 for the last bucket.
    pub upper: f64,
    pub count: usize,
    /// Mean predicted P(over) in the bucket, None when empty.
    pub mean_predicted: Option<f64>,
    /// Share of the bucket's props that went over, None when empty.
    pub observed_over_rate: Option<f64>,
}

/// Running sums per bucket: (count, Σp, overs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibration {
    sums: [(usize, f64, usize); BUCKETS],
}

impl Calibration {
    pub fn add(&mut self, p_over: f64, over: bool) {
        let (count, predicted, overs) = &mut self.sums[bucket_index(p_over)];
        *count += 1;
        *predicted += p_over;
        *overs += usize::from(over);
    }

    pub fn buckets(&self) -> Vec<CalibrationBucket> {
        self.sums
            .iter()
            .enumerate()
            .map(|(k, &(count, predicted, overs))| {
                let mean = |sum: f64| (count > 0).then(|| sum / count as f64);
                CalibrationBucket {
                    lower: k as f64 / BUCKETS as f64,
                    upper: (k + 1) as f64 / BUCKETS as f64,
                    count,
                    mean_predicted: mean(predicted),
                    observed_over_rate: mean(overs as f64),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds() {
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(0.099_999), 0);
        assert_eq!(bucket_index(0.1), 1);
        assert_eq!(bucket_index(0.3), 3);
        assert_eq!(bucket_index(0.7), 7);
        assert_eq!(bucket_index(0.899_999), 8);
        assert_eq!(bucket_index(0.9), 9);
        assert_eq!(bucket_index(1.0), 9);
        assert_eq!(bucket_index(-0.1), 0);
        assert_eq!(bucket_index(f64::NAN), 0);
        for k in 0..=9 {
            assert_eq!(bucket_index(k as f64 / 10.0), k, "lower bound of bucket {k}");
        }
    }

    #[test]
    fn table_by_hand() {
        let mut calibration = Calibration::default();
        // bucket 0: 0.05 under, 0.02 over
        calibration.add(0.05, false);
        calibration.add(0.02, true);
        // bucket 5: 0.5 over, 0.55 over, 0.58 under
        calibration.add(0.5, true);
        calibration.add(0.55, true);
        calibration.add(0.58, false);
        // bucket 9: 1.0 over
        calibration.add(1.0, true);
        let buckets = calibration.buckets();
        assert_eq!(buckets.len(), BUCKETS);
        assert_eq!(buckets.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 0, 0, 0, 0, 3, 0, 0, 0, 1]);
        assert!((buckets[0].mean_predicted.expect("mean") - 0.035).abs() < 1e-12);
        assert_eq!(buckets[0].observed_over_rate, Some(0.5));
        assert!((buckets[5].mean_predicted.expect("mean") - 1.63 / 3.0).abs() < 1e-12);
        assert!((buckets[5].observed_over_rate.expect("rate") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((buckets[9].mean_predicted, buckets[9].observed_over_rate), (Some(1.0), Some(1.0)));
        assert_eq!((buckets[1].mean_predicted, buckets[1].observed_over_rate), (None, None));
        assert_eq!((buckets[3].lower, buckets[3].upper), (0.3, 0.4));
        assert_eq!(buckets[9].upper, 1.0);
    }
}
