//! Network faults: the real binary in separate processes — two coordinators, two workers, an
//! exporter, a dead-letter and a sweeper process — each behind its own listener of the gRPC fault
//! injector (`crates/grpc-faults`) in front of both emulators, on a batch of 320 real players.
//!
//! About 5% of every process's Firestore and Pub/Sub calls are faulted, every kind drawn alike:
//! UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED without reaching the server, an
//! answer lost after the server applied the call, or up to 2 s of latency. Pub/Sub is out for longer
//! than the RPC timeout from the first request the coordinators publish (during the fan-out), and
//! Firestore likewise once a third of the items are done (during the completions). The date is
//! regenerated mid-run.
//!
//! What must hold at the end: every item of the final generation `done` (none failed), its predictions
//! exactly the current ones, the final generation finished, announced and exported exactly once and
//! the export at that generation; no trigger, request or completion in the dead-letter records; every
//! process exits 0 on SIGTERM; no panic.
//!
//! `make faults SEED=7 DURATION=120` runs it longer, regenerating every ~30 s (env `FAULTS_SEED`,
//! `FAULTS_DURATION_SECS`; `FAULTS_RATE` changes the 5%, `FAULTS_FIRESTORE_RATE` / `FAULTS_PUBSUB_RATE`
//! one service's, `FAULTS_OUTAGES=0` leaves the outages out); CI runs one regeneration with a random
//! seed, printed. The faults injected are printed by kind and service, and all of them are written to
//! `injected.log` beside the processes' logs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TestEnv;
use common::fault_fleet::{Injectors, OUTAGE, env_or, subscription_policy};
use common::fleet::{Fleet, log_lines, raw_log_mentions};
use common::nba::{data_dir, exported};
use common::poll_until as until;
use common::wait_for;
use grpc_faults::{Call, FaultKind, Observer, Rule};
use props_pipeline::batch::documents::{ItemStatus, batch_id_for};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{ReadyMessage, TriggerMessage, TriggerMode};
use props_pipeline::nba::data::{load_logs, roster_slate};
use props_pipeline::nba::load::{load, load_slate};
use props_pipeline::nba::store::current_predictions;

