//! Chaos: the real binary in separate processes — two coordinators (with the dead-letter and sweeper
//! roles), two workers and an exporter — on a batch of 320 real players, while one process at a time is
//! SIGKILLed and restarted every few seconds, completions are duplicated, malformed messages are
//! injected on every topic and the date is regenerated mid-run. Then every process gets SIGTERM.
//!
//! The malformed messages go in while the first batch runs, before the first kill: the Pub/Sub
//! emulator (0.8.20) keeps handing messages to the stream of a SIGKILLed process long after it died
//! (measured: of 6 messages published 1-6 s after a consumer's SIGKILL, 2 went 5 times to the dead
//! stream until the emulator dead-lettered them itself, and a live consumer of the same subscription
//! got none of 4 more published 6 minutes later). Real Pub/Sub closes a dead stream and redelivers its
//! messages after the ack deadline; here a message published mid-chaos can take longer than any bound
//! to reach a live process, so a check on it would test the emulator. Kills still hit processes that
//! hold valid requests, completions and ready events, and the sweeper and redeliveries must cover them.
//!
//! What must hold at the end: every item of the final generation is terminal and its predictions are
//! exactly the current ones; each generation finished at most once (exactly once for the COMPLETE ones)
//! and was exported at most once; the export is the latest generation; every malformed message is in
//! `dead_letters` with its reason; every process exits 0 on SIGTERM; no process panicked.
//!
//! `make chaos SEED=7 DURATION=300` runs it longer (env `CHAOS_SEED`, `CHAOS_DURATION_SECS`); CI runs
//! the default (a random seed, printed, and 40 s of chaos).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::fleet::{Fleet, log_lines, raw_log_mentions};
use common::nba::{exported, load_roster_slate};
use common::{TestEnv, poll_until, wait_for};
use google_cloud_pubsub::model::Message;
use props_pipeline::batch::documents::{BatchHeader, ItemStatus, batch_id_for};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::SubscriptionPolicy;
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use props_pipeline::nba::store::{current_predictions, published_batch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A date after the last game in the data: the slate is a fixture of real players (see `roster_slate`).
const DATE: &str = "2025-10-21";
const PLAYERS: usize = 320;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const MALFORMED: [&str; 4] = ["not json at all", "{}", r#"{"batch_id": 7}"#, "[1, 2, 3]"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_duplicates_malformed_messages_and_a_regeneration_lose_nothing() {
    let seed: u64 = env_or("CHAOS_SEED", rand::random::<u32>() as u64);
    let duration = Duration::from_secs(env_or("CHAOS_DURATION_SECS", 40));
    println!(
        "chaos: seed {seed}, {}s of chaos (rerun: make chaos SEED={seed} DURATION={})",
        duration.as_secs(),
        duration.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let env = TestEnv::new("chaos").await;
    // Short ack deadline and backoff, so a killed process's messages come back quickly.
    let policy = SubscriptionPolicy {
        ack_deadline_secs: 10,
        max_delivery_attempts: 10,
        min_backoff_secs: 1,
        max_backoff_secs: 5,
    };
    env.setup(&policy).await;
    env.clear_retry_policies().await;
    let tap = env.create_subscription("chaos-completions-tap", &env.topics.completion_topic).await;
    let db = env.firestore().await;
    let store = BatchStore::new(db.clone());
    load_roster_slate(&db, DATE, PLAYERS).await;

    let mut fleet = Fleet::new(&env, seed);
    fleet.add("coordinator-a", &["run", "coordinator", "dead-letter", "sweeper"]);
    fleet.add("coordinator-b", &["run", "coordinator", "dead-letter", "sweeper"]);
    fleet.add("worker-a", &["run", "worker"]);
    fleet.add("worker-b", &["run", "worker"]);
    fleet.add("exporter", &["run", "exporter"]);
    fleet.start_all();

    let publish_trigger = async |mode: TriggerMode| {
        let trigger = TriggerMessage::new(DATE, mode, "chaos".into(), None, String::new()).unwrap();
        let id = env.publish(&env.topics.trigger_topic, trigger.to_json(), &[]).await;
        batch_id_for(DATE, &id)
    };
    let first = publish_trigger(TriggerMode::Start).await;
    let malformed = inject_malformed(&env, &store, &mut rng).await;
    let regenerate_at = duration.mul_f64(rng.random_range(0.3..0.7));
    let mut second = None;
    let mut duplicated = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..5000))).await;
        let victim = fleet.kill_next(&mut rng).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        fleet.restart(victim);

        // Bounded: a tap that hangs must not stop the chaos (it only feeds duplicates).
        let copies = tokio::time::timeout(
            Duration::from_secs(5),
            env.pull(&tap, rng.random_range(5..30), Duration::from_millis(500)),
        )
        .await
        .unwrap_or_default();
        for copy in copies {
            let message = Message::new().set_data(copy.data.clone()).set_attributes(copy.attributes.clone());
            env.pubsub.publish(&env.topics.completion_topic, message).await.expect("republish a completion");
            duplicated += 1;
        }
        if second.is_none() && started.elapsed() >= regenerate_at {
            second = Some(publish_trigger(TriggerMode::RegenerateWithSupersede).await);
        }
    }
    assert!(fleet.kills() >= 5, "every process was killed at least once: {:?}", fleet.kills_by_process());
    let second = match second {
        Some(id) => id,
        None => publish_trigger(TriggerMode::RegenerateWithSupersede).await,
    };
    println!(
        "chaos: {} kills ({:?}), {duplicated} duplicated completions, {} malformed messages",
        fleet.kills(),
        fleet.kills_by_process(),
        malformed.len()
    );

    // Convergence: the regeneration completes, is announced and exported.
    let last: BatchHeader =
        wait_for("the regeneration to complete and be announced", Duration::from_secs(300), async || {
            store
                .header(&second)
                .await
                .unwrap()
                .filter(|h| h.state.is_final() && (h.state != BatchState::Complete || h.ready_message_id.is_some()))
        })
        .await;
    assert_eq!(last.state, BatchState::Complete, "{last:?}");
    let export_path = fleet.export_dir().join(format!("{DATE}.json"));
    // Up to 600 s: the emulator can hand the ready event to a killed exporter's stream and keep
    // redelivering it there (module comment); it comes back through the dead-letter role's
    // re-announcement once its 10 delivery attempts (10 s ack deadline each, about 110 s a round) ran
    // out, and a re-announcement can meet a dead stream again. Seen in CI (seed 458406699): not
    // exported within 120 s; a later clean run took 305 s in all.
    let export = exported(&export_path, last.generation, Duration::from_secs(600)).await;
    let dead_ids = dead_lettered(&store).await;

    // Graceful shutdown everywhere.
    for (name, status) in fleet.terminate_all().await {
        assert!(status.is_some_and(|s| s.success()), "{name} must exit 0 on SIGTERM, got {status:?}");
    }

    // Every item of the final generation is terminal, and the predictions are exactly the current ones.
    assert!(store.items_in(&second, ItemStatus::Pending).await.unwrap().is_empty(), "no pending item");
    let done = store.items_in(&second, ItemStatus::Done).await.unwrap();
    let failed = store.items_in(&second, ItemStatus::Failed).await.unwrap();
    assert_eq!((done.len() + failed.len()) as u64, last.expected_count);
    assert_eq!(last.expected_count, PLAYERS as u64);
    assert_eq!(last.done_count, Some(done.len() as u64));
    let published = published_batch(&db, DATE).await.unwrap();
    assert_eq!(published, Some((second.clone(), last.generation)), "the date's pointer publishes the final generation");
    let current = current_predictions(&db, DATE).await.unwrap();
    assert_eq!(current.len(), done.len(), "one current prediction per done item");
    assert!(current.iter().all(|p| p.generation == last.generation && p.batch_id == second));
    let props: usize = current.iter().map(|p| p.prediction.props.len()).sum();
    assert_eq!(Some(props as u64), last.results_count, "predictions count is exact");
    assert_eq!(export.players.len(), done.len(), "the export holds every current prediction");

    // Each generation finished at most once, and exactly once when COMPLETE; exported at most once.
    let lines = log_lines(&fleet.log_dir());
    let finished =
        |batch: &str| lines.iter().filter(|l| l["message"] == "batch complete" && l["batch_id"] == batch).count();
    let exports_logged =
        |batch: &str| lines.iter().filter(|l| l["message"] == "exported" && l["batch_id"] == batch).count();
    let first_header = store.header(&first).await.unwrap().expect("first batch");
    let mut checks: BTreeMap<&str, String> = BTreeMap::new();
    match first_header.state {
        BatchState::Complete => assert_eq!(finished(&first), 1, "generation 1 completed once"),
        BatchState::Superseded => assert_eq!(finished(&first), 0, "a superseded generation never completes"),
        other => panic!("generation 1 ended {other}"),
    }
    checks.insert(
        "generation 1",
        format!("{} (finished {}x, exported {}x)", first_header.state, finished(&first), exports_logged(&first)),
    );
    assert!(exports_logged(&first) <= 1, "generation 1 exported at most once");
    assert_eq!(finished(&second), 1, "generation 2 completed exactly once");
    assert_eq!(exports_logged(&second), 1, "generation 2 exported exactly once");
    checks.insert(
        "generation 2",
        format!(
            "COMPLETE, {} done, {} failed, {props} predictions, redriven {}x",
            done.len(),
            failed.len(),
            last.redrive_count
        ),
    );
    assert!(malformed.iter().all(|(_, id)| dead_ids.contains(id)));
    checks.insert("dead letters", format!("all {} malformed messages recorded with a reason", malformed.len()));
    let panics: Vec<_> = lines.iter().filter(|l| l.to_string().contains("panicked")).collect();
    assert!(panics.is_empty(), "no process panicked: {panics:?}");
    let raw_panics = raw_log_mentions(&fleet.log_dir(), "panicked");
    assert_eq!(raw_panics, 0, "no panic in any process output");
    checks.insert("processes", format!("{} kills, all exited 0 on SIGTERM, no panic", fleet.kills()));
    for (what, result) in checks {
        println!("chaos check: {what}: {result}");
    }
    fleet.remove_files();
}

