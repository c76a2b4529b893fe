//! Recording one item: the marker's pending -> terminal, with the item's result in it when the worker
//! records it, and a counter-shard increment, in one guarded atomic commit that touches neither the
//! batch header nor any other item; and counting an item's redrive, guarded the same way.

use firestore::{
    FirestoreFieldTransform, FirestoreFieldTransformType, FirestoreInstant, FirestoreTransactionOps,
    FirestoreTransformServerValue, FirestoreWritePrecondition,
};

use super::commit::{commit_atomically, staged_writes};
use super::header::is_precondition_failure;
use super::results::MarkerWithResult;
use super::{BatchStore, StoreError, firestore_error};
use crate::batch::documents::{COUNTERS, ITEMS, ItemMarker, ItemStatus, RESULTS_COUNT, TOUCHED_AT, counter_shard_of};
use crate::batch::state::{ShardCountdown, record_item};
use crate::messages::CompletionMessage;
use crate::ops::metrics::TransactionAttempts;

/// What putting one item's request back to work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRedrive {
    /// Counted: this is the item's `n`th redrive; its request is to be published again.
    Counted(u64),
    /// This dead letter already counted the item's `n`th redrive (handled again): publish again, count
    /// nothing.
    Repeated(u64),
    /// The item already used its `n` redrives: it fails.
    CapReached(u64),
    /// The item is terminal already: nothing to do.
    NotPending,
    /// The batch has no marker for this item.
    UnknownItem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionRecord {
    /// The item went from pending to terminal and its shard was incremented; `shard_remaining` is the
    /// shard's count of items not yet terminal after this one (when the server returned it).
    Recorded { shard_remaining: Option<i64> },
    /// The item was already terminal: a duplicate, nothing changed.
    Duplicate,
    /// The batch has no marker for this item.
    UnknownItem,
}

/// What a worker's record of its item found (see [`BatchStore::record_item_result`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ItemRecord {
    /// This commit made the item terminal: result, marker and shard count together.
    Recorded { shard_remaining: Option<i64> },
    /// The item was terminal already (as this marker says): nothing was written.
    Duplicate(ItemMarker),
    /// The batch has no marker for this item.
    UnknownItem,
}

impl From<ItemRecord> for CompletionRecord {
    fn from(record: ItemRecord) -> Self {
        match record {
            ItemRecord::Recorded { shard_remaining } => CompletionRecord::Recorded { shard_remaining },
            ItemRecord::Duplicate(_) => CompletionRecord::Duplicate,
            ItemRecord::UnknownItem => CompletionRecord::UnknownItem,
        }
    }
}

/// An item marker as read, with its `update_time`: the version a guarded write compares against.
pub type VersionedMarker = (ItemMarker, FirestoreInstant);

impl BatchStore {
    /// Records `completion` once: the marker's pending -> terminal and the shard's increment in one
    /// atomic commit, guarded by the marker's `update_time` as read (see [`super::commit`]). A
    /// duplicate is answered from the read alone; a racing writer (a twin delivery, a redrive) makes the
    /// commit fail at once, and the marker is read and decided again, never waited on. The
    /// coordinator's path: a completion of the older shape, or a dead letter's verdict on an item.
    pub async fn record_completion(
        &self,
        completion: &CompletionMessage,
        counter_shards: u64,
    ) -> Result<CompletionRecord, StoreError> {
        let attempts = TransactionAttempts::new("record_completion");
        let result = self.record_guarded::<()>(completion, counter_shards, None, None, &attempts).await;
        attempts.finish(result).map(CompletionRecord::from)
    }

