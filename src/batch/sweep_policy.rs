//! The sweeper's decisions, pure so they are tested without Firestore: when a batch that stopped moving
//! gets its pending requests re-published (a redrive), and when it is reported stuck.
//!
//! "Moving" is measured from the batch's last activity: the newest of its creation, its seal, its last
//! counter-shard update (every recorded completion increments a shard) and its last redrive.

use std::time::Duration;

use clap::Args;
use firestore::FirestoreInstant;

use super::state::BatchState;
use crate::config::ConfigError;

/// Knobs of the sweeper role.
#[derive(Debug, Clone, Args)]
pub struct SweepSettings {
    /// Seconds between two sweeps of one process (every coordinator replica may sweep: each action is
    /// guarded by a transaction).
    #[arg(long, env = "PROPS_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,
    /// A RUNNING batch without progress for this long has its pending requests re-published.
    #[arg(long, env = "PROPS_STALL_AFTER_SECS", default_value_t = 300)]
    pub stall_after_secs: u64,
    /// A batch without progress for this long (or out of redrives) is reported stuck: ERROR log with
    /// the ALERT_BATCH_STUCK marker, `props_alerts_total{alert="batch_stuck"}` and `props_stuck_batches`.
    #[arg(long, env = "PROPS_STUCK_AFTER_SECS", default_value_t = 1800)]
    pub stuck_after_secs: u64,
    /// Redrives per batch the sweeper attempts before it only alerts (operators can still `redrive`).
    #[arg(long, env = "PROPS_MAX_REDRIVES", default_value_t = 3)]
    pub max_redrives: u64,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self { sweep_interval_secs: 30, stall_after_secs: 300, stuck_after_secs: 1800, max_redrives: 3 }
    }
}

