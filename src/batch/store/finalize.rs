//! The one-time finalization: claim (RUNNING -> FINALIZING with a lease), finish (-> COMPLETE, FAILED
//! or SUPERSEDED behind the generation fence), and the ready outbox.

use std::time::Duration;

use firestore::{FirestoreDb, FirestoreInstant, FirestoreTransaction};
use futures::FutureExt;

use super::begin::read_header;
use super::header::HeaderChange;
use super::{BatchStore, CountedTransaction, StoreError, Totals, firestore_error};
use crate::batch::documents::{BATCHES, BatchHeader, GAME_DATES, GameDatePointer};
use crate::batch::state::{BatchState, ClaimDecision, FinalizeClaim, coverage, decide_claim, outcome};

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimOutcome {
    pub decision: ClaimDecision,
    /// The header after the transaction (with this instance's claim when it claimed).
    pub header: BatchHeader,
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
            .change_header(batch_id, ("claim_finalize", "claiming finalization"), |header| {
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
                    HeaderChange::Write(ClaimOutcome { decision, header: after })
                } else {
                    HeaderChange::Keep(ClaimOutcome { decision, header: header.clone() })
                }
            })
            .await?;
        outcome.ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))
    }

    /// Moves a FINALIZING batch this instance holds to its final state: SUPERSEDED when the date's
    /// pointer moved to another batch (the generation fence), else COMPLETE or FAILED by the failure
    /// policy (or FAILED with `failure_reason` when given).
    pub async fn finish(
        &self,
        batch_id: &str,
        me: &str,
        totals: Totals,
        failure_reason: Option<&str>,
    ) -> Result<FinishOutcome, StoreError> {
        let outcome = self
            .db
            .counted_transaction("finish", |db, tx| {
                let (batch_id, me, failure_reason) =
                    (batch_id.to_string(), me.to_string(), failure_reason.map(String::from));
                async move {
                    let Some(mut header) = read_header(&db, &batch_id).await? else {
                        return Ok(None);
                    };
                    let mine = header.state == BatchState::Finalizing
                        && header.finalize_claim.as_ref().is_some_and(|c| c.owner == me);
                    if !mine {
                        return Ok(Some(FinishOutcome::NotOwner(header)));
                    }
                    let pointer: Option<GameDatePointer> =
                        db.fluent().select().by_id_in(GAME_DATES).obj().one(&header.game_date).await?;
                    let current = pointer.is_some_and(|p| p.current_batch_id == header.batch_id);
                    header.state = if !current {
                        BatchState::Superseded
                    } else if failure_reason.is_some() {
                        BatchState::Failed
                    } else {
                        outcome(totals.failed, totals.skipped, header.expected_count, header.tolerated_failed_fraction)
                    };
                    if header.state == BatchState::Failed {
                        header.failure_reason = Some(failure_reason.clone().unwrap_or_else(|| {
                            let skipped = match totals.skipped {
                                0 => String::new(),
                                n => format!(" ({n} more skipped)"),
                            };
                            format!(
                                "{} of {} items failed{skipped}, over the tolerated {:.0}%",
                                totals.failed,
                                header.expected_count.saturating_sub(totals.skipped),
                                header.tolerated_failed_fraction * 100.0
                            )
                        }));
                    }
                    header.finalized_at = Some(FirestoreInstant::now());
                    header.done_count = Some(totals.done);
                    header.failed_count = Some(totals.failed);
                    header.skipped_count = Some(totals.skipped);
                    header.predictions_count = Some(totals.predictions);
                    header.coverage = Some(coverage(totals.done, header.expected_count));
                    write_header(&db, tx, &mut header)?;
                    Ok(Some(FinishOutcome::Finished(header)))
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("finishing a batch"))?;
        outcome.ok_or_else(|| StoreError::UnknownBatch(batch_id.to_string()))
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

    /// Whether `batch_id` is still the date's current batch (the fence, read outside a transaction).
    pub async fn is_current(&self, header: &BatchHeader) -> Result<bool, StoreError> {
        let pointer: Option<GameDatePointer> = self
            .db
            .fluent()
            .select()
            .by_id_in(GAME_DATES)
            .obj()
            .one(&header.game_date)
            .await
            .map_err(firestore_error("reading the game date pointer"))?;
        Ok(pointer.is_some_and(|p| p.current_batch_id == header.batch_id))
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
