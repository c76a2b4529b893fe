//! What each page shows, loaded with the bounded reads of [`super::queries`]. The HTML pages and the
//! JSON API render the same views, so a script sees what a person sees.

use std::time::Duration;

use firestore::FirestoreInstant;
use serde::Serialize;

use super::explain::{TimelineEvent, explain, lineage_line, timeline};
use super::filters::{AuditFilter, DateView, ItemFilter, SortColumn};
use super::queries::{self, BatchRow, ItemPage, MAX_LINEAGE, Reads};
use crate::batch::documents::BatchHeader;
use crate::batch::state::BatchState;
use crate::batch::store::{BatchStore, StoreError};
use crate::batch::sweep_policy::{SweepSettings, idle_for};
use crate::messages::GameDate;
use crate::nba::store::ExportRecord;

/// One generation of a date.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub batch_id: String,
    pub generation: u64,
    pub state: BatchState,
    pub mode: String,
    pub reason: String,
    pub created_at: String,
    pub superseded_by: Option<String>,
}

/// The generations of a date, oldest first, and why each regeneration happened (from the audit trail).
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub generations: Vec<Generation>,
    pub regenerations: Vec<String>,
}

async fn lineage(store: &BatchStore, date: &str, reads: &Reads) -> Result<Lineage, StoreError> {
    let generations = queries::batches_of_date(store, date, reads)
        .await?
        .into_iter()
        .map(|h: BatchHeader| Generation {
            batch_id: h.batch_id,
            generation: h.generation,
            state: h.state,
            mode: h.mode,
            reason: h.reason,
            created_at: h.created_at.to_string(),
            superseded_by: h.superseded_by,
        })
        .collect();
    let filter = AuditFilter { game_date: date.parse().ok(), limit: MAX_LINEAGE, ..Default::default() };
    let mut records = queries::audit_page(store, &filter, reads).await?.records;
    records.reverse();
    let regenerations = records.iter().filter_map(lineage_line).collect();
    Ok(Lineage { generations, regenerations })
}

/// `/batches/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    #[serde(flatten)]
    pub row: BatchRow,
    pub timeline: Vec<TimelineEvent>,
    /// What the batch waits for and what the sweeper does next; `None` once final.
    pub explanation: Option<String>,
    pub failed_only: bool,
    pub skipped_only: bool,
    pub items: ItemPage,
    pub lineage: Lineage,
}

/// The view of `batch_id`, `None` when no such batch exists.
pub async fn batch(
    store: &BatchStore,
    sweep: &SweepSettings,
    batch_id: &str,
    items: &ItemFilter,
    reads: &Reads,
) -> Result<Option<BatchView>, StoreError> {
    let Some(header) = queries::header(store, batch_id, reads).await? else {
        return Ok(None);
    };
    let trigger = queries::audit_record(store, &header.trigger_message_id, reads).await?;
    let export = queries::nba::export_record(store, &header.game_date, reads).await?;
    let exported = export
        .filter(|e| e.batch_id == header.batch_id)
        .map(|e| format!("exported: {} players to {} (checksum {})", e.players, e.location, e.checksum));
    let events = timeline(&header, trigger.as_ref(), exported);
    let item_page = queries::item_page(store, batch_id, items, reads).await?;
    let lineage = lineage(store, &header.game_date, reads).await?;
    let idle = if header.state.is_final() {
        Duration::ZERO
    } else {
        idle_for(queries::last_activity(store, &header, reads).await?, FirestoreInstant::now())
    };
    let row = queries::row(store, header.clone(), reads).await?;
    let explanation = explain(&header, idle, FirestoreInstant::now(), sweep, row.status.pending);
    Ok(Some(BatchView {
        row,
        timeline: events,
        explanation,
        failed_only: items.failed_only,
        skipped_only: items.skipped_only,
        items: item_page,
        lineage,
    }))
}

/// One prop of one player, flattened for the table.
#[derive(Debug, Clone, Serialize)]
pub struct PropRow {
    pub player: String,
    pub player_lookup: String,
    pub team: String,
    pub opponent: String,
    pub stat: String,
    pub line: f64,
    pub projection: f64,
    pub p_over: f64,
    pub edge: f64,
    pub pick: String,
    pub confidence: f64,
}

