//! Plain words from documents, pure so they are unit-tested: a batch's timeline (from its header and
//! its trigger's audit record) and, while it is not final, what the sweeper will do about it next and
//! when (the same decisions as `batch::sweep_policy`).

use std::time::Duration;

use firestore::FirestoreInstant;
use serde::Serialize;

use crate::batch::audit::{AuditOutcome, AuditRecord};
use crate::batch::documents::BatchHeader;
use crate::batch::state::BatchState;
use crate::batch::sweep_policy::{RedriveDecision, RedriveRequest, SweepSettings, decide_redrive, is_stuck};

/// One step of a batch's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// RFC 3339; `None` when the step left no time.
    pub at: Option<String>,
    pub what: String,
}

fn event(at: Option<FirestoreInstant>, what: String) -> TimelineEvent {
    TimelineEvent { at: at.map(|t| t.to_string()), what }
}

/// trigger -> created -> fan-out sealed -> redrives -> finalize claim -> consolidated -> final state ->
/// ready -> superseded / exported, as far as the batch got. `exported` describes the export of this
/// batch when the domain recorded one.
pub fn timeline(header: &BatchHeader, trigger: Option<&AuditRecord>, exported: Option<String>) -> Vec<TimelineEvent> {
    let mut events = Vec::new();
    if let Some(record) = trigger {
        let mut what = format!(
            "trigger {} recorded: {} (mode {}, reason \"{}\")",
            record.trigger_message_id, record.outcome, record.mode, record.reason
        );
        if let (Some(previous), Some(state)) = (&record.supersedes_batch_id, record.supersedes_batch_state) {
            what.push_str(&format!("; supersedes {previous}, then {state}"));
        }
        events.push(event(Some(record.recorded_at), what));
    }
    let mut created =
        format!("batch created, generation {}: {} items expected", header.generation, header.expected_count);
    if let Some(version) = &header.model_version {
        created.push_str(&format!(", model {version}"));
    }
    events.push(event(Some(header.created_at), created));
    if let Some(sealed) = header.sealed_at {
        events.push(event(
            Some(sealed),
            format!("fan-out sealed: {} requests published, RUNNING", header.expected_count),
        ));
    }
    if header.redrive_count > 0 {
        events.push(event(
            header.last_redrive_at,
            format!("pending requests re-published {} time(s) (last one at this time)", header.redrive_count),
        ));
    }
    if let Some(record) = trigger {
        if record.publishing_resumes > 0 {
            events.push(event(None, format!("fan-out resumed by the sweeper {} time(s)", record.publishing_resumes)));
        }
        if record.item_redrives > 0 {
            events.push(event(
                None,
                format!("{} request(s) put back to work after running out of delivery attempts", record.item_redrives),
            ));
        }
    }
    if let Some(claim) = &header.finalize_claim {
        events
            .push(event(None, format!("finalize claimed by {} (lease until {})", claim.owner, claim.lease_expires_at)));
    }
    if let Some(record) = trigger
        && let Some(at) = record.consolidated_at
    {
        events.push(event(
            Some(at),
            format!(
                "consolidated: {} results now current, {} older ones superseded",
                record.replacement_count.unwrap_or(0),
                record.superseded_count.unwrap_or(0)
            ),
        ));
    }
    if let Some(finalized) = header.finalized_at {
        let mut what = format!("finalized: {}", header.state);
        if let (Some(done), Some(failed)) = (header.done_count, header.failed_count) {
            what.push_str(&format!(", {done} done, {failed} failed"));
        }
        if let Some(skipped) = header.skipped_count.filter(|&n| n > 0) {
            what.push_str(&format!(", {skipped} skipped"));
        }
        if let Some(reason) = &header.failure_reason {
            what.push_str(&format!(" ({reason})"));
        }
        events.push(event(Some(finalized), what));
    }
    if let Some(message_id) = &header.ready_message_id {
        events.push(event(None, format!("ready event published (message {message_id})")));
    }
    if let Some(by) = &header.superseded_by {
        events.push(event(None, format!("superseded by {by}")));
    }
    if let Some(exported) = exported {
        events.push(event(None, exported));
    }
    events
}

