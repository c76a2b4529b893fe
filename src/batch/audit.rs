//! The audit trail: one record per trigger message the coordinator saw, in `audit/{trigger message id}`.
//!
//! A record is written in the same transaction as the decision it describes (create, resume, no-op;
//! see `store/begin.rs`), so a redelivered trigger finds it and neither writes a second one nor decides
//! differently. A trigger rejected before any batch exists (malformed, or its key has no input) is
//! recorded by the trigger role before it is dead-lettered. When the batch a trigger created
//! consolidates, the domain's counts (older results superseded, replacements now current) are added to
//! the record. Records carry no expiry: they outlive the batches they name.

use firestore::{FirestoreDb, FirestoreInstant, FirestoreTransaction};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::documents::BatchHeader;
use super::domain::ConsolidationReport;
use super::state::BatchState;
use super::status::SkippedItem;
use super::store::{BatchStore, CountedTransaction, NewBatch, StoreError, firestore_error};

pub const AUDIT: &str = "audit";

/// Longest excerpt of a rejected body kept on its record: enough to see what was sent.
const MAX_BODY_EXCERPT_CHARS: usize = 2000;

/// What the coordinator decided about a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// A batch was created; the key had no batch before.
    Started,
    /// A batch was created with a newer generation than the key's previous batch, which it replaces
    /// (marked SUPERSEDED at once if it was still running; its results when this one consolidates).
    Superseding,
    /// The trigger was redelivered and carried on with the batch it had created.
    Resumed,
    /// Nothing was started: a batch for the key is active, or this trigger repeats the correlation id
    /// of the key's current batch. `active_batch_id` names that batch.
    NoOp,
    /// The trigger can never succeed (malformed, or no input for its key) and was dead-lettered.
    Rejected,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Superseding => "superseding",
            Self::Resumed => "resumed",
            Self::NoOp => "no_op",
            Self::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `audit/{trigger_message_id}`. Also the JSON shape `props-pipeline audit --json` prints (fields are
/// only ever added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub trigger_message_id: String,
    #[serde(with = "firestore::serialize_as_timestamp")]
    pub recorded_at: FirestoreInstant,
    /// The key (game date); empty when a rejected trigger had no readable one.
    pub game_date: String,
    pub mode: String,
    pub reason: String,
    /// The trigger's metadata object as JSON text.
    pub metadata_json: String,
    pub correlation_id: String,
    pub outcome: AuditOutcome,
    /// Why: the rejection reason, or what a no-op found.
    #[serde(default)]
    pub detail: Option<String>,
    /// The batch this trigger created (or resumed).
    #[serde(default)]
    pub batch_id: Option<String>,
    #[serde(default)]
    pub generation: Option<u64>,
    /// The batch's `model_version` (see `BatchHeader::model_version`).
    #[serde(default)]
    pub model_version: Option<String>,
    /// The key's previous batch, which this trigger's batch replaces, and its state at that moment.
    #[serde(default)]
    pub supersedes_batch_id: Option<String>,
    #[serde(default)]
    pub supersedes_batch_state: Option<BatchState>,
    /// For a no-op: the batch that made it one.
    #[serde(default)]
    pub active_batch_id: Option<String>,
    /// Set when this trigger's batch consolidated: older results marked superseded, and this batch's
    /// results now current. 5,000 superseded with 0 replacements is the incident this exists to show.
    #[serde(default)]
    pub superseded_count: Option<u64>,
    #[serde(default)]
    pub replacement_count: Option<u64>,
    #[serde(default, with = "firestore::serialize_as_optional_timestamp")]
    pub consolidated_at: Option<FirestoreInstant>,
    /// Requests of this trigger's batch the dead-letter role put back to work after they ran out of
    /// delivery attempts without a verdict (each counts against its item's redrive cap).
    #[serde(default)]
    pub item_redrives: u64,
    /// Times the sweeper resumed this trigger's batch while it was stuck in PUBLISHING.
    #[serde(default)]
    pub publishing_resumes: u64,
    /// Set with the consolidation counts: the items the domain declined, with the reason (at most
    /// [`MAX_AUDITED_SKIPS`]; the batch's `skipped_count` has the total).
    #[serde(default)]
    pub skipped_items: Option<Vec<SkippedItem>>,
}

/// A counter on a trigger's audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCounter {
    ItemRedrives,
    PublishingResumes,
}

impl AuditCounter {
    fn field(self) -> &'static str {
        match self {
            AuditCounter::ItemRedrives => "item_redrives",
            AuditCounter::PublishingResumes => "publishing_resumes",
        }
    }
}

/// Skipped items listed in one audit record, so a huge batch cannot outgrow Firestore's 1 MiB document.
pub const MAX_AUDITED_SKIPS: usize = 500;

