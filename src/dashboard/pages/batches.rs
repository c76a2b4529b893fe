//! `/`: batches, newest first, filtered by date range, state and text, one cursor page at a time.

use maud::{Markup, html};

use super::layout::{coverage, frame, next_link, progress_bar, state_badge};
use crate::batch::state::BatchState;
use crate::dashboard::explain::human;
use crate::dashboard::filters::{BatchFilter, MAX_PAGE_SIZE};
use crate::dashboard::queries::{BatchPage, MAX_TEXT_SCAN};

pub fn render(filter: &BatchFilter, page: &BatchPage, reads: u64) -> Markup {
    let commands = vec![
        "props-pipeline status --json".to_string(),
        "props-pipeline trigger --game-date YYYY-MM-DD --reason \"...\" --wait".to_string(),
        "props-pipeline backfill --from YYYY-MM-DD --to YYYY-MM-DD --reason \"...\"".to_string(),
    ];
    let next = page.next_cursor.as_deref().map(|c| filter.query_string(Some(c)));
    frame(
        "Batches",
        reads,
        &commands,
        html! {
            (filters(filter))
            p.muted #summary {
                @if let Some(matching) = page.matching { (matching) " batches match. " }
                @if let Some(scanned) = page.scanned {
                    "Searched " (scanned) " batches for this page"
                    @if scanned >= u64::from(MAX_TEXT_SCAN) { " (the most one page searches; narrow the dates, or go on with the next page)" }
                    ". "
                }
                "Newest first" @if filter.by_date() { " (by game date, then creation)" } "."
            }
            @if page.batches.is_empty() {
                p #empty { "No batch matches." }
            } @else {
                table #batches {
                    thead { tr {
                        th { "Batch" } th { "Date" } th.num { "Gen" } th { "State" } th { "Progress" }
                        th.num { "Done" } th.num { "Failed" } th.num { "Skipped" } th.num { "Pending" } th.num { "Expected" }
                        th.num { "Coverage" } th.num { "Age" } th.num { "Duration" } th { "Superseded by" }
                    } }
                    tbody {
                        @for row in &page.batches {
                            @let s = &row.status;
                            tr.batch data-batch=(s.batch_id) {
                                td { a href={ "/batches/" (s.batch_id) } { (s.batch_id) } }
                                td { a href={ "/dates/" (s.game_date) } { (s.game_date) } }
                                td.num { (s.generation) }
                                td { (state_badge(s.state)) }
                                td { (progress_bar(s, false)) }
                                td.num { (s.done) } td.num { (s.failed) } td.num.skipped { (s.skipped) } td.num { (s.pending) } td.num { (s.expected) }
                                td.num { (coverage(s.coverage)) }
                                td.num { (human(std::time::Duration::from_secs(row.age_secs))) }
                                td.num { (human(std::time::Duration::from_secs(row.duration_secs))) }
                                td { @if let Some(by) = &s.superseded_by { a href={ "/batches/" (by) } { (by) } } }
                            }
                        }
                    }
                }
            }
            (next_link("/", next))
        },
    )
}

fn filters(filter: &BatchFilter) -> Markup {
    let date = |d: Option<crate::messages::GameDate>| d.map(|d| d.to_string()).unwrap_or_default();
    html! {
        form.filters method="get" action="/" {
            label { "From date" input type="date" name="from" value=(date(filter.from)); }
            label { "To date" input type="date" name="to" value=(date(filter.to)); }
            label { "State" select name="state" {
                option value="" { "any" }
                @for state in BatchState::ALL {
                    option value=(state.as_str()) selected[filter.state == Some(state)] { (state.as_str()) }
                }
            } }
            label { "Text (id, reason, correlation id)" input type="search" name="text" value=(filter.text.clone().unwrap_or_default()); }
            label { "Per page" input type="number" name="limit" min="1" max=(MAX_PAGE_SIZE) value=(filter.limit); }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
    }
}
