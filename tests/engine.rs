//! The batch engine end to end against the real emulators, with a trivial test domain: the happy
//! path, duplicates, redelivery, regeneration. Failure paths are in `engine_failures.rs`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::harness::{DATE, Harness, completion, date, items, request, trigger};
use common::test_domain::{Prediction, Staged, TestWorker, consolidation_calls, predictions};
use common::wait_for;
use props_pipeline::batch::documents::{BatchHeader, ItemStatus, batch_id_for};
use props_pipeline::batch::domain::{ItemHandler, ItemInputs, ItemOutcome};
use props_pipeline::batch::engine::{CompletionReport, FinalizeReport, TriggerReport};
use props_pipeline::batch::roles::{CompletionRole, WorkerReport};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::CompletionRecord;
use props_pipeline::messages::{RequestMessage, TriggerMessage, TriggerMode};
use props_pipeline::topology::ChannelKind;
use rand::seq::SliceRandom;

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
    let staged: Vec<(String, common::test_domain::Staged)> = store.results(&batch_id).await.unwrap();
    assert_eq!(staged.len(), 500, "one staged result per item");
    let current: Vec<Prediction> = predictions(&db, DATE).await.unwrap();
    assert_eq!(current.len(), 500);
    assert!(current.iter().all(|p| p.batch_id == batch_id && p.superseded_by.is_none()));
    assert_eq!(consolidation_calls(&db, &batch_id).await, 1, "exactly one finalize");
    assert_eq!(ready.len(), 1, "one ready event: {ready:?}");
    assert_eq!((ready[0].batch_id.as_str(), ready[0].results_count), (batch_id.as_str(), 500));
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
    assert_eq!((totals.done, totals.failed, totals.results), (60, 0, 60), "each item counted once");
    assert_eq!(consolidation_calls(&db, &batch_id).await, 1);
    assert_eq!(ready.len(), 1, "{ready:?}");
}

/// Twin deliveries of one completion race on the item marker: one commit wins, the other's guarded
/// commit fails its precondition and the re-read answers "duplicate". Neither holds a lock the other
/// waits on, and the shard counts the item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twin_completions_of_one_item_record_once_and_the_loser_sees_a_duplicate() {
    let harness = Harness::new("engine-twins").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 20).await;
    let batch_id = header.batch_id.clone();
    for item in items(20) {
        let twin = completion(&header, &item);
        let (a, b) = tokio::join!(
            harness.store.record_completion(&twin, header.counter_shards),
            harness.store.record_completion(&twin, header.counter_shards),
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert!(
            matches!(
                outcomes,
                [CompletionRecord::Duplicate, CompletionRecord::Recorded { shard_remaining: Some(left) }] if left >= 0
            ),
            "item {item}: {outcomes:?}"
        );
        let marker = harness.store.item(&batch_id, &item).await.unwrap().unwrap();
        assert_eq!((marker.status, marker.attempts), (ItemStatus::Done, 1), "item {item}");
    }
    let totals = harness.store.totals(&batch_id).await.unwrap();
    let shards = harness.store.shards(&batch_id).await.unwrap();
    harness.stop().await;
    assert_eq!((totals.done, totals.failed, totals.results), (20, 0, 20), "each item counted once");
    assert!(header.shards_count_down, "a batch begun with its items counts its shards down");
    assert!(
        shards.iter().all(|s| s.recorded == s.done + s.failed + s.skipped),
        "every shard counted each of its items once: {shards:?}"
    );
    assert_eq!(shards.iter().map(|s| s.recorded).sum::<u64>(), 20, "{shards:?}");
}

/// A [`TestWorker`] whose twin deliveries both read the pending marker before either records: each
/// waits at the barrier until the other has read, so the two commits race on one marker version.
struct TwinWorker {
    inner: TestWorker,
    barrier: tokio::sync::Barrier,
}

impl ItemHandler for TwinWorker {
    type Result = Staged;

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<Staged> {
        self.barrier.wait().await;
        self.inner.handle_item(request, inputs).await
    }
}

