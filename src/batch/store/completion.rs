//! Recording one completion: item marker pending -> terminal plus a counter-shard increment, in one
//! transaction that touches neither the batch header nor any other item.

use firestore::FirestoreDb;
use futures::FutureExt;

use super::{BatchStore, CountedTransaction, StoreError, firestore_error};
use crate::batch::documents::{COUNTERS, ITEMS, ItemMarker, ItemStatus, counter_shard_of};
use crate::messages::{CompletionMessage, CompletionStatus};

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
                        CompletionStatus::Skipped => (ItemStatus::Skipped, "skipped"),
                    };
                    let terminal = ItemMarker {
                        status,
                        attempts: marker.attempts + 1,
                        predictions_count: completion.predictions_count,
                        error: completion.error.clone(),
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

async fn read_marker(db: &FirestoreDb, parent: &str, item: &str) -> firestore::FirestoreResult<Option<ItemMarker>> {
    db.fluent().select().by_id_in(ITEMS).parent(parent).obj().one(item).await
}