/// `/dates/{date}`.
#[derive(Debug, Clone, Serialize)]
pub struct DateViewData {
    pub game_date: String,
    pub current_batch_id: Option<String>,
    pub current_generation: Option<u64>,
    /// The batch whose predictions are current (the pointer's published generation).
    pub published_batch_id: Option<String>,
    pub export: Option<ExportRecord>,
    pub props: Vec<PropRow>,
    pub lineage: Lineage,
}

/// The view of a date, `None` when the date never had a batch.
pub async fn date(
    store: &BatchStore,
    date: GameDate,
    view: &DateView,
    reads: &Reads,
) -> Result<Option<DateViewData>, StoreError> {
    let date = date.to_string();
    let pointer = queries::pointer(store, &date, reads).await?;
    let lineage = lineage(store, &date, reads).await?;
    if pointer.is_none() && lineage.generations.is_empty() {
        return Ok(None);
    }
    let export = queries::nba::export_record(store, &date, reads).await?;
    let published_batch_id = pointer.as_ref().and_then(|p| p.published_batch_id.clone());
    let published = pointer.as_ref().and_then(|p| Some((p.published_batch_id.clone()?, p.published_generation?)));
    let mut props: Vec<PropRow> = queries::nba::predictions(store, published, reads)
        .await?
        .into_iter()
        .flat_map(|stored| {
            let p = stored.prediction;
            p.props.into_iter().map(move |prop| PropRow {
                player: p.player_name.clone(),
                player_lookup: p.player_lookup.clone(),
                team: p.team.clone(),
                opponent: p.opponent.clone(),
                stat: prop.stat.as_str().to_string(),
                line: prop.line,
                projection: prop.projection,
                p_over: prop.p_over,
                edge: prop.edge,
                pick: serde_json::to_value(prop.recommendation)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                confidence: prop.confidence,
            })
        })
        .collect();
    sort_props(&mut props, view);
    Ok(Some(DateViewData {
        game_date: date,
        current_batch_id: pointer.as_ref().map(|p| p.current_batch_id.clone()),
        current_generation: pointer.map(|p| p.current_generation),
        published_batch_id,
        export,
        props,
        lineage,
    }))
}

/// Sorts by the chosen column, then player and stat, so equal values keep a stable order.
pub fn sort_props(props: &mut [PropRow], view: &DateView) {
    let number = |a: f64, b: f64| a.total_cmp(&b);
    props.sort_by(|a, b| {
        let primary = match view.sort {
            SortColumn::Player => a.player.cmp(&b.player),
            SortColumn::Team => a.team.cmp(&b.team),
            SortColumn::Stat => a.stat.cmp(&b.stat),
            SortColumn::Line => number(a.line, b.line),
            SortColumn::Projection => number(a.projection, b.projection),
            SortColumn::POver => number(a.p_over, b.p_over),
            SortColumn::Edge => number(a.edge, b.edge),
            SortColumn::Pick => a.pick.cmp(&b.pick),
            SortColumn::Confidence => number(a.confidence, b.confidence),
        };
        let primary = if view.descending { primary.reverse() } else { primary };
        primary.then_with(|| a.player.cmp(&b.player)).then_with(|| a.stat.cmp(&b.stat))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(player: &str, stat: &str, edge: f64) -> PropRow {
        PropRow {
            player: player.into(),
            player_lookup: player.to_lowercase(),
            team: "BOS".into(),
            opponent: "NYK".into(),
            stat: stat.into(),
            line: 10.5,
            projection: 11.0,
            p_over: 0.5 + edge,
            edge,
            pick: "pass".into(),
            confidence: 0.3,
        }
    }

    #[test]
    fn props_sort_by_the_chosen_column_then_player_and_stat() {
        let mut props = vec![prop("B", "points", 0.02), prop("A", "threes", -0.05), prop("A", "assists", 0.02)];
        sort_props(&mut props, &DateView { sort: SortColumn::Edge, descending: true });
        let order: Vec<(&str, &str)> = props.iter().map(|p| (p.player.as_str(), p.stat.as_str())).collect();
        assert_eq!(order, vec![("A", "assists"), ("B", "points"), ("A", "threes")]);
        sort_props(&mut props, &DateView::default());
        assert_eq!(props[0].stat, "assists", "by player, then stat");
    }
}
