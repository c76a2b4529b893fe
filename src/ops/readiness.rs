//! What `/readyz` answers: ready once every consumer of the process is pulling from its subscription
//! and Firestore answers a cheap read.
//!
//! "Subscribed" means the consumer found its subscription and is pulling on a stream the client has
//! not closed. The client opens the gRPC stream lazily on the first pull and tonic yields it only with
//! the first response (tonic issue 515), so an open stream cannot be observed more precisely without
//! a message; a stream the client ended (permanent error) makes the consumer unready until it is
//! re-opened, and so does the shutdown drain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

/// The consumers of one process and whether each is subscribed. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Set once the process created every consumer it will run; until then an empty list proves nothing.
    started: AtomicBool,
    consumers: Mutex<Vec<Arc<ConsumerEntry>>>,
}

#[derive(Debug)]
struct ConsumerEntry {
    subscription: String,
    subscribed: AtomicBool,
}

/// A consumer's side of [`Readiness`]: it says when it is (or stops being) subscribed.
#[derive(Debug, Clone)]
pub struct SubscriptionState(Arc<ConsumerEntry>);

impl SubscriptionState {
    /// A state no [`Readiness`] reads, for consumers run without probes (tests, tools).
    pub fn detached(subscription: &str) -> Self {
        Self(Arc::new(ConsumerEntry { subscription: subscription.to_string(), subscribed: AtomicBool::new(false) }))
    }

    pub fn set_subscribed(&self, subscribed: bool) {
        self.0.subscribed.store(subscribed, Ordering::Relaxed);
    }
}

impl Readiness {
    /// Adds a consumer of `subscription`, not yet subscribed.
    pub fn register(&self, subscription: &str) -> SubscriptionState {
        let state = SubscriptionState::detached(subscription);
        self.lock().push(Arc::clone(&state.0));
        state
    }

    /// Declares that every consumer of the process is registered.
    pub fn mark_started(&self) {
        self.inner.started.store(true, Ordering::Relaxed);
    }

