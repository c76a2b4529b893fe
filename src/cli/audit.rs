//! `props-pipeline audit`

use anyhow::Context;
use clap::Args;
use props_pipeline::batch::audit::{AuditOutcome, AuditRecord};
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::status::SkippedItem;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::config::GcpSettings;
use props_pipeline::messages::GameDate;
use serde::Serialize;

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

pub async fn run(gcp: &GcpSettings, args: AuditArgs) -> anyhow::Result<()> {
    let game_date = match &args.game_date {
        Some(text) => Some(text.parse::<GameDate>().context("invalid --game-date")?.to_string()),
        None => None,
    };
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    let records = store.audit_records(game_date.as_deref(), args.limit).await.context("reading the audit trail")?;
    let report = AuditReport { records: records.into_iter().map(AuditEntry::from).collect() };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report.records);
    }
    Ok(())
}

fn print_table(records: &[AuditEntry]) {
    if records.is_empty() {
        println!("no triggers recorded");
        return;
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!(
        "{:<24} {:<10} {:<25} {:<11} {:<30} {:<30} {:>10} {:>8}  {:<24} REASON / DETAIL",
        "RECORDED", "DATE", "MODE", "OUTCOME", "BATCH", "SUPERSEDES", "SUPERSEDED", "REPLACED", "CORRELATION"
    );
    for r in records {
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
        println!(
            "{:<24} {:<10} {:<25} {:<11} {:<30} {:<30} {:>10} {:>8}  {:<24} {}",
            r.recorded_at,
            r.game_date,
            r.mode,
            r.outcome,
            dash(batch),
            dash(supersedes),
            dash(r.superseded_count.map(|n| n.to_string())),
            dash(r.replacement_count.map(|n| n.to_string())),
            r.correlation_id,
            detail
        );
    }
}