impl AuditRecord {
    /// A record of a valid trigger's decision (the batch fields are filled in by the caller).
    pub fn decided(spec: &NewBatch, outcome: AuditOutcome, now: FirestoreInstant) -> Self {
        Self {
            trigger_message_id: spec.trigger_message_id.clone(),
            recorded_at: now,
            game_date: spec.trigger.game_date.to_string(),
            mode: spec.trigger.mode.as_str().to_string(),
            reason: spec.trigger.reason.clone(),
            metadata_json: Value::Object(spec.trigger.metadata.clone()).to_string(),
            correlation_id: spec.correlation_id.clone(),
            outcome,
            detail: None,
            batch_id: None,
            generation: None,
            model_version: None,
            supersedes_batch_id: None,
            supersedes_batch_state: None,
            active_batch_id: None,
            superseded_count: None,
            replacement_count: None,
            consolidated_at: None,
            item_redrives: 0,
            publishing_resumes: 0,
            skipped_items: None,
        }
    }

    pub fn with_batch(mut self, batch: &BatchHeader) -> Self {
        self.batch_id = Some(batch.batch_id.clone());
        self.generation = Some(batch.generation);
        self.model_version = batch.model_version.clone();
        self
    }

    /// A record of a rejected trigger. The fields are read from the body where it is a JSON object
    /// (whatever made it invalid), so an operator sees what was sent; an excerpt of any other body is
    /// kept in `detail` after the reason.
    pub fn rejected(body: &[u8], message_id: &str, reason: &str) -> Self {
        let object = serde_json::from_slice::<Value>(body).ok().and_then(|v| match v {
            Value::Object(map) => Some(map),
            _ => None,
        });
        let text = |key: &str| {
            object.as_ref().and_then(|o| o.get(key)).map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
        };
        let detail = match &object {
            Some(_) => reason.to_string(),
            None => {
                let excerpt: String = String::from_utf8_lossy(body).chars().take(MAX_BODY_EXCERPT_CHARS).collect();
                format!("{reason}; body: {excerpt}")
            }
        };
        Self {
            trigger_message_id: message_id.to_string(),
            recorded_at: FirestoreInstant::now(),
            game_date: text("game_date").unwrap_or_default(),
            mode: text("mode").unwrap_or_default(),
            reason: text("reason").unwrap_or_default(),
            metadata_json: object.as_ref().and_then(|o| o.get("metadata")).map(Value::to_string).unwrap_or_default(),
            correlation_id: text("correlation_id").unwrap_or_default(),
            outcome: AuditOutcome::Rejected,
            detail: Some(detail),
            batch_id: None,
            generation: None,
            model_version: None,
            supersedes_batch_id: None,
            supersedes_batch_state: None,
            active_batch_id: None,
            superseded_count: None,
            replacement_count: None,
            consolidated_at: None,
            item_redrives: 0,
            publishing_resumes: 0,
            skipped_items: None,
        }
    }
}

/// Reads a record inside a transaction (so the decision and its record are one).
pub(crate) async fn read_record(db: &FirestoreDb, message_id: &str) -> firestore::FirestoreResult<Option<AuditRecord>> {
    db.fluent().select().by_id_in(AUDIT).obj().one(message_id).await
}

/// Writes a record inside a transaction.
pub(crate) fn write_record(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction,
    record: &AuditRecord,
) -> firestore::FirestoreResult<()> {
    db.fluent().update().in_col(AUDIT).document_id(&record.trigger_message_id).object(record).add_to_transaction(tx)?;
    Ok(())
}