    /// Why the consumers are not ready, or `None` when they are.
    pub fn consumers_verdict(&self) -> Option<String> {
        if !self.inner.started.load(Ordering::Relaxed) {
            return Some("starting: consumers not created yet".into());
        }
        let waiting: Vec<String> = self
            .lock()
            .iter()
            .filter(|c| !c.subscribed.load(Ordering::Relaxed))
            .map(|c| c.subscription.clone())
            .collect();
        (!waiting.is_empty()).then(|| format!("not subscribed: {}", waiting.join(", ")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ConsumerEntry>>> {
        // A poisoned lock only means a thread panicked while pushing; the list is still valid.
        self.inner.consumers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A dependency check, e.g. one Firestore read. `Err` carries a short reason.
pub trait Probe: Send + Sync + 'static {
    fn probe(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A [`Probe`] run at most once per `ttl`, each run bounded by `timeout`. Concurrent callers wait for
/// one run instead of each starting their own, so probes cannot pile up on a slow dependency.
pub struct CachedProbe {
    probe: Box<dyn Probe>,
    ttl: Duration,
    timeout: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl CachedProbe {
    pub fn new(probe: impl Probe, ttl: Duration, timeout: Duration) -> Self {
        Self { probe: Box::new(probe), ttl, timeout, last: tokio::sync::Mutex::new(None) }
    }

    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(self.timeout, self.probe.probe()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Reads one document that need not exist: the cheapest request that proves Firestore answers
/// (one billed read per `ttl` per process).
pub struct FirestoreProbe(pub firestore::FirestoreDb);

/// Where [`FirestoreProbe`] reads; nothing writes there.
const PROBE_COLLECTION: &str = "ops";
const PROBE_DOCUMENT: &str = "readyz";

impl Probe for FirestoreProbe {
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            self.0
                .fluent()
                .select()
                .by_id_in(PROBE_COLLECTION)
                .one(PROBE_DOCUMENT)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        }
        .boxed()
    }
}

/// What `/readyz` checks. Cheap to clone.
#[derive(Clone)]
pub struct ReadyCheck {
    pub consumers: Readiness,
    pub firestore: Arc<CachedProbe>,
}

impl ReadyCheck {
    /// `Ok` when ready, otherwise the reason. Firestore is probed only once the consumers are ready,
    /// so a pod that cannot subscribe costs no reads.
    pub async fn verdict(&self) -> Result<(), String> {
        if let Some(reason) = self.consumers.consumers_verdict() {
            return Err(reason);
        }
        self.firestore.check().await.map_err(|reason| format!("firestore unreachable: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    struct Counting {
        calls: Arc<AtomicU32>,
        answer: Result<(), String>,
        delay: Duration,
    }

    impl Probe for Counting {
        fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(self.delay).await;
                self.answer.clone()
            }
            .boxed()
        }
    }

    fn counting(answer: Result<(), String>, delay: Duration) -> (Counting, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        (Counting { calls: Arc::clone(&calls), answer, delay }, calls)
    }

    #[test]
    fn ready_only_after_start_and_once_every_consumer_subscribed() {
        let readiness = Readiness::default();
        assert_eq!(readiness.consumers_verdict().as_deref(), Some("starting: consumers not created yet"));
        let trigger = readiness.register("trigger-sub");
        let requests = readiness.register("requests-sub");
        readiness.mark_started();
        assert_eq!(readiness.consumers_verdict().as_deref(), Some("not subscribed: trigger-sub, requests-sub"));
        trigger.set_subscribed(true);
        assert_eq!(readiness.consumers_verdict().as_deref(), Some("not subscribed: requests-sub"));
        requests.set_subscribed(true);
        assert_eq!(readiness.consumers_verdict(), None);
        // A stream the client ended makes the process unready again.
        trigger.set_subscribed(false);
        assert_eq!(readiness.consumers_verdict().as_deref(), Some("not subscribed: trigger-sub"));
    }

    #[test]
    fn a_detached_state_is_read_by_nobody() {
        let readiness = Readiness::default();
        readiness.mark_started();
        SubscriptionState::detached("elsewhere").set_subscribed(false);
        assert_eq!(readiness.consumers_verdict(), None, "a process without consumers is ready");
    }

    #[tokio::test]
    async fn probe_results_are_cached_for_the_ttl() {
        let (probe, calls) = counting(Ok(()), Duration::ZERO);
        let cached = CachedProbe::new(probe, Duration::from_secs(60), Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(cached.check().await, Ok(()));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);

        let (probe, calls) = counting(Err("down".into()), Duration::ZERO);
        let uncached = CachedProbe::new(probe, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(uncached.check().await, Err("down".into()));
        assert_eq!(uncached.check().await, Err("down".into()));
        assert_eq!(calls.load(Ordering::Relaxed), 2, "an expired result is probed again");
    }

    #[tokio::test]
    async fn a_slow_probe_times_out_as_unready() {
        let (probe, _) = counting(Ok(()), Duration::from_secs(30));
        let cached = CachedProbe::new(probe, Duration::from_secs(60), Duration::from_millis(20));
        assert_eq!(cached.check().await, Err("no answer within 20 ms".into()));
    }

    #[tokio::test]
    async fn firestore_is_probed_only_once_consumers_are_ready() {
        let (probe, calls) = counting(Err("connection refused".into()), Duration::ZERO);
        let check = ReadyCheck {
            consumers: Readiness::default(),
            firestore: Arc::new(CachedProbe::new(probe, Duration::ZERO, Duration::from_secs(1))),
        };
        let worker = check.consumers.register("requests-sub");
        check.consumers.mark_started();
        assert_eq!(check.verdict().await, Err("not subscribed: requests-sub".into()));
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        worker.set_subscribed(true);
        assert_eq!(check.verdict().await, Err("firestore unreachable: connection refused".into()));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
