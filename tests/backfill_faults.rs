//! A season under network faults: `props-pipeline backfill` over the whole 2023 playoffs (every date
//! from the first game to the last; those without games have no slate and are skipped) at 4 batches
//! in flight, the real binary in eight processes — two coordinators, two workers, an exporter, a
//! dead-letter and a sweeper process, and the `backfill` command itself — every one of them behind its
//! own listener of the gRPC fault injector (`crates/grpc-faults`) in front of both emulators. The
//! slates are the real ones, loaded by the code `props-pipeline load` runs (directly, not faulted).
//!
//! About 5% of every process's Firestore and Pub/Sub calls are faulted, every kind drawn alike (see
//! `tests/faults.rs`), lost answers included. Pub/Sub is out for longer than the RPC timeout from the
//! first request a coordinator publishes (the first dates' fan-out), Firestore once a third of the
//! dates are complete, and Pub/Sub again once two thirds are.
//!
//! What must hold at the end: the backfill exits 0 with every date that has a slate COMPLETE, one
//! batch per date, its coverage recorded and no item failed; every date exported at its batch's
//! generation; no trigger, request or completion in the dead-letter records; every process exits 0 on
//! SIGTERM; no panic. It prints the wall time, the dates, the items and what was injected.
//!
//! A few minutes (2-3 on a 2-core machine), so not in `make test`: `make backfill-faults SEED=7 RATE=0.05` (env
//! `FAULTS_SEED`, `FAULTS_RATE`, `FAULTS_FIRESTORE_RATE` / `FAULTS_PUBSUB_RATE`, `FAULTS_OUTAGES=0`).

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use common::TestEnv;
use common::fault_fleet::{Injectors, OUTAGE, RPC_TIMEOUT_SECS, env_or, subscription_policy};
use common::fleet::{Fleet, raw_log_mentions};
use common::nba::data_dir;
use common::poll_until as until;
use grpc_faults::Rule;
use props_pipeline::batch::documents::BatchHeader;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::nba::data::{game_dates, load_logs};
use props_pipeline::nba::export::ExportFile;
use props_pipeline::nba::load::load;
use props_pipeline::nba::store::slate_header;
use tokio::process::Command;

