//! A trivial domain for engine tests: items are configured per date, a worker results in one number per
//! item, and consolidation copies staged results into `test_predictions`, marking older generations
//! superseded. Consolidation calls are counted in Firestore, so every engine instance adds to one count.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use firestore::FirestoreDb;
use futures::FutureExt;
use props_pipeline::batch::documents::BatchHeader;
use props_pipeline::batch::domain::{
    BatchDomain, ConsolidationReport, DomainError, ItemHandler, ItemInputs, ItemOutcome,
};
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::{GameDate, RequestMessage};
use serde::{Deserialize, Serialize};

pub const PREDICTIONS: &str = "test_predictions";
pub const CONSOLIDATIONS: &str = "test_consolidations";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Staged {
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub game_date: String,
    pub item: String,
    pub batch_id: String,
    pub generation: u64,
    pub value: u64,
    #[serde(default)]
    pub superseded_by: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsolidationCount {
    pub calls: u64,
}

pub struct TestDomain {
    pub store: BatchStore,
    pub items: Mutex<HashMap<GameDate, Vec<String>>>,
    /// How many of the next consolidations fail transiently (after counting the call).
    pub failing_consolidations: std::sync::atomic::AtomicU32,
    /// How long each consolidation waits after counting the call (a finalizer busy at shutdown).
    pub consolidation_delay_ms: std::sync::atomic::AtomicU64,
    /// What `model_version` answers (the engine records it on each new batch's header).
    pub model_version: Mutex<Option<String>>,
    /// Publish by the engine's pointer alone, with no consolidation (what the NBA domain does).
    pub pointer_only: std::sync::atomic::AtomicBool,
}

impl TestDomain {
    pub fn new(store: BatchStore) -> Self {
        Self {
            store,
            items: Mutex::default(),
            failing_consolidations: Default::default(),
            consolidation_delay_ms: Default::default(),
            model_version: Mutex::default(),
            pointer_only: Default::default(),
        }
    }

    pub fn set_items(&self, date: GameDate, items: Vec<String>) {
        self.items.lock().unwrap().insert(date, items);
    }

    fn db(&self) -> &FirestoreDb {
        self.store.db()
    }
}

fn transient(e: impl std::fmt::Display) -> DomainError {
    DomainError::Transient(e.to_string())
}

impl BatchDomain for TestDomain {
    async fn list_items(&self, game_date: GameDate) -> Result<Vec<String>, DomainError> {
        Ok(self.items.lock().unwrap().get(&game_date).cloned().unwrap_or_default())
    }

    async fn model_version(&self, _: GameDate) -> Result<Option<String>, DomainError> {
        Ok(self.model_version.lock().unwrap().clone())
    }

    async fn consolidate(&self, batch: &BatchHeader) -> Result<Option<ConsolidationReport>, DomainError> {
        if self.pointer_only.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let batch_id = batch.batch_id.clone();
        self.db()
            .run_transaction(|db, tx| {
                let batch_id = batch_id.clone();
                async move {
                    db.fluent()
                        .update()
                        .in_col(CONSOLIDATIONS)
                        .document_id(&batch_id)
                        .transforms(|t| t.fields([t.field("calls").increment(1)]))
                        .only_transform()
                        .add_to_transaction(tx)?;
                    Ok::<(), firestore::errors::BackoffError<firestore::errors::FirestoreError>>(())
                }
                .boxed()
            })
            .await
            .map_err(transient)?;
        let delay = self.consolidation_delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        let fail = self.failing_consolidations.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if fail.is_ok() {
            return Err(DomainError::Transient("consolidation storage unavailable (test)".into()));
        }
        let staged: Vec<(String, Staged)> = self.store.results(&batch.batch_id).await.map_err(transient)?;
        let mut report = ConsolidationReport { superseded: 0, replacements: staged.len() as u64 };
        for (item, result) in staged {
            let prediction = Prediction {
                game_date: batch.game_date.clone(),
                item: item.clone(),
                batch_id: batch.batch_id.clone(),
                generation: batch.generation,
                value: result.value,
                superseded_by: None,
            };
            self.db()
                .fluent()
                .update()
                .in_col(PREDICTIONS)
                .document_id(format!("{}-{item}-g{}", batch.game_date, batch.generation))
                .object(&prediction)
                .execute::<Prediction>()
                .await
                .map_err(transient)?;
        }
        // The swap: only now are older generations marked superseded.
        for mut older in predictions(self.db(), &batch.game_date).await.map_err(transient)? {
            if older.superseded_by == Some(batch.generation) {
                report.superseded += 1; // by an earlier run of this consolidation
            }
            if older.generation < batch.generation && older.superseded_by.is_none() {
                report.superseded += 1;
                older.superseded_by = Some(batch.generation);
                self.db()
                    .fluent()
                    .update()
                    .in_col(PREDICTIONS)
                    .document_id(format!("{}-{}-g{}", older.game_date, older.item, older.generation))
                    .object(&older)
                    .execute::<Prediction>()
                    .await
                    .map_err(transient)?;
            }
        }
        Ok(Some(report))
    }
}

pub async fn predictions(
    db: &FirestoreDb,
    game_date: &str,
) -> Result<Vec<Prediction>, firestore::errors::FirestoreError> {
    db.fluent()
        .select()
        .from(PREDICTIONS)
        .filter(|q| q.for_all([q.field("game_date").eq(game_date)]))
        .obj()
        .query()
        .await
}

pub async fn consolidation_calls(db: &FirestoreDb, batch_id: &str) -> u64 {
    let count: Option<ConsolidationCount> =
        db.fluent().select().by_id_in(CONSOLIDATIONS).obj().one(batch_id).await.expect("read consolidation count");
    count.map(|c| c.calls).unwrap_or(0)
}

/// Results in `len(item)` for each item; fails the items in `failing` permanently.
pub struct TestWorker {
    pub store: BatchStore,
    pub failing: HashSet<String>,
}

impl ItemHandler for TestWorker {
    type Result = Staged;

    async fn handle_item(&self, request: &RequestMessage, _: &ItemInputs) -> ItemOutcome<Staged> {
        if self.failing.contains(&request.item) {
            return ItemOutcome::Failed(format!("{} always fails (test)", request.item));
        }
        ItemOutcome::Done { result: Staged { value: request.item.len() as u64 }, results_count: 1 }
    }
}

/// A [`TestWorker`] that declines the items in `skipping` with a reason (the skipped outcome).
pub struct SkippingWorker {
    pub inner: TestWorker,
    pub skipping: HashSet<String>,
}

impl ItemHandler for SkippingWorker {
    type Result = Staged;

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<Staged> {
        if self.skipping.contains(&request.item) {
            return ItemOutcome::Skipped(format!("{} has too little data (test)", request.item));
        }
        self.inner.handle_item(request, inputs).await
    }
}
