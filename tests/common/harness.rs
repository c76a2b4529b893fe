//! Engine-test harness: a project on the emulators with the test domain, and the engine's roles run
//! as consumers in this process.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use grpc_faults::FaultProxy;
use props_pipeline::batch::dead_letters::DeadLetterRole;
use props_pipeline::batch::documents::{BatchHeader, batch_id_for};
use props_pipeline::batch::domain::ItemHandler;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::roles::{CompletionRole, TriggerRole, WorkerRole};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::{BatchStore, FinishRead};
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::batch::sweeper::Sweeper;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::consumer::{Consumer, ConsumerTarget, MessageHandler};
use props_pipeline::messages::{
    CompletionMessage, GameDate, ReadyMessage, RequestMessage, TriggerMessage, TriggerMode,
};
use props_pipeline::runner::{Role, Roles};
use props_pipeline::topology::{Channel, ChannelKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::test_domain::{SkippingWorker, TestDomain, TestWorker};
use super::{TestEnv, fast_retry_policy, wait_for};

pub const DATE: &str = "2024-04-22";

pub fn date() -> GameDate {
    DATE.parse().unwrap()
}

pub fn items(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("player{i:04}")).collect()
}

/// Never runs (the exporter role is not started in these tests); it only fills the runner's slot.
pub struct NoExporter;
impl MessageHandler for NoExporter {
    async fn handle(&self, _: &props_pipeline::consumer::Delivery) -> props_pipeline::consumer::Outcome {
        props_pipeline::consumer::Outcome::Retry("no exporter in engine tests".into())
    }
}

pub struct Harness {
    pub env: TestEnv,
    pub store: BatchStore,
    pub domain: Arc<TestDomain>,
    shutdown: CancellationToken,
    consumers: Vec<JoinHandle<()>>,
}

impl Harness {
    pub async fn new(tag: &str) -> Self {
        Self::with_policy(tag, &fast_retry_policy(20)).await
    }

    /// A harness whose subscriptions dead-letter after `policy.max_delivery_attempts`.
    pub async fn with_policy(tag: &str, policy: &props_pipeline::config::SubscriptionPolicy) -> Self {
        let env = TestEnv::new(tag).await;
        env.setup(policy).await;
        let store = BatchStore::new(env.firestore().await);
        let domain = Arc::new(TestDomain::new(store.clone()));
        Self { env, store, domain, shutdown: CancellationToken::new(), consumers: Vec::new() }
    }

    pub fn engine(&self, settings: EngineSettings) -> Arc<BatchEngine<TestDomain>> {
        Arc::new(BatchEngine::new(
            self.store.clone(),
            self.env.pubsub.clone(),
            self.env.topics.clone(),
            Arc::clone(&self.domain),
            settings,
        ))
    }

    /// An engine like [`Self::engine`] whose Firestore requests go through a new listener (named
    /// `label`) of `proxy`.
    pub async fn engine_through(
        &self,
        proxy: &FaultProxy,
        label: &str,
        settings: EngineSettings,
    ) -> Arc<BatchEngine<TestDomain>> {
        let store = BatchStore::new(self.env.firestore_through(proxy, label).await);
        Arc::new(BatchEngine::new(
            store,
            self.env.pubsub.clone(),
            self.env.topics.clone(),
            Arc::clone(&self.domain),
            settings,
        ))
    }

    /// A batch of `count` items for [`DATE`], started on `engine` by trigger message "t1": its header.
    pub async fn start_batch(&self, engine: &BatchEngine<TestDomain>, count: usize) -> BatchHeader {
        self.domain.set_items(date(), items(count));
        engine.start(&trigger(TriggerMode::Start), "t1").await.expect("start the batch");
        self.store.header(&batch_id_for(DATE, "t1")).await.expect("read header").expect("the batch exists")
    }

    pub fn channel(&self, kind: ChannelKind) -> Channel {
        self.env.topology.channel(kind).clone()
    }

    pub fn consume<H: MessageHandler>(&mut self, kind: ChannelKind, handler: H) {
        let channel = self.channel(kind);
        let target =
            ConsumerTarget { subscription: channel.subscription, dead_letter_topic: Some(channel.dead_letter_topic) };
        let settings = ConsumerSettings { concurrency: 16, shutdown_grace_secs: 5, ..Default::default() };
        let consumer = Consumer::new(self.env.pubsub.clone(), target, settings, handler);
        let shutdown = self.shutdown.clone();
        self.consumers.push(tokio::spawn(async move {
            consumer.run(shutdown).await.expect("consumer runs");
        }));
    }

    /// Coordinator and worker through the same runner `props-pipeline run all` uses.
    pub fn run_all_roles(&mut self, engine: &Arc<BatchEngine<TestDomain>>) {
        let roles = Roles {
            pubsub: self.env.pubsub.clone(),
            topology: self.env.topology.clone(),
            consumer: ConsumerSettings { concurrency: 16, shutdown_grace_secs: 5, ..Default::default() },
            engine: Arc::clone(engine),
            item_handler: Arc::new(TestWorker { store: self.store.clone(), failing: HashSet::new() }),
            // The test domain exports nothing; the ready events stay for the test to read.
            exporter: Arc::new(NoExporter),
            completion_topic: self.env.topics.completion_topic.clone(),
            sweep: Default::default(),
        };
        let shutdown = self.shutdown.clone();
        self.consumers.push(tokio::spawn(async move {
            let stats = roles.run(&[Role::Coordinator, Role::Worker], shutdown).await.expect("roles run");
            assert_eq!(stats.len(), 3, "trigger, completion and request consumers ran");
        }));
    }

