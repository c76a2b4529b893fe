//! Trailing-edge coalescing of concurrent checks of one key inside one process: the wholeness checks
//! of one batch that its last completions ask for at once (each a header read and a sum over the
//! counter shards) become one check, plus one more for the callers that arrived while it ran.
//!
//! **Trailing, not leading.** A caller may be answered only by a check that *started after it
//! arrived*: a check already running when a completion arrives may have read the shards before that
//! completion's commit was visible, so its answer ("not whole yet") says nothing about the batch with
//! that item in it. Each caller takes a ticket on arrival; a check records the highest ticket handed
//! out when it started (`covered`); a caller whose ticket is covered by a check that has completed
//! takes its answer, any other caller runs a check of its own (one at a time per key, so the callers
//! queued behind a running check share the single check that follows it).
//!
//! **Stateless.** Nothing durable is held here: an answer is kept only while callers of its key are
//! waiting (the key's entry goes when the last one leaves), it is only ever given to a caller that
//! arrived before the check that produced it began, and a failed check's error is never shared (each
//! of its waiters runs its own). Dropping this state (a restart) only costs reads.
//!
//! **Why hand-written.** The crates that coalesce async calls (`async_singleflight`,
//! `rs-singleflight`, `request_coalescer`, ...) share the call *in flight* with the callers that arrive
//! during it: leading-edge semantics, which would answer a late completion with a read that may have
//! missed its commit. None offers the trailing variant; it is a ticket counter and an async mutex.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// How a call was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Coalesced<R> {
    /// This call ran the check.
    Ran(R),
    /// A check that started after this call arrived answered it; nothing was run for this call.
    Shared(R),
}

impl<R> Coalesced<R> {
    pub fn into_inner(self) -> R {
        match self {
            Coalesced::Ran(report) | Coalesced::Shared(report) => report,
        }
    }
}

/// The last successful check of a key: the highest ticket it covers, and its answer.
type LastCheck<R> = Arc<tokio::sync::Mutex<Option<(u64, R)>>>;

/// One key's callers. Lives while any caller holds it.
struct Entry<R> {
    /// Callers waiting for or running a check of this key.
    callers: usize,
    /// Tickets handed out since the entry was created: the last caller's ticket.
    requested: u64,
    /// Locked by the caller that runs a check, for the whole check, so one check of a key runs at a
    /// time.
    last: LastCheck<R>,
}

/// Concurrent checks per key, coalesced on the trailing edge (see the module's doc).
pub struct TrailingCoalescer<K, R> {
    entries: Mutex<HashMap<K, Entry<R>>>,
}

