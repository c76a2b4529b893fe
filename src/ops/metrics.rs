//! The pipeline's Prometheus metrics: their names (a contract with dashboards, alerts and the k8s docs),
//! their help text, and the one global recorder `/metrics` renders.
//!
//! Code emits with the `metrics` macros (`metrics::counter!(MESSAGES_TOTAL, ..)`) or with the handles
//! below. Until [`install`] has run, the macros go to the facade's no-op recorder, so library code and
//! tests that never serve `/metrics` pay nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use thiserror::Error;

/// Messages the consumer runtime finished with, by `subscription` and `outcome` (ack | retry | reject).
pub const MESSAGES_TOTAL: &str = "props_messages_total";
/// Time a handler took for one message, by `subscription`.
pub const HANDLER_SECONDS: &str = "props_handler_seconds";
/// Messages the runtime rejected and published to a dead-letter topic, by `subscription`.
pub const DEAD_LETTERED_TOTAL: &str = "props_dead_lettered_total";
/// Firestore transactions of the batch store, by `operation` and `outcome` (committed | failed).
pub const TRANSACTIONS_TOTAL: &str = "props_transactions_total";
/// Re-runs of a transaction's closure after ABORTED (contention), by `operation`.
pub const TRANSACTION_RETRIES_TOTAL: &str = "props_transaction_retries_total";
/// Batches per `state` (emitted by the sweeper).
pub const BATCHES: &str = "props_batches";
/// Unsettled batches the last sweep reported stuck (emitted by the sweeper).
pub const STUCK_BATCHES: &str = "props_stuck_batches";
/// Time from claiming a batch's finalization to COMPLETE or FAILED.
pub const FINALIZE_SECONDS: &str = "props_finalize_seconds";
/// Redrives that re-published a batch's pending requests, by the sweeper or an operator.
pub const REDRIVES_TOTAL: &str = "props_redrives_total";
/// Alerts raised, by `alert`.
pub const ALERTS_TOTAL: &str = "props_alerts_total";
/// Dead letters the dead-letter role recorded in `dead_letters`, by `channel` (emitted by that role).
pub const DEAD_LETTERS_RECORDED_TOTAL: &str = "props_dead_letters_recorded_total";

/// Values of the `outcome` label of [`MESSAGES_TOTAL`].
pub mod outcome {
    pub const ACK: &str = "ack";
    pub const RETRY: &str = "retry";
    pub const REJECT: &str = "reject";
}

/// Upper bounds of the `*_seconds` histogram buckets: 1 ms (a duplicate skipped on a plain read) to
/// 60 s (a finalization consolidating a large slate); roughly ×2.5 per step.
pub const SECONDS_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Debug, Clone, Error)]
pub enum MetricsError {
    /// Another recorder (not ours) was installed first; ours would never see a sample.
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

/// Installs the Prometheus recorder as the process's global recorder, once; later calls return the same
/// handle (integration tests run library code several times in one process).
pub fn install() -> Result<&'static PrometheusHandle, MetricsError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();
    HANDLE
        .get_or_init(|| build_and_install().map_err(|error| MetricsError::Install(error.to_string())))
        .as_ref()
        .map_err(Clone::clone)
}

fn build_and_install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        // Every duration metric is named `*_seconds`; buckets make them true histograms, not summaries.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Help text for every metric of the contract, so `/metrics` documents them before they are first set.
fn describe() {
    describe_counter!(
        MESSAGES_TOTAL,
        "Messages the consumer runtime finished with, by subscription and outcome (ack, retry, reject)."
    );
    describe_histogram!(HANDLER_SECONDS, Unit::Seconds, "Time a handler took for one message, by subscription.");
    describe_counter!(
        DEAD_LETTERED_TOTAL,
        "Messages rejected by a handler and published to the dead-letter topic, by subscription."
    );
    describe_counter!(
        TRANSACTIONS_TOTAL,
        "Firestore decisions of the batch store (transactions and guarded header writes), by operation and outcome (committed, failed)."
    );
    describe_counter!(
        TRANSACTION_RETRIES_TOTAL,
        "Decisions re-run after contention (a transaction ABORTED, a guarded write that lost its race), by operation."
    );
    describe_gauge!(BATCHES, "Batches by state.");
    describe_gauge!(STUCK_BATCHES, "Unsettled batches the last sweep reported stuck (no progress past the threshold).");
    describe_histogram!(
        FINALIZE_SECONDS,
        Unit::Seconds,
        "Time from claiming a batch's finalization to its final state (ready event published, for COMPLETE)."
    );
    describe_counter!(REDRIVES_TOTAL, "Redrives that re-published a batch's pending requests (sweeper or operator).");
    describe_counter!(ALERTS_TOTAL, "Alerts raised, by alert.");
    describe_counter!(DEAD_LETTERS_RECORDED_TOTAL, "Dead letters recorded in the dead_letters collection, by channel.");
}

