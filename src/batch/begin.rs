//! The begin decision, pure: what a trigger does to its date, decided from what the begin
//! transaction read (`store::begin` reads, calls these, and writes what they return).
//!
//! Two steps, so that a redelivered trigger is answered from its own documents (its batch, its audit
//! record) without reading, and so locking, the date's pointer: [`decide_known`] first, then
//! [`decide_new`] from the pointer and the date's current batch.

use firestore::FirestoreInstant;

use super::audit::{AuditOutcome, AuditRecord};
use super::documents::{BatchHeader, GameDatePointer};
use super::state::BatchState;
use super::store::{BeginOutcome, NewBatch};
use crate::messages::TriggerMode;

/// What the begin transaction writes and answers.
// One value per trigger, moved once into the writes: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BeginDecision {
    /// The trigger's batch exists: carry on with it, writing `record` if the trigger had none.
    Resume { header: BatchHeader, record: Option<AuditRecord> },
    /// This message was decided before without a batch: the same answer, nothing written.
    AlreadyDecided(AuditRecord),
    /// Nothing starts: write `record` (a no-op) and answer `outcome`.
    NoOp { outcome: BeginOutcome, record: AuditRecord },
    /// Create `header`, move the date's pointer to it, mark `superseded`
    /// (the older batch, already changed) and write `record`.
    Create { header: BatchHeader, pointer: GameDatePointer, superseded: Option<BatchHeader>, record: AuditRecord },
}

/// From the trigger's own documents: its batch (`existing`) and its audit record. `None`: the trigger
/// is new, decide with [`decide_new`].
pub fn decide_known(
    spec: &NewBatch,
    existing: Option<BatchHeader>,
    recorded: Option<AuditRecord>,
    now: FirestoreInstant,
) -> Option<BeginDecision> {
    if let Some(header) = existing {
        let record = match recorded {
            Some(_) => None,
            None => Some(AuditRecord::decided(spec, AuditOutcome::Resumed, now).with_batch(&header)),
        };
        return Some(BeginDecision::Resume { header, record });
    }
    recorded.map(BeginDecision::AlreadyDecided)
}

/// A new trigger for `game_date`, given the date's `pointer` and the batch it names (`current`):
/// a no-op when it repeats the current batch's correlation id, or when a batch is active and the
/// trigger neither regenerates nor forces; otherwise a new batch of the next generation, superseding
/// the active one.
pub fn decide_new(
    spec: &NewBatch,
    batch_id: &str,
    pointer: GameDatePointer,
    current: Option<BatchHeader>,
    now: FirestoreInstant,
) -> BeginDecision {
    let no_op = |outcome: BeginOutcome, current: &BatchHeader, detail: String| {
        let mut record = AuditRecord::decided(spec, AuditOutcome::NoOp, now);
        record.active_batch_id = Some(current.batch_id.clone());
        record.detail = Some(detail);
        BeginDecision::NoOp { outcome, record }
    };
    if let Some(current) = &current
        && current.correlation_id == spec.correlation_id
    {
        let detail =
            format!("repeats correlation id {} of batch {} ({})", spec.correlation_id, current.batch_id, current.state);
        return no_op(BeginOutcome::Duplicate(current.clone()), current, detail);
    }
    let active = current.as_ref().filter(|c| !c.state.is_final());
    let replaces_active = spec.trigger.mode == TriggerMode::RegenerateWithSupersede || spec.trigger.force();
    if let Some(active) = active
        && !replaces_active
    {
        let detail = format!("batch {} is {}; set metadata.force to override", active.batch_id, active.state);
        return no_op(BeginOutcome::ActiveBatchExists(active.clone()), active, detail);
    }
    let game_date = spec.trigger.game_date.to_string();
    let header = new_header(spec, batch_id, &game_date, pointer.current_generation + 1, now);
    let superseded = active.filter(|older| older.state.can_become(BatchState::Superseded)).map(|older| {
        let mut older = older.clone();
        older.state = BatchState::Superseded;
        older.superseded_by = Some(batch_id.to_string());
        older.header_writes += 1;
        older
    });
    let outcome = if current.is_some() { AuditOutcome::Superseding } else { AuditOutcome::Started };
    let mut record = AuditRecord::decided(spec, outcome, now).with_batch(&header);
    record.supersedes_batch_id = current.as_ref().map(|c| c.batch_id.clone());
    record.supersedes_batch_state = current.as_ref().map(|c| c.state);
    // The published generation stays until the new one completes.
    let pointer =
        GameDatePointer { current_generation: header.generation, current_batch_id: batch_id.to_string(), ..pointer };
    BeginDecision::Create { header, pointer, superseded, record }
}

/// The header of a new batch: PUBLISHING, its first write counted.
pub fn new_header(
    spec: &NewBatch,
    batch_id: &str,
    game_date: &str,
    generation: u64,
    now: FirestoreInstant,
) -> BatchHeader {
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
        results_count: None,
        coverage: None,
        failure_reason: None,
        superseded_by: None,
        ready_message_id: None,
        redrive_count: 0,
        last_redrive_at: None,
        header_writes: 1,
        shards_count_down: spec.shards_count_down,
        expire_at: now.saturating_add(retention).unwrap_or(now),
    }
}

