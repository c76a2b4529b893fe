//! Creating (or resuming) the batch for a trigger, writing its item markers, and sealing it.

use std::time::Duration;

use firestore::{FirestoreDb, FirestoreInstant, FirestoreWritePrecondition};
use futures::FutureExt;

use super::header::HeaderChange;
use super::{BatchStore, CountedTransaction, MAX_WRITES_PER_BATCH_WRITE, StoreError, firestore_error};
use crate::batch::audit::{AuditOutcome, AuditRecord, read_record, write_record};
use crate::batch::documents::{
    BATCHES, BatchHeader, COUNTERS, CounterShard, GAME_DATES, GameDatePointer, ITEMS, ItemMarker, batch_id_for,
    counter_shard_of,
};
use crate::batch::state::BatchState;
use crate::messages::{TriggerMessage, TriggerMode};

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
    /// Items per counter shard ([`crate::batch::documents::shard_sizes`]), written into the shards so
    /// they count down; empty when unknown (every completion then checks wholeness).
    pub shard_sizes: Vec<u64>,
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
        let parent = self.batch_path(&batch_id)?;
        self.db
            .counted_transaction("begin_batch", |db, tx| {
                let (game_date, batch_id, parent, spec) =
                    (game_date.clone(), batch_id.clone(), parent.clone(), spec.clone());
                async move {
                    let now = FirestoreInstant::now();
                    let message_id = &spec.trigger_message_id;
                    let recorded = read_record(&db, message_id).await?;
                    if let Some(existing) = read_header(&db, &batch_id).await? {
                        if recorded.is_none() {
                            let record = AuditRecord::decided(&spec, AuditOutcome::Resumed, now).with_batch(&existing);
                            write_record(&db, tx, &record)?;
                        }
                        return Ok(BeginOutcome::Resumed(existing));
                    }
                    if let Some(record) = recorded {
                        return Ok(BeginOutcome::AlreadyDecided(record));
                    }
                    let pointer: Option<GameDatePointer> =
                        db.fluent().select().by_id_in(GAME_DATES).obj().one(&game_date).await?;
                    let pointer = pointer.unwrap_or_default();
                    let current = match pointer.current_batch_id.as_str() {
                        "" => None,
                        id => read_header(&db, id).await?,
                    };
                    let no_op = |current: &BatchHeader, detail: String| {
                        let mut record = AuditRecord::decided(&spec, AuditOutcome::NoOp, now);
                        record.active_batch_id = Some(current.batch_id.clone());
                        record.detail = Some(detail);
                        record
                    };
                    if let Some(current) = &current
                        && current.correlation_id == spec.correlation_id
                    {
                        let detail = format!(
                            "repeats correlation id {} of batch {} ({})",
                            spec.correlation_id, current.batch_id, current.state
                        );
                        write_record(&db, tx, &no_op(current, detail))?;
                        return Ok(BeginOutcome::Duplicate(current.clone()));
                    }
                    let active = current.as_ref().filter(|c| !c.state.is_final()).cloned();
                    let replaces_active =
                        spec.trigger.mode == TriggerMode::RegenerateWithSupersede || spec.trigger.force();
                    if let Some(active) = &active
                        && !replaces_active
                    {
                        let detail =
                            format!("batch {} is {}; set metadata.force to override", active.batch_id, active.state);
                        write_record(&db, tx, &no_op(active, detail))?;
                        return Ok(BeginOutcome::ActiveBatchExists(active.clone()));
                    }

                    let header = new_header(&spec, &batch_id, &game_date, pointer.current_generation + 1, now);
                    db.fluent()
                        .update()
                        .in_col(BATCHES)
                        .precondition(FirestoreWritePrecondition::Exists(false))
                        .document_id(&batch_id)
                        .object(&header)
                        .add_to_transaction(tx)?;
                    for shard in 0..spec.counter_shards {
                        db.fluent()
                            .update()
                            .in_col(COUNTERS)
                            .precondition(FirestoreWritePrecondition::Exists(false))
                            .document_id(shard.to_string())
                            .parent(&parent)
                            .object(&CounterShard {
                                remaining: spec.shard_sizes.get(shard as usize).copied().unwrap_or(0) as i64,
                                ..CounterShard::default()
                            })
                            .add_to_transaction(tx)?;
                    }
                    let pointer =
                        GameDatePointer { current_generation: header.generation, current_batch_id: batch_id.clone() };
                    db.fluent()
                        .update()
                        .in_col(GAME_DATES)
                        .document_id(&game_date)
                        .object(&pointer)
                        .add_to_transaction(tx)?;
                    let superseded = match active {
                        Some(mut older) if older.state.can_become(BatchState::Superseded) => {
                            older.state = BatchState::Superseded;
                            older.superseded_by = Some(batch_id.clone());
                            older.header_writes += 1;
                            db.fluent()
                                .update()
                                .in_col(BATCHES)
                                .document_id(&older.batch_id)
                                .object(&older)
                                .add_to_transaction(tx)?;
                            Some(older.batch_id)
                        }
                        _ => None,
                    };
                    let outcome = if current.is_some() { AuditOutcome::Superseding } else { AuditOutcome::Started };
                    let mut record = AuditRecord::decided(&spec, outcome, now).with_batch(&header);
                    record.supersedes_batch_id = current.as_ref().map(|c| c.batch_id.clone());
                    record.supersedes_batch_state = current.as_ref().map(|c| c.state);
                    write_record(&db, tx, &record)?;
                    Ok(BeginOutcome::Created { header, superseded })
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("beginning a batch"))
    }

    /// Writes a pending marker for each item that has none yet (BatchWrite, create-only, so a marker a
    /// completion already made terminal is never reset). Returns how many were created. Each marker
    /// names its counter shard among `counter_shards` (the header's), for the worker that records it.
    pub async fn write_item_markers(
        &self,
        batch_id: &str,
        items: &[String],
        counter_shards: u64,
    ) -> Result<usize, StoreError> {
        let parent = self.batch_path(batch_id)?;
        let writer = self.db.create_simple_batch_writer().await.map_err(firestore_error("opening a batch writer"))?;
        let mut created = 0;
        for chunk in items.chunks(MAX_WRITES_PER_BATCH_WRITE) {
            let mut batch = writer.new_batch();
            for item in chunk {
                let marker = ItemMarker::pending_in(counter_shard_of(item, counter_shards));
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

fn new_header(spec: &NewBatch, batch_id: &str, game_date: &str, generation: u64, now: FirestoreInstant) -> BatchHeader {
    let retention = firestore::jiff::SignedDuration::try_from(spec.retention)
        .unwrap_or(firestore::jiff::SignedDuration::from_hours(24 * 7));
    BatchHeader {
        batch_id: batch_id.to_string(),
        game_date: game_date.to_string(),
        generation,
        mode: spec.trigger.mode.as_str().to_string(),
        reason: spec.trigger.reason.clone(),
        metadata_json: serde_json::Value::Object(spec.trigger.metadata.clone()).to_string(),
        correlation_id: spec.correlation_id.clone(),
        trigger_message_id: spec.trigger_message_id.clone(),
        state: BatchState::Publishing,
        expected_count: spec.expected_count,
        counter_shards: spec.counter_shards,
        tolerated_failed_fraction: spec.tolerated_failed_fraction,
        model_version: spec.model_version.clone(),
        created_at: now,
        sealed_at: None,
        finalize_claim: None,
        finalized_at: None,
        done_count: None,
        failed_count: None,
        skipped_count: None,
        predictions_count: None,
        coverage: None,
        failure_reason: None,
        superseded_by: None,
        ready_message_id: None,
        redrive_count: 0,
        last_redrive_at: None,
        header_writes: 1,
        shards_count_down: spec.shard_sizes.len() as u64 == spec.counter_shards.max(1)
            && spec.shard_sizes.iter().sum::<u64>() == spec.expected_count,
        expire_at: now.saturating_add(retention).unwrap_or(now),
    }
}
