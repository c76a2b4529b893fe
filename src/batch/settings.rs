//! Knobs of the batch engine.

use std::time::Duration;

use clap::Args;

use crate::batch::documents::{MAX_COUNTER_SHARDS, counter_shards_for};
use crate::config::ConfigError;

#[derive(Debug, Clone, Args)]
pub struct EngineSettings {
    /// Counter shards per batch (1-1,000): completions of one batch spread their increments over this many
    /// documents instead of funnelling every item through one. Unset (the default), each batch gets
    /// one shard per 10 items, at most 1,000 ([`crate::batch::documents::counter_shards_for`]).
    #[arg(long, env = "PROPS_COUNTER_SHARDS")]
    pub counter_shards: Option<u64>,
    /// How long a finalize claim is held before another instance may take it over (10-3600 s). Longer
    /// than the slowest consolidation.
    #[arg(long, env = "PROPS_FINALIZE_LEASE_SECS", default_value_t = 120)]
    pub finalize_lease_secs: u64,
    /// Failure policy: a batch with a larger failed fraction ends FAILED instead of consolidating.
    #[arg(long, env = "PROPS_TOLERATED_FAILED_FRACTION", default_value_t = 0.1)]
    pub tolerated_failed_fraction: f64,
    /// Days a batch is kept (sets `expire_at` for the Firestore TTL policy).
    #[arg(long, env = "PROPS_RETENTION_DAYS", default_value_t = 7)]
    pub retention_days: u64,
    /// Coverage alert: a batch that completes with fewer done items than this fraction of its expected
    /// items (0-1; predicted players / slate players) logs `ALERT_LOW_COVERAGE` and counts
    /// `props_alerts_total{alert="low_coverage"}`. A FAILED batch already raises `ALERT_BATCH_FAILED`.
    #[arg(long, env = "PROPS_COVERAGE_ALERT_THRESHOLD", default_value_t = 0.9)]
    pub coverage_alert_threshold: f64,
    /// Times the dead-letter role puts one item's request back to work after it ran out of delivery
    /// attempts without a handler's verdict (an outage, killed workers); past it the item fails (0-100).
    #[arg(long, env = "PROPS_MAX_ITEM_REDRIVES", default_value_t = 3)]
    pub max_item_redrives: u64,
    /// This process's name in finalize claims; default: host name, process id and a random suffix.
    #[arg(long, env = "PROPS_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            counter_shards: None,
            finalize_lease_secs: 120,
            tolerated_failed_fraction: 0.1,
            retention_days: 7,
            coverage_alert_threshold: 0.9,
            max_item_redrives: 3,
            instance_id: None,
        }
    }
}

impl EngineSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |name, value, min, max| {
            if (min..=max).contains(&value) { Ok(()) } else { Err(ConfigError::OutOfRange { name, value, min, max }) }
        };
        if let Some(shards) = self.counter_shards {
            range("counter shards", shards, 1, MAX_COUNTER_SHARDS)?;
        }
        range("finalize lease (seconds)", self.finalize_lease_secs, 1, 3600)?;
        range("retention (days)", self.retention_days, 1, 3650)?;
        range("maximum item redrives", self.max_item_redrives, 0, 100)?;
        for fraction in [self.tolerated_failed_fraction, self.coverage_alert_threshold] {
            if !(0.0..=1.0).contains(&fraction) {
                return Err(ConfigError::Fraction(fraction));
            }
        }
        Ok(())
    }

    /// The counter shards of a new batch of `items` items: the configured count, else sized from `items`.
    pub fn counter_shards_for(&self, items: u64) -> u64 {
        self.counter_shards.unwrap_or_else(|| counter_shards_for(items))
    }

    pub fn finalize_lease(&self) -> Duration {
        Duration::from_secs(self.finalize_lease_secs)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days * 24 * 3600)
    }

    /// The configured instance id, or a fresh unique one.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_sized_from_the_batch_unless_configured() {
        let sized = EngineSettings::default();
        assert_eq!(sized.counter_shards_for(1_000), counter_shards_for(1_000));
        assert_eq!(sized.counter_shards_for(5), 1);
        let fixed = EngineSettings { counter_shards: Some(8), ..Default::default() };
        assert_eq!(fixed.counter_shards_for(1_000), 8);
        assert_eq!(fixed.counter_shards_for(5), 8);
        assert!(fixed.validate().is_ok());
        assert!(EngineSettings { counter_shards: Some(0), ..Default::default() }.validate().is_err());
        let too_many = EngineSettings { counter_shards: Some(MAX_COUNTER_SHARDS + 1), ..Default::default() };
        assert!(too_many.validate().is_err());
    }
}