impl SweepSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |name, value, min, max| {
            if (min..=max).contains(&value) { Ok(()) } else { Err(ConfigError::OutOfRange { name, value, min, max }) }
        };
        range("sweep interval (seconds)", self.sweep_interval_secs, 1, 3600)?;
        range("stall threshold (seconds)", self.stall_after_secs, 1, 86_400)?;
        range("stuck threshold (seconds)", self.stuck_after_secs, self.stall_after_secs, 7 * 86_400)?;
        range("maximum redrives", self.max_redrives, 0, 100)?;
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    pub fn policy(&self) -> RedrivePolicy {
        RedrivePolicy {
            stall_after: Duration::from_secs(self.stall_after_secs),
            stuck_after: Duration::from_secs(self.stuck_after_secs),
            max_redrives: self.max_redrives,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedrivePolicy {
    pub stall_after: Duration,
    pub stuck_after: Duration,
    pub max_redrives: u64,
}

/// Who asks for a redrive: the sweeper follows the policy; an operator's `redrive` command does not
/// wait for the stall threshold and is not capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveRequest {
    Sweeper(RedrivePolicy),
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveDecision {
    /// Re-publish the pending requests (and record the redrive, so other replicas wait again); for a
    /// PUBLISHING batch, resume its fan-out (markers, requests, seal).
    Redrive,
    /// Progress (or a redrive) is recent enough.
    NotDue,
    /// The sweeper used up its redrives; only an operator can redrive now.
    CapReached,
    /// Only a PUBLISHING or RUNNING batch has requests to (re-)publish.
    NotRunning(BatchState),
}

/// How long the batch has been idle at `now`, given its last activity (zero if that is in the future,
/// as it may be across replicas' clocks).
pub fn idle_for(last_activity: FirestoreInstant, now: FirestoreInstant) -> Duration {
    let idle = now.duration_since(last_activity);
    Duration::try_from(idle).unwrap_or(Duration::ZERO)
}

/// The newest of the given instants: a batch's last sign of life.
pub fn last_activity(instants: impl IntoIterator<Item = Option<FirestoreInstant>>) -> Option<FirestoreInstant> {
    instants.into_iter().flatten().max()
}

/// A PUBLISHING batch idle that long lost its coordinator mid-fan-out (or its trigger ran out of
/// attempts): it is resumed like a redrive, under the same threshold, cap and record.
pub fn decide_redrive(state: BatchState, redrives: u64, idle: Duration, request: RedriveRequest) -> RedriveDecision {
    if !has_requests_out(state) {
        return RedriveDecision::NotRunning(state);
    }
    match request {
        RedriveRequest::Operator => RedriveDecision::Redrive,
        RedriveRequest::Sweeper(policy) if idle < policy.stall_after => RedriveDecision::NotDue,
        RedriveRequest::Sweeper(policy) if redrives >= policy.max_redrives => RedriveDecision::CapReached,
        RedriveRequest::Sweeper(_) => RedriveDecision::Redrive,
    }
}

/// Whether a batch needs a human: not final and idle past the stuck threshold, or PUBLISHING/RUNNING,
/// stalled and out of redrives.
pub fn is_stuck(state: BatchState, redrives: u64, idle: Duration, policy: &RedrivePolicy) -> bool {
    if state.is_final() {
        return false;
    }
    idle >= policy.stuck_after
        || (has_requests_out(state) && idle >= policy.stall_after && redrives >= policy.max_redrives)
}

/// States in which a batch's requests are (being) published and a redrive can move it.
fn has_requests_out(state: BatchState) -> bool {
    matches!(state, BatchState::Publishing | BatchState::Running)
}

/// How long before its `expire_at` the sweeper renews a published batch: a Firestore TTL policy
/// deletes expired documents within about a day, so the renewal must come first.
pub const RENEW_PUBLISHED_BEFORE: Duration = Duration::from_secs(24 * 60 * 60);

/// What retention does with a batch whose `expire_at` is near or past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The date's pointer publishes it: push `expire_at` out by the batch's own retention span.
    Renew,
    /// Past `expire_at` and not published: delete it with its subcollections.
    Delete,
    /// Not expired yet.
    Keep,
}

/// Retention never deletes the batch a date's pointer publishes (its results are the date's current
/// predictions); it renews it ahead of any TTL policy instead.
pub fn retention(expire_at: FirestoreInstant, now: FirestoreInstant, published: bool) -> Retention {
    if published {
        let horizon = now.saturating_add(RENEW_PUBLISHED_BEFORE).unwrap_or(now);
        return if expire_at < horizon { Retention::Renew } else { Retention::Keep };
    }
    if expire_at < now { Retention::Delete } else { Retention::Keep }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedrivePolicy {
        RedrivePolicy { stall_after: Duration::from_secs(300), stuck_after: Duration::from_secs(1800), max_redrives: 3 }
    }

    fn at(secs: i64) -> FirestoreInstant {
        FirestoreInstant::from_second(secs).unwrap()
    }

    #[test]
    fn idle_time_is_measured_from_the_newest_activity() {
        let last = last_activity([Some(at(100)), None, Some(at(250)), Some(at(200))]).unwrap();
        assert_eq!(last, at(250));
        assert_eq!(idle_for(last, at(400)), Duration::from_secs(150));
        assert_eq!(idle_for(at(500), at(400)), Duration::ZERO, "a clock ahead of ours is not negative idleness");
        assert_eq!(last_activity([None, None]), None);
    }

    #[test]
    fn the_sweeper_redrives_only_a_stalled_running_batch_within_its_cap() {
        let sweeper = RedriveRequest::Sweeper(policy());
        let stalled = Duration::from_secs(301);
        assert_eq!(decide_redrive(BatchState::Running, 0, stalled, sweeper), RedriveDecision::Redrive);
        assert_eq!(decide_redrive(BatchState::Running, 2, stalled, sweeper), RedriveDecision::Redrive);
        assert_eq!(decide_redrive(BatchState::Running, 3, stalled, sweeper), RedriveDecision::CapReached);
        assert_eq!(decide_redrive(BatchState::Running, 0, Duration::from_secs(299), sweeper), RedriveDecision::NotDue);
        for state in [BatchState::Finalizing, BatchState::Complete, BatchState::Superseded] {
            assert_eq!(decide_redrive(state, 0, stalled, sweeper), RedriveDecision::NotRunning(state));
        }
    }

    #[test]
    fn a_stalled_publishing_batch_is_resumed_under_the_same_threshold_and_cap() {
        let sweeper = RedriveRequest::Sweeper(policy());
        let stalled = Duration::from_secs(301);
        assert_eq!(decide_redrive(BatchState::Publishing, 0, stalled, sweeper), RedriveDecision::Redrive);
        assert_eq!(decide_redrive(BatchState::Publishing, 3, stalled, sweeper), RedriveDecision::CapReached);
        assert_eq!(
            decide_redrive(BatchState::Publishing, 0, Duration::from_secs(299), sweeper),
            RedriveDecision::NotDue,
            "a coordinator may still be publishing"
        );
        assert!(is_stuck(BatchState::Publishing, 3, stalled, &policy()), "out of resumes");
        assert!(!is_stuck(BatchState::Publishing, 2, stalled, &policy()));
    }

    #[test]
    fn an_operator_redrive_ignores_the_threshold_and_the_cap_but_not_the_state() {
        let op = RedriveRequest::Operator;
        assert_eq!(decide_redrive(BatchState::Running, 99, Duration::ZERO, op), RedriveDecision::Redrive);
        assert_eq!(
            decide_redrive(BatchState::Complete, 0, Duration::ZERO, op),
            RedriveDecision::NotRunning(BatchState::Complete)
        );
    }

    #[test]
    fn stuck_means_idle_past_the_threshold_or_stalled_without_redrives_left() {
        let p = policy();
        assert!(is_stuck(BatchState::Publishing, 0, Duration::from_secs(1800), &p));
        assert!(!is_stuck(BatchState::Publishing, 0, Duration::from_secs(1799), &p));
        assert!(is_stuck(BatchState::Running, 3, Duration::from_secs(301), &p), "out of redrives");
        assert!(!is_stuck(BatchState::Running, 2, Duration::from_secs(301), &p), "a redrive is still due");
        assert!(is_stuck(BatchState::Finalizing, 0, Duration::from_secs(4000), &p));
        assert!(!is_stuck(BatchState::Failed, 3, Duration::from_secs(99_999), &p), "final batches are never stuck");
    }

    #[test]
    fn settings_are_validated() {
        assert!(SweepSettings::default().validate().is_ok());
        let bad = SweepSettings { stuck_after_secs: 10, ..Default::default() };
        assert!(bad.validate().is_err(), "stuck threshold below the stall threshold");
        let bad = SweepSettings { sweep_interval_secs: 0, ..Default::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn retention_renews_a_published_batch_ahead_of_ttl_and_deletes_only_the_others() {
        let now = FirestoreInstant::now();
        let at = |secs: i64| {
            if secs >= 0 {
                now.saturating_add(Duration::from_secs(secs as u64)).unwrap()
            } else {
                now.saturating_sub(Duration::from_secs((-secs) as u64)).unwrap()
            }
        };
        assert_eq!(retention(at(-10), now, false), Retention::Delete);
        assert_eq!(retention(at(3600), now, false), Retention::Keep);
        assert_eq!(retention(at(-10), now, true), Retention::Renew, "never deleted while published");
        assert_eq!(retention(at(3600), now, true), Retention::Renew, "renewed a day ahead of a TTL policy");
        assert_eq!(retention(at(3 * 24 * 3600), now, true), Retention::Keep);
    }
}