    /// The worker's record of its item: the marker's pending -> terminal with `result` (if any) in
    /// it, and the shard's count, in one atomic commit guarded by the marker's
    /// `update_time`. `read` is the marker the worker read before working (so a record costs no
    /// further read unless a race is lost); `counter_shards` is the header's, needed only for a marker
    /// that does not name its shard. A twin delivery that committed first makes this one's commit fail
    /// at once with FAILED_PRECONDITION; the re-read then answers `Duplicate`.
    pub async fn record_item_result<T>(
        &self,
        completion: &CompletionMessage,
        result: Option<&T>,
        read: VersionedMarker,
        counter_shards: u64,
    ) -> Result<ItemRecord, StoreError>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync,
    {
        let attempts = TransactionAttempts::new("record_item");
        let recorded = self.record_guarded(completion, counter_shards, result, Some(read), &attempts).await;
        attempts.finish(recorded)
    }

    async fn record_guarded<T>(
        &self,
        completion: &CompletionMessage,
        counter_shards: u64,
        result: Option<&T>,
        mut read: Option<VersionedMarker>,
        attempts: &TransactionAttempts,
    ) -> Result<ItemRecord, StoreError>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync,
    {
        let parent = self.batch_path(&completion.batch_id)?;
        let item = &completion.item;
        for _ in 0..MAX_MARKER_RACES {
            attempts.attempt();
            let (marker, version) = match read.take() {
                Some(read) => read,
                None => match self.versioned_marker(&parent, item).await? {
                    Some(read) => read,
                    None => return Ok(ItemRecord::UnknownItem),
                },
            };
            let Some((terminal, counter)) = record_item(&marker, completion) else {
                return Ok(ItemRecord::Duplicate(marker));
            };
            let shard = marker.shard.unwrap_or_else(|| counter_shard_of(item, counter_shards)).to_string();
            let shard_countdown = ShardCountdown::of(&marker);
            let countdown = shard_countdown.increment();
            let mut writes = staged_writes(&self.db);
            let staged: firestore::FirestoreResult<()> = (|| {
                // A done item's result lands in its marker: one document, and a result exists iff
                // its item is done.
                let guard = Some(FirestoreWritePrecondition::UpdateTime(version));
                match result {
                    Some(result) => {
                        let marker = MarkerWithResult { marker: &terminal, result };
                        writes.update_object_at(&parent, ITEMS, item, &marker, None, guard, Vec::new())?
                    }
                    None => writes.update_object_at(&parent, ITEMS, item, &terminal, None, guard, Vec::new())?,
                };
                // Increments commute: concurrent completions on one shard never conflict.
                let increment = |field: &str, by: i64| {
                    FirestoreFieldTransform::new(field.to_string(), FirestoreFieldTransformType::Increment(by.into()))
                };
                writes.transform_at(
                    &parent,
                    COUNTERS,
                    &shard,
                    None,
                    // The countdown first: its value after the commit is the first transform result.
                    // Every outcome field is incremented (by 0 but one), so that the document the
                    // first increment creates has them all: an aggregation of several sums skips a
                    // document that lacks any of its fields.
                    std::iter::once(increment(countdown.0, countdown.1))
                        .chain(OUTCOME_FIELDS.iter().map(|field| increment(field, i64::from(*field == counter))))
                        .chain(std::iter::once(increment(RESULTS_COUNT, completion.results_count as i64)))
                        // When the shard last counted: the sweeper's idle check reads the newest shard only.
                        .chain(std::iter::once(FirestoreFieldTransform::new(
                            TOUCHED_AT.to_string(),
                            FirestoreFieldTransformType::SetToServerValue(FirestoreTransformServerValue::RequestTime),
                        )))
                        .collect(),
                )?;
                Ok(())
            })();
            staged.map_err(firestore_error("staging a completion"))?;
            match commit_atomically(&self.db, writes).await {
                Ok(results) => {
                    // The shard write is the second; its first transform is the countdown.
                    let counted = results.get(1).and_then(|shard| integer(shard.transform_results.first()));
                    let shard_remaining = counted.map(|value| shard_countdown.remaining_after(value));
                    return Ok(ItemRecord::Recorded { shard_remaining });
                }
                // Lost the race: read again; the winner's marker decides (usually: a duplicate).
                Err(error) if is_precondition_failure(&error) => {}
                Err(error) => return Err(firestore_error("recording a completion")(error)),
            }
        }
        Err(StoreError::BatchWriteFailed {
            code: 10,
            message: format!("item {item} kept changing under its completion"),
        })
    }

