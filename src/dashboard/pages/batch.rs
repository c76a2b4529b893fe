//! `/batches/{id}`: live progress, timeline, unfinished items, the date's lineage, and plain words when
//! the batch is stuck.

use maud::{Markup, PreEscaped, html};

use super::layout::{coverage, excerpt, frame, next_link, progress_bar, state_badge};
use crate::batch::state::BatchState;
use crate::dashboard::explain::human;
use crate::dashboard::filters::ItemFilter;
use crate::dashboard::views::{BatchView, Lineage};

/// Polls `/api/batches/{id}` every second while the batch is not final and updates the numbers in
/// place; stops at the final state. No build step, no library: the page works without it too.
const LIVE_SCRIPT: &str = r#"
(function () {
  var root = document.getElementById('progress');
  var id = root.dataset.batch;
  var finals = ['COMPLETE', 'FAILED', 'SUPERSEDED'];
  var pct = function (part, whole) { return whole ? (100 * part / whole).toFixed(1) + '%' : '0%'; };
  var timer = setInterval(function () {
    fetch('/api/batches/' + encodeURIComponent(id), { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        ['done', 'failed', 'skipped', 'pending', 'expected'].forEach(function (k) {
          document.getElementById(k).textContent = s[k];
        });
        var state = document.getElementById('state');
        state.textContent = s.state;
        state.className = 'state ' + s.state;
        document.getElementById('bar-done').style.width = pct(s.done, s.expected);
        document.getElementById('bar-failed').style.width = pct(s.failed, s.expected);
        document.getElementById('bar-skipped').style.width = pct(s.skipped, s.expected);
        if (finals.indexOf(s.state) >= 0) {
          clearInterval(timer);
          document.getElementById('live').textContent = 'Final. Reload for the timeline and the export.';
        }
      })
      .catch(function () {});
  }, 1000);
})();
"#;

pub fn render(view: &BatchView, filter: &ItemFilter, reads: u64) -> Markup {
    let s = &view.row.status;
    let id = &s.batch_id;
    let mut commands = vec![format!("props-pipeline status {id} --watch"), format!("props-pipeline missing {id}")];
    if s.state == BatchState::Running {
        commands.push(format!("props-pipeline redrive {id}"));
    }
    commands.push(format!(
        "props-pipeline trigger --game-date {} --mode regenerate_with_supersede --reason \"...\"",
        s.game_date
    ));
    commands.push(format!("props-pipeline audit --game-date {}", s.game_date));
    let live = !s.state.is_final();
    frame(
        &format!("Batch {id}"),
        reads,
        &commands,
        html! {
            section #progress data-batch=(id) {
                p {
                    span #state class={ "state " (s.state.as_str()) } { (s.state.as_str()) }
                    " " span #done { (s.done) } " done, " span #failed { (s.failed) } " failed, "
                    span #skipped { (s.skipped) } " skipped, "
                    span #pending { (s.pending) } " pending of " span #expected { (s.expected) }
                    " · coverage " (coverage(s.coverage))
                }
                (progress_bar(s, true))
                p.muted #live {
                    @if live { "Live: updates every second until the batch is final." } @else { "Final." }
                }
            }
            dl.facts {
                dt { "Date" } dd { a href={ "/dates/" (s.game_date) } { (s.game_date) } }
                dt { "Generation" } dd { (s.generation) }
                dt { "Mode" } dd { (s.mode) }
                dt { "Model version" } dd #model-version { (s.model_version.as_deref().unwrap_or("-")) }
                dt { "Reason" } dd { (s.reason) }
                dt { "Correlation id" } dd { (s.correlation_id) }
                dt { "Created" } dd { (s.created_at) " (" (human(std::time::Duration::from_secs(view.row.age_secs))) " ago)" }
                dt { "Duration" } dd { (human(std::time::Duration::from_secs(view.row.duration_secs))) }
                @if let Some(reason) = &s.failure_reason { dt { "Failure" } dd { (reason) } }
                @if let Some(by) = &s.superseded_by { dt { "Superseded by" } dd { a href={ "/batches/" (by) } { (by) } } }
            }
            @if let Some(text) = &view.explanation {
                h2 { "What it is waiting for" }
                p.note #explanation { (text) }
            }
            h2 { "Timeline" }
            ol.timeline #timeline {
                @for step in &view.timeline {
                    li { @if let Some(at) = &step.at { span.muted { (at) } " " } (step.what) }
                }
            }
            h2 { (items_heading(view)) }
            (items(view, filter))
            h2 { "Lineage of " (s.game_date) }
            (lineage(&view.lineage, Some(id)))
            @if live { script { (PreEscaped(LIVE_SCRIPT)) } }
        },
    )
}

fn items(view: &BatchView, filter: &ItemFilter) -> Markup {
    let id = &view.row.status.batch_id;
    let next = view.items.next_cursor.as_deref().map(|c| filter.query_string(Some(c)));
    html! {
        form.filters #item-filter method="get" action={ "/batches/" (id) } {
            label { "Failed only" input #failed-only type="checkbox" name="failed" value="1" checked[view.failed_only]; }
            label { "Skipped only" input #skipped-only type="checkbox" name="skipped" value="1" checked[view.skipped_only]; }
            button #apply-filter type="submit" { "Show" }
        }
        @if view.items.items.is_empty() {
            p #no-items { "None." }
        } @else {
            table #items {
                thead { tr { th { "Item" } th { "Status" } th.num { "Attempts" } th.num { "Redrives" } th { "Error or reason skipped" } } }
                tbody {
                    @for row in &view.items.items {
                        @let status = serde_json::to_value(row.marker.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                        tr.item data-item=(row.item) data-status=(status) {
                            td { (row.item) } td { (status) } td.num { (row.marker.attempts) } td.num { (row.marker.redrives) }
                            td { (excerpt(row.marker.error.as_deref().unwrap_or(""), 300)) }
                        }
                    }
                }
            }
        }
        (next_link(&format!("/batches/{id}"), next))
    }
}

/// What the item table lists, by the filter (both boxes: failed and skipped).
fn items_heading(view: &BatchView) -> &'static str {
    match (view.failed_only, view.skipped_only) {
        (false, false) => "Pending, failed and skipped items",
        (true, false) => "Failed items",
        (false, true) => "Skipped items",
        (true, true) => "Failed and skipped items",
    }
}

/// The generations of a date and why each regeneration happened; `current` is emphasised.
pub fn lineage(lineage: &Lineage, current: Option<&str>) -> Markup {
    html! {
        table #lineage {
            thead { tr { th.num { "Gen" } th { "Batch" } th { "State" } th { "Mode" } th { "Reason" } th { "Created" } th { "Superseded by" } } }
            tbody {
                @for g in &lineage.generations {
                    tr.generation data-batch=(g.batch_id) data-generation=(g.generation) {
                        td.num { (g.generation) }
                        td { @if current == Some(g.batch_id.as_str()) { strong { (g.batch_id) } } @else { a href={ "/batches/" (g.batch_id) } { (g.batch_id) } } }
                        td { (state_badge(g.state)) } td { (g.mode) } td { (g.reason) } td { (g.created_at) }
                        td { @if let Some(by) = &g.superseded_by { a href={ "/batches/" (by) } { (by) } } }
                    }
                }
            }
        }
        @if !lineage.regenerations.is_empty() {
            ul #regenerations { @for line in &lineage.regenerations { li { (line) } } }
        }
    }
}