/// "1h 02m", "3m 05s", "12s".
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What a batch that is not final is waiting for, and what the sweeper (run with `sweep`) does next
/// and when. `idle` is the time since its last activity; `None` for a final batch.
pub fn explain(
    header: &BatchHeader,
    idle: Duration,
    now: FirestoreInstant,
    sweep: &SweepSettings,
    pending: u64,
) -> Option<String> {
    let state = header.state;
    if state.is_final() {
        return None;
    }
    let policy = sweep.policy();
    let every = human(sweep.interval());
    let stuck = is_stuck(state, header.redrive_count, idle, &policy);
    let id = &header.batch_id;
    let mut text = match state {
        BatchState::Publishing => format!(
            "The coordinator is publishing the requests (no progress for {}). If it died mid-fan-out, Pub/Sub \
             redelivers the trigger and a coordinator resumes the same batch.",
            human(idle)
        ),
        BatchState::Finalizing => match &header.finalize_claim {
            Some(claim) if claim.lease_expires_at > now => format!(
                "Every item is terminal; {} is consolidating it under a lease until {}. If that process died, \
                 the sweeper takes the claim over after the lease expires (it sweeps every {every}).",
                claim.owner, claim.lease_expires_at
            ),
            _ => format!(
                "Every item is terminal but the finalize lease expired: the sweeper takes the claim over and \
                 finishes the batch at its next pass (every {every})."
            ),
        },
        _ => running(header, idle, sweep, pending),
    };
    if stuck {
        text.push_str(&format!(
            " It is reported STUCK (ALERT_BATCH_STUCK, props_stuck_batches) after {} without progress. To act: \
             `props-pipeline missing {id}` lists what is pending, `props-pipeline redrive {id}` re-publishes it, \
             `props-pipeline trigger --game-date {} --mode regenerate_with_supersede --reason \"...\"` replaces it.",
            human(policy.stuck_after),
            header.game_date
        ));
    }
    Some(text)
}

fn running(header: &BatchHeader, idle: Duration, sweep: &SweepSettings, pending: u64) -> String {
    let policy = sweep.policy();
    let every = human(sweep.interval());
    let redrive = decide_redrive(BatchState::Running, header.redrive_count, idle, RedriveRequest::Sweeper(policy));
    let last = format!("last progress {} ago", human(idle));
    match redrive {
        RedriveDecision::NotDue => format!(
            "Running: {pending} items pending, {last}. If nothing completes for {} more, the sweeper re-publishes \
             the pending requests (redrive {} of {}).",
            human(policy.stall_after.saturating_sub(idle)),
            header.redrive_count + 1,
            policy.max_redrives
        ),
        RedriveDecision::Redrive => format!(
            "Stalled: {pending} items pending, {last}. The sweeper re-publishes their requests at its next pass \
             (within {every}; redrive {} of {}).",
            header.redrive_count + 1,
            policy.max_redrives
        ),
        RedriveDecision::CapReached => format!(
            "Stalled: {pending} items pending, {last}, and the sweeper used its {} redrives: it only alerts now. \
             An operator decides: `props-pipeline redrive {}` or a regeneration.",
            policy.max_redrives, header.batch_id
        ),
        RedriveDecision::NotRunning(_) => String::new(),
    }
}

