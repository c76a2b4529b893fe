//! The batch engine end to end against the real emulators, with a trivial test domain.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::test_domain::{Prediction, TestDomain, TestWorker, consolidation_calls, predictions};
use common::{TestEnv, fast_retry_policy};
use props_pipeline::batch::documents::{BatchHeader, ItemStatus, batch_id_for};
use props_pipeline::batch::engine::{BatchEngine, CompletionReport, EngineError, FinalizeReport, TriggerReport};
use props_pipeline::batch::roles::{CompletionRole, TriggerRole, WorkerRole};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::{BatchState, ClaimDecision};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::consumer::{Consumer, ConsumerTarget, MessageHandler};
use props_pipeline::messages::{
    CompletionMessage, GameDate, ReadyMessage, RequestMessage, TriggerMessage, TriggerMode,
};
use props_pipeline::runner::{Role, Roles};
use props_pipeline::topology::{Channel, ChannelKind};
use rand::seq::SliceRandom;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DATE: &str = "2024-04-22";

fn date() -> GameDate {
    DATE.parse().unwrap()
}

fn items(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("player{i:04}")).collect()
}

/// Never runs (the exporter role is not started in these tests); it only fills the runner's slot.
struct NoExporter;
impl MessageHandler for NoExporter {
    async fn handle(&self, _: &props_pipeline::consumer::Delivery) -> props_pipeline::consumer::Outcome {
        props_pipeline::consumer::Outcome::Retry("no exporter in engine tests".into())
    }
}

struct Harness {
    env: TestEnv,
    store: BatchStore,
    domain: Arc<TestDomain>,
    shutdown: CancellationToken,
    consumers: Vec<JoinHandle<()>>,
}

impl Harness {
    async fn new(tag: &str) -> Self {
        let env = TestEnv::new(tag).await;
        env.setup(&fast_retry_policy(20)).await;
        let store = BatchStore::new(env.firestore().await);
        let domain = Arc::new(TestDomain::new(store.clone()));
        Self { env, store, domain, shutdown: CancellationToken::new(), consumers: Vec::new() }
    }

    fn engine(&self, settings: EngineSettings) -> Arc<BatchEngine<TestDomain>> {
        Arc::new(BatchEngine::new(
            self.store.clone(),
            self.env.pubsub.clone(),
            self.env.topics.clone(),
            Arc::clone(&self.domain),
            settings,
        ))
    }

    fn channel(&self, kind: ChannelKind) -> Channel {
        self.env.topology.channel(kind).clone()
    }