impl BatchStore {
    /// Records a rejected trigger once. Returns false when the message already has a record (a
    /// redelivery, or a trigger that got as far as a batch before failing): the first one stands.
    pub async fn record_rejected(&self, record: &AuditRecord) -> Result<bool, StoreError> {
        self.db()
            .counted_transaction("audit_rejected", |db, tx| {
                let record = record.clone();
                async move {
                    if read_record(&db, &record.trigger_message_id).await?.is_some() {
                        return Ok(false);
                    }
                    write_record(&db, tx, &record)?;
                    Ok(true)
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("recording a rejected trigger"))
    }

    /// Adds a consolidation's counts to the record of the trigger that created the batch. A re-run
    /// reports the same counts and changes nothing; a batch without a record (created before the audit
    /// existed) is left alone.
    pub async fn record_consolidation(
        &self,
        trigger_message_id: &str,
        report: &ConsolidationReport,
        skipped: &[SkippedItem],
    ) -> Result<(), StoreError> {
        let report = *report;
        let skipped: Vec<SkippedItem> = skipped.iter().take(MAX_AUDITED_SKIPS).cloned().collect();
        self.db()
            .counted_transaction("audit_consolidation", |db, tx| {
                let (message_id, skipped) = (trigger_message_id.to_string(), skipped.clone());
                async move {
                    let Some(mut record) = read_record(&db, &message_id).await? else {
                        return Ok(());
                    };
                    let counts = (Some(report.superseded), Some(report.replacements));
                    if (record.superseded_count, record.replacement_count) == counts
                        && record.skipped_items.as_ref() == Some(&skipped)
                    {
                        return Ok(());
                    }
                    (record.superseded_count, record.replacement_count) = counts;
                    record.skipped_items = Some(skipped);
                    record.consolidated_at = Some(FirestoreInstant::now());
                    write_record(&db, tx, &record)?;
                    Ok(())
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("auditing a consolidation"))
    }

    /// Adds one to `counter` on the audit record of a trigger (an increment, no read). A trigger without
    /// a record (created before the audit existed) is left alone.
    pub async fn count_in_audit(&self, trigger_message_id: &str, counter: AuditCounter) -> Result<(), StoreError> {
        // A transform-only write exists only inside a transaction or a batch; the record is not
        // contended, so a transaction costs nothing here.
        let written = self
            .db()
            .counted_transaction("audit_count", |db, tx| {
                let message_id = trigger_message_id.to_string();
                async move {
                    db.fluent()
                        .update()
                        .in_col(AUDIT)
                        .precondition(firestore::FirestoreWritePrecondition::Exists(true))
                        .document_id(&message_id)
                        .transforms(|t| t.fields([t.field(counter.field()).increment(1)]))
                        .only_transform()
                        .add_to_transaction(tx)?;
                    Ok(())
                }
                .boxed()
            })
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(error) if crate::batch::store::is_precondition_failure(&error) => Ok(()),
            Err(error) => Err(firestore_error("counting in an audit record")(error)),
        }
    }

    /// The record of one trigger message.
    pub async fn audit_record(&self, trigger_message_id: &str) -> Result<Option<AuditRecord>, StoreError> {
        read_record(self.db(), trigger_message_id).await.map_err(firestore_error("reading an audit record"))
    }

    /// The most recent records, newest first; only those of `game_date` when given.
    pub async fn audit_records(&self, game_date: Option<&str>, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let query = self.db().fluent().select().from(AUDIT);
        let mut records: Vec<AuditRecord> = match game_date {
            // Filtering on the date and sorting here avoids a composite index; a date has few triggers.
            Some(date) => query.filter(|q| q.for_all([q.field("game_date").eq(date)])).obj().query().await,
            None => query.order(|o| o.fields([o.field("recorded_at").descending()])).limit(limit).obj().query().await,
        }
        .map_err(firestore_error("listing audit records"))?;
        records.sort_by_key(|r| std::cmp::Reverse(r.recorded_at));
        records.truncate(limit as usize);
        Ok(records)
    }

    /// Every record of triggers sent with `correlation_id`, oldest first.
    pub async fn audit_records_for(&self, correlation_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let mut records: Vec<AuditRecord> = self
            .db()
            .fluent()
            .select()
            .from(AUDIT)
            .filter(|q| q.for_all([q.field("correlation_id").eq(correlation_id)]))
            .obj()
            .query()
            .await
            .map_err(firestore_error("finding audit records"))?;
        records.sort_by_key(|r| r.recorded_at);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_json_trigger_keeps_its_fields_and_the_reason() {
        let body =
            br#"{"game_date":"2024-13-01","mode":"restart","reason":"typo","correlation_id":"c-9","metadata":{"a":1}}"#;
        let record = AuditRecord::rejected(body, "m1", "unknown variant `restart`");
        assert_eq!(record.outcome, AuditOutcome::Rejected);
        assert_eq!((record.game_date.as_str(), record.mode.as_str()), ("2024-13-01", "restart"));
        assert_eq!((record.reason.as_str(), record.correlation_id.as_str()), ("typo", "c-9"));
        assert_eq!(record.metadata_json, r#"{"a":1}"#);
        assert_eq!(record.detail.as_deref(), Some("unknown variant `restart`"));
    }

    #[test]
    fn a_rejected_non_json_trigger_keeps_an_excerpt_of_the_body() {
        let record = AuditRecord::rejected(b"start 2024-04-22", "m2", "not JSON");
        assert_eq!(record.game_date, "");
        assert_eq!(record.detail.as_deref(), Some("not JSON; body: start 2024-04-22"));
        let long = AuditRecord::rejected(&vec![b'x'; 10_000], "m3", "r");
        assert!(long.detail.unwrap().len() < MAX_BODY_EXCERPT_CHARS + 20);
    }

    #[test]
    fn a_non_string_field_is_kept_as_its_json() {
        let record = AuditRecord::rejected(br#"{"game_date":20240422}"#, "m4", "bad date");
        assert_eq!(record.game_date, "20240422");
    }
}