    pub fn run_coordinator(&mut self, engine: &Arc<BatchEngine<TestDomain>>) {
        self.consume(ChannelKind::Trigger, TriggerRole(Arc::clone(engine)));
        self.consume(ChannelKind::Completion, CompletionRole(Arc::clone(engine)));
    }

    /// The worker role around `handler`, recording into this harness's store and announcing on its
    /// completion topic, as `run worker` builds it.
    pub fn worker_role<H: ItemHandler>(&self, handler: H) -> WorkerRole<H> {
        let topic = self.env.topics.completion_topic.clone();
        WorkerRole::new(Arc::new(handler), self.store.clone(), self.env.pubsub.clone(), topic)
    }

    pub fn run_worker(&mut self, failing: &[&str]) {
        let worker = TestWorker { store: self.store.clone(), failing: failing.iter().map(|s| s.to_string()).collect() };
        let role = self.worker_role(worker);
        self.consume(ChannelKind::Request, role);
    }

    /// Like [`Self::run_worker`], and the items in `skipping` are skipped with a reason.
    pub fn run_worker_skipping(&mut self, failing: &[&str], skipping: &[&str]) {
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        let worker = SkippingWorker {
            inner: TestWorker { store: self.store.clone(), failing: set(failing) },
            skipping: set(skipping),
        };
        let role = self.worker_role(worker);
        self.consume(ChannelKind::Request, role);
    }

    /// The dead-letter role on every dead-letter subscription, as `run dead-letter` runs it.
    pub fn run_dead_letter(&mut self, engine: &Arc<BatchEngine<TestDomain>>) {
        for kind in ChannelKind::ALL {
            let target =
                ConsumerTarget { subscription: self.channel(kind).dead_letter_subscription, dead_letter_topic: None };
            let settings = ConsumerSettings { concurrency: 8, shutdown_grace_secs: 5, ..Default::default() };
            let role = DeadLetterRole { engine: Arc::clone(engine), channel: kind };
            let consumer = Consumer::new(self.env.pubsub.clone(), target, settings, role);
            let shutdown = self.shutdown.clone();
            self.consumers.push(tokio::spawn(async move {
                consumer.run(shutdown).await.expect("dead-letter consumer runs");
            }));
        }
    }

    pub fn run_sweeper(&mut self, engine: &Arc<BatchEngine<TestDomain>>, settings: SweepSettings) {
        let sweeper = Sweeper::new(Arc::clone(engine), settings);
        self.consumers.push(tokio::spawn(sweeper.run(self.shutdown.clone())));
    }

    /// Records a completion for every item of `batch_id`, then finalizes it as instance "dead" with a
    /// `lease`, which dies before publishing the ready event: a COMPLETE batch never announced.
    pub async fn complete_without_announcing(&self, batch_id: &str, items: &[String], lease: Duration) {
        let header = self.store.header(batch_id).await.unwrap().unwrap();
        for item in items {
            self.store.record_completion(&completion(&header, item), header.counter_shards).await.unwrap();
        }
        let totals = self.store.totals(batch_id).await.unwrap();
        self.store.claim_finalize(batch_id, "dead", lease, totals).await.unwrap();
        self.store.finish(batch_id, "dead", totals, None, FinishRead::default()).await.unwrap();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for consumer in self.consumers {
            consumer.await.expect("consumer task");
        }
    }

    pub async fn publish_trigger(&self, mode: TriggerMode) -> String {
        let trigger = TriggerMessage::new(DATE, mode, "test".into(), None, String::new()).unwrap();
        let message_id = self.env.publish(&self.env.topics.trigger_topic, trigger.to_json(), &[]).await;
        batch_id_for(DATE, &message_id)
    }

    pub async fn wait_for_final(&self, batch_id: &str, within: Duration) -> BatchHeader {
        wait_for(&format!("batch {batch_id} final (and announced if complete)"), within, async || {
            let header = self.store.header(batch_id).await.expect("read header")?;
            (header.state.is_final() && (header.state != BatchState::Complete || header.ready_message_id.is_some()))
                .then_some(header)
        })
        .await
    }

    pub async fn ready_events(&self, within: Duration) -> Vec<ReadyMessage> {
        let channel = self.channel(ChannelKind::Ready);
        let received = self.env.pull(&channel.subscription, usize::MAX, within).await;
        received.iter().map(|m| ReadyMessage::parse(&m.data).expect("valid ready message")).collect()
    }
}

pub fn trigger(mode: TriggerMode) -> TriggerMessage {
    TriggerMessage::new(DATE, mode, "test".into(), None, String::new()).unwrap()
}

pub fn request(batch: &BatchHeader, item: &str) -> RequestMessage {
    RequestMessage {
        batch_id: batch.batch_id.clone(),
        generation: batch.generation,
        game_date: date(),
        item: item.to_string(),
        correlation_id: String::new(),
    }
}

/// A completion of the older shape (the coordinator records it), as a worker that staged its result
/// itself published it.
pub fn completion(batch: &BatchHeader, item: &str) -> CompletionMessage {
    CompletionMessage::ok(&request(batch, item), 1)
}
