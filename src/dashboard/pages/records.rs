//! `/dead-letters` and `/audit`: the two record lists, filtered and paginated by cursor.

use maud::{Markup, html};

use super::layout::{excerpt, frame, next_link};
use crate::batch::audit::AuditRecord;
use crate::batch::dead_letters::DeadLetterRecord;
use crate::dashboard::filters::{AuditFilter, CHANNELS, DeadLetterFilter, MAX_PAGE_SIZE};
use crate::dashboard::queries::RecordPage;

const OUTCOMES: [&str; 5] = ["started", "superseding", "resumed", "no_op", "rejected"];

pub fn dead_letters(filter: &DeadLetterFilter, page: &RecordPage<DeadLetterRecord>, reads: u64) -> Markup {
    let commands = vec!["props-pipeline dead-letters".to_string(), "props-pipeline redrive BATCH_ID".to_string()];
    let next = page.next_cursor.as_deref().map(|c| filter.query_string(Some(c)));
    frame(
        "Dead letters",
        reads,
        &commands,
        html! {
            form.filters method="get" action="/dead-letters" {
                label { "Channel" select name="channel" {
                    option value="" { "any" }
                    @for channel in CHANNELS { option value=(channel) selected[filter.channel == Some(channel)] { (channel) } }
                } }
                label { "Per page" input type="number" name="limit" min="1" max=(MAX_PAGE_SIZE) value=(filter.limit); }
                button type="submit" { "Filter" }
            }
            @if page.records.is_empty() {
                p #empty { "No dead letters." }
            } @else {
                table #dead-letters {
                    thead { tr {
                        th { "Recorded" } th { "Channel" } th { "From subscription" } th { "Message" } th { "Reason" }
                        th.num { "Attempts" } th { "Action" } th { "Data" }
                    } }
                    tbody {
                        @for r in &page.records {
                            tr.dead-letter data-channel=(r.channel) {
                                td { (r.recorded_at.to_string()) } td { (r.channel) } td { (r.source_subscription) }
                                td { (r.original_message_id) } td { (r.reason) }
                                td.num { (r.delivery_attempts.map(|a| a.to_string()).unwrap_or_else(|| "-".into())) }
                                td { (r.action) } td { code { (excerpt(&r.data, 200)) } }
                            }
                        }
                    }
                }
            }
            (next_link("/dead-letters", next))
        },
    )
}

pub fn audit(filter: &AuditFilter, page: &RecordPage<AuditRecord>, reads: u64) -> Markup {
    let date = filter.game_date.map(|d| d.to_string());
    let commands = vec![match &date {
        Some(date) => format!("props-pipeline audit --game-date {date} --json"),
        None => "props-pipeline audit --json".to_string(),
    }];
    let next = page.next_cursor.as_deref().map(|c| filter.query_string(Some(c)));
    frame(
        "Audit trail",
        reads,
        &commands,
        html! {
            form.filters method="get" action="/audit" {
                label { "Game date" input type="date" name="game_date" value=(date.clone().unwrap_or_default()); }
                label { "Outcome" select name="outcome" {
                    option value="" { "any" }
                    @for outcome in OUTCOMES {
                        option value=(outcome) selected[filter.outcome.map(|o| o.as_str()) == Some(outcome)] { (outcome) }
                    }
                } }
                label { "Per page" input type="number" name="limit" min="1" max=(MAX_PAGE_SIZE) value=(filter.limit); }
                button type="submit" { "Filter" }
            }
            @if page.records.is_empty() {
                p #empty { "No audit records." }
            } @else {
                table #audit {
                    thead { tr {
                        th { "Recorded" } th { "Date" } th { "Outcome" } th { "Mode" } th { "Reason" } th { "Correlation id" }
                        th { "Batch" } th.num { "Gen" } th { "Detail" } th.num { "Superseded" } th.num { "Current" }
                    } }
                    tbody {
                        @for r in &page.records {
                            tr.audit-record data-outcome=(r.outcome.as_str()) {
                                td { (r.recorded_at.to_string()) }
                                td { @if !r.game_date.is_empty() { a href={ "/dates/" (r.game_date) } { (r.game_date) } } }
                                td { (r.outcome.as_str()) } td { (r.mode) } td { (r.reason) } td { (r.correlation_id) }
                                td { @if let Some(id) = &r.batch_id { a href={ "/batches/" (id) } { (id) } } }
                                td.num { (r.generation.map(|g| g.to_string()).unwrap_or_default()) }
                                td {
                                    (excerpt(r.detail.as_deref().unwrap_or(""), 300))
                                    @if let Some(previous) = &r.supersedes_batch_id { " supersedes " a href={ "/batches/" (previous) } { (previous) } }
                                    @if let Some(active) = &r.active_batch_id { " active: " a href={ "/batches/" (active) } { (active) } }
                                }
                                td.num { (r.superseded_count.map(|c| c.to_string()).unwrap_or_default()) }
                                td.num { (r.replacement_count.map(|c| c.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            (next_link("/audit", next))
        },
    )
}
