//! Test harness for integration tests against the real emulators.
//!
//! The emulators are started by `make test` (or `make emulators`), which exports `PUBSUB_EMULATOR_HOST`
//! and `FIRESTORE_EMULATOR_HOST`. Each test gets its own project id, so tests share the emulators
//! without seeing each other's topics, subscriptions or documents.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod fault_fleet;
pub mod fleet;
pub mod harness;
pub mod nba;
pub mod ops;
pub mod test_domain;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use google_cloud_pubsub::model::Message;
use grpc_faults::{FaultProxy, Plan};
use props_pipeline::config::{GcpSettings, SubscriptionPolicy, TopicNames};
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::setup::{SetupReport, ensure_topology};
use props_pipeline::topology::Topology;
use rand::Rng;

/// How often [`poll_until`] (and so [`wait_for`]) looks again.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// `check`'s first `Some`, asked every 250 ms; `None` once `within` passed (the caller says what that
/// means: a test that reports what it saw, or takes whatever is there).
pub async fn poll_until<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `check`'s first `Some`, asked every 250 ms; fails the test with `what` once `within` passed.
pub async fn wait_for<T>(what: &str, within: Duration, check: impl AsyncFnMut() -> Option<T>) -> T {
    poll_until(within, check).await.unwrap_or_else(|| panic!("{what} did not happen within {within:?}"))
}

/// A received message, as the tests look at it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub data: Bytes,
    pub attributes: HashMap<String, String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The `props-pipeline` binary cargo built for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_props-pipeline");

/// The real binary with stdin closed (no subcommand reads it) and the test process's environment:
/// for a test that sets the project and emulators itself, or none. With a [`TestEnv`], use
/// [`TestEnv::binary`]. A `tokio::process::Command` is `.into()` away.
pub fn binary() -> Command {
    let mut command = Command::new(BINARY);
    command.stdin(Stdio::null());
    command
}

fn emulator_host(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `make test`, or `make emulators` and `set -a; . .emulators/env`")
    })
}

/// A project of its own on the shared emulators.
pub struct TestEnv {
    pub gcp: GcpSettings,
    pub topics: TopicNames,
    pub topology: Topology,
    pub pubsub: PubSub,
}

impl TestEnv {
    /// A fresh project whose id starts with `tag` (any characters; only the id-safe ones are kept).
    pub async fn new(tag: &str) -> Self {
        let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect::<String>().to_lowercase();
        let project = format!("t-{tag}-{:08x}", rand::rng().random::<u32>());
        let gcp = GcpSettings::new(
            project,
            Some(emulator_host("PUBSUB_EMULATOR_HOST")),
            Some(emulator_host("FIRESTORE_EMULATOR_HOST")),
        );
        gcp.validate().expect("test project id is valid");
        let pubsub = PubSub::connect(&gcp).await.expect("connect to the Pub/Sub emulator");
        let topics = TopicNames::default();
        let topology = Topology::new(&topics);
        Self { gcp, topics, topology, pubsub }
    }

    /// Runs `setup` with `policy` and returns its report.
    pub async fn setup(&self, policy: &SubscriptionPolicy) -> SetupReport {
        ensure_topology(&self.pubsub, &self.topology, policy).await.expect("setup against the emulator")
    }

