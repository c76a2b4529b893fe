//! The shared consumer runtime against the real Pub/Sub emulator.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestEnv, fast_retry_policy, poll_until};
use props_pipeline::config::ConsumerSettings;
use props_pipeline::consumer::{
    Consumer, ConsumerTarget, Delivery, MessageHandler, ORIGINAL_MESSAGE_ID, Outcome, REJECT_REASON,
    SOURCE_SUBSCRIPTION, StatsSnapshot,
};
use props_pipeline::topology::Channel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every call a handler saw: (data, delivery attempt).
type Calls = Arc<Mutex<Vec<(String, Option<i32>)>>>;

struct AlwaysRetry(Calls);
impl MessageHandler for AlwaysRetry {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.0.lock().unwrap().push((String::from_utf8_lossy(&delivery.data).into(), delivery.delivery_attempt));
        Outcome::Retry("transient failure (test)".into())
    }
}

struct AlwaysReject(Calls);
impl MessageHandler for AlwaysReject {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.0.lock().unwrap().push((String::from_utf8_lossy(&delivery.data).into(), delivery.delivery_attempt));
        Outcome::Reject("not a valid trigger (test)".into())
    }
}

/// Fails a random quarter of the deliveries transiently; records the messages it handled.
struct Flaky {
    rng: Mutex<StdRng>,
    handled: Mutex<HashSet<String>>,
}
impl MessageHandler for Flaky {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        // Yield like a real handler's I/O would, so handlers overlap.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.rng.lock().unwrap().random_bool(0.25) {
            return Outcome::Retry("random transient failure (test)".into());
        }
        self.handled.lock().unwrap().insert(String::from_utf8_lossy(&delivery.data).into());
        Outcome::Ack
    }
}

/// Holds every message far longer than the shutdown grace period.
struct Stuck(Arc<Mutex<HashSet<String>>>);
impl MessageHandler for Stuck {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.0.lock().unwrap().insert(String::from_utf8_lossy(&delivery.data).into());
        tokio::time::sleep(Duration::from_secs(300)).await;
        Outcome::Ack
    }
}

fn target(channel: &Channel) -> ConsumerTarget {
    ConsumerTarget {
        subscription: channel.subscription.clone(),
        dead_letter_topic: Some(channel.dead_letter_topic.clone()),
    }
}