const SEASON: i32 = 2023;
const IN_FLIGHT: &str = "4";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a season of batches under faults takes minutes; `make backfill-faults` runs it"]
async fn a_season_of_backfill_under_faults_and_outages_completes_every_date() {
    let seed: u64 = env_or("FAULTS_SEED", rand::random::<u32>() as u64);
    let rate: f64 = env_or("FAULTS_RATE", 0.05);
    println!(
        "backfill-faults: seed {seed}, {rate} of calls faulted (rerun: make backfill-faults SEED={seed} RATE={rate})"
    );

    let env = TestEnv::new("backfillfaults").await;
    env.setup(&subscription_policy()).await;
    env.clear_retry_policies().await;
    let db = env.firestore().await;
    let store = BatchStore::new(db.clone());
    let logs = load_logs(&data_dir(), false, &mut |_| {}).expect("the real game logs load").logs;
    let season: Vec<NaiveDate> = game_dates(&logs).into_iter().filter(|d| d.year() == SEASON).collect();
    let (from, to) = (season[0], season[season.len() - 1]);
    let loading = Instant::now();
    load(&db, &logs, &season, &mut |_| {}).await.expect("load the season's slates");
    let mut slated = Vec::new();
    for date in &season {
        if slate_header(&db, &date.to_string()).await.unwrap().is_some() {
            slated.push(date.to_string());
        }
    }
    let range_days = (to - from).num_days() + 1;
    println!(
        "backfill-faults: {from} .. {to}: {range_days} dates, {} with games, {} with a slate (loaded in {:.0?})",
        season.len(),
        slated.len(),
        loading.elapsed()
    );

    let outages = env_or("FAULTS_OUTAGES", 1) != 0;
    let faults = Injectors::new(seed, env_or("FAULTS_FIRESTORE_RATE", rate), env_or("FAULTS_PUBSUB_RATE", rate), None);
    if outages {
        let request_topic = env.gcp.topic_path(&env.topics.request_topic);
        faults.pubsub.add_rule(Rule::outage("Publish", OUTAGE).body_contains(&[&request_topic]));
    }
    let mut fleet = Fleet::new(&env, seed);
    faults.add_fleet(&mut fleet).await;
    fleet.start_all();

    // The backfill itself, behind listeners of its own; its stderr (a line per settled date) is kept
    // beside the processes' logs.
    let backfill_log = std::fs::File::create(fleet.log_dir().join("backfill.log")).expect("create backfill.log");
    let child = Command::new(env!("CARGO_BIN_EXE_props-pipeline"))
        .args(["backfill", "--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--reason", &format!("season under faults, seed {seed}"), "--max-in-flight", IN_FLIGHT])
        .args(["--timeout-secs", &env_or("BACKFILL_FAULTS_DATE_TIMEOUT_SECS", 1800).to_string(), "--json"])
        .envs(env.binary_env())
        .envs(faults.env_for("backfill").await)
        .env("PROPS_RPC_TIMEOUT_SECS", RPC_TIMEOUT_SECS.to_string())
        .stdout(Stdio::piped())
        .stderr(backfill_log)
        .kill_on_drop(true)
        .spawn()
        .expect("start the backfill");
    let started = Instant::now();

    // The later outages, by the dates completed so far (read directly, not through the injector).
    let complete = async || {
        let batches = store.recent_batches(None, 1000).await.ok()?;
        Some(batches.iter().filter(|b| b.state == BatchState::Complete).count())
    };
    let scripted_outages = async {
        if !outages {
            return std::future::pending::<()>().await;
        }
        for (service, thirds) in [("firestore", 1), ("pubsub", 2)] {
            let at = slated.len() * thirds / 3;
            until(Duration::from_secs(24 * 3600), async || complete().await.filter(|n| *n >= at.max(1))).await;
            println!(
                "backfill-faults: {service} out for {OUTAGE:?} after {at} dates complete, {:.0?} in",
                started.elapsed()
            );
            match service {
                "firestore" => faults.firestore.freeze(OUTAGE),
                _ => faults.pubsub.freeze(OUTAGE),
            }
        }
        std::future::pending::<()>().await
    };
    let limit = Duration::from_secs(env_or("BACKFILL_FAULTS_TIMEOUT_SECS", 5400));
    let output = tokio::select! {
        output = tokio::time::timeout(limit, child.wait_with_output()) => output,
        () = scripted_outages => unreachable!("the outages never end the run"),
    };
    let wall = started.elapsed();
    let log_dir = fleet.log_dir();
    let stderr_tail = || {
        let text = std::fs::read_to_string(log_dir.join("backfill.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let report = faults.report();
    std::fs::write(log_dir.join("injected.log"), &report.full).expect("write the injection log");
    println!("{}", report.summary);
    let Ok(output) = output else {
        panic!("the backfill did not end within {limit:?} (logs in {}):\n{}", log_dir.display(), stderr_tail());
    };
    let output = output.expect("wait for the backfill");
    assert!(
        output.status.success(),
        "the backfill failed after {wall:.0?}: {:?} (logs in {}):\n{}\n{}",
        output.status,
        log_dir.display(),
        String::from_utf8_lossy(&output.stdout),
        stderr_tail()
    );
    println!("backfill-faults: the backfill ended after {wall:.0?}");
    let mut checks: BTreeMap<&str, String> = BTreeMap::new();
    // Its table: every date with a slate COMPLETE with coverage, every other date skipped.
    let table: serde_json::Value = serde_json::from_slice(&output.stdout).expect("backfill --json");
    let rows = table["dates"].as_array().expect("a row per date");
    assert_eq!(rows.len() as i64, range_days, "a row per date of the range");
    for row in rows {
        let date = row["game_date"].as_str().unwrap();
        let expected = if slated.iter().any(|d| d == date) { "COMPLETE" } else { "SKIPPED" };
        assert_eq!(row["end"], expected, "{row}");
        if expected == "COMPLETE" {
            assert!(row["coverage"].as_f64().is_some_and(|c| c > 0.0), "coverage reported: {row}");
        }
    }

    // In the store: one batch per date, COMPLETE, coverage recorded, no item failed.
    let mut headers: Vec<BatchHeader> = Vec::new();
    for date in &slated {
        let batches = store.recent_batches(Some(date), 10).await.unwrap();
        assert_eq!(batches.len(), 1, "one batch for {date}: {batches:#?}");
        let header = batches.into_iter().next().unwrap();
        assert_eq!(header.state, BatchState::Complete, "{header:#?}");
        assert!(header.coverage.is_some(), "coverage recorded: {header:#?}");
        assert_eq!(header.failed_count, Some(0), "no item failed: {header:#?}");
        assert_eq!(
            header.done_count.unwrap_or(0) + header.skipped_count.unwrap_or(0),
            header.expected_count,
            "every item terminal: {header:#?}"
        );
        headers.push(header);
    }
    let items: u64 = headers.iter().map(|h| h.expected_count).sum();
    let done: u64 = headers.iter().filter_map(|h| h.done_count).sum();
    let skipped: u64 = headers.iter().filter_map(|h| h.skipped_count).sum();
    let predictions: u64 = headers.iter().filter_map(|h| h.results_count).sum();
    let redrives: u64 = headers.iter().map(|h| h.redrive_count).sum();
    let coverage: Vec<f64> = headers.iter().filter_map(|h| h.coverage).collect();
    let lowest = coverage.iter().copied().fold(1.0, f64::min);
    checks.insert(
        "dates",
        format!(
            "{} of {range_days} COMPLETE (one batch each, coverage recorded, lowest {lowest:.3}), {} skipped without a slate",
            headers.len(),
            range_days as usize - headers.len()
        ),
    );
    checks.insert(
        "items",
        format!(
            "{items} in all: {done} done, {skipped} skipped, 0 failed; {predictions} predictions; {redrives} redrives"
        ),
    );

    // Printed now too, so that a run failing a later check still reports them.
    println!("backfill-faults: dates: {}; items: {}", checks["dates"], checks["items"]);

    // Every date exported at its batch's generation (waited for together, up to 120 s), with every
    // done player.
    let export_of = |header: &BatchHeader| {
        let path = fleet.export_dir().join(format!("{}.json", header.game_date));
        let file: ExportFile = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (file.batch_id == header.batch_id).then_some(file)
    };
    until(Duration::from_secs(120), async || headers.iter().all(|h| export_of(h).is_some()).then_some(())).await;
    let mut unexported = Vec::new();
    for header in &headers {
        match export_of(header) {
            Some(export) => {
                assert_eq!(export.generation, header.generation);
                assert_eq!(Some(export.players.len() as u64), header.done_count, "{}", header.game_date);
            }
            None => unexported.push(header.batch_id.clone()),
        }
    }

    // What was dead-lettered (read last: a message runs out of attempts minutes after its trouble).
    let dead = store.dead_letters(1000).await.unwrap();
    let mut reasons: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for record in &dead {
        let what = format!("{}: {}", record.channel, record.data.chars().take(60).collect::<String>());
        *reasons.entry((what, record.reason.clone(), record.action.clone())).or_default() += 1;
    }
    for ((what, reason, action), n) in &reasons {
        println!("backfill-faults: dead-lettered {n}x {what}: {reason} -> {action}");
    }
    let given_up: Vec<_> = dead.iter().filter(|r| r.channel != "ready").collect();
    assert!(given_up.is_empty(), "no trigger, request or completion dead-lettered: {given_up:#?}");
    checks.insert("dead letters", format!("{} records, none a trigger, request or completion", dead.len()));
    assert!(unexported.is_empty(), "never exported: {unexported:?} (logs in {})", log_dir.display());
    checks.insert("exports", format!("{} files, each at its batch's generation with every done player", headers.len()));

    for (name, status) in fleet.terminate_all().await {
        assert!(status.is_some_and(|s| s.success()), "{name} must exit 0 on SIGTERM, got {status:?}");
    }
    faults.stop();

    assert_eq!(raw_log_mentions(&log_dir, "panicked"), 0, "no panic in any process output");
    checks.insert("processes", "all exited 0 on SIGTERM, no panic".to_string());
    checks.insert("faults", report.totals);
    checks.insert("wall time", format!("{wall:.0?} for the backfill at {IN_FLIGHT} in flight (seed {seed})"));
    for (what, result) in checks {
        println!("backfill-faults check: {what}: {result}");
    }
    fleet.remove_files();
}
