//! The fault tests' shared plumbing: the pipeline's seven processes, each behind its own listener of
//! the gRPC fault injector (`crates/grpc-faults`) in front of both emulators, the settings they run
//! with, and the report of what was injected. Used by `tests/faults.rs` (one large batch,
//! regenerated) and `tests/backfill_faults.rs` (a season of dates through `backfill`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use grpc_faults::{FaultKind, FaultProxy, Injected, Observer, Plan};
use props_pipeline::config::SubscriptionPolicy;

use super::fleet::Fleet;

/// Every process gives up on a call after this long; each outage lasts longer.
pub const RPC_TIMEOUT_SECS: u64 = 5;
pub const OUTAGE: Duration = Duration::from_secs(RPC_TIMEOUT_SECS * 2);

/// The processes: name and roles.
pub const PROCESSES: [(&str, &[&str]); 7] = [
    ("coordinator-a", &["run", "coordinator"]),
    ("coordinator-b", &["run", "coordinator"]),
    ("worker-a", &["run", "worker"]),
    ("worker-b", &["run", "worker"]),
    ("exporter", &["run", "exporter"]),
    ("dead-letter", &["run", "dead-letter"]),
    ("sweeper", &["run", "sweeper"]),
];

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Production's ack deadline (the stream's own deadline is the consumer's 10 s lease extension
/// anyway), ten delivery attempts and a short backoff. The tests also clear the retry policies
/// (`TestEnv::clear_retry_policies`), as the chaos test does: with one, the emulator withholds
/// redeliveries for minutes (a run with them kept stalled with every request of the final generation
/// pending).
pub fn subscription_policy() -> SubscriptionPolicy {
    SubscriptionPolicy {
        ack_deadline_secs: env_or("FAULTS_ACK_DEADLINE_SECS", 60),
        max_delivery_attempts: 10,
        min_backoff_secs: 1,
        max_backoff_secs: 5,
    }
}

/// One injector in front of each emulator.
pub struct Injectors {
    pub firestore: FaultProxy,
    pub pubsub: FaultProxy,
}

impl Injectors {
    /// Each service's calls faulted at its own rate, both seeded by `seed`; `observer` sees every
    /// Pub/Sub call.
    pub fn new(seed: u64, firestore_rate: f64, pubsub_rate: f64, observer: Option<Arc<dyn Observer>>) -> Self {
        let host = |var: &str| std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
        let firestore = FaultProxy::new(&host("FIRESTORE_EMULATOR_HOST"), Plan::uniform(seed, firestore_rate));
        let pubsub_plan = Plan::uniform(seed, pubsub_rate);
        let pubsub = match observer {
            Some(observer) => FaultProxy::observed(&host("PUBSUB_EMULATOR_HOST"), pubsub_plan, observer),
            None => FaultProxy::new(&host("PUBSUB_EMULATOR_HOST"), pubsub_plan),
        };
        Self { firestore, pubsub }
    }

    /// The emulator variables of a process called `label`: a listener of its own on each injector.
    pub async fn env_for(&self, label: &str) -> Vec<(String, String)> {
        vec![
            ("FIRESTORE_EMULATOR_HOST".to_string(), self.firestore.listen(label).await.unwrap().to_string()),
            ("PUBSUB_EMULATOR_HOST".to_string(), self.pubsub.listen(label).await.unwrap().to_string()),
        ]
    }

    /// Adds every one of [`PROCESSES`] to `fleet`, each behind listeners of its own, with the settings
    /// the fault tests run under (not started).
    pub async fn add_fleet(&self, fleet: &mut Fleet) {
        fleet.set_env("PROPS_RPC_TIMEOUT_SECS", &RPC_TIMEOUT_SECS.to_string());
        // Not the chaos test's 15 s stall: behind other batches' backlog and faults, a batch can go
        // 15 s without a completion while nothing is lost, and each redrive re-publishes every
        // pending request (a run with 15 s redrove the final generation's 320 requests every ~20 s,
        // and the flood itself ran requests out of delivery attempts).
        fleet.set_env("PROPS_STALL_AFTER_SECS", &env_or("FAULTS_STALL_AFTER_SECS", 90).to_string());
        fleet.set_env("PROPS_MAX_REDRIVES", "5");
        for (name, args) in PROCESSES {
            let own = self.env_for(name).await;
            fleet.add_with_env(name, args, own);
        }
    }

    pub fn report(&self) -> Report {
        injected_report(&self.firestore.injected(), &self.pubsub.injected())
    }

    pub fn stop(&self) {
        self.firestore.stop();
        self.pubsub.stop();
    }
}

pub struct Report {
    /// One line per service: its faults by kind and by method.
    pub summary: String,
    /// One line: how many in all.
    pub totals: String,
    /// Every fault in order, for `injected.log`.
    pub full: String,
    pub total: usize,
}

/// What was injected, by service and kind, and every fault in order.
pub fn injected_report(firestore: &[Injected], pubsub: &[Injected]) -> Report {
    let mut summary = String::new();
    let mut full = String::new();
    let mut total = 0;
    for (service, injected) in [("firestore", firestore), ("pubsub", pubsub)] {
        let mut by_kind: BTreeMap<FaultKind, usize> = BTreeMap::new();
        let mut by_method: BTreeMap<&str, usize> = BTreeMap::new();
        for fault in injected {
            *by_kind.entry(fault.kind).or_default() += 1;
            *by_method.entry(&fault.method).or_default() += 1;
            let _ = writeln!(full, "{service} {fault}");
        }
        total += injected.len();
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let methods: Vec<String> = by_method.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let _ = writeln!(
            summary,
            "faults injected: {service}: {} ({}); by method: {}",
            injected.len(),
            kinds.join(", "),
            methods.join(", ")
        );
    }
    let totals = format!("{total} injected and survived (firestore {}, pubsub {})", firestore.len(), pubsub.len());
    Report { summary: summary.trim_end().to_string(), totals, full, total }
}
