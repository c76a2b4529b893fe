//! Creating (or resuming) the batch for a trigger, writing its item markers, and sealing it.

use std::time::Duration;

use firestore::{FirestoreDb, FirestoreInstant, FirestoreTransaction, FirestoreWritePrecondition};
use futures::FutureExt;

use super::header::HeaderChange;
use super::{BatchStore, CountedTransaction, MAX_WRITES_PER_BATCH_WRITE, StoreError, firestore_error};
use crate::batch::audit::{AuditRecord, read_record, write_record};
use crate::batch::begin::{BeginDecision, decide_known, decide_new};
use crate::batch::documents::{
    BATCHES, BatchHeader, GAME_DATES, GameDatePointer, ITEMS, ItemMarker, batch_id_for, shard_of_position, shard_size,
};
use crate::batch::state::BatchState;
use crate::messages::TriggerMessage;

/// gRPC codes a create-only write reports when the document already exists.
const ALREADY_EXISTS: i32 = 6;
const FAILED_PRECONDITION: i32 = 9;

/// What a trigger asks for, with what the coordinator found out before the transaction.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub trigger: TriggerMessage,
    pub trigger_message_id: String,
    pub correlation_id: String,
    pub expected_count: u64,
    pub counter_shards: u64,
    /// Whether the batch's item markers carry their shard's size so that its shards count down
    /// ([`crate::batch::documents::BatchHeader::shards_count_down`]); false only for batches begun
    /// without their item list (tests): every completion then checks wholeness.
    pub shards_count_down: bool,
    pub tolerated_failed_fraction: f64,
    /// The domain's version for the batch (recorded on a new header; a resumed batch keeps its own).
    pub model_version: Option<String>,
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BeginOutcome {
    /// A new batch (and generation) was created; `superseded` names the batch it replaced, if any.
    Created { header: BatchHeader, superseded: Option<String> },
    /// The trigger was seen before: carry on with the batch it created.
    Resumed(BatchHeader),
    /// `start` while a batch for the date is still active, without `metadata.force`: nothing done.
    ActiveBatchExists(BatchHeader),
    /// The date's current batch was created for this trigger's correlation id: this trigger repeats
    /// one operator action (a republished backfill trigger, say), so nothing is done.
    Duplicate(BatchHeader),
    /// This message was decided before without a batch (a no-op or a rejection): the same decision.
    AlreadyDecided(AuditRecord),
}