    fn consume<H: MessageHandler>(&mut self, kind: ChannelKind, handler: H) {
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
    fn run_all_roles(&mut self, engine: &Arc<BatchEngine<TestDomain>>) {
        let roles = Roles {
            pubsub: self.env.pubsub.clone(),
            topology: self.env.topology.clone(),
            consumer: ConsumerSettings { concurrency: 16, shutdown_grace_secs: 5, ..Default::default() },
            engine: Arc::clone(engine),
            item_handler: Arc::new(TestWorker { store: self.store.clone(), failing: HashSet::new() }),
            // The test domain exports nothing; the ready events stay for the test to read.
            exporter: Arc::new(NoExporter),
            completion_topic: self.env.topics.completion_topic.clone(),
        };
        let shutdown = self.shutdown.clone();
        self.consumers.push(tokio::spawn(async move {
            let stats = roles.run(&[Role::Coordinator, Role::Worker], shutdown).await.expect("roles run");
            assert_eq!(stats.len(), 3, "trigger, completion and request consumers ran");
        }));
    }

    fn run_coordinator(&mut self, engine: &Arc<BatchEngine<TestDomain>>) {
        self.consume(ChannelKind::Trigger, TriggerRole(Arc::clone(engine)));
        self.consume(ChannelKind::Completion, CompletionRole(Arc::clone(engine)));
    }

    fn run_worker(&mut self, failing: &[&str]) {
        let worker = TestWorker { store: self.store.clone(), failing: failing.iter().map(|s| s.to_string()).collect() };
        let role = WorkerRole::new(Arc::new(worker), self.env.pubsub.clone(), self.env.topics.completion_topic.clone());
        self.consume(ChannelKind::Request, role);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for consumer in self.consumers {
            consumer.await.expect("consumer task");
        }
    }

    async fn publish_trigger(&self, mode: TriggerMode) -> String {
        let trigger = TriggerMessage::new(DATE, mode, "test".into(), None, String::new()).unwrap();
        let message_id = self.env.publish(&self.env.topics.trigger_topic, trigger.to_json(), &[]).await;
        batch_id_for(DATE, &message_id)
    }

    async fn wait_for_final(&self, batch_id: &str, within: Duration) -> BatchHeader {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(header) = self.store.header(batch_id).await.expect("read header")
                && header.state.is_final()
                && (header.state != BatchState::Complete || header.ready_message_id.is_some())
            {
                return header;
            }
            assert!(tokio::time::Instant::now() < deadline, "batch {batch_id} not final within {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ready_events(&self, within: Duration) -> Vec<ReadyMessage> {
        let channel = self.channel(ChannelKind::Ready);
        let received = self.env.pull(&channel.subscription, usize::MAX, within).await;
        received.iter().map(|m| ReadyMessage::parse(&m.data).expect("valid ready message")).collect()
    }
}

fn trigger(mode: TriggerMode) -> TriggerMessage {
    TriggerMessage::new(DATE, mode, "test".into(), None, String::new()).unwrap()
}

fn completion(batch: &BatchHeader, item: &str) -> CompletionMessage {
    let request = RequestMessage {
        batch_id: batch.batch_id.clone(),
        generation: batch.generation,
        game_date: date(),
        player_lookup: item.to_string(),
        correlation_id: String::new(),
    };
    CompletionMessage::ok(&request, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_item_batch_completes_with_one_finalize_and_constant_header_writes() {
    let mut harness = Harness::new("engine-500").await;
    harness.domain.set_items(date(), items(500));
    let engine = harness.engine(EngineSettings::default());
    harness.run_all_roles(&engine);

    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(240)).await;
    let ready = harness.ready_events(Duration::from_secs(3)).await;
    let db = harness.store.db().clone();
    let store = harness.store.clone();
    harness.stop().await;

    assert_eq!(header.state, BatchState::Complete);
    assert_eq!((header.expected_count, header.done_count, header.failed_count), (500, Some(500), Some(0)));
    let staged: Vec<(String, common::test_domain::Staged)> = store.staged_results(&batch_id).await.unwrap();
    assert_eq!(staged.len(), 500, "one staged result per item");
    let current: Vec<Prediction> = predictions(&db, DATE).await.unwrap();
    assert_eq!(current.len(), 500);
    assert!(current.iter().all(|p| p.batch_id == batch_id && p.superseded_by.is_none()));
    assert_eq!(consolidation_calls(&db, &batch_id).await, 1, "exactly one finalize");
    assert_eq!(ready.len(), 1, "one ready event: {ready:?}");
    assert_eq!((ready[0].batch_id.as_str(), ready[0].predictions_count), (batch_id.as_str(), 500));
    // create, seal, claim, finish, ready: completions never write the header.
    assert!(header.header_writes <= 5, "header written {} times for 500 items", header.header_writes);
    let shards = store.shards(&batch_id).await.unwrap();
    assert_eq!(shards.iter().map(|s| s.done).sum::<u64>(), 500);
    assert!(shards.iter().filter(|s| s.done > 0).count() >= 4, "completions spread over shards: {shards:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_completion_three_times_shuffled_counts_once() {
    let mut harness = Harness::new("engine-dup").await;
    harness.domain.set_items(date(), items(60));
    let engine = harness.engine(EngineSettings::default());
    let TriggerReport::Started { batch_id, .. } = engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap()
    else {
        panic!("a new batch starts");
    };
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    for item in items(60) {
        harness.store.stage_result(&batch_id, &item, &common::test_domain::Staged { value: 1 }).await.unwrap();
    }
    let mut completions: Vec<_> =
        items(60).iter().flat_map(|i| std::iter::repeat_n(completion(&header, i), 3)).collect();
    completions.shuffle(&mut rand::rng());
    let topic = harness.env.topics.completion_topic.clone();
    for c in &completions {
        harness.env.publish(&topic, c.to_json(), &[]).await;
    }
    harness.consume(ChannelKind::Completion, CompletionRole(Arc::clone(&engine)));
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(120)).await;
    let ready = harness.ready_events(Duration::from_secs(3)).await;
    let db = harness.store.db().clone();
    let totals = harness.store.totals(&batch_id).await.unwrap();
    harness.stop().await;

    assert_eq!(header.state, BatchState::Complete);
    assert_eq!((totals.done, totals.failed, totals.predictions), (60, 0, 60), "each item counted once");
    assert_eq!(consolidation_calls(&db, &batch_id).await, 1);
    assert_eq!(ready.len(), 1, "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_duplicate_of_the_last_completion_changes_nothing() {
    let harness = Harness::new("engine-late").await;
    harness.domain.set_items(date(), items(3));
    let engine = harness.engine(EngineSettings::default());
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    for item in items(3) {
        engine.complete(&completion(&header, &item)).await.unwrap();
    }
    let done = harness.wait_for_final(&batch_id, Duration::from_secs(10)).await;
    assert_eq!(done.state, BatchState::Complete);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = engine.complete(&completion(&header, "player0002")).await.unwrap();
    assert_eq!(report, CompletionReport::Duplicate(FinalizeReport::AlreadyFinal(BatchState::Complete)));
    let after = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(after, done, "the header is untouched");
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 1);
    assert_eq!(harness.ready_events(Duration::from_secs(3)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_redelivered_after_a_crash_mid_fan_out_resumes_the_same_batch() {
    let mut harness = Harness::new("engine-resume").await;
    harness.domain.set_items(date(), items(40));
    let engine = harness.engine(EngineSettings::default());
    let trigger_message = trigger(TriggerMode::Start);

    // The first delivery got as far as creating the batch, its markers and half the requests.
    let spec = props_pipeline::batch::store::NewBatch {
        trigger: trigger_message.clone(),
        trigger_message_id: "t1".into(),
        correlation_id: "c1".into(),
        expected_count: 40,
        counter_shards: 8,
        tolerated_failed_fraction: 0.1,
        retention: Duration::from_secs(3600),
    };
    let props_pipeline::batch::store::BeginOutcome::Created { header, .. } =
        harness.store.begin_batch(&spec).await.unwrap()
    else {
        panic!("created");
    };
    harness.store.write_item_markers(&header.batch_id, &items(40)[..25]).await.unwrap();
    engine.publish_requests(&header, "c1", &items(40)[..20]).await.unwrap();
    harness.run_worker(&[]);
    harness.run_coordinator(&engine);
    // Let some of those 20 complete before the trigger comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done_before = loop {
        let done = harness.store.items_in(&header.batch_id, ItemStatus::Done).await.unwrap().len();
        if done >= 5 || tokio::time::Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(done_before >= 5, "workers completed some of the first requests");

    let report = engine.start(&trigger_message, "t1").await.unwrap();
    let TriggerReport::Resumed { batch_id, republished } = report else { panic!("resumed, got {report:?}") };
    assert_eq!(batch_id, header.batch_id);
    assert!(
        (20..=40 - done_before).contains(&republished),
        "only pending items are republished: {republished}, {done_before} were done"
    );
    let final_header = harness.wait_for_final(&batch_id, Duration::from_secs(120)).await;
    let store = harness.store.clone();
    harness.stop().await;

    assert_eq!(final_header.state, BatchState::Complete);
    assert_eq!(final_header.done_count, Some(40));
    assert_eq!(store.recent_batches(Some(DATE), 10).await.unwrap().len(), 1, "one batch for the date");
    assert!(store.items_in(&batch_id, ItemStatus::Pending).await.unwrap().is_empty());
    assert_eq!(store.items_in(&batch_id, ItemStatus::Done).await.unwrap().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_owner_dies_after_claiming_and_another_instance_finishes_after_the_lease() {
    let harness = Harness::new("engine-takeover").await;
    harness.domain.set_items(date(), items(5));
    let lease = EngineSettings { finalize_lease_secs: 3, instance_id: Some("b".into()), ..Default::default() };
    let engine_b = harness.engine(lease);
    engine_b.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    // Record every completion without finalizing, as if instance "a" were handling them.
    for item in items(5) {
        harness.store.record_completion(&completion(&header, &item), header.counter_shards).await.unwrap();
    }
    let totals = harness.store.totals(&batch_id).await.unwrap();
    let claim = harness.store.claim_finalize(&batch_id, "a", Duration::from_secs(3), totals).await.unwrap();
    assert_eq!(claim.decision, ClaimDecision::Claim);
    // "a" dies here.

    let early = engine_b.finalize_if_whole(&batch_id).await;
    assert!(matches!(early, Err(EngineError::ClaimHeld { ref owner, .. }) if owner == "a"), "{early:?}");
    assert!(early.unwrap_err().is_transient(), "a held claim makes the message retry");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = engine_b.finalize_if_whole(&batch_id).await.unwrap();
    assert_eq!(report, FinalizeReport::Finalized(BatchState::Complete));
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    let owner = header.finalize_claim.map(|c| c.owner).unwrap_or_default();
    assert!(owner.starts_with("b#"), "instance b holds the claim: {owner}");
    assert!(header.ready_message_id.is_some());
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_while_running_supersedes_the_old_batch_and_swaps_predictions() {
    let harness = Harness::new("engine-regen").await;
    let db = harness.store.db().clone();
    harness.domain.set_items(date(), items(6));
    let engine = harness.engine(EngineSettings::default());
    let complete_all = |batch: BatchHeader| {
        let engine = Arc::clone(&engine);
        let store = harness.store.clone();
        async move {
            for item in items(6) {
                store
                    .stage_result(&batch.batch_id, &item, &common::test_domain::Staged { value: batch.generation })
                    .await
                    .unwrap();
                engine.complete(&completion(&batch, &item)).await.unwrap();
            }
        }
    };

    // Generation 1 completes and becomes current.
    engine.start(&trigger(TriggerMode::Start), "g1").await.unwrap();
    let g1 = harness.store.header(&batch_id_for(DATE, "g1")).await.unwrap().unwrap();
    complete_all(g1.clone()).await;
    assert_eq!(harness.wait_for_final(&g1.batch_id, Duration::from_secs(10)).await.state, BatchState::Complete);

    // Generation 2 is running (half done) when generation 3 is requested.
    engine.start(&trigger(TriggerMode::RegenerateWithSupersede), "g2").await.unwrap();
    let g2 = harness.store.header(&batch_id_for(DATE, "g2")).await.unwrap().unwrap();
    assert_eq!(g2.generation, 2);
    for item in &items(6)[..3] {
        engine.complete(&completion(&g2, item)).await.unwrap();
    }
    let report = engine.start(&trigger(TriggerMode::RegenerateWithSupersede), "g3").await.unwrap();
    assert!(
        matches!(&report, TriggerReport::Started { generation: 3, superseded: Some(old), .. } if *old == g2.batch_id),
        "{report:?}"
    );
    assert_eq!(harness.store.header(&g2.batch_id).await.unwrap().unwrap().state, BatchState::Superseded);

    // Generation 2's late completions never consolidate it.
    for item in &items(6)[3..] {
        let report = engine.complete(&completion(&g2, item)).await.unwrap();
        assert!(
            matches!(report, CompletionReport::Recorded(FinalizeReport::AlreadyFinal(BatchState::Superseded))),
            "{report:?}"
        );
    }
    assert_eq!(consolidation_calls(&db, &g2.batch_id).await, 0);

    let g3 = harness.store.header(&batch_id_for(DATE, "g3")).await.unwrap().unwrap();
    complete_all(g3.clone()).await;
    assert_eq!(harness.wait_for_final(&g3.batch_id, Duration::from_secs(10)).await.state, BatchState::Complete);

    let all = predictions(&db, DATE).await.unwrap();
    let current: Vec<_> = all.iter().filter(|p| p.superseded_by.is_none()).collect();
    assert_eq!(current.len(), 6);
    assert!(current.iter().all(|p| p.generation == 3 && p.value == 3));
    let superseded: HashSet<_> =
        all.iter().filter(|p| p.superseded_by.is_some()).map(|p| (p.generation, p.superseded_by)).collect();
    assert_eq!(superseded, HashSet::from([(1, Some(3))]), "generation 1 is kept, marked superseded by 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_while_a_batch_is_active_is_a_no_op_unless_forced() {
    let harness = Harness::new("engine-noop").await;
    harness.domain.set_items(date(), items(2));
    let engine = harness.engine(EngineSettings::default());
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let again = engine.start(&trigger(TriggerMode::Start), "t2").await.unwrap();
    assert_eq!(again, TriggerReport::NoOpActiveBatch { active_batch_id: batch_id_for(DATE, "t1") });
    let forced =
        TriggerMessage::new(DATE, TriggerMode::Start, "force".into(), Some(r#"{"force":true}"#), String::new())
            .unwrap();
    let report = engine.start(&forced, "t3").await.unwrap();
    assert!(matches!(report, TriggerReport::Started { generation: 2, .. }), "{report:?}");
    assert_eq!(harness.store.recent_batches(Some(DATE), 10).await.unwrap().len(), 2, "t2 created nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slate_completes_at_once() {
    let harness = Harness::new("engine-empty").await;
    let engine = harness.engine(EngineSettings::default());
    let report = engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    assert!(matches!(report, TriggerReport::Started { items: 0, .. }), "{report:?}");
    let header = harness.store.header(&batch_id_for(DATE, "t1")).await.unwrap().unwrap();
    assert_eq!(header.state, BatchState::Complete);
    assert!(header.ready_message_id.is_some());
    let ready = harness.ready_events(Duration::from_secs(5)).await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].predictions_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_batch_whose_ready_event_was_lost_is_announced_once_after_the_lease() {
    let harness = Harness::new("engine-reannounce").await;
    harness.domain.set_items(date(), items(2));
    let engine = harness.engine(EngineSettings { finalize_lease_secs: 2, ..Default::default() });
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    for item in items(2) {
        harness.store.record_completion(&completion(&header, &item), header.counter_shards).await.unwrap();
    }
    // Another instance finalizes, then dies before publishing the ready event.
    let totals = harness.store.totals(&batch_id).await.unwrap();
    harness.store.claim_finalize(&batch_id, "dead", Duration::from_secs(2), totals).await.unwrap();
    harness.store.finish(&batch_id, "dead", totals, None).await.unwrap();

    let report = engine.finalize_if_whole(&batch_id).await.unwrap();
    assert_eq!(report, FinalizeReport::AlreadyFinal(BatchState::Complete));
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert!(header.ready_message_id.is_none(), "the finalizer's lease is live: leave the announcement to it");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        engine.finalize_if_whole(&batch_id).await.unwrap();
    }
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert!(header.ready_message_id.is_some());
    assert_eq!(harness.ready_events(Duration::from_secs(3)).await.len(), 1, "announced once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_policy_fails_a_batch_over_the_tolerated_fraction_and_completes_one_under_it() {
    for (failing, expected_state) in
        [(&["player0003"][..], BatchState::Complete), (&["player0003", "player0007"][..], BatchState::Failed)]
    {
        let mut harness = Harness::new("engine-policy").await;
        harness.domain.set_items(date(), items(10));
        let engine = harness.engine(EngineSettings { tolerated_failed_fraction: 0.1, ..Default::default() });
        harness.run_coordinator(&engine);
        harness.run_worker(failing);
        let batch_id = harness.publish_trigger(TriggerMode::Start).await;
        let header = harness.wait_for_final(&batch_id, Duration::from_secs(60)).await;
        let ready = harness.ready_events(Duration::from_secs(2)).await;
        let db = harness.store.db().clone();
        let failed_marker = harness.store.item(&batch_id, "player0003").await.unwrap().unwrap();
        harness.stop().await;

        assert_eq!(header.state, expected_state, "{} failing of 10", failing.len());
        assert_eq!(header.failed_count, Some(failing.len() as u64));
        assert_eq!(failed_marker.status, ItemStatus::Failed);
        assert!(failed_marker.error.as_deref().is_some_and(|e| e.contains("always fails")), "{failed_marker:?}");
        if expected_state == BatchState::Failed {
            assert!(header.failure_reason.as_deref().is_some_and(|r| r.contains("2 of 10 items failed")), "{header:?}");
            assert_eq!(consolidation_calls(&db, &batch_id).await, 0, "a failed batch is not consolidated");
            assert!(ready.is_empty(), "a failed batch is not announced: {ready:?}");
        } else {
            assert_eq!(consolidation_calls(&db, &batch_id).await, 1);
            assert_eq!(ready.len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_consolidation_failure_releases_the_claim_for_an_immediate_retry() {
    let harness = Harness::new("engine-release").await;
    harness.domain.set_items(date(), items(2));
    harness.domain.failing_consolidations.store(1, std::sync::atomic::Ordering::SeqCst);
    // A long lease: without the release, the retry would have to wait ten minutes.
    let engine = harness.engine(EngineSettings { finalize_lease_secs: 600, ..Default::default() });
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    engine.complete(&completion(&header, "player0000")).await.unwrap();
    let failed = engine.complete(&completion(&header, "player0001")).await;
    assert!(matches!(&failed, Err(e) if e.is_transient()), "{failed:?}");
    let after_failure = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(after_failure.state, BatchState::Finalizing);

    // The redelivered completion finishes the batch at once.
    let report = engine.complete(&completion(&header, "player0001")).await.unwrap();
    assert_eq!(report, CompletionReport::Duplicate(FinalizeReport::Finalized(BatchState::Complete)));
    assert_eq!(consolidation_calls(harness.store.db(), &batch_id).await, 2, "one failed call, one that succeeded");
}