    /// Publishes `data` with `attributes` to `topic` and returns the message id.
    pub async fn publish(&self, topic: &str, data: impl Into<Bytes>, attributes: &[(&str, &str)]) -> String {
        let message = Message::new()
            .set_data(data.into())
            .set_attributes(attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.pubsub.publish(topic, message).await.expect("publish to the emulator")
    }

    /// Pulls and acks messages from `subscription` until `count` arrived or `within` passed.
    pub async fn pull(&self, subscription: &str, count: usize, within: Duration) -> Vec<Received> {
        let path = self.gcp.subscription_path(subscription);
        let mut stream = self.pubsub.subscriber.subscribe(path).build();
        let mut received = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while received.len() < count {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok((message, ack)))) => {
                    ack.ack();
                    received.push(Received {
                        message_id: message.message_id,
                        data: message.data,
                        attributes: message.attributes,
                    });
                }
                Ok(Some(Err(error))) => panic!("pulling {subscription}: {error}"),
                Ok(None) | Err(_) => break,
            }
        }
        stream.shutdown_token().shutdown().await;
        received
    }

    /// A plain subscription (no dead-letter policy) on `topic`, for a test to read a topic's traffic.
    pub async fn create_subscription(&self, name: &str, topic: &str) -> String {
        self.pubsub
            .subscription_admin
            .create_subscription()
            .set_name(self.gcp.subscription_path(name))
            .set_topic(self.gcp.topic_path(topic))
            .set_ack_deadline_seconds(10)
            .send()
            .await
            .expect("create a subscription");
        name.to_string()
    }

    /// Clears the retry policy (exponential redelivery backoff) of every pipeline and dead-letter
    /// subscription, so
    /// Pub/Sub redelivers at once. Only for tests that kill processes: the Pub/Sub emulator (0.8.20)
    /// withholds, for minutes, messages it handed to a stream that died when the subscription has a
    /// retry policy; without one (dead-letter policy kept) it redelivers them after the ack deadline,
    /// as Pub/Sub does. Measured here: with the policy, messages handed to a SIGKILLed consumer were
    /// still withheld after 81 s; without it, all came back to the live consumer within 20 s.
    pub async fn clear_retry_policies(&self) {
        use props_pipeline::topology::ChannelKind;
        let channels = ChannelKind::ALL.map(|kind| self.topology.channel(kind).clone());
        for subscription in channels.iter().flat_map(|c| [&c.subscription, &c.dead_letter_subscription]) {
            let name = self.gcp.subscription_path(subscription);
            self.pubsub
                .subscription_admin
                .update_subscription()
                .set_subscription(google_cloud_pubsub::model::Subscription::new().set_name(name))
                .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["retry_policy"]))
                .send()
                .await
                .expect("clear a subscription's retry policy");
        }
    }

    /// A Firestore handle on this test's own project (an empty database).
    pub async fn firestore(&self) -> firestore::FirestoreDb {
        props_pipeline::gcp::firestore::connect(&self.gcp).await.expect("connect to the Firestore emulator")
    }

    /// A Firestore handle on this test's project that sends its requests to `host` (a fault injector's
    /// listener, say) instead of the emulator. firestore-rs reads `FIRESTORE_EMULATOR_HOST` from the
    /// environment, which is the process's; an explicit API URL overrides it for one handle.
    pub async fn firestore_at(&self, host: &str) -> firestore::FirestoreDb {
        let mut options = firestore::FirestoreDbOptions::new(self.gcp.project.clone());
        options.firebase_api_url = Some(format!("http://{host}"));
        firestore::FirestoreDb::with_options(options).await.expect("connect to a Firestore endpoint")
    }

    /// A Firestore handle on this test's project through a new listener (named `label`) of `proxy`.
    pub async fn firestore_through(&self, proxy: &FaultProxy, label: &str) -> firestore::FirestoreDb {
        let address = proxy.listen(label).await.expect("a proxy listener");
        self.firestore_at(&address.to_string()).await
    }

    /// The real binary (see [`binary`]) on this test's project and emulators; the caller adds the
    /// arguments and may override any variable.
    pub fn binary(&self) -> Command {
        let mut command = binary();
        command.envs(self.binary_env());
        command
    }

    /// Environment for running the real binary against this project.
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLOUD_PROJECT", self.gcp.project.clone()),
            ("PUBSUB_EMULATOR_HOST", self.gcp.pubsub_emulator_host.clone().unwrap_or_default()),
            ("FIRESTORE_EMULATOR_HOST", self.gcp.firestore_emulator_host.clone().unwrap_or_default()),
        ]
    }
}

/// The gRPC fault injector in front of the Firestore emulator, passing everything through until the
/// test adds a rule (or only counting the requests).
pub fn firestore_proxy() -> FaultProxy {
    FaultProxy::new(&emulator_host("FIRESTORE_EMULATOR_HOST"), Plan::none())
}

/// The requests `proxy` passed on so far, by gRPC method (all listeners together).
pub fn requests_by_method(proxy: &FaultProxy) -> BTreeMap<String, u64> {
    let mut by_method = BTreeMap::new();
    for ((_, method), n) in proxy.calls() {
        *by_method.entry(method).or_default() += n;
    }
    by_method
}

/// The requests by method since `before` (the counts the last call saw), which it then updates:
/// counting one phase of a test after another.
pub fn requests_since(proxy: &FaultProxy, before: &mut BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let now = requests_by_method(proxy);
    let delta = now.iter().map(|(method, n)| (method.clone(), n - before.get(method).unwrap_or(&0)));
    let delta = delta.filter(|(_, n)| *n > 0).collect();
    *before = now;
    delta
}

/// A subscription policy that makes redelivery fast, for tests that exercise retries.
pub fn fast_retry_policy(max_delivery_attempts: u64) -> SubscriptionPolicy {
    SubscriptionPolicy { ack_deadline_secs: 60, max_delivery_attempts, min_backoff_secs: 0, max_backoff_secs: 1 }
}