/// A date after the last game in the data: the slate is a fixture of real players (see `roster_slate`).
const DATE: &str = "2025-10-22";
const PLAYERS: usize = 320;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_and_outages_on_every_call_lose_nothing_and_dead_letter_nothing() {
    let seed: u64 = env_or("FAULTS_SEED", rand::random::<u32>() as u64);
    let duration = Duration::from_secs(env_or("FAULTS_DURATION_SECS", 30));
    let rate: f64 = env_or("FAULTS_RATE", 0.05);
    println!(
        "faults: seed {seed}, {rate} of calls faulted, {}s of regenerations (rerun: make faults SEED={seed} DURATION={})",
        duration.as_secs(),
        duration.as_secs()
    );

    let env = TestEnv::new("faults").await;
    env.setup(&subscription_policy()).await;
    if env_or("FAULTS_CLEAR_RETRY_POLICIES", 1) != 0 {
        env.clear_retry_policies().await;
    }
    let ready_tap = env.create_subscription("faults-ready-tap", &env.topics.ready_topic).await;
    let db = env.firestore().await;
    let store = BatchStore::new(db.clone());
    let logs = load_logs(&data_dir(), false, &mut |_| {}).expect("the real game logs load").logs;
    load(&db, &logs, &[], &mut |_| {}).await.expect("load player logs");
    let date = DATE.parse().expect("valid date");
    let slate = roster_slate(&logs, date, 10, PLAYERS);
    assert_eq!(slate.len(), PLAYERS, "the data has {PLAYERS} players with 10+ games");
    load_slate(&db, &logs, date, slate).await.expect("load the fixture slate");

    // The test itself (setup above, checks below) talks to the emulators directly.
    // Knobs to tell apart what a failing seed suffers from: each service's rate, and the outages.
    let outages = env_or("FAULTS_OUTAGES", 1) != 0;
    let lost_ready = Arc::new(LostPublishes::new(&env.gcp.topic_path(&env.topics.ready_topic)));
    let faults = Injectors::new(
        seed,
        env_or("FAULTS_FIRESTORE_RATE", rate),
        env_or("FAULTS_PUBSUB_RATE", rate),
        Some(lost_ready.clone()),
    );
    let (firestore, pubsub) = (&faults.firestore, &faults.pubsub);
    let request_topic = env.gcp.topic_path(&env.topics.request_topic);
    if outages {
        pubsub.add_rule(Rule::outage("Publish", OUTAGE).body_contains(&[&request_topic]));
    }

    let mut fleet = Fleet::new(&env, seed);
    faults.add_fleet(&mut fleet).await;
    fleet.start_all();

    let publish_trigger = async |mode: TriggerMode| {
        let trigger = TriggerMessage::new(DATE, mode, "faults".into(), None, String::new()).unwrap();
        let id = env.publish(&env.topics.trigger_topic, trigger.to_json(), &[]).await;
        batch_id_for(DATE, &id)
    };
    let mut batches = vec![publish_trigger(TriggerMode::Start).await];

    // Firestore's outage: once a third of the first generation's items are done.
    wait_for("a third of the items done", Duration::from_secs(240), async || {
        let done = store.items_in(&batches[0], ItemStatus::Done).await.ok()?.len();
        (done >= PLAYERS / 3).then_some(())
    })
    .await;
    if outages {
        firestore.freeze(OUTAGE);
        assert_eq!(pubsub.rules_armed(), 0, "the Pub/Sub outage started during the fan-out");
        tokio::time::sleep(OUTAGE).await;
    }

    // Regenerations: one at once, then one every ~30 s while the duration lasts.
    let started = tokio::time::Instant::now();
    loop {
        batches.push(publish_trigger(TriggerMode::RegenerateWithSupersede).await);
        if started.elapsed() + Duration::from_secs(30) > duration {
            break;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let last_id = batches.last().unwrap().clone();

    // Convergence: the final generation completes and is announced. What was injected and
    // dead-lettered is printed whatever the outcome, to diagnose a failing seed.
    let converged = until(Duration::from_secs(300), async || {
        store
            .header(&last_id)
            .await
            .ok()
            .flatten()
            .filter(|h| h.state.is_final() && (h.state != BatchState::Complete || h.ready_message_id.is_some()))
    })
    .await;
    let export_path = fleet.export_dir().join(format!("{DATE}.json"));
    let mut checks: BTreeMap<&str, String> = BTreeMap::new();
    let dead = store.dead_letters(1000).await.unwrap();
    let report = faults.report();
    std::fs::write(fleet.log_dir().join("injected.log"), &report.full).expect("write the injection log");
    println!("{}", report.summary);
    let mut reasons: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for record in &dead {
        let reason: String = record.reason.chars().take(160).collect();
        *reasons.entry((record.channel.clone(), reason, record.action.clone())).or_default() += 1;
    }
    for ((channel, reason, action), n) in &reasons {
        println!("faults: dead-lettered {n}x {channel}: {reason} -> {action}");
    }
    let Some(last) = converged else {
        let header = store.header(&last_id).await;
        panic!(
            "the final generation did not complete within 300 s (logs in {}): {header:?}",
            fleet.log_dir().display()
        );
    };
    let export = exported(&export_path, last.generation, Duration::from_secs(120)).await;
    // Give a redelivered ready event the time to be (wrongly) exported again before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;

    for (name, status) in fleet.terminate_all().await {
        assert!(status.is_some_and(|s| s.success()), "{name} must exit 0 on SIGTERM, got {status:?}");
    }
    faults.stop();

    // Every item of the final generation is done, and the predictions are exactly the current ones.
    let done = store.items_in(&last_id, ItemStatus::Done).await.unwrap();
    let failed = store.items_in(&last_id, ItemStatus::Failed).await.unwrap();
    let pending = store.items_in(&last_id, ItemStatus::Pending).await.unwrap();
    assert_eq!((pending.len(), failed.len()), (0, 0), "every item done: failed {failed:?}, pending {pending:?}");
    assert_eq!(done.len(), PLAYERS);
    assert_eq!(last.expected_count, PLAYERS as u64);
    assert_eq!(last.done_count, Some(PLAYERS as u64));
    let current = current_predictions(&db, DATE).await.unwrap();
    assert_eq!(current.len(), done.len(), "one current prediction per done item");
    assert!(current.iter().all(|p| p.generation == last.generation && p.batch_id == last_id));
    let props: usize = current.iter().map(|p| p.prediction.props.len()).sum();
    assert_eq!(Some(props as u64), last.results_count, "predictions count is exact");
    assert_eq!(export.players.len(), done.len(), "the export holds every current prediction");
    assert_eq!(export.generation, last.generation, "the export is the final generation");
    checks.insert(
        "final generation",
        format!("COMPLETE, {} done, 0 failed, {props} predictions, redriven {}x", done.len(), last.redrive_count),
    );

    // Finished, announced and exported exactly once; earlier generations at most once each.
    let lines = log_lines(&fleet.log_dir());
    let count =
        |message: &str, batch: &str| lines.iter().filter(|l| l["message"] == message && l["batch_id"] == batch).count();
    let ready_events = env.pull(&ready_tap, 1000, Duration::from_secs(3)).await;
    let announced = |batch: &str| {
        ready_events.iter().filter(|r| ReadyMessage::parse(&r.data).is_ok_and(|m| m.batch_id == batch)).count()
    };
    assert_eq!(count("batch complete", &last_id), 1, "the final generation completed once");
    // A ready event whose publish lost its answer was stored and is published again: Pub/Sub's
    // at-least-once, which the exporter absorbs. Any other duplicate is a second announcement.
    let lost = lost_ready.count();
    assert!(
        (1..=1 + lost).contains(&announced(&last_id)),
        "one ready event for the final generation ({} seen, {lost} ready publishes lost their answer)",
        announced(&last_id)
    );
    assert_eq!(count("exported", &last_id), 1, "the final generation exported once");
    for earlier in &batches[..batches.len() - 1] {
        let header = store.header(earlier).await.unwrap().expect("an earlier generation's header");
        assert!(
            matches!(header.state, BatchState::Complete | BatchState::Superseded),
            "{earlier} ended {}",
            header.state
        );
        assert!(count("batch complete", earlier) <= 1 && count("exported", earlier) <= 1, "{earlier} finished once");
        assert!(announced(earlier) <= 1 + lost, "{earlier} announced once");
    }
    checks.insert(
        "generations",
        format!(
            "{} in all; the final one completed, announced and exported once ({} ready events, {lost} ready publishes lost their answer)",
            batches.len(),
            announced(&last_id)
        ),
    );

    // No trigger, request or completion was given up on.
    let given_up: Vec<_> = dead.iter().filter(|r| r.channel != "ready").collect();
    assert!(given_up.is_empty(), "no trigger, request or completion dead-lettered: {given_up:#?}");
    checks.insert("dead letters", format!("{} records, none a trigger, request or completion", dead.len()));
    let panics = raw_log_mentions(&fleet.log_dir(), "panicked");
    assert_eq!(panics, 0, "no panic in any process output");
    checks.insert("processes", "all exited 0 on SIGTERM, no panic".to_string());
    checks.insert("faults", report.totals);
    for (what, result) in checks {
        println!("faults check: {what}: {result}");
    }
    fleet.remove_files();
}

/// Counts the publishes to one topic whose answer the injector dropped (the message was stored).
struct LostPublishes {
    topic: String,
    lost: AtomicUsize,
}

impl LostPublishes {
    fn new(topic: &str) -> Self {
        Self { topic: topic.to_string(), lost: AtomicUsize::new(0) }
    }

    fn count(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Observer for LostPublishes {
    fn observe(&self, call: &Call<'_>) {
        let to_topic =
            call.request.is_some_and(|body| body.windows(self.topic.len()).any(|w| w == self.topic.as_bytes()));
        if call.method == "Publish" && call.fault == Some(FaultKind::LostAnswer) && to_topic {
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
    }
}
