//! Counters of one consumer, readable while it runs (tests, probes, metrics).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ConsumerStats {
    received: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    rejected: AtomicU64,
    /// Rejections whose dead-letter publish failed; those messages were nacked for another try.
    dead_letter_failures: AtomicU64,
    /// Handlers that panicked; their messages were nacked.
    panics: AtomicU64,
    /// Messages still held when the shutdown grace period ran out; nacked.
    abandoned_on_shutdown: AtomicU64,
    stream_errors: AtomicU64,
    stream_reopens: AtomicU64,
    /// The most messages read from the stream and waiting for a handler at once (see [`StatsSnapshot`]).
    most_queued: AtomicU64,
}

/// A point-in-time copy of [`ConsumerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub acked: u64,
    pub retried: u64,
    pub rejected: u64,
    pub dead_letter_failures: u64,
    pub panics: u64,
    pub abandoned_on_shutdown: u64,
    pub stream_errors: u64,
    pub stream_reopens: u64,
    /// The most messages read and waiting for a handler slot at once. Real Pub/Sub's flow control
    /// keeps it near `2 x concurrency`; the emulator ignores flow control, so there it is the backlog.
    pub most_queued: u64,
}

macro_rules! counters {
    ($($field:ident => $incr:ident),* $(,)?) => {
        impl ConsumerStats {
            $(pub(crate) fn $incr(&self) { self.$field.fetch_add(1, Ordering::Relaxed); })*

            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                    most_queued: self.most_queued.load(Ordering::Relaxed),
                }
            }
        }
    };
}

impl ConsumerStats {
    /// Notes that `depth` messages wait for a handler slot now.
    pub(crate) fn record_queued(&self, depth: usize) {
        self.most_queued.fetch_max(depth as u64, Ordering::Relaxed);
    }
}

counters! {
    received => record_received,
    acked => record_acked,
    retried => record_retried,
    rejected => record_rejected,
    dead_letter_failures => record_dead_letter_failure,
    panics => record_panic,
    abandoned_on_shutdown => record_abandoned,
    stream_errors => record_stream_error,
    stream_reopens => record_stream_reopen,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_keeps_the_deepest_queue_seen() {
        let stats = ConsumerStats::default();
        for depth in [1, 5, 2] {
            stats.record_queued(depth);
        }
        stats.record_received();
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.most_queued, snapshot.received), (5, 1));
    }
}
