//! The one-time finalization: claim (RUNNING -> FINALIZING with a lease), finish (-> COMPLETE, FAILED
//! or SUPERSEDED behind the generation fence), and the ready outbox.

use std::time::Duration;

use firestore::{FirestoreDb, FirestoreInstant, FirestoreTransaction, FirestoreWritePrecondition};

use super::commit::{commit_atomically, staged_writes};
use super::header::{HeaderChange, is_precondition_failure};
use super::{BatchStore, StoreError, Totals, firestore_error};
use crate::batch::documents::{BATCHES, BatchHeader, GAME_DATES, GameDatePointer};
use crate::batch::finish::{FinishDecision, decide_finish};
use crate::batch::state::{BatchState, ClaimDecision, FinalizeClaim, decide_claim};
use crate::ops::metrics::TransactionAttempts;

/// How many times a finish that lost a race (header or pointer changed under it) decides again.
const MAX_FINISH_RACES: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimOutcome {
    pub decision: ClaimDecision,
    /// The header after the decision (with this instance's claim when it claimed).
    pub header: BatchHeader,
    /// The header's `update_time` after the decision (of the claim's write when it wrote), if known:
    /// the guard the finish's first attempt writes behind without reading the header again.
    pub version: Option<FirestoreInstant>,
}

/// The date's pointer as read, with its `update_time` (the guard of a commit that flips it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointerRead {
    /// `None`: the date has no pointer.
    pub pointer: Option<GameDatePointer>,
    pub version: Option<FirestoreInstant>,
}

/// What the finalizer already read for the finish's first attempt, so that attempt reads only what
/// is missing (`None`). An attempt after a lost race reads both again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinishRead {
    /// The header as the claim left it, with its `update_time`.
    pub header: Option<(BatchHeader, FirestoreInstant)>,
    /// The date's pointer as read for the fence.
    pub pointer: Option<PointerRead>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    /// The batch reached its final state now.
    Finished(BatchHeader),
    /// This instance no longer holds the claim (lease taken over, or the batch was superseded).
    NotOwner(BatchHeader),
}

