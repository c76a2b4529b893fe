//! What to inject, decided by pure functions of a seed: the same seed, process label, method and call
//! number always give the same fault, so a failure found by one seed can be replayed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Answer `UNAVAILABLE` without forwarding (the server never saw the call).
    Unavailable,
    /// Answer `INTERNAL` without forwarding.
    Internal,
    /// Answer `DEADLINE_EXCEEDED` without forwarding.
    DeadlineExceeded,
    /// Answer `RESOURCE_EXHAUSTED` without forwarding.
    ResourceExhausted,
    /// Forward the call, let the server answer, then drop that answer and tell the client
    /// `UNAVAILABLE`: the server applied the call, the client cannot know.
    LostAnswer,
    /// Forward the call after a delay.
    Latency,
    /// Hold all traffic of the proxy for a while (never drawn by a plan: a [`Rule::outage`] or
    /// `FaultProxy::freeze`).
    Outage,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Unavailable,
        FaultKind::Internal,
        FaultKind::DeadlineExceeded,
        FaultKind::ResourceExhausted,
        FaultKind::LostAnswer,
        FaultKind::Latency,
    ];

    /// The gRPC status code the client receives, for the kinds that answer with one.
    pub fn grpc_status(self) -> Option<u16> {
        match self {
            FaultKind::Unavailable | FaultKind::LostAnswer => Some(14),
            FaultKind::Internal => Some(13),
            FaultKind::DeadlineExceeded => Some(4),
            FaultKind::ResourceExhausted => Some(8),
            FaultKind::Latency | FaultKind::Outage => None,
        }
    }

    /// Whether the server sees the call.
    pub fn forwards(self) -> bool {
        matches!(self, FaultKind::LostAnswer | FaultKind::Latency | FaultKind::Outage)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Unavailable => "unavailable",
            FaultKind::Internal => "internal",
            FaultKind::DeadlineExceeded => "deadline-exceeded",
            FaultKind::ResourceExhausted => "resource-exhausted",
            FaultKind::LostAnswer => "lost-answer",
            FaultKind::Latency => "latency",
            FaultKind::Outage => "outage",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decided fault: its kind and, for [`FaultKind::Latency`] and [`FaultKind::Outage`], how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub delay: Duration,
}

impl Fault {
    pub fn new(kind: FaultKind) -> Self {
        Self { kind, delay: Duration::ZERO }
    }
}

