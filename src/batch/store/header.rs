//! Changing the batch header without a transaction: read it with its `update_time`, decide, and write
//! it back only if nobody wrote it meanwhile (an `update_time` precondition). A lost race re-reads and
//! decides again.
//!
//! Why not a transaction: the header is the one document every completion of a batch looks at when the
//! batch becomes whole. Transactions that read it take a lock, and under faults they were seen to
//! contend until firestore-rs gave up ("Transient error occurred in transaction", ~1,200 times in one
//! run) and the completions behind them exhausted their delivery attempts. A read plus a guarded write
//! holds no lock, and a decision that writes nothing (the common case: the claim is someone else's)
//! costs one read.

use firestore::{FirestoreInstant, FirestoreWritePrecondition};
use serde::Deserialize;

use super::{BatchStore, StoreError, firestore_error};
use crate::batch::documents::{BATCHES, BatchHeader};
use crate::ops::metrics::TransactionAttempts;

/// How many times a lost race is decided again before the caller sees a retryable error.
const MAX_RACES: usize = 5;

/// What a decision on the header wants done.
pub(crate) enum HeaderChange<T> {
    /// Write the (changed) header, then answer `T`.
    Write(T),
    /// Leave the header as it is and answer `T`.
    Keep(T),
}

impl BatchStore {
    /// Reads the header, lets `decide` change it, and writes it back unless another writer got there
    /// first (then reads and decides again). `None` when the batch does not exist. Every write counts
    /// in `header_writes`.
    ///
    /// Counted like a transaction in `props_transactions_total` under `metric` (one decision, its lost
    /// races as retries); `operation` names it in errors.
    pub(crate) async fn change_header<T>(
        &self,
        batch_id: &str,
        (metric, operation): (&'static str, &'static str),
        decide: impl FnMut(&mut BatchHeader) -> HeaderChange<T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.change_header_versioned(batch_id, (metric, operation), decide).await?.map(|(answer, _)| answer))
    }

    /// [`Self::change_header`], also answering the header's `update_time` after the decision: of the
    /// write when it wrote (`None` if the answer carried none), of the read when it kept the header.
    /// A caller that guards its next write of the header with it spares that write a read.
    pub(crate) async fn change_header_versioned<T>(
        &self,
        batch_id: &str,
        (metric, operation): (&'static str, &'static str),
        decide: impl FnMut(&mut BatchHeader) -> HeaderChange<T>,
    ) -> Result<Option<(T, Option<FirestoreInstant>)>, StoreError> {
        let attempts = TransactionAttempts::new(metric);
        let result = self.decide_and_write(batch_id, operation, decide, &attempts).await;
        attempts.finish(result)
    }

    async fn decide_and_write<T>(
        &self,
        batch_id: &str,
        operation: &'static str,
        mut decide: impl FnMut(&mut BatchHeader) -> HeaderChange<T>,
        attempts: &TransactionAttempts,
    ) -> Result<Option<(T, Option<FirestoreInstant>)>, StoreError> {
        let mut races = 0;
        loop {
            attempts.attempt();
            let Some((mut header, version)) = self.versioned_header(batch_id).await? else {
                return Ok(None);
            };
            let answer = match decide(&mut header) {
                HeaderChange::Keep(answer) => return Ok(Some((answer, Some(version)))),
                HeaderChange::Write(answer) => answer,
            };
            header.header_writes += 1;
            let written = self
                .db
                .fluent()
                .update()
                .in_col(BATCHES)
                .precondition(FirestoreWritePrecondition::UpdateTime(version))
                .document_id(batch_id)
                .object(&header)
                .execute::<WriteTime>()
                .await;
            match written {
                Ok(written) => return Ok(Some((answer, written.updated))),
                Err(error) if is_precondition_failure(&error) && races < MAX_RACES => races += 1,
                Err(error) => return Err(firestore_error(operation)(error)),
            }
        }
    }

    /// The header with its `update_time`, the version a guarded write compares against.
    pub(super) async fn versioned_header(
        &self,
        batch_id: &str,
    ) -> Result<Option<(BatchHeader, FirestoreInstant)>, StoreError> {
        let root = self.db.get_documents_path().clone();
        let read =
            self.versioned(&root, BATCHES, batch_id, ("reading a batch header", "decoding a batch header")).await?;
        Ok(read.map(|(header, version): (BatchHeader, _)| {
            let version = version.unwrap_or(header.created_at);
            (header, version)
        }))
    }
}

/// The `update_time` a write answers with (firestore-rs hands the returned document's update time to
/// serde as the field `_firestore_updated`).
#[derive(Deserialize)]
struct WriteTime {
    #[serde(rename = "_firestore_updated", default)]
    updated: Option<FirestoreInstant>,
}

/// A guarded write that lost its race: the document changed (FAILED_PRECONDITION) or is gone.
pub(crate) fn is_precondition_failure(error: &firestore::errors::FirestoreError) -> bool {
    use firestore::errors::FirestoreError as E;
    match error {
        E::DataNotFoundError(_) | E::DataConflictError(_) => true,
        E::DatabaseError(e) => e.public.code == "FailedPrecondition",
        _ => false,
    }
}
