//! What `props-pipeline status` reports: one [`BatchStatus`] per batch, a stable JSON shape that
//! operators and scripts read (documented in README.md; add fields, never rename or remove them).

use serde::{Deserialize, Serialize};

use super::documents::{BatchHeader, ItemStatus};
use super::state::BatchState;
use super::store::{BatchStore, StoreError, Totals};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchStatus {
    pub batch_id: String,
    pub game_date: String,
    pub generation: u64,
    pub state: BatchState,
    pub mode: String,
    pub reason: String,
    pub correlation_id: String,
    pub expected: u64,
    pub done: u64,
    pub failed: u64,
    /// Items the domain declined with a reason (`missing` lists them); not failures.
    pub skipped: u64,
    pub pending: u64,
    /// RFC 3339.
    pub created_at: String,
    pub finalized_at: Option<String>,
    pub ready_published: bool,
    pub superseded_by: Option<String>,
    pub failure_reason: Option<String>,
    /// Done / expected when the batch was finalized (0-1); `None` before.
    pub coverage: Option<f64>,
    /// The domain's version recorded when the batch was created (`None` when it has none).
    pub model_version: Option<String>,
}

/// The JSON document `status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub batches: Vec<BatchStatus>,
}

/// The status of a batch from its header and its item totals. Shared by `status --json` and the
/// dashboard, so both report the same document.
pub fn status_of(header: BatchHeader, totals: Totals) -> BatchStatus {
    BatchStatus::new(header, totals)
}

/// The totals a final batch's header already carries (copied from the shards when it was finalized),
/// so a reader can skip the aggregation query; `None` when they must be summed.
pub fn recorded_counts(header: &BatchHeader) -> Option<Totals> {
    match (header.state.is_final(), header.done_count, header.failed_count) {
        (true, Some(done), Some(failed)) => Some(Totals {
            done,
            failed,
            skipped: header.skipped_count.unwrap_or(0),
            results: header.results_count.unwrap_or(0),
        }),
        _ => None,
    }
}

impl BatchStatus {
    fn new(header: BatchHeader, totals: Totals) -> Self {
        Self {
            pending: header.expected_count.saturating_sub(totals.terminal()),
            batch_id: header.batch_id,
            game_date: header.game_date,
            generation: header.generation,
            state: header.state,
            mode: header.mode,
            reason: header.reason,
            correlation_id: header.correlation_id,
            expected: header.expected_count,
            done: totals.done,
            failed: totals.failed,
            skipped: totals.skipped,
            created_at: header.created_at.to_string(),
            finalized_at: header.finalized_at.map(|t| t.to_string()),
            ready_published: header.ready_message_id.is_some(),
            superseded_by: header.superseded_by,
            failure_reason: header.failure_reason,
            coverage: header.coverage,
            model_version: header.model_version,
        }
    }
}

/// The most recent batches (of one date when given), newest first, with live progress from the
/// counter shards (one aggregation query per batch).
pub async fn recent(store: &BatchStore, game_date: Option<&str>, limit: u32) -> Result<StatusReport, StoreError> {
    let mut batches = Vec::new();
    for header in store.recent_batches(game_date, limit).await? {
        let totals = store.totals(&header.batch_id).await?;
        batches.push(status_of(header, totals));
    }
    Ok(StatusReport { batches })
}

/// One batch's status, `None` when it does not exist (yet).
pub async fn one(store: &BatchStore, batch_id: &str) -> Result<Option<BatchStatus>, StoreError> {
    let Some(header) = store.header(batch_id).await? else {
        return Ok(None);
    };
    let totals = store.totals(batch_id).await?;
    Ok(Some(status_of(header, totals)))
}

/// An item the domain declined, and why (shown by `missing`, the audit trail and the export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub item: String,
    pub reason: String,
}

/// The skipped items of a batch with their reasons, in id order (one query).
pub async fn skipped_items(store: &BatchStore, batch_id: &str) -> Result<Vec<SkippedItem>, StoreError> {
    Ok(store
        .markers_in(batch_id, ItemStatus::Skipped)
        .await?
        .into_iter()
        .map(|(item, marker)| SkippedItem { item, reason: marker.error.unwrap_or_default() })
        .collect())
}
