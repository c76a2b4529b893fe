//! The NBA domain's Firestore documents and their I/O.
//!
//! ```text
//! player_logs/{player_lookup}                 PlayerLogs: every game of a player, date order
//! slates/{date}                               SlateHeader: players on the slate, league context
//! slates/{date}/players/{player_lookup}       SlateEntry (who plays, team, opponent, home, lines)
//! exports/{date}                              ExportRecord: the last exported generation
//! ```
//!
//! Predictions are not copied anywhere: a worker's [`PlayerPrediction`] stays in its batch, in the
//! done item's marker (`batches/{batch_id}/items/{player_lookup}`, field `result`; batches recorded
//! before this layout have it in `batches/{batch_id}/results/{player_lookup}`), and the date's current
//! ones are those of the batch the date's pointer publishes (`game_dates/{date}.published_batch_id`).
//! The read path for a downstream consumer is therefore: read `game_dates/{date}`, then list
//! `batches/{published_batch_id}/items` where `status == "done"`, taking each one's `result`
//! (paginate by document id), plus `batches/{published_batch_id}/results` for older batches
//! ([`BatchStore::results_page`] does both). A superseded generation's
//! predictions stay readable in their own batch until retention deletes it; retention never deletes a
//! batch a pointer publishes.

use firestore::{FirestoreDb, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};

use super::model::LeagueContext;
use super::types::{GameLog, PlayerPrediction, SlateEntry};
pub(crate) use crate::batch::store::firestore_error;
use crate::batch::store::{BatchStore, StoreError};
use crate::gcp::firestore::document_id;

pub const PLAYER_LOGS: &str = "player_logs";
pub const SLATES: &str = "slates";
pub const SLATE_PLAYERS: &str = "players";
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

/// A prediction with the batch (and generation) that made it; read from the batch's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPrediction {
    pub batch_id: String,
    pub generation: u64,
    pub prediction: PlayerPrediction,
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

/// The batch whose predictions are the date's current ones, with its generation: what the date's
/// pointer publishes (set by the engine in the commit that made that batch COMPLETE).
pub async fn published_batch(db: &FirestoreDb, date: &str) -> Result<Option<(String, u64)>, StoreError> {
    let pointer = BatchStore::new(db.clone()).pointer(date).await?;
    Ok(pointer.and_then(|p| Some((p.published_batch_id?, p.published_generation.unwrap_or_default()))))
}

/// The predictions one batch made (its results), in player order, published or not.
pub async fn batch_predictions(
    db: &FirestoreDb,
    batch_id: &str,
    generation: u64,
) -> Result<Vec<StoredPrediction>, StoreError> {
    let results: Vec<(String, PlayerPrediction)> = BatchStore::new(db.clone()).results(batch_id).await?;
    Ok(results
        .into_iter()
        .map(|(_, prediction)| StoredPrediction { batch_id: batch_id.to_string(), generation, prediction })
        .collect())
}

/// One page of a batch's predictions with their item ids (= `player_lookup`), in id order: at most
/// `limit`, those after the id `after` ([`BatchStore::results_page`]).
pub async fn batch_predictions_page(
    db: &FirestoreDb,
    batch_id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, PlayerPrediction)>, StoreError> {
    BatchStore::new(db.clone()).results_page(batch_id, after, limit).await
}

/// The current predictions of a date: the published batch's (none before a batch of the date completed).
pub async fn current_predictions(db: &FirestoreDb, date: &str) -> Result<Vec<StoredPrediction>, StoreError> {
    match published_batch(db, date).await? {
        Some((batch_id, generation)) => batch_predictions(db, &batch_id, generation).await,
        None => Ok(Vec::new()),
    }
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
