//! The batch state machine of the design, as pure code: states, legal transitions, and the decisions
//! the engine takes from a batch header (finalize claims with leases, completion detection, fencing).
//!
//! ```text
//! PUBLISHING -> RUNNING -> FINALIZING -> COMPLETE | FAILED
//!      \____________\___________\______-> SUPERSEDED   (from any non-final state)
//! ```
//!
//! The store applies these decisions inside Firestore transactions; nothing here does I/O, so every rule
//! is unit-tested exhaustively below.

use std::fmt;
use std::time::Duration;

use firestore::FirestoreInstant;
use serde::{Deserialize, Serialize};

use super::documents::{ItemMarker, ItemStatus};
use crate::messages::{CompletionMessage, CompletionStatus, RequestMessage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchState {
    /// Item markers written, requests being published; not yet sealed.
    Publishing,
    /// Every request published; completions are being recorded.
    Running,
    /// Every item is terminal and one instance holds the finalize claim.
    Finalizing,
    /// Consolidated and announced.
    Complete,
    /// Ended without consolidation (too many failed items).
    Failed,
    /// A newer generation for the same date replaced it before it completed.
    Superseded,
}

impl BatchState {
    pub const ALL: [BatchState; 6] =
        [Self::Publishing, Self::Running, Self::Finalizing, Self::Complete, Self::Failed, Self::Superseded];

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Superseded)
    }

    /// Whether the design allows `self -> next`.
    pub fn can_become(self, next: BatchState) -> bool {
        use BatchState::*;
        match (self, next) {
            (Publishing, Running) | (Running, Finalizing) | (Finalizing, Complete | Failed) => true,
            (from, Superseded) => !from.is_final(),
            _ => false,
        }
    }

    /// Checks `self -> next`, for transaction closures that must fail permanently on an illegal move.
    pub fn transition(self, next: BatchState) -> Result<BatchState, IllegalTransition> {
        if self.can_become(next) { Ok(next) } else { Err(IllegalTransition { from: self, to: next }) }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publishing => "PUBLISHING",
            Self::Running => "RUNNING",
            Self::Finalizing => "FINALIZING",
            Self::Complete => "COMPLETE",
            Self::Failed => "FAILED",
            Self::Superseded => "SUPERSEDED",
        }
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal batch transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: BatchState,
    pub to: BatchState,
}

/// Who holds the one-time finalization, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeClaim {
    pub owner: String,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub lease_expires_at: FirestoreInstant,
}

/// What an instance that saw the last completion should do about finalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// RUNNING and whole: claim it (CAS RUNNING -> FINALIZING with a lease).
    Claim,
    /// FINALIZING under an expired lease (its owner died): take the claim over.
    TakeOver { previous_owner: String },
    /// This instance already holds the claim (a redelivery): carry on finalizing.
    AlreadyMine,
    /// FINALIZING under a live lease held by another instance: retry the message later.
    HeldByOther { owner: String, expires_in: Duration },
    /// Not whole yet, or still publishing: nothing to do.
    NotReady,
    /// Final already: nothing to do (a late duplicate).
    AlreadyFinal,
}

/// Decides finalization from the batch header alone.
pub fn decide_claim(
    state: BatchState,
    terminal_items: u64,
    expected_items: u64,
    claim: Option<&FinalizeClaim>,
    me: &str,
    now: FirestoreInstant,
) -> ClaimDecision {
    match state {
        s if s.is_final() => ClaimDecision::AlreadyFinal,
        BatchState::Publishing => ClaimDecision::NotReady,
        BatchState::Running if terminal_items >= expected_items => ClaimDecision::Claim,
        BatchState::Running => ClaimDecision::NotReady,
        BatchState::Finalizing => match claim {
            // FINALIZING always carries a claim; a header without one was written by hand or by a bug,
            // and taking it over is the only way it can finish.
            None => ClaimDecision::TakeOver { previous_owner: String::new() },
            Some(claim) if claim.owner == me => ClaimDecision::AlreadyMine,
            Some(claim) => match Duration::try_from(claim.lease_expires_at.duration_since(now)) {
                Ok(expires_in) if !expires_in.is_zero() => {
                    ClaimDecision::HeldByOther { owner: claim.owner.clone(), expires_in }
                }
                _ => ClaimDecision::TakeOver { previous_owner: claim.owner.clone() },
            },
        },
        // Every other state is final and handled by the first arm.
        _ => ClaimDecision::AlreadyFinal,
    }
}

