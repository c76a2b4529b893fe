//! What the sweeper and the operator commands read and change: batches that have not settled, their
//! last sign of life, the redrive record, and deletion after retention.

use firestore::{FirestoreInstant, FirestoreTimestamp};
use futures::FutureExt;
use serde::Deserialize;

use super::begin::read_header;
use super::finalize::write_header;
use super::header::HeaderChange;
use super::{BatchStore, CountedTransaction, MAX_WRITES_PER_BATCH_WRITE, StoreError, firestore_error};
use crate::batch::documents::{BATCHES, BatchHeader, COUNTERS, ITEMS, RESULTS, TOUCHED_AT};
use crate::batch::state::BatchState;
use crate::batch::sweep_policy::{RedriveDecision, RedriveRequest, decide_redrive, idle_for, last_activity};
use crate::gcp::firestore::document_id;

/// The subcollections the engine writes under a batch; deleted with it.
const SUBCOLLECTIONS: [&str; 3] = [ITEMS, COUNTERS, RESULTS];

impl BatchStore {
    /// Batches in any of `states`.
    pub async fn batches_in(&self, states: &[BatchState]) -> Result<Vec<BatchHeader>, StoreError> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.db
            .fluent()
            .select()
            .from(BATCHES)
            .filter(|q| q.for_all([q.field("state").is_in(names.clone())]))
            .obj()
            .query()
            .await
            .map_err(firestore_error("listing batches by state"))
    }

    /// COMPLETE batches whose ready event was never recorded (the announcer crashed in between).
    pub async fn unannounced_batches(&self) -> Result<Vec<BatchHeader>, StoreError> {
        let headers: Vec<BatchHeader> = self
            .db
            .fluent()
            .select()
            .from(BATCHES)
            .filter(|q| {
                q.for_all([q.field("state").eq(BatchState::Complete.as_str()), q.field("ready_message_id").is_null()])
            })
            .obj()
            .query()
            .await
            .map_err(firestore_error("listing unannounced batches"))?;
        // `is_null` matches an explicit null only (the header stores one); filter again to be exact.
        Ok(headers.into_iter().filter(|h| h.ready_message_id.is_none()).collect())
    }

    /// How many batches are in `state` (one aggregation query).
    pub async fn count_in(&self, state: BatchState) -> Result<u64, StoreError> {
        #[derive(Debug, Default, Deserialize)]
        struct Count {
            #[serde(default)]
            count: u64,
        }
        let counts: Vec<Count> = self
            .db
            .fluent()
            .select()
            .from(BATCHES)
            .filter(|q| q.for_all([q.field("state").eq(state.as_str())]))
            .aggregate(|a| a.fields([a.field("count").count()]))
            .obj()
            .query()
            .await
            .map_err(firestore_error("counting batches"))?;
        Ok(counts.first().map_or(0, |c| c.count))
    }

    /// The batch's last sign of life: created, sealed, a completion counted (shard update time) or
    /// redriven. Reads the shard counted on last (one document, by `touched_at`), never the items;
    /// every shard only for a batch whose shards predate `touched_at`.
    pub async fn last_activity(&self, header: &BatchHeader) -> Result<FirestoreInstant, StoreError> {
        let parent = self.batch_path(&header.batch_id)?;
        let shards = self.db.fluent().select().from(COUNTERS).parent(&parent);
        let newest = shards
            .clone()
            .order(|o| o.fields([o.field(TOUCHED_AT).descending()]))
            .limit(1)
            .query()
            .await
            .map_err(firestore_error("reading the newest counter shard"))?;
        let shards = match newest.is_empty() {
            false => newest,
            // No shard has `touched_at`: none counted yet (there is then no shard at all), or shards
            // from before it existed.
            true => shards.query().await.map_err(firestore_error("reading counter shards"))?,
        };
        let shard_updates = shards
            .into_iter()
            .map(|doc| doc.update_time.and_then(|ts| firestore::timestamp_utils::from_timestamp(ts).ok()));
        let header_times = [Some(header.created_at), header.sealed_at, header.last_redrive_at];
        Ok(last_activity(header_times.into_iter().chain(shard_updates)).unwrap_or(header.created_at))
    }

    /// Decides a redrive in a transaction and, when due, records it (count and time) so that other
    /// replicas see a fresh redrive and wait. `activity` is the batch's last activity seen before the
    /// transaction; the header's own redrive time is re-read inside it.
    pub async fn claim_redrive(
        &self,
        batch_id: &str,
        request: RedriveRequest,
        activity: FirestoreInstant,
    ) -> Result<(RedriveDecision, BatchHeader), StoreError> {
        let outcome = self
            .db
            .counted_transaction("claim_redrive", |db, tx| {
                let batch_id = batch_id.to_string();
                async move {
                    let Some(mut header) = read_header(&db, &batch_id).await? else {
                        return Ok(None);
                    };
                    let now = FirestoreInstant::now();
                    let newest = last_activity([Some(activity), header.last_redrive_at]).unwrap_or(activity);
                    let decision = decide_redrive(header.state, header.redrive_count, idle_for(newest, now), request);
                    if decision == RedriveDecision::Redrive {
                        header.redrive_count += 1;
                        header.last_redrive_at = Some(now);
                        write_header(&db, tx, &mut header)?;
                    }
                    Ok(Some((decision, header)))
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("recording a redrive"))?;
        outcome.ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))
    }

    /// Headers of batches whose `expire_at` is before `before`, soonest first, at most `limit`.
    pub async fn expiring_batches(&self, before: FirestoreInstant, limit: u32) -> Result<Vec<BatchHeader>, StoreError> {
        self.db
            .fluent()
            .select()
            .from(BATCHES)
            .filter(|q| q.for_all([q.field("expire_at").less_than(FirestoreTimestamp(before))]))
            .order(|o| o.fields([o.field("expire_at").ascending()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(firestore_error("listing expiring batches"))
    }

    /// Pushes a (published) batch's `expire_at` out by its own retention span from now (a guarded
    /// header write; a batch that no longer exists is left alone).
    pub async fn renew_retention(&self, batch_id: &str, now: FirestoreInstant) -> Result<(), StoreError> {
        self.change_header(batch_id, ("renew_retention", "renewing a published batch's retention"), |header| {
            let span = header.expire_at.duration_since(header.created_at);
            let span = std::time::Duration::try_from(span).unwrap_or_default();
            header.expire_at = now.saturating_add(span).unwrap_or(header.expire_at);
            HeaderChange::Write(())
        })
        .await
        .map(|_| ())
    }

    /// Deletes a batch with its subcollections, the header last, so that a crash half-way leaves a
    /// header the next sweep finds again. Returns how many documents were deleted.
    pub async fn delete_batch(&self, batch_id: &str) -> Result<usize, StoreError> {
        let parent = self.batch_path(batch_id)?;
        let writer = self.db.create_simple_batch_writer().await.map_err(firestore_error("opening a batch writer"))?;
        let mut deleted = 0;
        for collection in SUBCOLLECTIONS {
            let documents = self
                .db
                .fluent()
                .select()
                .from(collection)
                .parent(&parent)
                .query()
                .await
                .map_err(firestore_error("listing a batch's documents"))?;
            let ids: Vec<&str> = documents.iter().map(document_id).collect();
            for chunk in ids.chunks(MAX_WRITES_PER_BATCH_WRITE) {
                let mut batch = writer.new_batch();
                for id in chunk {
                    self.db
                        .fluent()
                        .delete()
                        .from(collection)
                        .parent(&parent)
                        .document_id(*id)
                        .add_to_batch(&mut batch)
                        .map_err(firestore_error("queueing a delete"))?;
                }
                batch.write().await.map_err(firestore_error("deleting a batch's documents"))?;
                deleted += chunk.len();
            }
        }
        self.db
            .fluent()
            .delete()
            .from(BATCHES)
            .document_id(batch_id)
            .execute()
            .await
            .map_err(firestore_error("deleting a batch header"))?;
        Ok(deleted + 1)
    }
}
