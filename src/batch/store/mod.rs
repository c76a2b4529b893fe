//! Firestore access of the batch engine. Every decision is a transaction or a write with a
//! precondition; transaction closures only read, decide with [`crate::batch::state`] and write, so
//! re-running them after an ABORTED is harmless. Outcomes that retrying cannot change (a duplicate, a
//! fenced completion, a claim held by another instance) are returned as values, not errors.

mod begin;
mod commit;
mod completion;
mod finalize;
mod header;
mod results;
mod sweep;
mod transaction;
mod worker_read;

pub use begin::{BeginOutcome, NewBatch};
pub use completion::{CompletionRecord, ItemRecord, ItemRedrive, VersionedMarker};
pub use finalize::{ClaimOutcome, FinishOutcome, FinishRead, PointerRead};
pub(crate) use header::is_precondition_failure;
pub(crate) use transaction::CountedTransaction;

use firestore::errors::FirestoreError;
use firestore::{FirestoreDb, FirestoreDocument, FirestoreInstant};
use futures::TryStreamExt;
use serde::Deserialize;
use thiserror::Error;

use super::documents::{BATCHES, BatchHeader, COUNTERS, CounterShard, ITEMS, ItemMarker, ItemStatus, RESULTS_COUNT};
use crate::gcp::errors::{Retryability, classify_firestore};
use crate::gcp::firestore::document_id;

/// BatchWrite accepts at most 500 writes per request.
pub(crate) const MAX_WRITES_PER_BATCH_WRITE: usize = 500;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("firestore {operation} failed: {source}")]
    Firestore { operation: &'static str, source: Box<FirestoreError> },
    #[error("a batched write failed with gRPC code {code}: {message}")]
    BatchWriteFailed { code: i32, message: String },
    #[error("batch {0} does not exist")]
    UnknownBatch(String),
    #[error("batch {batch_id} expects {expected} items but its domain now lists {listed}; regenerate the date")]
    ItemsChanged { batch_id: String, expected: u64, listed: u64 },
}

impl StoreError {
    /// What retrying the message can do (the one classification in [`crate::gcp::errors`]).
    pub fn retryability(&self) -> Retryability {
        match self {
            StoreError::Firestore { source, .. } => classify_firestore(source),
            // BatchWrite answers per write; the create-only codes are handled where it is called, so
            // any other failure there is the server's, worth another try.
            StoreError::BatchWriteFailed { .. } => Retryability::Retry,
            StoreError::UnknownBatch(_) | StoreError::ItemsChanged { .. } => Retryability::Reject,
        }
    }

    /// Whether retrying the message later may succeed.
    pub fn is_transient(&self) -> bool {
        self.retryability() == Retryability::Retry
    }
}

/// Tags a Firestore error with the operation that failed.
pub(crate) fn firestore_error(operation: &'static str) -> impl Fn(FirestoreError) -> StoreError {
    move |source| StoreError::Firestore { operation, source: Box::new(source) }
}

/// The batch engine's view of Firestore. Cheap to clone.
#[derive(Clone)]
pub struct BatchStore {
    db: FirestoreDb,
}

/// Totals of a batch's counter shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub results: u64,
}

impl Totals {
    /// Items with a final outcome: done, failed or skipped.
    pub fn terminal(&self) -> u64 {
        self.done + self.failed + self.skipped
    }
}