/// Whether a completion for `generation` may change a batch of `batch_generation` in `state`: only the
/// batch's own generation, and only while it is collecting completions. A completion that arrives
/// during PUBLISHING (a fast worker beat the seal) is recorded too: its item marker already exists.
pub fn accepts_completion(state: BatchState, batch_generation: u64, generation: u64) -> bool {
    generation == batch_generation && matches!(state, BatchState::Publishing | BatchState::Running)
}

/// What recording a completion does to its item's marker: the terminal marker to write and the counter
/// field it increments, or `None` when the item is terminal already (a duplicate changes nothing). The
/// attempts and redrive history carry over, so a redriven item that completes still shows its redrives.
pub fn record_item(marker: &ItemMarker, completion: &CompletionMessage) -> Option<(ItemMarker, &'static str)> {
    if marker.status != ItemStatus::Pending {
        return None;
    }
    let (status, counter) = match completion.status {
        CompletionStatus::Ok => (ItemStatus::Done, "done"),
        CompletionStatus::Failed => (ItemStatus::Failed, "failed"),
        CompletionStatus::Skipped => (ItemStatus::Skipped, "skipped"),
    };
    let terminal = ItemMarker {
        status,
        attempts: marker.attempts + 1,
        results_count: completion.results_count,
        error: completion.error.clone(),
        redrives: marker.redrives,
        redriven_by: marker.redriven_by.clone(),
        shard: marker.shard,
        shard_size: marker.shard_size,
    };
    Some((terminal, counter))
}

/// How a recording commit counts its item down on the item's counter shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardCountdown {
    /// The marker knows its shard's size: increment `recorded`; the shard has `size - recorded` to go.
    /// The shard document need not exist beforehand (an increment creates it).
    Recorded { size: u64 },
    /// A marker from before markers carried their shard's size: decrement `remaining`, which begin
    /// set to the shard's size (or left at 0 in batches that do not count down: then negative).
    Remaining,
}

impl ShardCountdown {
    pub fn of(marker: &ItemMarker) -> Self {
        match marker.shard_size {
            Some(size) => Self::Recorded { size },
            None => Self::Remaining,
        }
    }

    /// The shard field the commit increments, and by how much.
    pub fn increment(self) -> (&'static str, i64) {
        match self {
            Self::Recorded { .. } => ("recorded", 1),
            Self::Remaining => ("remaining", -1),
        }
    }

    /// The shard's items to go, from the incremented field's value after the commit.
    pub fn remaining_after(self, value: i64) -> i64 {
        match self {
            Self::Recorded { size } => i64::try_from(size).unwrap_or(i64::MAX).saturating_sub(value),
            Self::Remaining => value,
        }
    }
}

/// What a worker announces for an item it found terminal before doing any work (a redelivered
/// request whose first delivery recorded the item, or a twin that lost the race): the recorded
/// outcome as the marker has it, with its shard's count unknown, so the coordinator checks wholeness
/// (the first announcement may never have been published). `None` while the item is pending.
pub fn reannouncement(marker: &ItemMarker, request: &RequestMessage) -> Option<CompletionMessage> {
    let completion = match marker.status {
        ItemStatus::Pending => return None,
        ItemStatus::Done => CompletionMessage::ok(request, marker.results_count),
        ItemStatus::Failed => CompletionMessage::failed(request, marker.error.as_deref().unwrap_or_default()),
        ItemStatus::Skipped => CompletionMessage::skipped(request, marker.error.as_deref().unwrap_or_default()),
    };
    Some(completion.announced(None))
}

/// What the coordinator does with a completion message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionAction {
    /// The older shape (a worker that staged its result and left the marker to the coordinator) or a
    /// dead letter's verdict: record the item here.
    Record,
    /// The worker recorded the item and its shard still counts items to go: the batch cannot be
    /// whole, so nothing is read or written.
    Nothing,
    /// The worker recorded the item and emptied its shard: check whether the batch is whole (a
    /// failed check is retried: this may be the batch's last item).
    CheckWholeness,
    /// The worker re-announced an item it found terminal, so whether its shard emptied is unknown:
    /// check once, like a duplicate; a failed check is left to the claim holder or the sweeper rather
    /// than retried (under faults, every redelivered request re-announces).
    CheckOnce,
}