impl<K, R> Default for TrailingCoalescer<K, R> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, R: Clone> TrailingCoalescer<K, R> {
    /// Answers from a check of `key` that started after this call, running `check` if no such check
    /// has completed successfully by the time this caller's turn comes. An error is this caller's
    /// alone: callers queued behind a failed check run their own.
    pub async fn run<E, F, Fut>(&self, key: K, check: F) -> Result<Coalesced<R>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let (ticket, last) = self.arrive(&key);
        // Leaves the entry however this call ends, cancellation included.
        let _leave = Leave { coalescer: self, key: key.clone() };
        let mut last = last.lock().await;
        if let Some((covered, report)) = last.as_ref()
            && answers(*covered, ticket)
        {
            return Ok(Coalesced::Shared(report.clone()));
        }
        // Every caller that has a ticket by now arrived before this check starts.
        let covered = self.requested(&key);
        let report = check().await?;
        *last = Some((covered, report.clone()));
        Ok(Coalesced::Ran(report))
    }

    /// Keys with callers now (for tests and metrics: entries do not outlive their callers).
    pub fn keys(&self) -> usize {
        self.lock().len()
    }

    /// Callers of `key` now, waiting or running.
    pub fn callers(&self, key: &K) -> usize {
        self.lock().get(key).map_or(0, |entry| entry.callers)
    }

    fn arrive(&self, key: &K) -> (u64, LastCheck<R>) {
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            callers: 0,
            requested: 0,
            last: Arc::new(tokio::sync::Mutex::new(None)),
        });
        entry.callers += 1;
        entry.requested += 1;
        (entry.requested, Arc::clone(&entry.last))
    }

    fn requested(&self, key: &K) -> u64 {
        // The caller holds the entry, so it exists.
        self.lock().get(key).map_or(0, |entry| entry.requested)
    }

    fn leave(&self, key: &K) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.callers -= 1;
            if entry.callers == 0 {
                entries.remove(key);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<R>>> {
        // A poisoned lock only means a thread panicked between two map operations; the map is valid.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a completed check that covered tickets up to `covered` answers the caller holding `ticket`:
/// only if that caller had arrived when the check started.
fn answers(covered: u64, ticket: u64) -> bool {
    ticket <= covered
}

/// Exists for its `Drop`: a caller leaves its key's entry when its call ends or is dropped.
struct Leave<'a, K: Eq + Hash + Clone, R: Clone> {
    coalescer: &'a TrailingCoalescer<K, R>,
    key: K,
}

impl<K: Eq + Hash + Clone, R: Clone> Drop for Leave<'_, K, R> {
    fn drop(&mut self) {
        self.coalescer.leave(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    type Checks = Arc<TrailingCoalescer<&'static str, u64>>;

    /// A coalescer and the check its callers run: the check counts its runs, answers with its run
    /// number and waits for a permit of `gate` before answering (so the test decides when a running
    /// check ends). `started` hears of each run as it starts.
    struct Probe {
        checks: Checks,
        runs: Arc<AtomicU64>,
        gate: Arc<Semaphore>,
        started: tokio::sync::mpsc::UnboundedSender<u64>,
    }

    impl Probe {
        fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<u64>) {
            let (started, heard) = tokio::sync::mpsc::unbounded_channel();
            let gate = Arc::new(Semaphore::new(0));
            (Self { checks: Arc::default(), runs: Arc::default(), gate, started }, heard)
        }

        /// A caller of `key`, spawned; its result once joined.
        fn call(
            &self,
            key: &'static str,
            fail_on_run: Option<u64>,
        ) -> tokio::task::JoinHandle<Result<Coalesced<u64>, String>> {
            let (checks, runs, gate, started) =
                (Arc::clone(&self.checks), Arc::clone(&self.runs), Arc::clone(&self.gate), self.started.clone());
            tokio::spawn(async move {
                checks
                    .run(key, || async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        started.send(run).expect("the test listens");
                        gate.acquire().await.expect("gate open").forget();
                        if fail_on_run == Some(run) { Err(format!("run {run} failed")) } else { Ok(run) }
                    })
                    .await
            })
        }

        /// Lets spawned callers run until `key` has `n` callers (each took its ticket). No clock involved.
        async fn until_callers(&self, key: &'static str, n: usize) {
            while self.checks.callers(&key) != n {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn callers_arriving_while_a_check_runs_share_one_trailing_check() {
        let (probe, mut started) = Probe::new();
        let first = probe.call("b", None);
        assert_eq!(started.recv().await, Some(1), "the first caller runs a check at once");
        let waiters: Vec<_> = (0..20).map(|_| probe.call("b", None)).collect();
        probe.until_callers("b", 21).await;
        probe.gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(Coalesced::Ran(1)));
        assert_eq!(started.recv().await, Some(2), "one trailing check for all the waiters");
        probe.gate.add_permits(1);
        let mut answers = Vec::new();
        for waiter in waiters {
            answers.push(waiter.await.unwrap().unwrap());
        }
        assert_eq!(probe.runs.load(Ordering::SeqCst), 2);
        assert_eq!(answers.iter().filter(|a| **a == Coalesced::Ran(2)).count(), 1, "{answers:?}");
        assert_eq!(answers.iter().filter(|a| **a == Coalesced::Shared(2)).count(), 19, "{answers:?}");
        assert_eq!(probe.checks.keys(), 0, "nothing kept once nobody waits");
    }

    #[tokio::test]
    async fn a_caller_arriving_after_a_check_started_is_never_answered_by_that_check() {
        let (probe, mut started) = Probe::new();
        let first = probe.call("b", None);
        assert_eq!(started.recv().await, Some(1));
        let late = probe.call("b", None);
        probe.until_callers("b", 2).await;
        probe.gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(Coalesced::Ran(1)));
        assert_eq!(late.await.unwrap(), Ok(Coalesced::Ran(2)), "its own check, not the one running on arrival");
    }

    #[tokio::test]
    async fn a_failed_check_is_not_shared_its_waiters_run_their_own() {
        let (probe, mut started) = Probe::new();
        let first = probe.call("b", None);
        assert_eq!(started.recv().await, Some(1));
        // Both arrive while check 1 runs; the first of them runs check 2, which fails.
        let second = probe.call("b", Some(2));
        probe.until_callers("b", 2).await;
        let third = probe.call("b", Some(2));
        probe.until_callers("b", 3).await;
        probe.gate.add_permits(3);
        assert_eq!(first.await.unwrap(), Ok(Coalesced::Ran(1)));
        assert_eq!(second.await.unwrap(), Err("run 2 failed".to_string()));
        assert_eq!(third.await.unwrap(), Ok(Coalesced::Ran(3)), "not the failed check's error");
        assert_eq!(probe.runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn keys_do_not_wait_for_each_other() {
        let (probe, mut started) = Probe::new();
        let a = probe.call("a", None);
        let b = probe.call("b", None);
        let mut runs = [started.recv().await.unwrap(), started.recv().await.unwrap()];
        runs.sort();
        assert_eq!(runs, [1, 2], "both checks run at once");
        probe.gate.add_permits(2);
        assert!(matches!(a.await.unwrap(), Ok(Coalesced::Ran(_))));
        assert!(matches!(b.await.unwrap(), Ok(Coalesced::Ran(_))));
    }

    #[tokio::test]
    async fn callers_one_after_another_each_run_and_a_dropped_caller_leaves_nothing() {
        let (probe, mut started) = Probe::new();
        probe.gate.add_permits(2);
        assert_eq!(probe.call("b", None).await.unwrap(), Ok(Coalesced::Ran(1)));
        assert_eq!(probe.call("b", None).await.unwrap(), Ok(Coalesced::Ran(2)), "no answer is cached");
        let stuck = probe.call("b", None);
        assert_eq!(started.recv().await, Some(1));
        assert_eq!(started.recv().await, Some(2));
        assert_eq!(started.recv().await, Some(3));
        stuck.abort();
        assert!(stuck.await.unwrap_err().is_cancelled());
        assert_eq!(probe.checks.keys(), 0, "a cancelled caller leaves its entry");
    }

    #[test]
    fn only_a_check_started_after_the_caller_arrived_answers_it() {
        assert!(answers(5, 5));
        assert!(answers(5, 3));
        assert!(!answers(5, 6));
    }
}