fn start<H: MessageHandler>(
    env: &TestEnv,
    channel: &Channel,
    settings: ConsumerSettings,
    handler: H,
) -> (CancellationToken, JoinHandle<StatsSnapshot>) {
    let consumer = Consumer::new(env.pubsub.clone(), target(channel), settings, handler);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { consumer.run(token).await.expect("consumer runs") });
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_message_is_redelivered_then_dead_lettered_after_max_attempts() {
    let env = TestEnv::new("retry-dlq").await;
    env.setup(&fast_retry_policy(5)).await;
    let channel = env.topology.channels()[1].clone();
    env.publish(&channel.topic, "poison", &[("kind", "test")]).await;

    let calls = Calls::default();
    let (shutdown, task) = start(&env, &channel, ConsumerSettings::default(), AlwaysRetry(Arc::clone(&calls)));
    let dead = env.pull(&channel.dead_letter_subscription, 1, Duration::from_secs(60)).await;
    shutdown.cancel();
    let stats = task.await.unwrap();

    assert_eq!(dead.len(), 1, "the message must reach the dead-letter topic");
    assert_eq!(dead[0].text(), "poison");
    assert_eq!(dead[0].attributes.get("kind").map(String::as_str), Some("test"));
    let attempts: Vec<_> =
        calls.lock().unwrap().iter().map(|(_, attempt)| attempt.expect("attempt is reported")).collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5], "one delivery per attempt, growing, up to the maximum");
    assert_eq!(stats.retried, 5);
    assert_eq!(stats.acked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_dead_lettered_at_once_with_its_reason() {
    let env = TestEnv::new("reject").await;
    env.setup(&fast_retry_policy(5)).await;
    let channel = env.topology.channels()[0].clone();
    let original_id = env.publish(&channel.topic, "{not json", &[("origin", "operator")]).await;

    let calls = Calls::default();
    let (shutdown, task) = start(&env, &channel, ConsumerSettings::default(), AlwaysReject(Arc::clone(&calls)));
    let dead = env.pull(&channel.dead_letter_subscription, 1, Duration::from_secs(30)).await;
    // Give a wrongly nacked message time to come back before counting handler calls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let stats = task.await.unwrap();

    assert_eq!(dead.len(), 1);
    let copy = &dead[0];
    assert_eq!(copy.text(), "{not json");
    assert_eq!(copy.attributes.get(REJECT_REASON).map(String::as_str), Some("not a valid trigger (test)"));
    assert_eq!(copy.attributes.get(SOURCE_SUBSCRIPTION), Some(&channel.subscription));
    assert_eq!(copy.attributes.get(ORIGINAL_MESSAGE_ID), Some(&original_id));
    assert_eq!(copy.attributes.get("origin").map(String::as_str), Some("operator"), "original attributes are kept");
    assert_eq!(
        *calls.lock().unwrap(),
        [("{not json".to_string(), Some(1))],
        "rejected on the first delivery, never retried"
    );
    assert_eq!((stats.rejected, stats.retried, stats.dead_letter_failures), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_with_transient_failures_are_all_handled() {
    const COUNT: usize = 2000;
    let env = TestEnv::new("two-thousand").await;
    // 25% failures with 20 attempts: the chance that any message exhausts them is about 2000 * 0.25^20.
    env.setup(&fast_retry_policy(20)).await;
    let channel = env.topology.channels()[1].clone();
    let publisher = env.pubsub.publisher(&channel.topic);
    let sends: Vec<_> = (0..COUNT)
        .map(|i| publisher.publish(google_cloud_pubsub::model::Message::new().set_data(format!("m{i}"))))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.expect("publish");
    }

    let handler = Arc::new(Flaky { rng: Mutex::new(StdRng::seed_from_u64(7)), handled: Mutex::default() });
    let settings = ConsumerSettings { concurrency: 8, ..Default::default() };
    let (shutdown, task) = start(&env, &channel, settings, SharedFlaky(Arc::clone(&handler)));
    poll_until(Duration::from_secs(240), async || (handler.handled.lock().unwrap().len() >= COUNT).then_some(())).await;
    shutdown.cancel();
    let stats = task.await.unwrap();

    let handled = handler.handled.lock().unwrap().clone();
    let missing: Vec<_> = (0..COUNT).map(|i| format!("m{i}")).filter(|m| !handled.contains(m)).take(10).collect();
    assert!(missing.is_empty(), "{} of {COUNT} handled; missing e.g. {missing:?}", handled.len());
    assert!(stats.retried > 0, "the handler failed some deliveries: {stats:?}");
    assert!(stats.acked >= COUNT as u64, "every message acked: {stats:?}");
    let dead = env.pull(&channel.dead_letter_subscription, 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "nothing may be dead-lettered: {dead:?}");
    let leftover = env.pull(&channel.subscription, 1, Duration::from_secs(3)).await;
    assert!(leftover.is_empty(), "acked messages must not come back: {leftover:?}");
}

/// `Flaky` behind an `Arc`, so the test can read what it handled while the consumer owns it.
struct SharedFlaky(Arc<Flaky>);
impl MessageHandler for SharedFlaky {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.0.handle(delivery).await
    }
}

/// The in-process half of the drain: handlers slower than the grace period are abandoned (their handles
/// dropped, which nacks) and `run` returns promptly. That the abandoned messages come back is shown
/// with a real process in `consumer_sigterm.rs`: the emulator mishandles a stream the client resets
/// while its process lives on (see docs/ARCHITECTURE.md), so an in-process check would test the
/// emulator's bug, not this code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_handlers_still_running_after_the_grace_period() {
    let env = TestEnv::new("grace").await;
    env.setup(&fast_retry_policy(5)).await;
    let channel = env.topology.channels()[1].clone();
    for i in 0..3 {
        env.publish(&channel.topic, format!("slow{i}"), &[]).await;
    }
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let settings = ConsumerSettings { concurrency: 4, shutdown_grace_secs: 1, ..Default::default() };
    let (shutdown, task) = start(&env, &channel, settings, Stuck(Arc::clone(&seen)));
    poll_until(Duration::from_secs(30), async || (seen.lock().unwrap().len() >= 3).then_some(())).await;
    assert_eq!(seen.lock().unwrap().len(), 3, "all three messages reached the handler");

    let stopping = tokio::time::Instant::now();
    shutdown.cancel();
    let stats = task.await.unwrap();
    // 1 s of grace plus the ack flush, far below the handlers' 300 s.
    assert!(stopping.elapsed() < Duration::from_secs(12), "drain took {:?}", stopping.elapsed());
    assert_eq!(stats.abandoned_on_shutdown, 3, "{stats:?}");
    assert_eq!(stats.acked, 0, "{stats:?}");
}
