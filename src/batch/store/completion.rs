//! Recording one completion: item marker pending -> terminal plus a counter-shard increment, in one
//! transaction that touches neither the batch header nor any other item.

use firestore::{FirestoreDb, FirestoreWritePrecondition};
use futures::FutureExt;

use super::header::is_precondition_failure;
use super::{BatchStore, CountedTransaction, StoreError, firestore_error};
use crate::batch::documents::{COUNTERS, ITEMS, ItemMarker, ItemStatus, counter_shard_of};
use crate::messages::{CompletionMessage, CompletionStatus};

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
    /// The item went from pending to terminal and its shard was incremented.
    Recorded,
    /// The item was already terminal: a duplicate, nothing changed.
    Duplicate,
    /// The batch has no marker for this item.
    UnknownItem,
}

impl BatchStore {
    /// Records `completion` once. A plain read first lets duplicates (the common redelivery case) skip
    /// the transaction and its lock on the marker.
    pub async fn record_completion(
        &self,
        completion: &CompletionMessage,
        counter_shards: u64,
    ) -> Result<CompletionRecord, StoreError> {
        match self.item(&completion.batch_id, &completion.player_lookup).await? {
            None => return Ok(CompletionRecord::UnknownItem),
            Some(marker) if marker.status != ItemStatus::Pending => return Ok(CompletionRecord::Duplicate),
            Some(_) => {}
        }
        let parent = self.batch_path(&completion.batch_id)?;
        let shard = counter_shard_of(&completion.player_lookup, counter_shards).to_string();
        self.db
            .counted_transaction("record_completion", |db, tx| {
                let (parent, shard, completion) = (parent.clone(), shard.clone(), completion.clone());
                async move {
                    let Some(marker) = read_marker(&db, &parent, &completion.player_lookup).await? else {
                        return Ok(CompletionRecord::UnknownItem);
                    };
                    if marker.status != ItemStatus::Pending {
                        return Ok(CompletionRecord::Duplicate);
                    }
                    let (status, counter) = match completion.status {
                        CompletionStatus::Ok => (ItemStatus::Done, "done"),
                        CompletionStatus::Failed => (ItemStatus::Failed, "failed"),
                    };
                    let terminal = ItemMarker {
                        status,
                        attempts: marker.attempts + 1,
                        predictions_count: completion.predictions_count,
                        error: completion.error.clone(),
                        redrives: marker.redrives,
                        redriven_by: marker.redriven_by.clone(),
                    };
                    db.fluent()
                        .update()
                        .in_col(ITEMS)
                        .document_id(&completion.player_lookup)
                        .parent(&parent)
                        .object(&terminal)
                        .add_to_transaction(tx)?;
                    // Increments commute, so concurrent completions on one shard never conflict on a
                    // read; only the marker is read (and locked).
                    db.fluent()
                        .update()
                        .in_col(COUNTERS)
                        .document_id(&shard)
                        .parent(&parent)
                        .transforms(|t| {
                            t.fields([
                                t.field(counter).increment(1),
                                t.field("predictions").increment(completion.predictions_count as i64),
                            ])
                        })
                        .only_transform()
                        .add_to_transaction(tx)?;
                    Ok(CompletionRecord::Recorded)
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("recording a completion"))
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
            let document = self
                .db
                .fluent()
                .select()
                .by_id_in(ITEMS)
                .parent(&parent)
                .one(item)
                .await
                .map_err(firestore_error("reading an item marker"))?;
            let Some(document) = document else {
                return Ok(ItemRedrive::UnknownItem);
            };
            let mut marker: ItemMarker =
                FirestoreDb::deserialize_doc_to(&document).map_err(firestore_error("decoding an item marker"))?;
            if marker.status != ItemStatus::Pending {
                return Ok(ItemRedrive::NotPending);
            }
            if marker.redriven_by.as_deref() == Some(cause) {
                return Ok(ItemRedrive::Repeated(marker.redrives));
            }
            if marker.redrives >= max {
                return Ok(ItemRedrive::CapReached(marker.redrives));
            }
            let Some(version) = document.update_time.and_then(|ts| firestore::timestamp_utils::from_timestamp(ts).ok())
            else {
                return Err(StoreError::BatchWriteFailed {
                    code: 0,
                    message: "item marker without update time".into(),
                });
            };
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

/// Lost races on one marker before giving up for this delivery (the message is retried).
const MAX_MARKER_RACES: usize = 5;

async fn read_marker(db: &FirestoreDb, parent: &str, item: &str) -> firestore::FirestoreResult<Option<ItemMarker>> {
    db.fluent().select().by_id_in(ITEMS).parent(parent).obj().one(item).await
}