/// Decides from the message alone. A shard counts down from its size only in batches that count down
/// ([`super::documents::BatchHeader::shards_count_down`]); elsewhere `remaining` starts at 0, so a
/// commit returns a negative count and every completion checks, as before.
pub fn completion_action(completion: &CompletionMessage) -> CompletionAction {
    match (completion.recorded, completion.shard_remaining) {
        (false, _) => CompletionAction::Record,
        (true, Some(left)) if left > 0 => CompletionAction::Nothing,
        (true, Some(_)) => CompletionAction::CheckWholeness,
        (true, None) => CompletionAction::CheckOnce,
    }
}

/// The final state of a whole batch under its failure policy: FAILED when the failed fraction of the
/// items the domain took on exceeds the tolerated one, COMPLETE otherwise. Skipped items (declined by
/// the domain with a reason) are neither failures nor part of the base: a batch of 52 with 7 skipped
/// and 5 failed has failed 5 of 45. A batch with nothing left to judge (empty, or all skipped) completes.
pub fn outcome(failed: u64, skipped: u64, expected: u64, tolerated_failed_fraction: f64) -> BatchState {
    let attempted = expected.saturating_sub(skipped);
    if attempted > 0 && (failed as f64 / attempted as f64) > tolerated_failed_fraction {
        BatchState::Failed
    } else {
        BatchState::Complete
    }
}

/// Coverage of a finished batch: the fraction of its expected items that are done (for the NBA domain,
/// predicted players / slate players), so failed and skipped items both lower it. An empty batch
/// misses nothing, so its coverage is 1.
pub fn coverage(done: u64, expected: u64) -> f64 {
    if expected == 0 { 1.0 } else { done as f64 / expected as f64 }
}

