//! `props-pipeline load`: game logs and slates into Firestore, idempotently.
//!
//! Every document carries a content checksum; a document whose checksum is unchanged is not written
//! again, so a second load of the same data writes nothing. A slate's players are written before its
//! header, so a header always means a complete slate (the coordinator checks the header).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use firestore::FirestoreDb;

use super::backtest::{Backtester, SampleHistory};
use super::data::build_slate;
use super::model::{Calibration, LeagueContext, ModelConfig};
use super::store::{PLAYER_LOGS, PlayerLogs, SLATE_PLAYERS, SLATES, SlateHeader, fingerprint, firestore_error};
use super::types::{GameLog, SlateEntry};
use crate::batch::store::StoreError;
use crate::gcp::firestore::document_id;

/// Player documents are up to ~100 KB; 100 per BatchWrite stays well under its 10 MiB request limit.
const PLAYERS_PER_BATCH: usize = 100;
/// Slate entries are small; BatchWrite takes at most 500 writes.
const ENTRIES_PER_BATCH: usize = 500;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub players_written: usize,
    pub players_unchanged: usize,
    pub slates_written: usize,
    pub slates_unchanged: usize,
    pub slate_players_written: usize,
}

/// A step of the load, for progress output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    Players { done: usize, total: usize },
    Slates { done: usize, total: usize },
}

/// Writes every player's logs and the slates of `dates`.
pub async fn load(
    db: &FirestoreDb,
    logs: &[GameLog],
    dates: &[NaiveDate],
    progress: &mut (dyn FnMut(LoadStep) + Send),
) -> Result<LoadReport, StoreError> {
    let mut report = LoadReport::default();
    write_players(db, logs, &mut report, progress).await?;
    let existing = checksums(db, SLATES).await?;
    let mut calibrator = Calibrator::new(logs);
    let mut sorted = dates.to_vec();
    // In date order, each date's calibration window mostly reuses the previous one's scored dates.
    sorted.sort_unstable();
    for (done, date) in sorted.iter().enumerate() {
        let calibration = calibrator.calibration_for(*date);
        let entries = build_slate(logs, *date);
        write_slate_entries(db, logs, *date, entries, calibration, &existing, &mut report).await?;
        progress(LoadStep::Slates { done: done + 1, total: dates.len() });
    }
    Ok(report)
}

/// Fits the walk-forward calibration of each slate date from the logs (exactly as the backtest does),
/// scoring every earlier date at most once.
struct Calibrator {
    backtester: Option<Backtester>,
    history: SampleHistory,
}

impl Calibrator {
    fn new(logs: &[GameLog]) -> Self {
        // The worker runs the default model; its calibration is fitted for that model.
        let backtester = Backtester::new(logs, ModelConfig::default()).ok();
        Self { backtester, history: SampleHistory::default() }
    }

    /// The calibration of `date`; the identity (raw probabilities, logged) if it cannot be fitted,
    /// which synthetic lines never cause (only an invalid posted line could).
    fn calibration_for(&mut self, date: NaiveDate) -> Calibration {
        let fitted = match &self.backtester {
            Some(backtester) => backtester.calibration_with(date, &mut self.history).map_err(|e| e.to_string()),
            None => Err("invalid model config".to_string()),
        };
        fitted.unwrap_or_else(|error| {
            tracing::warn!(%date, error, "calibration could not be fitted; the slate uses raw probabilities");
            Calibration::identity(date)
        })
    }
}

async fn write_players(
    db: &FirestoreDb,
    logs: &[GameLog],
    report: &mut LoadReport,
    progress: &mut (dyn FnMut(LoadStep) + Send),
) -> Result<(), StoreError> {
    let mut by_player: BTreeMap<&str, Vec<GameLog>> = BTreeMap::new();
    for log in logs {
        by_player.entry(&log.player_lookup).or_default().push(log.clone());
    }
    let existing = checksums(db, PLAYER_LOGS).await?;
    let mut changed = Vec::new();
    for (player, mut games) in by_player {
        games.sort_by(|a, b| (a.game_date, &a.game_id).cmp(&(b.game_date, &b.game_id)));
        let checksum = fingerprint(&serde_json::to_vec(&games).unwrap_or_default());
        if existing.get(player) == Some(&checksum) {
            report.players_unchanged += 1;
            continue;
        }
        let player_name = games.last().map(|g| g.player_name.clone()).unwrap_or_default();
        changed.push(PlayerLogs { player_lookup: player.to_string(), player_name, games, checksum });
    }
    let total = changed.len();
    let writer = db.create_simple_batch_writer().await.map_err(firestore_error("opening a batch writer"))?;
    for (index, chunk) in changed.chunks(PLAYERS_PER_BATCH).enumerate() {
        let mut batch = writer.new_batch();
        for doc in chunk {
            db.fluent()
                .update()
                .in_col(PLAYER_LOGS)
                .document_id(&doc.player_lookup)
                .object(doc)
                .add_to_batch(&mut batch)
                .map_err(firestore_error("queueing player logs"))?;
        }
        check(batch.write().await.map_err(firestore_error("writing player logs"))?)?;
        report.players_written += chunk.len();
        progress(LoadStep::Players { done: (index * PLAYERS_PER_BATCH + chunk.len()).min(total), total });
    }
    if total == 0 {
        progress(LoadStep::Players { done: 0, total: 0 });
    }
    Ok(())
}