/// The outcome words an audit record's lineage line uses.
pub fn lineage_line(record: &AuditRecord) -> Option<String> {
    if record.outcome != AuditOutcome::Superseding {
        return None;
    }
    let batch = record.batch_id.as_deref().unwrap_or("?");
    let generation = record.generation.map_or_else(|| "?".into(), |g| g.to_string());
    let previous = record.supersedes_batch_id.as_deref().unwrap_or("?");
    let state = record.supersedes_batch_state.map_or_else(|| "?".into(), |s| s.to_string());
    Some(format!(
        "generation {generation} ({batch}) superseded {previous} (then {state}) at {}: \"{}\"",
        record.recorded_at, record.reason
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::begin::{new_header, test_spec};
    use crate::batch::state::FinalizeClaim;
    use crate::messages::TriggerMode;

    fn at(secs: i64) -> FirestoreInstant {
        FirestoreInstant::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A regeneration (generation 2) of 10 items, created at `at(0)` and sealed at `at(2)`, in `state`.
    fn header(state: BatchState) -> BatchHeader {
        let spec = test_spec(TriggerMode::RegenerateWithSupersede, "c1", false);
        let mut header = new_header(&spec, "2024-04-22-m7", "2024-04-22", 2, at(0));
        header.state = state;
        header.expected_count = 10;
        header.model_version = None;
        header.sealed_at = Some(at(2));
        header
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(secs(12)), "12s");
        assert_eq!(human(secs(185)), "3m 05s");
        assert_eq!(human(secs(3720)), "1h 02m");
    }

    #[test]
    fn a_moving_batch_says_when_a_redrive_would_come() {
        let sweep = SweepSettings::default();
        let text = explain(&header(BatchState::Running), secs(60), at(62), &sweep, 4).unwrap();
        assert!(text.starts_with("Running: 4 items pending, last progress 1m 00s ago."), "{text}");
        assert!(text.contains("for 4m 00s more") && text.contains("redrive 1 of 3"), "{text}");
        assert!(!text.contains("STUCK"), "{text}");
    }

    #[test]
    fn a_stalled_batch_is_redriven_at_the_next_pass_then_reported_stuck_without_redrives() {
        let sweep = SweepSettings::default();
        let text = explain(&header(BatchState::Running), secs(301), at(303), &sweep, 4).unwrap();
        assert!(text.contains("next pass (within 30s; redrive 1 of 3)"), "{text}");
        let mut out_of_redrives = header(BatchState::Running);
        out_of_redrives.redrive_count = 3;
        let text = explain(&out_of_redrives, secs(400), at(402), &sweep, 4).unwrap();
        assert!(text.contains("used its 3 redrives"), "{text}");
        assert!(text.contains("STUCK") && text.contains("props-pipeline redrive 2024-04-22-m7"), "{text}");
    }

    #[test]
    fn finalizing_names_the_lease_and_final_batches_need_no_words() {
        let sweep = SweepSettings::default();
        let mut finalizing = header(BatchState::Finalizing);
        finalizing.finalize_claim = Some(FinalizeClaim { owner: "pod-a".into(), lease_expires_at: at(200) });
        let live = explain(&finalizing, secs(10), at(100), &sweep, 0).unwrap();
        assert!(live.contains("pod-a is consolidating"), "{live}");
        let expired = explain(&finalizing, secs(10), at(300), &sweep, 0).unwrap();
        assert!(expired.contains("lease expired"), "{expired}");
        assert_eq!(explain(&header(BatchState::Complete), secs(99_999), at(0), &sweep, 0), None);
    }

    #[test]
    fn the_timeline_follows_the_batch_as_far_as_it_got() {
        let mut complete = header(BatchState::Complete);
        complete.finalized_at = Some(at(30));
        complete.done_count = Some(9);
        complete.failed_count = Some(1);
        complete.ready_message_id = Some("r1".into());
        let steps: Vec<String> =
            timeline(&complete, None, Some("exported to out/x.json".into())).into_iter().map(|e| e.what).collect();
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert!(steps[1].starts_with("fan-out sealed: 10 requests"));
        assert_eq!(steps[2], "finalized: COMPLETE, 9 done, 1 failed");
        assert_eq!(steps[4], "exported to out/x.json");
        complete.skipped_count = Some(2);
        complete.model_version = Some("m-3".into());
        let steps: Vec<String> = timeline(&complete, None, None).into_iter().map(|e| e.what).collect();
        assert_eq!(steps[0], "batch created, generation 2: 10 items expected, model m-3");
        assert_eq!(steps[2], "finalized: COMPLETE, 9 done, 1 failed, 2 skipped");
        let running: Vec<_> = timeline(&header(BatchState::Running), None, None);
        assert_eq!(running.len(), 2);
    }
}