/// Twin deliveries of one request at the worker: both compute, one guarded commit (result, marker,
/// shard) wins, the other's fails its precondition at once (no lock to wait on) and its re-read
/// answers "duplicate", which it re-announces with its shard's count unknown. The item is recorded
/// once with one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twin_request_deliveries_record_once_and_the_loser_sees_a_duplicate() {
    let harness = Harness::new("engine-twin-requests").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 20).await;
    let batch_id = header.batch_id.clone();
    let inner = TestWorker { store: harness.store.clone(), failing: HashSet::new() };
    let worker = harness.worker_role(TwinWorker { inner, barrier: tokio::sync::Barrier::new(2) });
    for item in items(20) {
        let twin = request(&header, &item);
        let (a, b) = tokio::join!(worker.record(&twin), worker.record(&twin));
        let mut reports = [a.unwrap(), b.unwrap()];
        reports.sort_by_key(|r| format!("{r:?}"));
        let [WorkerReport::Duplicate(loser), WorkerReport::Recorded(winner)] = &reports else {
            panic!("item {item}: one records, the other sees a duplicate: {reports:?}");
        };
        assert!(winner.recorded && winner.shard_remaining.is_some_and(|left| left >= 0), "{winner:?}");
        assert!(loser.recorded && loser.shard_remaining.is_none(), "re-announced, shard unknown: {loser:?}");
        assert_eq!((loser.status, loser.results_count), (winner.status, winner.results_count));
        let marker = harness.store.item(&batch_id, &item).await.unwrap().unwrap();
        assert_eq!((marker.status, marker.attempts), (ItemStatus::Done, 1), "item {item}");
    }
    // A later delivery finds the item terminal before working, and announces it again.
    let again = worker.record(&request(&header, "player0001")).await.unwrap();
    assert!(matches!(&again, WorkerReport::Duplicate(c) if c.recorded && c.shard_remaining.is_none()), "{again:?}");
    let staged: Vec<(String, Staged)> = harness.store.results(&batch_id).await.unwrap();
    let totals = harness.store.totals(&batch_id).await.unwrap();
    let shards = harness.store.shards(&batch_id).await.unwrap();
    harness.stop().await;
    assert_eq!(staged.len(), 20, "one result per item, written with its marker");
    assert_eq!((totals.done, totals.failed, totals.results), (20, 0, 20), "each item counted once");
    assert!(
        shards.iter().all(|s| s.recorded == s.done + s.failed + s.skipped),
        "every shard counted each of its items once: {shards:?}"
    );
    assert_eq!(shards.iter().map(|s| s.recorded).sum::<u64>(), 20, "{shards:?}");
}

