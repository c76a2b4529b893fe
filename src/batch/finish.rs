//! The finish decision, pure: what a FINALIZING batch becomes, and whether the date's published
//! generation moves to it.
//!
//! Publishing is a pointer flip, not a copy: the batch's results stay where its workers wrote them
//! (`batches/{id}/results`), and `game_dates/{date}.published_batch_id` names the batch whose results
//! are current. The flip is written in the same commit as the batch's COMPLETE state, so the pointer
//! never names a batch that is not COMPLETE, an older generation can never overwrite a newer one's
//! results (it is not current, so it ends SUPERSEDED and the pointer stays), and a newer generation that
//! fails leaves the published one untouched. The work is the same at any batch size.

use firestore::FirestoreInstant;

use super::documents::{BatchHeader, GameDatePointer};
use super::state::{BatchState, coverage, outcome};
use super::store::Totals;

/// What `finish` must do, decided from the header and the date's pointer as read.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishDecision {
    /// Another attempt holds the claim, or the batch already finished under another owner.
    NotOwner,
    /// This owner's finish is already in (a commit whose answer was lost, read back).
    AlreadyFinished,
    /// Write the final header and, when it publishes the batch, the pointer.
    Finish { header: Box<BatchHeader>, pointer: Option<GameDatePointer> },
}

/// Decides the finish of `header` by claim owner `me` with the batch's `totals`: SUPERSEDED when the
/// date's pointer moved to another batch (the generation fence), FAILED with `failure_reason` when one
/// is given or by the failure policy, else COMPLETE, which also publishes the batch.
pub fn decide_finish(
    header: &BatchHeader,
    pointer: Option<&GameDatePointer>,
    me: &str,
    totals: Totals,
    failure_reason: Option<&str>,
    now: FirestoreInstant,
) -> FinishDecision {
    let owned = header.finalize_claim.as_ref().is_some_and(|c| c.owner == me);
    if !owned {
        return FinishDecision::NotOwner;
    }
    if header.state.is_final() {
        return FinishDecision::AlreadyFinished;
    }
    if header.state != BatchState::Finalizing {
        return FinishDecision::NotOwner;
    }
    let current = pointer.is_some_and(|p| p.current_batch_id == header.batch_id);
    let mut header = header.clone();
    header.state = if !current {
        BatchState::Superseded
    } else if failure_reason.is_some() {
        BatchState::Failed
    } else {
        outcome(totals.failed, totals.skipped, header.expected_count, header.tolerated_failed_fraction)
    };
    if header.state == BatchState::Failed {
        header.failure_reason =
            Some(failure_reason.map(String::from).unwrap_or_else(|| policy_reason(&header, totals)));
    }
    header.finalized_at = Some(now);
    header.done_count = Some(totals.done);
    header.failed_count = Some(totals.failed);
    header.skipped_count = Some(totals.skipped);
    header.results_count = Some(totals.results);
    header.coverage = Some(coverage(totals.done, header.expected_count));
    let pointer = match (header.state, pointer) {
        (BatchState::Complete, Some(pointer)) => Some(GameDatePointer {
            published_batch_id: Some(header.batch_id.clone()),
            published_generation: Some(header.generation),
            ..pointer.clone()
        }),
        _ => None,
    };
    FinishDecision::Finish { header: Box::new(header), pointer }
}

