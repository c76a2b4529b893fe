//! `props-pipeline backfill` as operators run it (the real binary), against the real emulators with
//! the NBA roles running in this process: three dates with a slate and one without, one batch at a
//! time; the first run is killed after its first date, and the re-run resumes instead of starting over.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::nba::NbaEnv;
use props_pipeline::batch::documents::BatchHeader;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::nba::domain::NbaWorker;
use props_pipeline::nba::model::ModelConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Conference finals dates of 2023 (one game each, small slates); 2023-05-18 has games in the logs,
/// but its slate is not loaded, so the backfill must skip it.
const LOADED: [&str; 3] = ["2023-05-16", "2023-05-17", "2023-05-19"];
const ARGS: [&str; 9] =
    ["backfill", "--from", "2023-05-16", "--to", "2023-05-19", "--reason", "rebuild May", "--max-in-flight", "1"];

fn backfill(nba: &NbaEnv, extra: &[&str]) -> Command {
    let mut command = nba.env.binary();
    command.args(ARGS).args(extra);
    let mut command = Command::from(command);
    command.kill_on_drop(true);
    command
}

async fn batches_of(nba: &NbaEnv, date: &str) -> Vec<BatchHeader> {
    nba.store.recent_batches(Some(date), 10).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_runs_dates_one_at_a_time_in_order_and_resumes_after_being_killed() {
    let mut nba = NbaEnv::new("backfill", &LOADED).await;
    nba.run_roles(NbaWorker::new(nba.store.clone(), ModelConfig::default()), EngineSettings::default());

    // First run: killed (SIGKILL) as soon as it reports its first date.
    let mut first = backfill(&nba, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn backfill");
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let first_line = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("2023-05-16 ") {
                return line;
            }
        }
        panic!("backfill ended without reporting 2023-05-16");
    })
    .await
    .expect("the first date settles");
    first.kill().await.expect("kill the first run");
    assert!(first_line.contains("COMPLETE"), "{first_line}");
    let done_before = batches_of(&nba, "2023-05-16").await;
    assert_eq!(done_before.len(), 1);

    // The re-run resumes: the first date is followed, not triggered again.
    let rerun = tokio::time::timeout(Duration::from_secs(300), backfill(&nba, &["--json"]).output())
        .await
        .expect("the re-run finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("backfill --json");
    let dates = report["dates"].as_array().unwrap();
    let row = |i: usize| (dates[i]["game_date"].as_str().unwrap(), dates[i]["end"].as_str().unwrap());
    assert_eq!(
        (0..4).map(row).collect::<Vec<_>>(),
        [("2023-05-16", "COMPLETE"), ("2023-05-17", "COMPLETE"), ("2023-05-18", "SKIPPED"), ("2023-05-19", "COMPLETE")]
    );
    assert_eq!(dates[0]["batch_id"], done_before[0].batch_id.as_str(), "the re-run follows the first run's batch");
    assert!(dates[0]["note"].as_str().is_some_and(|n| n.contains("resumed")), "{}", dates[0]);
    for date in [&dates[0], &dates[1], &dates[3]] {
        assert_eq!(date["generation"], 1, "{date}");
        assert!(date["done"].as_u64().unwrap() > 0 && date["coverage"].as_f64().unwrap() > 0.5, "{date}");
    }
    assert!(stderr.contains("2023-05-18 SKIPPED"), "one progress line per date: {stderr}");

    // One batch per date with a slate, none without, and with one in flight each began after the
    // previous one finished.
    let mut headers = Vec::new();
    for date in LOADED {
        let batches = batches_of(&nba, date).await;
        assert_eq!(batches.len(), 1, "{date}: {batches:#?}");
        assert_eq!(batches[0].state, BatchState::Complete);
        headers.push(batches[0].clone());
    }
    assert!(batches_of(&nba, "2023-05-18").await.is_empty());
    for pair in headers.windows(2) {
        assert!(
            pair[0].finalized_at.unwrap() <= pair[1].created_at,
            "{} before {}",
            pair[0].batch_id,
            pair[1].batch_id
        );
    }

    // A third run finds everything done, prints the table and triggers nothing.
    let third = backfill(&nba, &[]).output().await.unwrap();
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    let table = String::from_utf8_lossy(&third.stdout);
    assert!(table.contains("COVERAGE") && table.contains("SKIPPED") && table.contains(&headers[2].batch_id), "{table}");
    for date in LOADED {
        assert_eq!(batches_of(&nba, date).await.len(), 1, "{date}: nothing new");
    }
    nba.stop().await;
}