impl BatchStore {
    pub fn new(db: FirestoreDb) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }

    /// `batches/{batch_id}` as a parent path for its subcollections.
    pub(crate) fn batch_path(&self, batch_id: &str) -> Result<String, StoreError> {
        self.db.parent_path(BATCHES, batch_id).map(|p| p.to_string()).map_err(firestore_error("building a path"))
    }

    pub async fn header(&self, batch_id: &str) -> Result<Option<BatchHeader>, StoreError> {
        self.db
            .fluent()
            .select()
            .by_id_in(BATCHES)
            .obj::<BatchHeader>()
            .one(batch_id)
            .await
            .map_err(firestore_error("reading a batch header"))
    }

    pub async fn item(&self, batch_id: &str, item: &str) -> Result<Option<ItemMarker>, StoreError> {
        let parent = self.batch_path(batch_id)?;
        self.db
            .fluent()
            .select()
            .by_id_in(ITEMS)
            .parent(parent)
            .obj::<ItemMarker>()
            .one(item)
            .await
            .map_err(firestore_error("reading an item marker"))
    }

    /// A document of `collection` under `parent`, decoded, with its `update_time` (the version a
    /// guarded write compares against; `None` if the server sent none). `operations` name the read and
    /// the decoding in errors.
    pub(crate) async fn versioned<T: for<'de> Deserialize<'de>>(
        &self,
        parent: &str,
        collection: &str,
        id: &str,
        (reading, decoding): (&'static str, &'static str),
    ) -> Result<Option<(T, Option<FirestoreInstant>)>, StoreError> {
        let document = self
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .parent(parent)
            .one(id)
            .await
            .map_err(firestore_error(reading))?;
        let Some(document) = document else {
            return Ok(None);
        };
        let value: T = FirestoreDb::deserialize_doc_to(&document).map_err(firestore_error(decoding))?;
        let version = document.update_time.and_then(|ts| firestore::timestamp_utils::from_timestamp(ts).ok());
        Ok(Some((value, version)))
    }

    /// Ids of the items of `batch_id` in `status`, in id order. Read with a projection on the status
    /// alone, so that a resumed batch's fan-out holds its pending ids, not their markers.
    pub async fn items_in(&self, batch_id: &str, status: ItemStatus) -> Result<Vec<String>, StoreError> {
        let documents = self.item_documents(batch_id, status, true).await?;
        let mut ids: Vec<String> = documents.map_ok(|d| document_id(&d).to_string()).try_collect().await?;
        ids.sort();
        Ok(ids)
    }

    /// The items of `batch_id` in `status` with their markers (error, completions), in id order.
    pub async fn markers_in(
        &self,
        batch_id: &str,
        status: ItemStatus,
    ) -> Result<Vec<(String, ItemMarker)>, StoreError> {
        let documents = self.item_documents(batch_id, status, false).await?;
        let mut markers: Vec<(String, ItemMarker)> = documents
            .and_then(|d| async move {
                let marker = FirestoreDb::deserialize_doc_to::<ItemMarker>(&d)
                    .map_err(firestore_error("decoding an item marker"))?;
                Ok((document_id(&d).to_string(), marker))
            })
            .try_collect()
            .await?;
        markers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(markers)
    }

    /// The marker documents of `batch_id`'s items in `status`, streamed: with their `status` field
    /// only when `ids_only`.
    async fn item_documents(
        &self,
        batch_id: &str,
        status: ItemStatus,
        ids_only: bool,
    ) -> Result<impl futures::Stream<Item = Result<FirestoreDocument, StoreError>> + use<>, StoreError> {
        let parent = self.batch_path(batch_id)?;
        let status_text = serde_json::to_value(status).ok().and_then(|v| v.as_str().map(String::from));
        let select = self.db.fluent().select();
        let select = if ids_only { select.fields(["status"]) } else { select };
        let documents = select
            .from(ITEMS)
            .parent(parent)
            .filter(|q| q.for_all([q.field("status").eq(status_text.clone().unwrap_or_default())]))
            .stream_query_with_errors()
            .await
            .map_err(firestore_error("listing item markers"))?;
        Ok(documents.map_err(firestore_error("listing item markers")))
    }

    /// Sums the counter shards with one aggregation query (billed as one read, whatever the shard count).
    pub async fn totals(&self, batch_id: &str) -> Result<Totals, StoreError> {
        #[derive(Debug, Default, Deserialize)]
        struct Sums {
            #[serde(default)]
            done: f64,
            #[serde(default)]
            failed: f64,
            #[serde(default)]
            skipped: f64,
            #[serde(default)]
            results: f64,
        }
        let parent = self.batch_path(batch_id)?;
        let sums: Vec<Sums> = self
            .db
            .fluent()
            .select()
            .from(COUNTERS)
            .parent(parent)
            .aggregate(|a| {
                a.fields([
                    a.field("done").sum("done"),
                    a.field("failed").sum("failed"),
                    a.field("skipped").sum("skipped"),
                    a.field("results").sum(RESULTS_COUNT),
                ])
            })
            .obj()
            .query()
            .await
            .map_err(firestore_error("summing counter shards"))?;
        let sums = sums.into_iter().next().unwrap_or_default();
        // Sums of integers come back as integers or doubles depending on the server; both fit u64.
        Ok(Totals {
            done: sums.done as u64,
            failed: sums.failed as u64,
            skipped: sums.skipped as u64,
            results: sums.results as u64,
        })
    }

    /// Every shard document, for tests and tools that check the aggregation.
    pub async fn shards(&self, batch_id: &str) -> Result<Vec<CounterShard>, StoreError> {
        let parent = self.batch_path(batch_id)?;
        self.db
            .fluent()
            .select()
            .from(COUNTERS)
            .parent(parent)
            .obj()
            .query()
            .await
            .map_err(firestore_error("reading counter shards"))
    }

    /// The most recent batches, newest first; only those of `game_date` when given.
    pub async fn recent_batches(&self, game_date: Option<&str>, limit: u32) -> Result<Vec<BatchHeader>, StoreError> {
        let query = self.db.fluent().select().from(BATCHES);
        let mut headers: Vec<BatchHeader> = match game_date {
            // Filtering on the date and sorting here avoids a composite index; a date has few batches.
            Some(date) => query
                .filter(|q| q.for_all([q.field("game_date").eq(date)]))
                .obj()
                .query()
                .await
                .map_err(firestore_error("listing batches"))?,
            None => query
                .order(|o| o.fields([o.field("created_at").descending()]))
                .limit(limit)
                .obj()
                .query()
                .await
                .map_err(firestore_error("listing batches"))?,
        };
        headers.sort_by_key(|h| std::cmp::Reverse(h.created_at));
        headers.truncate(limit as usize);
        Ok(headers)
    }
}

impl BatchStore {
    /// The batch of `game_date` with `generation` (generations are unique per date).
    pub async fn batch_of_generation(
        &self,
        game_date: &str,
        generation: u64,
    ) -> Result<Option<BatchHeader>, StoreError> {
        let mut headers: Vec<BatchHeader> = self
            .db
            .fluent()
            .select()
            .from(BATCHES)
            .filter(|q| q.for_all([q.field("game_date").eq(game_date), q.field("generation").eq(generation)]))
            .limit(1)
            .obj()
            .query()
            .await
            .map_err(firestore_error("finding a generation's batch"))?;
        Ok(headers.pop())
    }
}
