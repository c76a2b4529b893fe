//! `/dates/{date}`: the current generation, its predictions in a table sorted by any column (links, so
//! it works without JavaScript), the export record and the lineage.

use maud::{Markup, html};

use super::batch::lineage;
use super::layout::{coverage, frame};
use crate::dashboard::filters::{DateView, SortColumn};
use crate::dashboard::views::DateViewData;

const HEADINGS: [(SortColumn, &str); 9] = [
    (SortColumn::Player, "Player"),
    (SortColumn::Team, "Team"),
    (SortColumn::Stat, "Stat"),
    (SortColumn::Line, "Line"),
    (SortColumn::Projection, "Projection"),
    (SortColumn::POver, "P(over)"),
    (SortColumn::Edge, "Edge"),
    (SortColumn::Pick, "Pick"),
    (SortColumn::Confidence, "Confidence"),
];

pub fn render(data: &DateViewData, view: &DateView, reads: u64) -> Markup {
    let date = &data.game_date;
    let commands = vec![
        format!("props-pipeline status --game-date {date}"),
        format!("props-pipeline audit --game-date {date}"),
        format!("props-pipeline trigger --game-date {date} --mode regenerate_with_supersede --reason \"...\" --wait"),
    ];
    frame(
        &format!("Game date {date}"),
        reads,
        &commands,
        html! {
            dl.facts {
                dt { "Newest batch" }
                dd { @if let Some(id) = &data.current_batch_id { a #current href={ "/batches/" (id) } { (id) } } @else { "none" } }
                dt { "Newest generation" } dd { (data.current_generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into())) }
                dt { "Published batch (its predictions are below)" }
                dd { @if let Some(id) = &data.published_batch_id { a #published href={ "/batches/" (id) } { (id) } } @else { "none yet" } }
            }
            h2 { "Export" }
            @match &data.export {
                Some(e) => dl.facts #export {
                    dt { "Batch" } dd { a href={ "/batches/" (e.batch_id) } { (e.batch_id) } }
                    dt { "Generation" } dd { (e.generation) }
                    dt { "Players" } dd { (e.players) }
                    dt { "Coverage" } dd { (coverage(e.coverage)) }
                    dt { "Location" } dd { code { (e.location) } }
                    dt { "Checksum" } dd { code { (e.checksum) } }
                },
                None => p #export { "Not exported yet." },
            }
            h2 { "Predictions (" (data.props.len()) " props)" }
            @if data.props.is_empty() {
                p #no-predictions { "No batch of this date has completed yet." }
            } @else {
                table #predictions {
                    thead { tr { @for (column, title) in HEADINGS { th { (heading(date, view, column, title)) } } } }
                    tbody {
                        @for p in &data.props {
                            tr.prop data-player=(p.player_lookup) data-edge=(p.edge) {
                                td { (p.player) } td { (p.team) " vs " (p.opponent) } td { (p.stat) }
                                td.num { (format!("{:.1}", p.line)) } td.num { (format!("{:.2}", p.projection)) }
                                td.num { (format!("{:.3}", p.p_over)) } td.num { (format!("{:+.3}", p.edge)) }
                                td { (p.pick) } td.num { (format!("{:.2}", p.confidence)) }
                            }
                        }
                    }
                }
            }
            h2 { "Lineage" }
            (lineage(&data.lineage, data.current_batch_id.as_deref()))
        },
    )
}

/// A column heading: a link that sorts by it (descending when already sorted ascending by it).
fn heading(date: &str, view: &DateView, column: SortColumn, title: &str) -> Markup {
    let active = view.sort == column;
    let dir = if active && !view.descending { "desc" } else { "asc" };
    let arrow = match (active, view.descending) {
        (false, _) => "",
        (true, false) => " ▲",
        (true, true) => " ▼",
    };
    html! { a href={ "/dates/" (date) "?sort=" (column.as_str()) "&dir=" (dir) } { (title) (arrow) } }
}