impl BatchStore {
    /// In one transaction on `game_dates/{date}`: find the trigger's batch, or decide to create one
    /// (superseding an active older batch when regenerating or forced), move the fencing pointer, and
    /// record the decision in the trigger's audit record (`audit/{message id}`), all or nothing.
    pub async fn begin_batch(&self, spec: &NewBatch) -> Result<BeginOutcome, StoreError> {
        let game_date = spec.trigger.game_date.to_string();
        let batch_id = batch_id_for(&game_date, &spec.trigger_message_id);
        self.db
            .counted_transaction("begin_batch", |db, tx| {
                let (game_date, batch_id, spec) = (game_date.clone(), batch_id.clone(), spec.clone());
                async move {
                    let now = FirestoreInstant::now();
                    let recorded = read_record(&db, &spec.trigger_message_id).await?;
                    let existing = read_header(&db, &batch_id).await?;
                    let decision = match decide_known(&spec, existing, recorded, now) {
                        Some(decision) => decision,
                        None => {
                            let pointer: Option<GameDatePointer> =
                                db.fluent().select().by_id_in(GAME_DATES).obj().one(&game_date).await?;
                            let pointer = pointer.unwrap_or_default();
                            let current = match pointer.current_batch_id.as_str() {
                                "" => None,
                                id => read_header(&db, id).await?,
                            };
                            decide_new(&spec, &batch_id, pointer, current, now)
                        }
                    };
                    Ok(write_begin(&db, tx, decision)?)
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("beginning a batch"))
    }

    /// Writes a pending marker for each item that has none yet (BatchWrite, create-only, so a marker a
    /// completion already made terminal is never reset). Returns how many were created. Each marker
    /// names its counter shard among `counter_shards` (the header's), by its position in `items` (the
    /// batch's whole list, in the engine's order), for the worker that records it; and, when the batch
    /// counts down, that shard's size.
    pub async fn write_item_markers(
        &self,
        batch_id: &str,
        items: &[String],
        counter_shards: u64,
        count_down: bool,
    ) -> Result<usize, StoreError> {
        let parent = self.batch_path(batch_id)?;
        let writer = self.db.create_simple_batch_writer().await.map_err(firestore_error("opening a batch writer"))?;
        let mut created = 0;
        let total = items.len() as u64;
        for (first, chunk) in (0u64..).step_by(MAX_WRITES_PER_BATCH_WRITE).zip(items.chunks(MAX_WRITES_PER_BATCH_WRITE))
        {
            let mut batch = writer.new_batch();
            for (position, item) in (first..).zip(chunk) {
                let shard = shard_of_position(position, total, counter_shards);
                let size = count_down.then(|| shard_size(shard, total, counter_shards));
                let marker = ItemMarker::pending_in(shard, size);
                self.db
                    .fluent()
                    .update()
                    .in_col(ITEMS)
                    .precondition(FirestoreWritePrecondition::Exists(false))
                    .document_id(item)
                    .parent(&parent)
                    .object(&marker)
                    .add_to_batch(&mut batch)
                    .map_err(firestore_error("queueing an item marker"))?;
            }
            let response = batch.write().await.map_err(firestore_error("writing item markers"))?;
            for status in &response.statuses {
                match status.code {
                    0 => created += 1,
                    ALREADY_EXISTS | FAILED_PRECONDITION => {}
                    code => {
                        return Err(StoreError::BatchWriteFailed { code, message: status.message.clone() });
                    }
                }
            }
        }
        Ok(created)
    }

    /// CAS PUBLISHING -> RUNNING once every request is published. Returns the header as it is after.
    /// A guarded header write, not a transaction: a seal is retried after faults, and nothing it
    /// decides needs a lock (see `header.rs`).
    pub async fn seal(&self, batch_id: &str) -> Result<BatchHeader, StoreError> {
        self.change_header(batch_id, ("seal", "sealing a batch"), |header| {
            if header.state != BatchState::Publishing {
                return HeaderChange::Keep(header.clone());
            }
            header.state = BatchState::Running;
            header.sealed_at = Some(FirestoreInstant::now());
            // The write below counts itself in `header_writes`; the answer shows the header as written.
            let mut written = header.clone();
            written.header_writes += 1;
            HeaderChange::Write(written)
        })
        .await?
        .ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))
    }
}

pub(super) async fn read_header(db: &FirestoreDb, batch_id: &str) -> firestore::FirestoreResult<Option<BatchHeader>> {
    db.fluent().select().by_id_in(BATCHES).obj().one(batch_id).await
}

/// Writes what [`decide_known`] / [`decide_new`] decided into the begin transaction.
fn write_begin(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction,
    decision: BeginDecision,
) -> firestore::FirestoreResult<BeginOutcome> {
    match decision {
        BeginDecision::Resume { header, record } => {
            if let Some(record) = record {
                write_record(db, tx, &record)?;
            }
            Ok(BeginOutcome::Resumed(header))
        }
        BeginDecision::AlreadyDecided(record) => Ok(BeginOutcome::AlreadyDecided(record)),
        BeginDecision::NoOp { outcome, record } => {
            write_record(db, tx, &record)?;
            Ok(outcome)
        }
        BeginDecision::Create { header, pointer, superseded, record } => {
            let create = FirestoreWritePrecondition::Exists(false);
            let batches = db.fluent().update().in_col(BATCHES);
            batches
                .precondition(create.clone())
                .document_id(&header.batch_id)
                .object(&header)
                .add_to_transaction(tx)?;
            // No counter shard is written here: the first recorded item of a shard creates it (an
            // increment on a missing document), and its markers carry its size (see `ShardCountdown`).
            db.fluent()
                .update()
                .in_col(GAME_DATES)
                .document_id(&header.game_date)
                .object(&pointer)
                .add_to_transaction(tx)?;
            if let Some(older) = &superseded {
                db.fluent()
                    .update()
                    .in_col(BATCHES)
                    .document_id(&older.batch_id)
                    .object(older)
                    .add_to_transaction(tx)?;
            }
            write_record(db, tx, &record)?;
            Ok(BeginOutcome::Created { header, superseded: superseded.map(|older| older.batch_id) })
        }
    }
}