    /// An item marker with its `update_time`, the version a guarded write compares against.
    async fn versioned_marker(
        &self,
        parent: &str,
        item: &str,
    ) -> Result<Option<(ItemMarker, FirestoreInstant)>, StoreError> {
        let read = self.versioned(parent, ITEMS, item, ("reading an item marker", "decoding an item marker")).await?;
        read.map(|(marker, version)| with_version(marker, version)).transpose()
    }
}

/// A marker read with its `update_time`: without one (never sent by the server) it cannot guard a
/// write, a transient error.
pub(super) fn with_version(
    marker: ItemMarker,
    version: Option<FirestoreInstant>,
) -> Result<VersionedMarker, StoreError> {
    match version {
        Some(version) => Ok((marker, version)),
        None => Err(StoreError::BatchWriteFailed { code: 0, message: "item marker without update time".into() }),
    }
}

impl BatchStore {
    /// Counts one redrive of a pending item caused by the dead letter `cause`, unless it used `max`
    /// already: a read and a write guarded by the marker's update time (a completion that lands
    /// meanwhile wins, and the item is then terminal). The same `cause` again is answered with the
    /// redrive it already counted, so a dead letter handled twice costs one redrive.
    pub async fn count_item_redrive(
        &self,
        batch_id: &str,
        item: &str,
        max: u64,
        cause: &str,
    ) -> Result<ItemRedrive, StoreError> {
        let parent = self.batch_path(batch_id)?;
        for _ in 0..MAX_MARKER_RACES {
            let Some((mut marker, version)) = self.versioned_marker(&parent, item).await? else {
                return Ok(ItemRedrive::UnknownItem);
            };
            if marker.status != ItemStatus::Pending {
                return Ok(ItemRedrive::NotPending);
            }
            if marker.redriven_by.as_deref() == Some(cause) {
                return Ok(ItemRedrive::Repeated(marker.redrives));
            }
            if marker.redrives >= max {
                return Ok(ItemRedrive::CapReached(marker.redrives));
            }
            marker.redrives += 1;
            marker.redriven_by = Some(cause.to_string());
            let written = self
                .db
                .fluent()
                .update()
                .in_col(ITEMS)
                .precondition(FirestoreWritePrecondition::UpdateTime(version))
                .document_id(item)
                .parent(&parent)
                .object(&marker)
                .execute::<ItemMarker>()
                .await;
            match written {
                Ok(_) => return Ok(ItemRedrive::Counted(marker.redrives)),
                // Lost the race (a completion or another redrive wrote the marker): read again.
                Err(error) if is_precondition_failure(&error) => {}
                Err(error) => return Err(firestore_error("counting an item redrive")(error)),
            }
        }
        Err(StoreError::BatchWriteFailed { code: 10, message: format!("item {item} kept changing under its redrive") })
    }
}

/// The shard's outcome counters, one of which a recorded item increments ([`record_item`]'s counter).
const OUTCOME_FIELDS: [&str; 3] = ["done", "failed", "skipped"];

/// Lost races on one marker before giving up for this delivery (the message is retried).
const MAX_MARKER_RACES: usize = 5;

/// An integer transform result (an increment's value after it applied).
fn integer(value: Option<&firestore::gcloud_sdk::google::firestore::v1::Value>) -> Option<i64> {
    use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
    match value?.value_type.as_ref()? {
        ValueType::IntegerValue(n) => Some(*n),
        ValueType::DoubleValue(x) => Some(*x as i64),
        _ => None,
    }
}