/// Publishes two malformed messages on every topic and waits until each is in `dead_letters` with a
/// reason, so no kill can catch one (see the module comment). Returns (topic, message id) of each.
async fn inject_malformed(env: &TestEnv, store: &BatchStore, rng: &mut StdRng) -> Vec<(String, String)> {
    let topics = &env.topics;
    let mut malformed = Vec::new();
    for topic in [&topics.trigger_topic, &topics.request_topic, &topics.completion_topic, &topics.ready_topic] {
        for _ in 0..2 {
            let body = MALFORMED[rng.random_range(0..MALFORMED.len())];
            malformed.push((topic.clone(), env.publish(topic, body, &[]).await));
        }
    }
    let mut missing = Vec::new();
    let recorded = poll_until(Duration::from_secs(60), async || {
        let ids = dead_lettered(store).await;
        missing = malformed.iter().filter(|(_, id)| !ids.contains(id)).cloned().collect();
        missing.is_empty().then_some(())
    })
    .await;
    assert!(recorded.is_some(), "malformed messages not in dead_letters after 60 s (topic, message id): {missing:?}");
    malformed
}

/// Original message ids of the dead letters recorded with a reason.
async fn dead_lettered(store: &BatchStore) -> HashSet<String> {
    let records = store.dead_letters(1000).await.unwrap();
    records.iter().filter(|r| !r.reason.is_empty()).map(|r| r.original_message_id.clone()).collect()
}