/// Whether a batch that reached `state` with `coverage` must raise the low-coverage alert: only a
/// COMPLETE one, since a FAILED batch raises its own alert and a SUPERSEDED one was replaced.
pub fn is_low_coverage(state: BatchState, coverage: f64, threshold: f64) -> bool {
    state == BatchState::Complete && coverage < threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchState::*;

    fn completion(status: CompletionStatus, results_count: u64, error: Option<&str>) -> CompletionMessage {
        CompletionMessage {
            batch_id: "b".into(),
            generation: 1,
            item: "p".into(),
            status,
            results_count,
            error: error.map(String::from),
            recorded: false,
            shard_remaining: None,
        }
    }

    fn request() -> RequestMessage {
        RequestMessage {
            batch_id: "b".into(),
            generation: 1,
            game_date: "2024-04-22".parse().unwrap(),
            item: "p".into(),
            correlation_id: String::new(),
        }
    }

    #[test]
    fn only_an_announcement_that_may_have_emptied_its_shard_checks_wholeness() {
        let ok = completion(CompletionStatus::Ok, 6, None);
        assert_eq!(completion_action(&ok), CompletionAction::Record, "the older shape is recorded here");
        assert_eq!(completion_action(&ok.clone().announced(Some(3))), CompletionAction::Nothing);
        assert_eq!(completion_action(&ok.clone().announced(Some(0))), CompletionAction::CheckWholeness);
        assert_eq!(
            completion_action(&ok.clone().announced(Some(-4))),
            CompletionAction::CheckWholeness,
            "shards that do not count down"
        );
        assert_eq!(completion_action(&ok.announced(None)), CompletionAction::CheckOnce, "unknown");
    }

    #[test]
    fn an_item_found_terminal_is_announced_as_recorded_with_an_unknown_shard_count() {
        let mut marker = ItemMarker::pending_in(3, None);
        assert_eq!(reannouncement(&marker, &request()), None, "pending: the worker works");
        marker.status = ItemStatus::Done;
        marker.results_count = 6;
        let done = reannouncement(&marker, &request()).unwrap();
        assert_eq!(
            (done.status, done.results_count, done.recorded, done.shard_remaining),
            (CompletionStatus::Ok, 6, true, None)
        );
        marker.status = ItemStatus::Skipped;
        marker.error = Some("new".into());
        let skipped = reannouncement(&marker, &request()).unwrap();
        assert_eq!((skipped.status, skipped.error.as_deref()), (CompletionStatus::Skipped, Some("new")));
        marker.status = ItemStatus::Failed;
        assert_eq!(reannouncement(&marker, &request()).unwrap().status, CompletionStatus::Failed);
        assert_eq!(completion_action(&reannouncement(&marker, &request()).unwrap()), CompletionAction::CheckOnce);
    }

    #[test]
    fn a_completion_makes_a_pending_item_terminal_once_and_keeps_its_redrives() {
        let mut pending = ItemMarker::pending_in(5, Some(10));
        pending.redrives = 2;
        pending.redriven_by = Some("dl-1".into());
        let (done, counter) = record_item(&pending, &completion(CompletionStatus::Ok, 6, None)).unwrap();
        assert_eq!((done.status, counter, done.attempts, done.results_count), (ItemStatus::Done, "done", 1, 6));
        assert_eq!((done.redrives, done.redriven_by.as_deref(), done.shard), (2, Some("dl-1"), Some(5)));
        assert_eq!(done.shard_size, Some(10), "the terminal marker keeps its shard's size");
        let (failed, counter) = record_item(&pending, &completion(CompletionStatus::Failed, 0, Some("bad"))).unwrap();
        assert_eq!((failed.status, counter, failed.error.as_deref()), (ItemStatus::Failed, "failed", Some("bad")));
        let (skipped, counter) = record_item(&pending, &completion(CompletionStatus::Skipped, 0, Some("new"))).unwrap();
        assert_eq!((skipped.status, counter), (ItemStatus::Skipped, "skipped"));
        for terminal in [done, failed, skipped] {
            assert_eq!(record_item(&terminal, &completion(CompletionStatus::Ok, 6, None)), None, "a duplicate");
        }
    }

    #[test]
    fn coverage_is_done_over_expected_and_alerts_only_complete_batches_below_the_threshold() {
        assert_eq!(coverage(33, 37), 33.0 / 37.0);
        assert_eq!(coverage(0, 0), 1.0, "an empty batch misses nothing");
        assert!(is_low_coverage(Complete, 0.8, 0.9));
        assert!(!is_low_coverage(Complete, 0.9, 0.9), "at the threshold is fine");
        assert!(!is_low_coverage(Failed, 0.5, 0.9), "a failed batch has its own alert");
        assert!(!is_low_coverage(Superseded, 0.5, 0.9));
    }

    #[test]
    fn exactly_the_design_transitions_are_legal() {
        let legal = [
            (Publishing, Running),
            (Running, Finalizing),
            (Finalizing, Complete),
            (Finalizing, Failed),
            (Publishing, Superseded),
            (Running, Superseded),
            (Finalizing, Superseded),
        ];
        for from in BatchState::ALL {
            for to in BatchState::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
                assert_eq!(from.transition(to).is_ok(), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn final_states_never_change() {
        for from in BatchState::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(BatchState::ALL.iter().all(|to| !from.can_become(*to)), "{from}");
        }
        assert_eq!(BatchState::ALL.iter().filter(|s| s.is_final()).count(), 3);
    }

    #[test]
    fn states_serialize_as_the_design_spells_them() {
        for state in BatchState::ALL {
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{}\"", state.as_str()));
        }
    }

    fn epoch_plus(secs: i64) -> FirestoreInstant {
        FirestoreInstant::from_second(secs).unwrap()
    }

    fn claim(owner: &str, expires_at: FirestoreInstant) -> FinalizeClaim {
        FinalizeClaim { owner: owner.into(), lease_expires_at: expires_at }
    }

    #[test]
    fn running_batch_is_claimed_only_when_whole() {
        let now = epoch_plus(1_000);
        assert_eq!(decide_claim(Running, 9, 10, None, "a", now), ClaimDecision::NotReady);
        assert_eq!(decide_claim(Running, 10, 10, None, "a", now), ClaimDecision::Claim);
        assert_eq!(decide_claim(Running, 0, 0, None, "a", now), ClaimDecision::Claim, "an empty batch is whole");
        assert_eq!(decide_claim(Publishing, 10, 10, None, "a", now), ClaimDecision::NotReady, "not sealed yet");
    }

    #[test]
    fn a_live_claim_of_another_owner_makes_the_caller_wait() {
        let now = epoch_plus(1_000);
        let live = claim("b", epoch_plus(1_030));
        assert_eq!(
            decide_claim(Finalizing, 10, 10, Some(&live), "a", now),
            ClaimDecision::HeldByOther { owner: "b".into(), expires_in: Duration::from_secs(30) }
        );
        assert_eq!(decide_claim(Finalizing, 10, 10, Some(&live), "b", now), ClaimDecision::AlreadyMine);
    }

    #[test]
    fn an_expired_claim_is_taken_over() {
        let now = epoch_plus(1_000);
        for expired_at in [now, epoch_plus(999)] {
            assert_eq!(
                decide_claim(Finalizing, 10, 10, Some(&claim("b", expired_at)), "a", now),
                ClaimDecision::TakeOver { previous_owner: "b".into() }
            );
        }
        assert_eq!(
            decide_claim(Finalizing, 10, 10, None, "a", now),
            ClaimDecision::TakeOver { previous_owner: String::new() }
        );
    }

    #[test]
    fn final_batches_need_nothing() {
        let now = epoch_plus(0);
        for state in [Complete, Failed, Superseded] {
            assert_eq!(decide_claim(state, 10, 10, None, "a", now), ClaimDecision::AlreadyFinal);
        }
    }

    #[test]
    fn completions_are_fenced_by_generation_and_state() {
        assert!(accepts_completion(Running, 3, 3));
        assert!(accepts_completion(Publishing, 3, 3));
        assert!(!accepts_completion(Running, 3, 2), "stale generation");
        assert!(!accepts_completion(Running, 3, 4), "future generation");
        for state in [Finalizing, Complete, Failed, Superseded] {
            assert!(!accepts_completion(state, 3, 3), "{state}");
        }
    }

    #[test]
    fn failure_policy_tolerates_up_to_the_fraction() {
        assert_eq!(outcome(0, 0, 0, 0.1), Complete);
        assert_eq!(outcome(10, 0, 100, 0.1), Complete, "exactly the tolerated fraction");
        assert_eq!(outcome(11, 0, 100, 0.1), Failed);
        assert_eq!(outcome(0, 0, 100, 0.0), Complete);
        assert_eq!(outcome(1, 0, 100, 0.0), Failed);
    }

    #[test]
    fn skipped_items_are_outside_the_failure_policy() {
        assert_eq!(outcome(0, 7, 52, 0.1), Complete, "7 skipped of 52 is no failure");
        assert_eq!(outcome(0, 52, 52, 0.0), Complete, "all skipped: nothing failed");
        assert_eq!(outcome(4, 12, 52, 0.1), Complete, "4 of the 40 attempted");
        assert_eq!(outcome(5, 12, 52, 0.1), Failed, "5 of the 40 attempted is over 10%, though 5 of 52 is not");
        assert!(coverage(45, 52) < 1.0, "skipped items lower coverage");
    }

    #[test]
    fn a_sized_marker_counts_up_to_its_shard_size_and_an_older_one_counts_remaining_down() {
        let sized = ShardCountdown::of(&ItemMarker::pending_in(2, Some(10)));
        assert_eq!(sized, ShardCountdown::Recorded { size: 10 });
        assert_eq!(sized.increment(), ("recorded", 1));
        assert_eq!(sized.remaining_after(1), 9, "the shard's first recorded item");
        assert_eq!(sized.remaining_after(10), 0, "the one that empties the shard");
        assert_eq!(sized.remaining_after(11), -1, "never wraps");
        let older = ShardCountdown::of(&ItemMarker::pending_in(2, None));
        assert_eq!(older, ShardCountdown::Remaining);
        assert_eq!(older.increment(), ("remaining", -1));
        assert_eq!(older.remaining_after(3), 3);
        assert_eq!(ShardCountdown::of(&ItemMarker::pending()), ShardCountdown::Remaining);
    }
}
