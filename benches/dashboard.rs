//! `make bench-dashboard` (`cargo bench --bench dashboard`, no harness): the dashboard's largest pages on
//! the emulators. Writes 1,000 batch headers and one batch of 5,000 items into a fresh project, serves
//! the dashboard in this process, and prints for each page the render time (median and worst of
//! `--repeats`, request to last byte) and the Firestore reads it cost (its `x-firestore-reads` header).
//! Figures only: nothing is asserted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use firestore::{FirestoreDb, FirestoreInstant};
use futures::{StreamExt, stream};
use props_pipeline::batch::audit::{AUDIT, AuditOutcome, AuditRecord};
use props_pipeline::batch::documents::{BATCHES, BatchHeader, ITEMS, ItemMarker, ItemStatus};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::config::GcpSettings;
use props_pipeline::dashboard::{Dashboard, READS_HEADER};

const BATCHES_N: usize = 1000;
const ITEMS_N: usize = 5000;
const BIG: &str = "2025-06-22-mbig";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn header(batch_id: &str, date: &str, generation: u64, state: BatchState, expected: u64, created: i64) -> BatchHeader {
    let created_at = FirestoreInstant::from_second(created).expect("a valid time");
    let finished = state.is_final();
    BatchHeader {
        batch_id: batch_id.into(),
        game_date: date.into(),
        generation,
        mode: if generation > 1 { "regenerate_with_supersede" } else { "start" }.into(),
        reason: format!("bench batch {batch_id}"),
        metadata_json: "{}".into(),
        correlation_id: format!("bench-{batch_id}"),
        trigger_message_id: batch_id.rsplit("-m").next().unwrap_or_default().into(),
        state,
        expected_count: expected,
        counter_shards: 8,
        tolerated_failed_fraction: 0.1,
        model_version: None,
        created_at,
        sealed_at: Some(created_at),
        finalize_claim: None,
        finalized_at: finished.then(|| FirestoreInstant::from_second(created + 40).expect("a valid time")),
        done_count: finished.then_some(expected - 2),
        failed_count: finished.then_some(2),
        skipped_count: None,
        results_count: finished.then_some((expected - 2) * 4),
        coverage: finished.then(|| (expected - 2) as f64 / expected as f64),
        failure_reason: None,
        superseded_by: None,
        ready_message_id: finished.then(|| "r".to_string()),
        redrive_count: 0,
        last_redrive_at: None,
        header_writes: 4,
        shards_count_down: true,
        expire_at: FirestoreInstant::from_second(created + 7 * 86_400).expect("a valid time"),
    }
}

async fn write_batches(db: &FirestoreDb) {
    let base = 1_750_000_000;
    let headers: Vec<BatchHeader> = (0..BATCHES_N)
        .map(|i| {
            let date = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Days::new(i as u64 / 2);
            let state = if i % 50 == 0 { BatchState::Running } else { BatchState::Complete };
            header(&format!("{date}-m{i}"), &date.to_string(), 1 + i as u64 % 2, state, 200, base + i as i64 * 60)
        })
        .collect();
    stream::iter(headers)
        .for_each_concurrent(32, |h| async move {
            db.fluent()
                .update()
                .in_col(BATCHES)
                .document_id(&h.batch_id)
                .object(&h)
                .execute::<()>()
                .await
                .expect("write a header");
        })
        .await;
}

