//! `props-pipeline audit`

use anyhow::Context;
use clap::Args;
use props_pipeline::batch::audit::{AuditOutcome, AuditRecord};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::status::SkippedItem;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::GameDate;
use serde::Serialize;

use super::args::FirestoreOnly;
use super::output::{self, Column, dash, outln};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only triggers for this game date (YYYY-MM-DD).
    #[arg(long)]
    pub game_date: Option<String>,
    /// How many records to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print the stable JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

/// One record as `audit --json` prints it (fields are only ever added).
#[derive(Debug, Serialize)]
struct AuditEntry {
    trigger_message_id: String,
    /// RFC 3339.
    recorded_at: String,
    game_date: String,
    mode: String,
    reason: String,
    metadata: serde_json::Value,
    correlation_id: String,
    outcome: AuditOutcome,
    detail: Option<String>,
    batch_id: Option<String>,
    generation: Option<u64>,
    /// The version the domain recorded on the batch (the NBA model and its calibration map).
    model_version: Option<String>,
    supersedes_batch_id: Option<String>,
    supersedes_batch_state: Option<BatchState>,
    active_batch_id: Option<String>,
    superseded_count: Option<u64>,
    replacement_count: Option<u64>,
    consolidated_at: Option<String>,
    /// Items the domain declined, with the reason (set with the consolidation counts).
    skipped_items: Option<Vec<SkippedItem>>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        Self {
            trigger_message_id: r.trigger_message_id,
            // Milliseconds: enough to order triggers, short enough for the table.
            recorded_at: format!("{:.3}", r.recorded_at),
            game_date: r.game_date,
            mode: r.mode,
            reason: r.reason,
            metadata: metadata(&r.metadata_json),
            correlation_id: r.correlation_id,
            outcome: r.outcome,
            detail: r.detail,
            batch_id: r.batch_id,
            generation: r.generation,
            model_version: r.model_version,
            supersedes_batch_id: r.supersedes_batch_id,
            supersedes_batch_state: r.supersedes_batch_state,
            active_batch_id: r.active_batch_id,
            superseded_count: r.superseded_count,
            replacement_count: r.replacement_count,
            consolidated_at: r.consolidated_at.map(|t| t.to_string()),
            skipped_items: r.skipped_items,
        }
    }
}

/// A rejected trigger's metadata may be missing (`null`) or not an object (kept as its text).
fn metadata(json: &str) -> serde_json::Value {
    if json.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(json).unwrap_or_else(|_| serde_json::Value::String(json.to_string()))
}

#[derive(Debug, Serialize)]
struct AuditReport {
    records: Vec<AuditEntry>,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let game_date = match &args.game_date {
        Some(text) => Some(text.parse::<GameDate>().context("invalid --game-date")?.to_string()),
        None => None,
    };
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    let records = store.audit_records(game_date.as_deref(), args.limit).await.context("reading the audit trail")?;
    let report = AuditReport { records: records.into_iter().map(AuditEntry::from).collect() };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else if report.records.is_empty() {
        outln!("no triggers recorded")?;
    } else {
        outln!("{}", table(&report.records))?;
    }
    Ok(())
}

/// Cells are cut to their column: a rejected trigger's detail can quote a body of any size (`--json`
/// has it whole).
fn table(records: &[AuditEntry]) -> String {
    let columns = [
        Column::left("RECORDED", 24),
        Column::left("DATE", 10),
        Column::left("MODE", 25),
        Column::left("OUTCOME", 11),
        Column::left("BATCH", 40),
        Column::left("SUPERSEDES", 40),
        Column::right("SUPERSEDED"),
        Column::right("REPLACED"),
        Column::left("CORRELATION", 30),
        Column::left("REASON / DETAIL", 80),
    ];
    let rows = records.iter().map(|r| {
        let batch = r.batch_id.clone().or_else(|| r.active_batch_id.as_ref().map(|a| format!("(active {a})")));
        let supersedes = r
            .supersedes_batch_id
            .as_ref()
            .map(|id| format!("{id} ({})", r.supersedes_batch_state.map_or("?", BatchState::as_str)));
        let detail = match (&r.reason, &r.detail) {
            (reason, Some(detail)) if !reason.is_empty() => format!("{reason} / {detail}"),
            (_, Some(detail)) => detail.clone(),
            (reason, None) => reason.clone(),
        };
        vec![
            r.recorded_at.clone(),
            r.game_date.clone(),
            r.mode.clone(),
            r.outcome.to_string(),
            dash(batch),
            dash(supersedes),
            dash(r.superseded_count),
            dash(r.replacement_count),
            r.correlation_id.clone(),
            detail,
        ]
    });
    output::table(&columns, rows)
}