/// A trigger's batch spec for unit tests: 4 items over 2 shards, 7 days of retention.
#[cfg(test)]
pub(crate) fn test_spec(mode: TriggerMode, correlation_id: &str, force: bool) -> NewBatch {
    let metadata = if force { r#"{"force": true}"# } else { "{}" };
    let mut trigger =
        crate::messages::TriggerMessage::new("2024-04-22", mode, "why".into(), None, String::new()).unwrap();
    trigger.metadata = serde_json::from_str(metadata).unwrap();
    NewBatch {
        trigger,
        trigger_message_id: "m2".into(),
        correlation_id: correlation_id.into(),
        expected_count: 4,
        counter_shards: 2,
        shards_count_down: true,
        tolerated_failed_fraction: 0.1,
        model_version: Some("v1".into()),
        retention: std::time::Duration::from_secs(7 * 24 * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(batch_id: &str, state: BatchState, correlation_id: &str) -> BatchHeader {
        let mut header =
            new_header(&test_spec(TriggerMode::Start, correlation_id, false), batch_id, "2024-04-22", 1, now());
        header.state = state;
        header
    }

    fn pointer(current: &str) -> GameDatePointer {
        GameDatePointer {
            current_generation: 1,
            current_batch_id: current.into(),
            published_batch_id: Some("b1".into()),
            published_generation: Some(1),
        }
    }

    fn now() -> FirestoreInstant {
        FirestoreInstant::now()
    }

    #[test]
    fn a_redelivered_trigger_resumes_its_batch_and_records_only_once() {
        let s = test_spec(TriggerMode::Start, "c", false);
        let header = existing("b2", BatchState::Running, "c");
        let Some(BeginDecision::Resume { record: Some(record), .. }) =
            decide_known(&s, Some(header.clone()), None, now())
        else {
            panic!("a resume with its record");
        };
        assert_eq!((record.outcome, record.batch_id.as_deref()), (AuditOutcome::Resumed, Some("b2")));
        let again = decide_known(&s, Some(header.clone()), Some(record.clone()), now());
        assert_eq!(again, Some(BeginDecision::Resume { header, record: None }));
        assert_eq!(decide_known(&s, None, Some(record.clone()), now()), Some(BeginDecision::AlreadyDecided(record)));
        assert_eq!(decide_known(&s, None, None, now()), None, "a new trigger");
    }

    #[test]
    fn the_first_trigger_of_a_date_starts_generation_one() {
        let decision =
            decide_new(&test_spec(TriggerMode::Start, "c", false), "b1", GameDatePointer::default(), None, now());
        let BeginDecision::Create { header, pointer, superseded, record } = decision else { panic!("a create") };
        assert_eq!((header.generation, header.state, header.expected_count), (1, BatchState::Publishing, 4));
        assert!(header.shards_count_down, "the spec counts down");
        assert_eq!(
            (pointer.current_batch_id.as_str(), pointer.current_generation, pointer.published_batch_id),
            ("b1", 1, None)
        );
        assert_eq!((superseded, record.outcome), (None, AuditOutcome::Started));
    }

    #[test]
    fn a_start_while_a_batch_is_active_is_a_no_op_unless_forced() {
        let active = existing("b1", BatchState::Running, "other");
        let decision =
            decide_new(&test_spec(TriggerMode::Start, "c", false), "b2", pointer("b1"), Some(active.clone()), now());
        let BeginDecision::NoOp { outcome: BeginOutcome::ActiveBatchExists(found), record } = decision else {
            panic!("a no-op");
        };
        assert_eq!((found.batch_id.as_str(), record.outcome), ("b1", AuditOutcome::NoOp));
        assert_eq!(record.detail.as_deref(), Some("batch b1 is RUNNING; set metadata.force to override"));
        let forced = decide_new(&test_spec(TriggerMode::Start, "c", true), "b2", pointer("b1"), Some(active), now());
        assert!(matches!(forced, BeginDecision::Create { superseded: Some(_), .. }), "{forced:?}");
    }

    #[test]
    fn a_regeneration_supersedes_the_active_batch_and_keeps_the_published_generation() {
        let active = existing("b1", BatchState::Running, "other");
        let s = test_spec(TriggerMode::RegenerateWithSupersede, "c", false);
        let BeginDecision::Create { header, pointer, superseded, record } =
            decide_new(&s, "b2", pointer("b1"), Some(active), now())
        else {
            panic!("a create");
        };
        assert_eq!(header.generation, 2);
        let older = superseded.expect("the active batch is superseded");
        assert_eq!(
            (older.state, older.superseded_by.as_deref(), older.header_writes),
            (BatchState::Superseded, Some("b2"), 2)
        );
        assert_eq!((pointer.current_batch_id.as_str(), pointer.published_batch_id.as_deref()), ("b2", Some("b1")));
        assert_eq!((record.outcome, record.supersedes_batch_id.as_deref()), (AuditOutcome::Superseding, Some("b1")));
        assert_eq!(record.supersedes_batch_state, Some(BatchState::Running));
    }

    #[test]
    fn a_trigger_repeating_the_current_correlation_id_is_a_duplicate_even_when_final() {
        for state in [BatchState::Running, BatchState::Complete] {
            let current = existing("b1", state, "c");
            let s = test_spec(TriggerMode::RegenerateWithSupersede, "c", true);
            let decision = decide_new(&s, "b2", pointer("b1"), Some(current), now());
            assert!(
                matches!(decision, BeginDecision::NoOp { outcome: BeginOutcome::Duplicate(_), .. }),
                "{decision:?}"
            );
        }
        // A final batch with another correlation id: a new generation, nothing to supersede.
        let done = existing("b1", BatchState::Complete, "other");
        let decision = decide_new(&test_spec(TriggerMode::Start, "c", false), "b2", pointer("b1"), Some(done), now());
        assert!(matches!(decision, BeginDecision::Create { superseded: None, .. }), "{decision:?}");
    }
}
