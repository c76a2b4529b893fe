//! The NBA domain's Firestore documents and their I/O.
//!
//! ```text
//! player_logs/{player_lookup}                 PlayerLogs: every game of a player, date order
//! slates/{date}                               SlateHeader: players on the slate, league context
//! slates/{date}/players/{player_lookup}       SlateEntry (who plays, team, opponent, home, lines)
//! predictions/{date}/players/{player_lookup}  StoredPrediction: the current prediction
//! predictions/{date}/history/{player}-g{gen}  StoredPrediction of an older generation, superseded
//! exports/{date}                              ExportRecord: the last exported generation
//! ```

use firestore::{FirestoreDb, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};

use super::model::LeagueContext;
use super::types::{GameLog, PlayerPrediction, SlateEntry};
use crate::batch::store::StoreError;
pub(crate) use crate::batch::store::firestore_error;
use crate::gcp::firestore::document_id;

pub const PLAYER_LOGS: &str = "player_logs";
pub const SLATES: &str = "slates";
pub const SLATE_PLAYERS: &str = "players";
pub const PREDICTIONS: &str = "predictions";
pub const PREDICTION_PLAYERS: &str = "players";
pub const PREDICTION_HISTORY: &str = "history";
pub const EXPORTS: &str = "exports";

/// BatchWrite accepts at most 500 writes per request.
pub const MAX_WRITES_PER_BATCH: usize = 500;

/// `player_logs/{player_lookup}`: one document per player keeps a worker's history read to one get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerLogs {
    pub player_lookup: String,
    pub player_name: String,
    pub games: Vec<GameLog>,
    /// Lets `load` skip writing a document whose content did not change.
    pub checksum: String,
}

/// `slates/{date}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlateHeader {
    pub game_date: String,
    pub players: u64,
    /// League rates and opponent factors from games strictly before the date, computed once at load
    /// so a worker does not read every player's history.
    pub league: LeagueContext,
    pub checksum: String,
}

/// `predictions/{date}/players/{player}` and its history copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPrediction {
    pub batch_id: String,
    pub generation: u64,
    pub prediction: PlayerPrediction,
    /// The generation that replaced this one; `None` while current.
    #[serde(default)]
    pub superseded_by_generation: Option<u64>,
}

/// `exports/{date}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub game_date: String,
    pub batch_id: String,
    pub generation: u64,
    pub location: String,
    /// SHA-like FNV-1a-64 hex checksum of the exported file's bytes.
    pub checksum: String,
    pub players: u64,
    /// The batch's coverage (predicted players / slate players), as in the file.
    #[serde(default)]
    pub coverage: Option<f64>,
}

/// FNV-1a 64 as hex: a cheap content fingerprint (not a security checksum).
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", crate::batch::documents::fnv1a64(bytes))
}

pub async fn player_logs(db: &FirestoreDb, player: &str) -> Result<Option<PlayerLogs>, StoreError> {
    db.fluent().select().by_id_in(PLAYER_LOGS).obj().one(player).await.map_err(firestore_error("reading player logs"))
}

pub async fn slate_header(db: &FirestoreDb, date: &str) -> Result<Option<SlateHeader>, StoreError> {
    db.fluent().select().by_id_in(SLATES).obj().one(date).await.map_err(firestore_error("reading a slate"))
}

pub async fn slate_entry(db: &FirestoreDb, date: &str, player: &str) -> Result<Option<SlateEntry>, StoreError> {
    let parent = db.parent_path(SLATES, date).map_err(firestore_error("building a path"))?;
    db.fluent()
        .select()
        .by_id_in(SLATE_PLAYERS)
        .parent(&parent)
        .obj()
        .one(player)
        .await
        .map_err(firestore_error("reading a slate entry"))
}

/// Ids of the players on a date's slate, sorted.
pub async fn slate_players(db: &FirestoreDb, date: &str) -> Result<Vec<String>, StoreError> {
    let parent = db.parent_path(SLATES, date).map_err(firestore_error("building a path"))?;
    let documents = db
        .fluent()
        .select()
        .fields(["player_lookup"])
        .from(SLATE_PLAYERS)
        .parent(&parent)
        .query()
        .await
        .map_err(firestore_error("listing a slate"))?;
    let mut ids: Vec<String> = documents.iter().map(|d| document_id(d).to_string()).collect();
    ids.sort();
    Ok(ids)
}

/// Current predictions of a date (`predictions/{date}/players`).
pub async fn current_predictions(db: &FirestoreDb, date: &str) -> Result<Vec<StoredPrediction>, StoreError> {
    let parent = db.parent_path(PREDICTIONS, date).map_err(firestore_error("building a path"))?;
    db.fluent()
        .select()
        .from(PREDICTION_PLAYERS)
        .parent(&parent)
        .obj()
        .query()
        .await
        .map_err(firestore_error("reading predictions"))
}

/// Superseded predictions of a date (`predictions/{date}/history`).
pub async fn superseded_predictions(db: &FirestoreDb, date: &str) -> Result<Vec<StoredPrediction>, StoreError> {
    let parent = db.parent_path(PREDICTIONS, date).map_err(firestore_error("building a path"))?;
    db.fluent()
        .select()
        .from(PREDICTION_HISTORY)
        .parent(&parent)
        .obj()
        .query()
        .await
        .map_err(firestore_error("reading superseded predictions"))
}

pub async fn export_record(db: &FirestoreDb, date: &str) -> Result<Option<ExportRecord>, StoreError> {
    db.fluent().select().by_id_in(EXPORTS).obj().one(date).await.map_err(firestore_error("reading an export record"))
}

/// A write for a BatchWrite: create-only, or an update guarded by the update time that was read.
pub fn precondition(update_time: Option<firestore::FirestoreInstant>) -> FirestoreWritePrecondition {
    match update_time {
        Some(time) => FirestoreWritePrecondition::UpdateTime(time),
        None => FirestoreWritePrecondition::Exists(false),
    }
}