impl BatchStore {
    /// Decides and, when it is this instance's to take, records the finalize claim (a guarded write,
    /// not a transaction: see [`super::header`]).
    pub async fn claim_finalize(
        &self,
        batch_id: &str,
        me: &str,
        lease: Duration,
        totals: Totals,
    ) -> Result<ClaimOutcome, StoreError> {
        let outcome = self
            .change_header_versioned(batch_id, ("claim_finalize", "claiming finalization"), |header| {
                let now = FirestoreInstant::now();
                let decision = decide_claim(
                    header.state,
                    totals.terminal(),
                    header.expected_count,
                    header.finalize_claim.as_ref(),
                    me,
                    now,
                );
                if matches!(decision, ClaimDecision::Claim | ClaimDecision::TakeOver { .. }) {
                    header.state = BatchState::Finalizing;
                    header.finalize_claim = Some(new_claim(me, lease, now));
                    // The answer carries the header as written, `header_writes` included.
                    let mut after = header.clone();
                    after.header_writes += 1;
                    HeaderChange::Write(ClaimOutcome { decision, header: after, version: None })
                } else {
                    HeaderChange::Keep(ClaimOutcome { decision, header: header.clone(), version: None })
                }
            })
            .await?;
        let (outcome, version) = outcome.ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))?;
        Ok(ClaimOutcome { version, ..outcome })
    }

    /// Moves a FINALIZING batch this instance holds to its final state (see [`decide_finish`]): the
    /// header and, for a COMPLETE batch, the date's published pointer, in one atomic commit guarded by
    /// both documents' update times, not a transaction. A lost race reads and decides again; a commit
    /// whose answer was lost reads back as this owner's finish. The first attempt decides from what
    /// `read` holds and reads only the rest.
    pub async fn finish(
        &self,
        batch_id: &str,
        me: &str,
        totals: Totals,
        failure_reason: Option<&str>,
        read: FinishRead,
    ) -> Result<FinishOutcome, StoreError> {
        let attempts = TransactionAttempts::new("finish");
        let result = self.finish_guarded(batch_id, me, totals, failure_reason, read, &attempts).await;
        attempts.finish(result)
    }

    async fn finish_guarded(
        &self,
        batch_id: &str,
        me: &str,
        totals: Totals,
        failure_reason: Option<&str>,
        mut read: FinishRead,
        attempts: &TransactionAttempts,
    ) -> Result<FinishOutcome, StoreError> {
        for _ in 0..MAX_FINISH_RACES {
            attempts.attempt();
            // `take`: what the caller read serves the first attempt only.
            let (header, header_version) = match read.header.take() {
                Some(known) => known,
                None => self
                    .versioned_header(batch_id)
                    .await?
                    .ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))?,
            };
            let pointer = match read.pointer.take() {
                Some(known) => known,
                None => self.versioned_pointer(&header.game_date).await?,
            };
            let now = FirestoreInstant::now();
            let decision = decide_finish(&header, pointer.pointer.as_ref(), me, totals, failure_reason, now);
            let (mut finished, flipped) = match decision {
                FinishDecision::NotOwner => return Ok(FinishOutcome::NotOwner(header)),
                FinishDecision::AlreadyFinished => return Ok(FinishOutcome::Finished(header)),
                FinishDecision::Finish { header, pointer } => (*header, pointer),
            };
            finished.header_writes += 1;
            let pointer_version = pointer.version;
            if flipped.is_some() && pointer_version.is_none() {
                let message = "game date pointer without update time".to_string();
                return Err(StoreError::BatchWriteFailed { code: 0, message });
            }
            let mut writes = staged_writes(&self.db);
            let staged: firestore::FirestoreResult<()> = (|| {
                self.db
                    .fluent()
                    .update()
                    .in_col(BATCHES)
                    .precondition(FirestoreWritePrecondition::UpdateTime(header_version))
                    .document_id(batch_id)
                    .object(&finished)
                    .add_to_transaction(&mut writes)?;
                if let (Some(flipped), Some(version)) = (&flipped, pointer_version) {
                    self.db
                        .fluent()
                        .update()
                        .in_col(GAME_DATES)
                        .precondition(FirestoreWritePrecondition::UpdateTime(version))
                        .document_id(&finished.game_date)
                        .object(flipped)
                        .add_to_transaction(&mut writes)?;
                }
                Ok(())
            })();
            staged.map_err(firestore_error("staging a batch's finish"))?;
            match commit_atomically(&self.db, writes).await {
                Ok(_) => return Ok(FinishOutcome::Finished(finished)),
                // The header (a sweeper, an operator) or the pointer (a new generation) moved: decide again.
                Err(error) if is_precondition_failure(&error) => {}
                Err(error) => return Err(firestore_error("finishing a batch")(error)),
            }
        }
        Err(StoreError::BatchWriteFailed {
            code: 10,
            message: format!("batch {batch_id} kept changing under its finish"),
        })
    }

    /// The outbox: records that the ready event was published (once; a second call changes nothing).
    pub async fn record_ready(&self, batch_id: &str, ready_message_id: &str) -> Result<(), StoreError> {
        self.change_header(batch_id, ("record_ready", "recording the ready event"), |header| {
            if header.ready_message_id.is_some() {
                return HeaderChange::Keep(());
            }
            header.ready_message_id = Some(ready_message_id.to_string());
            HeaderChange::Write(())
        })
        .await
        .map(|_| ())
    }

    /// Forgets a COMPLETE batch's recorded ready event and ends its claim's lease, so that it is
    /// announced again at once (by the next finalize attempt or the sweeper): for a ready event that
    /// ran out of delivery attempts without a verdict. Returns whether the header changed.
    pub async fn reopen_announcement(&self, batch_id: &str) -> Result<bool, StoreError> {
        let reopened = self
            .change_header(batch_id, ("reopen_announcement", "reopening an announcement"), |header| {
                if header.state != BatchState::Complete || header.ready_message_id.is_none() {
                    return HeaderChange::Keep(false);
                }
                header.ready_message_id = None;
                // The finalize claim's work is over; its lease must not hold up the new announcement.
                let now = FirestoreInstant::now();
                if let Some(claim) = header.finalize_claim.as_mut() {
                    claim.lease_expires_at = claim.lease_expires_at.min(now);
                }
                HeaderChange::Write(true)
            })
            .await?;
        Ok(reopened.unwrap_or(false))
    }

    /// Gives up a finalize claim early (its lease ends now), so that the redelivered message, the next
    /// completion or the sweeper can take over at once instead of waiting out the lease. Only the
    /// owner's own claim is touched: on a FINALIZING batch, or on a COMPLETE one it has not announced
    /// yet (the claim is then the announcement's lease).
    pub async fn release_claim(&self, batch_id: &str, owner: &str) -> Result<(), StoreError> {
        self.change_header(batch_id, ("release_claim", "releasing a finalize claim"), |header| {
            let unannounced = header.state == BatchState::Complete && header.ready_message_id.is_none();
            let now = FirestoreInstant::now();
            match header.finalize_claim.as_mut() {
                Some(claim)
                    if claim.owner == owner
                        && claim.lease_expires_at > now
                        && (header.state == BatchState::Finalizing || unannounced) =>
                {
                    claim.lease_expires_at = now;
                    HeaderChange::Write(())
                }
                _ => HeaderChange::Keep(()),
            }
        })
        .await
        .map(|_| ())
    }

    /// Takes over the announcement of a COMPLETE batch whose ready event was never recorded, but only
    /// once the finalizer's lease expired (a live finalizer is about to announce it itself). Returns
    /// whether this caller should announce.
    pub async fn claim_announcement(&self, batch_id: &str, owner: &str, lease: Duration) -> Result<bool, StoreError> {
        let claimed = self
            .change_header(batch_id, ("claim_announcement", "claiming the announcement"), |header| {
                let now = FirestoreInstant::now();
                let lease_live = header.finalize_claim.as_ref().is_some_and(|c| c.lease_expires_at > now);
                if header.state != BatchState::Complete || header.ready_message_id.is_some() || lease_live {
                    return HeaderChange::Keep(false);
                }
                header.finalize_claim = Some(new_claim(owner, lease, now));
                HeaderChange::Write(true)
            })
            .await?;
        Ok(claimed.unwrap_or(false))
    }

    /// The date's pointer with its `update_time`, for a write guarded by it.
    pub async fn versioned_pointer(&self, game_date: &str) -> Result<PointerRead, StoreError> {
        let root = self.db.get_documents_path().clone();
        let read = ("reading the game date pointer", "decoding the game date pointer");
        let pointer: Option<(GameDatePointer, _)> = self.versioned(&root, GAME_DATES, game_date, read).await?;
        Ok(pointer.map(|(pointer, version)| PointerRead { pointer: Some(pointer), version }).unwrap_or_default())
    }

    /// The date's pointer (the fence and the published generation), read outside a transaction.
    pub async fn pointer(&self, game_date: &str) -> Result<Option<GameDatePointer>, StoreError> {
        self.db
            .fluent()
            .select()
            .by_id_in(GAME_DATES)
            .obj()
            .one(game_date)
            .await
            .map_err(firestore_error("reading the game date pointer"))
    }
}

/// A claim for `owner` whose lease runs `lease` from `now` (settings bound leases to an hour, so the
/// addition cannot overflow a timestamp; if it did, the lease would end at once, never run forever).
fn new_claim(owner: &str, lease: Duration, now: FirestoreInstant) -> FinalizeClaim {
    FinalizeClaim { owner: owner.to_string(), lease_expires_at: now.saturating_add(lease).unwrap_or(now) }
}

/// Every header write goes through here, so `header_writes` counts them all.
pub(super) fn write_header(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction,
    header: &mut BatchHeader,
) -> firestore::FirestoreResult<()> {
    header.header_writes += 1;
    db.fluent().update().in_col(BATCHES).document_id(&header.batch_id).object(&*header).add_to_transaction(tx)?;
    Ok(())
}