/// Which request bodies a [`Rule`] applies to.
pub type BodyMatcher = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A scripted fault for a deterministic test: the next `times` calls of `method` (from `label`, when
/// given, and whose request body matches, when a matcher is given) get `fault`. Rules go before the
/// random plan.
#[derive(Clone)]
pub struct Rule {
    pub method: String,
    pub label: Option<String>,
    pub matcher: Option<BodyMatcher>,
    pub fault: Fault,
    pub times: u32,
}

impl Rule {
    pub fn new(method: &str, fault: Fault) -> Self {
        Self { method: method.to_string(), label: None, matcher: None, fault, times: 1 }
    }

    /// Only calls whose request body contains every one of `needles` (protobuf keeps strings as
    /// UTF-8, so a document path or a field value can be matched this way).
    /// The first call matching (method, label, body) starts an outage of `duration`: all traffic of
    /// the proxy is held, this call included.
    pub fn outage(method: &str, duration: Duration) -> Self {
        Self::new(method, Fault { kind: FaultKind::Outage, delay: duration })
    }

    pub fn body_contains(mut self, needles: &[&str]) -> Self {
        let needles: Vec<Vec<u8>> = needles.iter().map(|n| n.as_bytes().to_vec()).collect();
        self.matcher = Some(Arc::new(move |body: &[u8]| needles.iter().all(|n| contains(body, n))));
        self
    }

    pub fn from_label(mut self, label: &str) -> Self {
        self.label = Some(label.to_string());
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// Whether this rule (still armed) applies to a call.
    pub fn applies(&self, label: &str, method: &str, body: Option<&[u8]>) -> bool {
        self.times > 0
            && self.method == method
            && self.label.as_deref().is_none_or(|l| l == label)
            && self.matcher.as_ref().is_none_or(|m| body.is_some_and(|b| m(b)))
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("method", &self.method)
            .field("label", &self.label)
            .field("matcher", &self.matcher.is_some())
            .field("fault", &self.fault)
            .field("times", &self.times)
            .finish()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The random part: a fault rate per method and weights per kind, drawn from a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub seed: u64,
    /// Fault rate (0..=1) of the methods not in `rates`.
    pub default_rate: f64,
    /// Fault rate by gRPC method name (`Commit`, `Publish`, ...).
    pub rates: BTreeMap<String, f64>,
    /// Relative weight of each kind once a call is faulted (a kind not listed is never drawn).
    pub weights: BTreeMap<FaultKind, u32>,
    /// Delay range of a [`FaultKind::Latency`] fault.
    pub latency: (Duration, Duration),
}

impl Plan {
    /// No random faults (rules and freezes only).
    pub fn none() -> Self {
        Self::uniform(0, 0.0)
    }

    /// Every method faulted at `rate`, every kind equally likely, latency 50 ms to 2 s.
    pub fn uniform(seed: u64, rate: f64) -> Self {
        Self {
            seed,
            default_rate: rate,
            rates: BTreeMap::new(),
            weights: FaultKind::ALL.iter().map(|k| (*k, 1)).collect(),
            latency: (Duration::from_millis(50), Duration::from_secs(2)),
        }
    }

    /// Every call of every method gets `kind` (narrow it with [`Plan::with_rate`] and `default_rate`).
    pub fn always(kind: FaultKind) -> Self {
        let mut plan = Self::uniform(0, 1.0);
        plan.weights = [(kind, 1)].into();
        plan
    }

    /// `method` faulted at `rate` instead of the default.
    pub fn with_rate(mut self, method: &str, rate: f64) -> Self {
        self.rates.insert(method.to_string(), rate);
        self
    }

    /// `kind` drawn with `weight` (0 never draws it).
    pub fn with_weight(mut self, kind: FaultKind, weight: u32) -> Self {
        self.weights.insert(kind, weight);
        self
    }

    pub fn rate(&self, method: &str) -> f64 {
        self.rates.get(method).copied().unwrap_or(self.default_rate)
    }

    /// The fault for call number `sequence` (counted per label and method) of `method` from the
    /// process `label`, if any.
    pub fn decide(&self, label: &str, method: &str, sequence: u64) -> Option<Fault> {
        let rate = self.rate(method);
        let mut state = self.seed ^ fnv1a(label.as_bytes()) ^ fnv1a(method.as_bytes()).rotate_left(17) ^ sequence;
        if unit(splitmix64(&mut state)) >= rate {
            return None;
        }
        let total: u64 = self.weights.values().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let mut pick = splitmix64(&mut state) % total;
        let kind = self.weights.iter().find_map(|(kind, weight)| {
            let weight = u64::from(*weight);
            if pick < weight {
                Some(*kind)
            } else {
                pick -= weight;
                None
            }
        })?;
        let delay = if kind == FaultKind::Latency {
            let (low, high) = self.latency;
            let span = high.saturating_sub(low).as_millis() as u64;
            low + Duration::from_millis(splitmix64(&mut state) % (span + 1))
        } else {
            Duration::ZERO
        };
        Some(Fault { kind, delay })
    }
}

/// SplitMix64: a tiny, well-mixed generator; one step per draw.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A draw in [0, 1).
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(plan: &Plan, label: &str, method: &str, calls: u64) -> Vec<Option<Fault>> {
        (0..calls).map(|n| plan.decide(label, method, n)).collect()
    }

    #[test]
    fn the_same_seed_replays_the_same_faults() {
        let plan = Plan::uniform(42, 0.2);
        assert_eq!(faults(&plan, "worker-a", "Commit", 500), faults(&plan.clone(), "worker-a", "Commit", 500));
    }

    #[test]
    fn another_seed_label_or_method_draws_differently() {
        let plan = Plan::uniform(42, 0.2);
        let base = faults(&plan, "worker-a", "Commit", 500);
        assert_ne!(base, faults(&Plan::uniform(43, 0.2), "worker-a", "Commit", 500));
        assert_ne!(base, faults(&plan, "worker-b", "Commit", 500));
        assert_ne!(base, faults(&plan, "worker-a", "RunQuery", 500));
    }

    #[test]
    fn the_rate_is_the_fraction_of_faulted_calls() {
        for rate in [0.0, 0.05, 0.5, 1.0] {
            let plan = Plan::uniform(7, rate);
            let faulted = faults(&plan, "p", "Commit", 20_000).iter().filter(|f| f.is_some()).count();
            let observed = faulted as f64 / 20_000.0;
            assert!((observed - rate).abs() < 0.01, "rate {rate}: observed {observed}");
        }
    }

    #[test]
    fn a_method_rate_overrides_the_default() {
        let plan = Plan::uniform(7, 0.5).with_rate("StreamingPull", 0.0);
        assert!(faults(&plan, "p", "StreamingPull", 1000).iter().all(Option::is_none));
        assert!(faults(&plan, "p", "Publish", 1000).iter().any(Option::is_some));
    }

    #[test]
    fn every_weighted_kind_is_drawn_and_no_other() {
        let plan = Plan::uniform(9, 1.0).with_weight(FaultKind::Latency, 0);
        let drawn: std::collections::BTreeSet<FaultKind> =
            faults(&plan, "p", "Commit", 2000).into_iter().flatten().map(|f| f.kind).collect();
        let expected: std::collections::BTreeSet<FaultKind> =
            FaultKind::ALL.into_iter().filter(|k| *k != FaultKind::Latency).collect();
        assert_eq!(drawn, expected);
    }

    #[test]
    fn latency_stays_in_its_range() {
        let mut plan = Plan::uniform(3, 1.0);
        plan.weights = [(FaultKind::Latency, 1)].into();
        plan.latency = (Duration::from_millis(100), Duration::from_millis(300));
        for fault in faults(&plan, "p", "Commit", 1000).into_iter().flatten() {
            assert!((100..=300).contains(&fault.delay.as_millis()), "{fault:?}");
        }
    }

    #[test]
    fn no_weights_means_no_fault() {
        let mut plan = Plan::uniform(3, 1.0);
        plan.weights.clear();
        assert!(faults(&plan, "p", "Commit", 100).iter().all(Option::is_none));
    }

    #[test]
    fn a_rule_matches_method_label_and_body() {
        let rule = Rule::new("Commit", Fault::new(FaultKind::LostAnswer)).body_contains(&["seal", "RUNNING"]);
        assert!(rule.applies("c", "Commit", Some(b"..seal..RUNNING..")));
        assert!(!rule.applies("c", "Commit", Some(b"..seal..")), "every needle must be present");
        assert!(!rule.applies("c", "Commit", None), "a matcher needs a body");
        assert!(!rule.applies("c", "BatchWrite", Some(b"seal RUNNING")));
        let labelled = Rule::new("Commit", Fault::new(FaultKind::Internal)).from_label("worker-a");
        assert!(labelled.applies("worker-a", "Commit", None));
        assert!(!labelled.applies("worker-b", "Commit", None));
        assert!(!labelled.clone().times(0).applies("worker-a", "Commit", None), "a spent rule is disarmed");
    }

    #[test]
    fn status_codes_are_grpcs() {
        assert_eq!(FaultKind::Unavailable.grpc_status(), Some(14));
        assert_eq!(FaultKind::LostAnswer.grpc_status(), Some(14));
        assert_eq!(FaultKind::Internal.grpc_status(), Some(13));
        assert_eq!(FaultKind::DeadlineExceeded.grpc_status(), Some(4));
        assert_eq!(FaultKind::ResourceExhausted.grpc_status(), Some(8));
        assert_eq!(FaultKind::Latency.grpc_status(), None);
        assert!(FaultKind::LostAnswer.forwards() && !FaultKind::Unavailable.forwards());
    }
}