/// The metric handles of one consumer, registered once per subscription instead of per message.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    acked: Counter,
    retried: Counter,
    rejected: Counter,
    dead_lettered: Counter,
    handler_seconds: Histogram,
}

impl ConsumerMetrics {
    /// Handles for `subscription`, on whatever recorder is installed now (call after [`install`]).
    pub fn new(subscription: &str) -> Self {
        let messages = |outcome: &'static str| metrics::counter!(MESSAGES_TOTAL, "subscription" => subscription.to_string(), "outcome" => outcome);
        Self {
            acked: messages(outcome::ACK),
            retried: messages(outcome::RETRY),
            rejected: messages(outcome::REJECT),
            dead_lettered: metrics::counter!(DEAD_LETTERED_TOTAL, "subscription" => subscription.to_string()),
            handler_seconds: metrics::histogram!(HANDLER_SECONDS, "subscription" => subscription.to_string()),
        }
    }

    pub fn handled_in(&self, elapsed: Duration) {
        self.handler_seconds.record(elapsed.as_secs_f64());
    }

    pub fn acked(&self) {
        self.acked.increment(1);
    }

    pub fn retried(&self) {
        self.retried.increment(1);
    }

    pub fn rejected(&self) {
        self.rejected.increment(1);
    }

    pub fn dead_lettered(&self) {
        self.dead_lettered.increment(1);
    }
}

/// Counts the attempts of one Firestore transaction. firestore-rs re-runs the closure after ABORTED,
/// so every call of [`TransactionAttempts::attempt`] after the first is a retry. The batch store uses it
/// through its `CountedTransaction::counted_transaction`.
#[derive(Debug)]
pub struct TransactionAttempts {
    operation: &'static str,
    // Atomic because the closure holding a reference to it lives in a `Send` future.
    attempts: AtomicU32,
}

impl TransactionAttempts {
    pub fn new(operation: &'static str) -> Self {
        Self { operation, attempts: AtomicU32::new(0) }
    }

    /// Call at the start of the transaction closure.
    pub fn attempt(&self) {
        if self.attempts.fetch_add(1, Ordering::Relaxed) > 0 {
            metrics::counter!(TRANSACTION_RETRIES_TOTAL, "operation" => self.operation).increment(1);
        }
    }

    /// Counts the transaction's outcome and hands its result back unchanged.
    pub fn finish<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        let outcome = if result.is_ok() { "committed" } else { "failed" };
        metrics::counter!(TRANSACTIONS_TOTAL, "operation" => self.operation, "outcome" => outcome).increment(1);
        result
    }

    #[cfg(test)]
    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_documents_every_metric() {
        let first = install().expect("installs");
        let second = install().expect("a repeat call returns the same handle");
        assert!(std::ptr::eq(first, second));
        ConsumerMetrics::new("unit-test-sub").acked();
        ConsumerMetrics::new("unit-test-sub").handled_in(Duration::from_millis(3));
        let text = first.render();
        assert!(text.contains(r#"props_messages_total{subscription="unit-test-sub",outcome="ack"} 1"#), "{text}");
        assert!(text.contains("# TYPE props_handler_seconds histogram"), "{text}");
        assert!(text.contains(r#"props_handler_seconds_bucket{subscription="unit-test-sub",le="0.005"} 1"#), "{text}");
        assert!(text.contains("# HELP props_messages_total Messages the consumer runtime"), "{text}");
    }

    #[test]
    fn transaction_attempts_beyond_the_first_are_retries() {
        let handle = install().expect("installs");
        let attempts = TransactionAttempts::new("unit_test");
        attempts.attempt();
        attempts.attempt();
        attempts.attempt();
        assert_eq!(attempts.attempts(), 3);
        assert_eq!(attempts.finish(Ok::<_, ()>(7)), Ok(7));
        let text = handle.render();
        assert!(text.contains(r#"props_transaction_retries_total{operation="unit_test"} 2"#), "{text}");
        assert!(text.contains(r#"props_transactions_total{operation="unit_test",outcome="committed"} 1"#), "{text}");
    }
}