fn policy_reason(header: &BatchHeader, totals: Totals) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::begin::{new_header, test_spec};
    use crate::batch::state::FinalizeClaim;
    use crate::messages::TriggerMode;

    fn finalizing(batch_id: &str, generation: u64, owner: &str) -> BatchHeader {
        let now = FirestoreInstant::now();
        let spec = test_spec(TriggerMode::Start, "c", false);
        let mut header = new_header(&spec, batch_id, "2024-04-22", generation, now);
        header.expected_count = 10;
        header.state = BatchState::Finalizing;
        header.finalize_claim = Some(FinalizeClaim { owner: owner.into(), lease_expires_at: now });
        header
    }

    fn pointer(current: &str, published: Option<(&str, u64)>) -> GameDatePointer {
        GameDatePointer {
            current_generation: 2,
            current_batch_id: current.into(),
            published_batch_id: published.map(|(id, _)| id.to_string()),
            published_generation: published.map(|(_, g)| g),
        }
    }

    fn totals(done: u64, failed: u64) -> Totals {
        Totals { done, failed, skipped: 0, results: done * 3 }
    }

    fn finish(decision: FinishDecision) -> (BatchHeader, Option<GameDatePointer>) {
        match decision {
            FinishDecision::Finish { header, pointer } => (*header, pointer),
            other => panic!("expected a finish, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_current_batch_is_published_in_the_same_write() {
        let header = finalizing("b2", 2, "me");
        let before = pointer("b2", Some(("b1", 1)));
        let (after, flipped) = finish(decide_finish(&header, Some(&before), "me", totals(10, 0), None, now()));
        assert_eq!(after.state, BatchState::Complete);
        assert_eq!((after.done_count, after.results_count, after.coverage), (Some(10), Some(30), Some(1.0)));
        let flipped = flipped.expect("the pointer flips");
        assert_eq!((flipped.published_batch_id.as_deref(), flipped.published_generation), (Some("b2"), Some(2)));
        assert_eq!((flipped.current_batch_id.as_str(), flipped.current_generation), ("b2", 2), "fence kept");
    }

    #[test]
    fn a_batch_that_fails_or_is_superseded_leaves_the_published_generation() {
        let before = pointer("b2", Some(("b1", 1)));
        let (failed, flipped) =
            finish(decide_finish(&finalizing("b2", 2, "me"), Some(&before), "me", totals(2, 8), None, now()));
        assert_eq!(failed.state, BatchState::Failed);
        assert_eq!(failed.failure_reason.as_deref(), Some("8 of 10 items failed, over the tolerated 10%"));
        assert_eq!(flipped, None);
        let reason = Some("consolidation failed: bad");
        let (failed, flipped) =
            finish(decide_finish(&finalizing("b2", 2, "me"), Some(&before), "me", totals(10, 0), reason, now()));
        assert_eq!((failed.state, failed.failure_reason.as_deref(), flipped), (BatchState::Failed, reason, None));
        // An older generation finishing after a newer one started: superseded, never published.
        let newer = pointer("b3", Some(("b1", 1)));
        let (old, flipped) =
            finish(decide_finish(&finalizing("b2", 2, "me"), Some(&newer), "me", totals(10, 0), None, now()));
        assert_eq!((old.state, flipped), (BatchState::Superseded, None));
        let (orphan, flipped) =
            finish(decide_finish(&finalizing("b2", 2, "me"), None, "me", totals(10, 0), None, now()));
        assert_eq!((orphan.state, flipped), (BatchState::Superseded, None));
    }

    #[test]
    fn only_the_claim_holder_finishes_and_its_own_finish_reads_back_as_done() {
        let before = pointer("b2", None);
        let header = finalizing("b2", 2, "other");
        assert_eq!(decide_finish(&header, Some(&before), "me", totals(10, 0), None, now()), FinishDecision::NotOwner);
        let (mut finished, _) =
            finish(decide_finish(&finalizing("b2", 2, "me"), Some(&before), "me", totals(10, 0), None, now()));
        assert_eq!(
            decide_finish(&finished, Some(&before), "me", totals(10, 0), None, now()),
            FinishDecision::AlreadyFinished
        );
        finished.finalize_claim = None;
        assert_eq!(decide_finish(&finished, Some(&before), "me", totals(10, 0), None, now()), FinishDecision::NotOwner);
        let mut running = finalizing("b2", 2, "me");
        running.state = BatchState::Running;
        assert_eq!(decide_finish(&running, Some(&before), "me", totals(10, 0), None, now()), FinishDecision::NotOwner);
    }

    fn now() -> FirestoreInstant {
        FirestoreInstant::now()
    }
}
