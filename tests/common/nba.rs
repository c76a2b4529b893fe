//! NBA-domain harness: the real game logs loaded for a few dates, and every role (coordinator, worker,
//! exporter) run in this process with a worker of the test's choosing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use props_pipeline::batch::documents::{BatchHeader, GAME_DATES, GameDatePointer};
use props_pipeline::batch::domain::ItemHandler;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::nba::data::{load_logs, roster_slate};
use props_pipeline::nba::domain::NbaDomain;
use props_pipeline::nba::export::{ExportFile, ExportRole, Exporter};
use props_pipeline::nba::load::{load, load_slate};
use props_pipeline::runner::{Role, Roles};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{TestEnv, fast_retry_policy, wait_for};

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nba")
}

/// Every player's real game logs, and for `date` a slate of `players` players with 10+ games: a slate
/// as large as a fleet test wants, on a date of its choosing.
pub async fn load_roster_slate(db: &firestore::FirestoreDb, date: &str, players: usize) {
    let logs = load_logs(&data_dir(), false, &mut |_| {}).expect("the real game logs load").logs;
    load(db, &logs, &[], &mut |_| {}).await.expect("load player logs");
    let date = date.parse().expect("valid date");
    let slate = roster_slate(&logs, date, 10, players);
    assert_eq!(slate.len(), players, "the data has {players} players with 10+ games");
    load_slate(db, &logs, date, slate).await.expect("load the fixture slate");
}

pub async fn final_header(store: &BatchStore, batch_id: &str) -> BatchHeader {
    wait_for("the batch to finish", Duration::from_secs(120), async || {
        store.header(batch_id).await.unwrap().filter(|h| h.state.is_final())
    })
    .await
}

/// The export file at `path` once it holds `generation`.
pub async fn exported(path: &std::path::Path, generation: u64, within: Duration) -> ExportFile {
    wait_for("the export", within, async || {
        let file: ExportFile = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (file.generation == generation).then_some(file)
    })
    .await
}

/// A project on the emulators with every player's logs and the slates of `dates` loaded.
pub struct NbaEnv {
    pub env: TestEnv,
    pub db: firestore::FirestoreDb,
    pub store: BatchStore,
    pub export_dir: PathBuf,
    /// The exporter's own Firestore handle (through a fault injector, say); `db` when unset.
    pub exporter_db: Option<firestore::FirestoreDb>,
    shutdown: CancellationToken,
    running: Option<JoinHandle<()>>,
}

impl NbaEnv {
    pub async fn new(tag: &str, dates: &[&str]) -> Self {
        let env = TestEnv::new(tag).await;
        env.setup(&fast_retry_policy(10)).await;
        let db = env.firestore().await;
        let logs = load_logs(&data_dir(), false, &mut |_| {}).expect("the real game logs load").logs;
        let dates: Vec<_> = dates.iter().map(|d| d.parse().unwrap()).collect();
        load(&db, &logs, &dates, &mut |_| {}).await.expect("load into Firestore");
        let export_dir = std::env::temp_dir().join(format!("props-{tag}-{}", rand::random::<u32>()));
        let store = BatchStore::new(db.clone());
        Self { env, db, store, export_dir, exporter_db: None, shutdown: CancellationToken::new(), running: None }
    }

    /// Runs coordinator, `worker` and exporter until [`NbaEnv::stop`].
    pub fn run_roles<H: ItemHandler>(&mut self, worker: H, settings: EngineSettings) {
        let engine = BatchEngine::new(
            self.store.clone(),
            self.env.pubsub.clone(),
            self.env.topics.clone(),
            Arc::new(NbaDomain::new(self.store.clone())),
            settings,
        );
        let roles = Roles {
            pubsub: self.env.pubsub.clone(),
            topology: self.env.topology.clone(),
            consumer: ConsumerSettings { concurrency: 8, shutdown_grace_secs: 5, ..Default::default() },
            engine: Arc::new(engine),
            item_handler: Arc::new(worker),
            exporter: Arc::new(ExportRole(Exporter::new(
                self.exporter_db.clone().unwrap_or_else(|| self.db.clone()),
                self.export_dir.clone(),
            ))),
            completion_topic: self.env.topics.completion_topic.clone(),
            sweep: Default::default(),
        };
        let shutdown = self.shutdown.clone();
        self.running = Some(tokio::spawn(async move {
            roles.run(&Role::ALL, shutdown).await.expect("roles run");
        }));
    }

    pub fn export_path(&self, date: &str) -> PathBuf {
        self.export_dir.join(format!("{date}.json"))
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.expect("roles task");
        }
        std::fs::remove_dir_all(&self.export_dir).ok();
    }
}

/// Points `date` at `batch_id` as the engine's finish does: its results become the date's current
/// predictions (for exporter tests that stage results without running a batch).
pub async fn publish_batch(db: &firestore::FirestoreDb, date: &str, batch_id: &str, generation: u64) {
    let pointer = GameDatePointer {
        current_generation: generation,
        current_batch_id: batch_id.into(),
        published_batch_id: Some(batch_id.into()),
        published_generation: Some(generation),
    };
    db.fluent()
        .update()
        .in_col(GAME_DATES)
        .document_id(date)
        .object(&pointer)
        .execute::<GameDatePointer>()
        .await
        .expect("publish the batch");
}

/// Writes `item` of `batch_id` as the worker's recording commit leaves a done item: its marker, with
/// the result in it (for reader tests that need no batch run; `tests/worker_requests.rs` checks that
/// the real commit stores this shape). `status` other than "done" writes a marker without a result.
pub async fn put_item_marker<T: serde::Serialize + Sync>(
    db: &firestore::FirestoreDb,
    batch_id: &str,
    item: &str,
    status: &str,
    result: Option<&T>,
) {
    let parent = db.parent_path("batches", batch_id).expect("a batch path");
    let mut marker = serde_json::json!({"status": status, "attempts": 1, "results_count": u64::from(result.is_some())});
    if let Some(result) = result {
        marker["result"] = serde_json::to_value(result).expect("a result as JSON");
    }
    db.fluent()
        .update()
        .in_col("items")
        .document_id(item)
        .parent(&parent)
        .object(&marker)
        .execute::<serde_json::Value>()
        .await
        .expect("write an item marker");
}