/// Workers record every item; each announcement then arrives three times, shuffled. Only the
/// announcements that emptied their shard check wholeness (at most three per shard, not one per item),
/// the rest are acked without a read, and the batch completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_announcement_three_times_shuffled_changes_nothing_and_only_emptied_shards_check() {
    let harness = Harness::new("engine-dup-announced").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 60).await;
    let batch_id = header.batch_id.clone();
    let worker = harness.worker_role(TestWorker { store: harness.store.clone(), failing: HashSet::new() });
    let mut announcements = Vec::new();
    for item in items(60) {
        match worker.record(&request(&header, &item)).await.unwrap() {
            WorkerReport::Recorded(announced) => announcements.push(announced),
            other => panic!("item {item}: {other:?}"),
        }
    }
    let emptied = announcements.iter().filter(|a| a.shard_remaining == Some(0)).count();
    let used_shards = harness.store.shards(&batch_id).await.unwrap().iter().filter(|s| s.done > 0).count();
    assert_eq!(emptied, used_shards, "each shard emptied by exactly one commit");
    let mut deliveries: Vec<_> = announcements.iter().flat_map(|a| std::iter::repeat_n(a.clone(), 3)).collect();
    deliveries.shuffle(&mut rand::rng());
    let mut unread = 0;
    for delivery in &deliveries {
        let report = engine.complete(delivery).await.unwrap();
        assert!(matches!(report, CompletionReport::Announced(_)), "nothing recorded again: {report:?}");
        if delivery.shard_remaining.is_some_and(|left| left > 0) {
            assert_eq!(report, CompletionReport::Announced(FinalizeReport::NotReady));
            unread += 1;
        }
    }
    let final_header = harness.wait_for_final(&batch_id, Duration::from_secs(30)).await;
    let ready = harness.ready_events(Duration::from_secs(3)).await;
    let totals = harness.store.totals(&batch_id).await.unwrap();
    let db = harness.store.db().clone();
    harness.stop().await;
    assert_eq!(unread, 3 * (60 - emptied), "every announcement of a shard with items to go is acked unread");
    assert_eq!(final_header.state, BatchState::Complete);
    assert_eq!((totals.done, totals.failed, totals.results), (60, 0, 60), "each item counted once");
    assert_eq!(consolidation_calls(&db, &batch_id).await, 1);
    assert_eq!(ready.len(), 1, "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_duplicate_of_the_last_completion_changes_nothing() {
    let harness = Harness::new("engine-late").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 3).await;
    let batch_id = header.batch_id.clone();
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
        shards_count_down: false,
        tolerated_failed_fraction: 0.1,
        model_version: None,
        retention: Duration::from_secs(3600),
    };
    let props_pipeline::batch::store::BeginOutcome::Created { header, .. } =
        harness.store.begin_batch(&spec).await.unwrap()
    else {
        panic!("created");
    };
    harness
        .store
        .write_item_markers(&header.batch_id, &items(40)[..25], header.counter_shards, header.shards_count_down)
        .await
        .unwrap();
    engine.publish_requests(&header, "c1", &items(40)[..20]).await.unwrap();
    harness.run_worker(&[]);
    harness.run_coordinator(&engine);
    // Let some of those 20 complete before the trigger comes back.
    let done_before = wait_for("workers completing some of the first requests", Duration::from_secs(60), async || {
        let done = harness.store.items_in(&header.batch_id, ItemStatus::Done).await.unwrap().len();
        (done >= 5).then_some(done)
    })
    .await;

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

    // Generation 2's late completions never consolidate it. Its 6 items share one counter shard
    // (sized from the item count): a completion that leaves the shard non-empty does not look at the
    // batch; the last one empties it and finds the batch superseded.
    let mut reports = Vec::new();
    for item in &items(6)[3..] {
        reports.push(engine.complete(&completion(&g2, item)).await.unwrap());
    }
    let superseded = CompletionReport::Recorded(FinalizeReport::AlreadyFinal(BatchState::Superseded));
    assert!(matches!(reports.last(), Some(last) if *last == superseded), "{reports:?}");
    for report in &reports {
        assert!(
            matches!(report, CompletionReport::Recorded(FinalizeReport::NotReady)) || *report == superseded,
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
    assert_eq!(ready[0].results_count, 0);
}

/// Begin writes no counter shard; the items' markers name their shard (blocks of `ceil(25 / 3)` = 9
/// in list order) and its size, the first recorded item of a shard creates it with every counter, the
/// item that empties it says so, and the batch's last activity is read from the shard counted on last.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_are_blocks_created_by_their_first_item_and_the_newest_one_is_the_last_activity() {
    let harness = Harness::new("engine-blocks").await;
    let engine = harness.engine(EngineSettings::default());
    let header = harness.start_batch(&engine, 25).await;
    let batch_id = header.batch_id.clone();
    assert_eq!((header.counter_shards, header.shards_count_down), (3, true));
    assert!(harness.store.shards(&batch_id).await.unwrap().is_empty(), "begin wrote no shard");
    let mut markers = Vec::new();
    for item in items(25) {
        let marker = harness.store.item(&batch_id, &item).await.unwrap().expect("a pending marker");
        markers.push((marker.shard, marker.shard_size));
    }
    let expected: Vec<_> = (0..25u64).map(|i| (Some(i / 9), Some(if i < 18 { 9 } else { 7 }))).collect();
    assert_eq!(markers, expected, "blocks of nine in the sorted list, each marker with its shard's size");

    let mut left = Vec::new();
    for item in &items(25)[18..] {
        match harness.store.record_completion(&completion(&header, item), header.counter_shards).await.unwrap() {
            CompletionRecord::Recorded { shard_remaining } => left.push(shard_remaining),
            other => panic!("{item}: {other:?}"),
        }
    }
    let counted_down: Vec<_> = (0..7).rev().map(Some).collect();
    assert_eq!(left, counted_down, "the last of the shard's seven empties it");
    let shards = harness.store.shards(&batch_id).await.unwrap();
    let activity = harness.store.last_activity(&header).await.unwrap();
    harness.stop().await;
    assert_eq!(shards.len(), 1, "only the shard counted on exists: {shards:?}");
    let shard = shards[0];
    assert_eq!((shard.recorded, shard.done, shard.failed, shard.skipped, shard.results), (7, 7, 0, 0, 7));
    let touched = shard.touched_at.expect("the commit stamps the shard");
    assert!(activity >= touched, "last activity {activity:?} is the newest shard's ({touched:?})");
    assert!(header.sealed_at.is_some_and(|sealed| activity > sealed), "later than the seal");
}