async fn write_big_batch(db: &FirestoreDb) {
    let h = header(BIG, "2025-06-22", 1, BatchState::Running, ITEMS_N as u64, 1_760_000_000);
    db.fluent().update().in_col(BATCHES).document_id(BIG).object(&h).execute::<()>().await.expect("write the header");
    let record = AuditRecord {
        trigger_message_id: "big".into(),
        recorded_at: h.created_at,
        game_date: h.game_date.clone(),
        mode: "start".into(),
        reason: h.reason.clone(),
        metadata_json: "{}".into(),
        correlation_id: h.correlation_id.clone(),
        outcome: AuditOutcome::Started,
        detail: None,
        batch_id: Some(BIG.into()),
        generation: Some(1),
        model_version: None,
        supersedes_batch_id: None,
        supersedes_batch_state: None,
        active_batch_id: None,
        superseded_count: None,
        replacement_count: None,
        consolidated_at: None,
        item_redrives: 0,
        publishing_resumes: 0,
        skipped_items: None,
    };
    db.fluent().update().in_col(AUDIT).document_id("big").object(&record).execute::<()>().await.expect("audit");
    let parent = db.parent_path(BATCHES, BIG).expect("a path");
    let markers: Vec<(String, ItemMarker)> = (0..ITEMS_N)
        .map(|i| {
            let mut marker = ItemMarker::pending();
            if i % 10 == 0 {
                marker =
                    ItemMarker { status: ItemStatus::Done, attempts: 1, results_count: 4, ..ItemMarker::pending() };
            } else if i % 97 == 0 {
                marker = ItemMarker {
                    status: ItemStatus::Failed,
                    attempts: 1,
                    error: Some("model error (bench)".into()),
                    ..ItemMarker::pending()
                };
            }
            (format!("player{i:05}"), marker)
        })
        .collect();
    let parent = &parent;
    stream::iter(markers)
        .for_each_concurrent(64, |(id, marker)| async move {
            db.fluent()
                .update()
                .in_col(ITEMS)
                .document_id(&id)
                .parent(parent)
                .object(&marker)
                .execute::<()>()
                .await
                .expect("write an item");
        })
        .await;
}

/// GET over HTTP/1.0: status, reads header, elapsed to the last byte.
fn get(addr: SocketAddr, path: &str) -> (u16, u64, Duration, usize) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let reads = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{READS_HEADER}: ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    (status, reads, elapsed, response.len())
}

#[tokio::main]
async fn main() {
    let repeats = arg("--repeats", 5);
    let (Ok(pubsub), Ok(firestore)) = (std::env::var("PUBSUB_EMULATOR_HOST"), std::env::var("FIRESTORE_EMULATOR_HOST"))
    else {
        eprintln!(
            "run with the emulators: `make bench-dashboard` (or `make emulators` and `set -a; . .emulators/env`)"
        );
        std::process::exit(2);
    };
    let project = format!("bench-dash-{:08x}", rand::random::<u32>());
    let gcp = GcpSettings::new(project, Some(pubsub), Some(firestore));
    let db = props_pipeline::gcp::firestore::connect(&gcp).await.expect("connect to the Firestore emulator");
    let started = Instant::now();
    write_batches(&db).await;
    write_big_batch(&db).await;
    println!(
        "wrote {BATCHES_N} batch headers and a batch of {ITEMS_N} items in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Dashboard::new(BatchStore::new(db), SweepSettings::default()).router();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let pages = [
        ("batches, 25 per page (of 1,001)", "/".to_string()),
        ("batches, 200 per page", "/?limit=200".to_string()),
        ("batches, a date range", "/?from=2023-03-01&to=2023-03-31".to_string()),
        ("batches, text search (scans 1,000)", "/?text=no-such-text".to_string()),
        ("batch of 5,000 items, 25 per page", format!("/batches/{BIG}")),
        ("batch of 5,000 items, 200 per page", format!("/batches/{BIG}?limit=200")),
        ("batch of 5,000 items, failed only", format!("/batches/{BIG}?failed=1")),
        ("live poll of that batch (JSON)", format!("/api/batches/{BIG}")),
    ];
    println!("\n{:<40} {:>6} {:>10} {:>10} {:>10} {:>9}", "page", "status", "median ms", "worst ms", "reads", "bytes");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut last = (0, 0, Duration::ZERO, 0);
        // One untimed request first: the emulator's first query of a shape is slower than the rest.
        let warm = path.clone();
        tokio::task::spawn_blocking(move || get(addr, &warm)).await.expect("warm-up request");
        for _ in 0..repeats {
            let path = path.clone();
            last = tokio::task::spawn_blocking(move || get(addr, &path)).await.expect("request");
            times.push(last.2);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<40} {:>6} {:>10.1} {:>10.1} {:>10} {:>9}",
            name,
            last.0,
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            last.1,
            last.3
        );
    }
}