/// Writes the slate of `date` with the given players (the league context still comes from `logs`
/// before `date`): how fixtures and what-if runs get a slate other than the day's real games.
pub async fn load_slate(
    db: &FirestoreDb,
    logs: &[GameLog],
    date: NaiveDate,
    entries: Vec<SlateEntry>,
) -> Result<LoadReport, StoreError> {
    let mut report = LoadReport::default();
    let existing = checksums(db, SLATES).await?;
    let calibration = Calibrator::new(logs).calibration_for(date);
    write_slate_entries(db, logs, date, entries, calibration, &existing, &mut report).await?;
    Ok(report)
}

async fn write_slate_entries(
    db: &FirestoreDb,
    logs: &[GameLog],
    date: NaiveDate,
    entries: Vec<SlateEntry>,
    calibration: Calibration,
    existing: &HashMap<String, String>,
    report: &mut LoadReport,
) -> Result<(), StoreError> {
    let date_text = date.format("%Y-%m-%d").to_string();
    let league = LeagueContext::build(logs, date).with_calibration(calibration);
    let checksum = fingerprint(&serde_json::to_vec(&(&entries, &league)).unwrap_or_default());
    if existing.get(&date_text) == Some(&checksum) {
        report.slates_unchanged += 1;
        return Ok(());
    }
    let parent = db.parent_path(SLATES, &date_text).map_err(firestore_error("building a path"))?.to_string();
    let writer = db.create_simple_batch_writer().await.map_err(firestore_error("opening a batch writer"))?;
    for chunk in entries.chunks(ENTRIES_PER_BATCH) {
        let mut batch = writer.new_batch();
        for entry in chunk {
            db.fluent()
                .update()
                .in_col(SLATE_PLAYERS)
                .document_id(&entry.player_lookup)
                .parent(&parent)
                .object(entry)
                .add_to_batch(&mut batch)
                .map_err(firestore_error("queueing a slate entry"))?;
        }
        check(batch.write().await.map_err(firestore_error("writing a slate"))?)?;
    }
    let header = SlateHeader { game_date: date_text.clone(), players: entries.len() as u64, league, checksum };
    db.fluent()
        .update()
        .in_col(SLATES)
        .document_id(&date_text)
        .object(&header)
        .execute::<SlateHeader>()
        .await
        .map_err(firestore_error("writing a slate header"))?;
    report.slates_written += 1;
    report.slate_players_written += entries.len();
    Ok(())
}

/// `checksum` of every document of a top-level collection, by id (a projection: only that field).
async fn checksums(db: &FirestoreDb, collection: &str) -> Result<HashMap<String, String>, StoreError> {
    let documents = db
        .fluent()
        .select()
        .fields(["checksum"])
        .from(collection)
        .query()
        .await
        .map_err(firestore_error("reading checksums"))?;
    Ok(documents
        .iter()
        .filter_map(|doc| {
            let id = document_id(doc).to_string();
            let checksum = doc.fields.get("checksum")?.value_type.as_ref()?;
            match checksum {
                firestore::gcloud_sdk::google::firestore::v1::value::ValueType::StringValue(text) => {
                    Some((id, text.clone()))
                }
                _ => None,
            }
        })
        .collect())
}

fn check(response: firestore::FirestoreBatchWriteResponse) -> Result<(), StoreError> {
    match response.statuses.iter().find(|s| s.code != 0) {
        None => Ok(()),
        Some(status) => Err(StoreError::BatchWriteFailed { code: status.code, message: status.message.clone() }),
    }
}
