//! The exporter role: on `predictions-ready`, write the date's front-end file and record it.
//!
//! The file (`{export_dir}/{date}.json`, schema below and in README.md) is written to a temporary file
//! in the same folder and renamed into place, so a reader never sees half a file. An export never
//! replaces a newer generation: the Firestore record `exports/{date}` is advanced by compare-and-set
//! and the file already in place is checked before the rename. Ready events of one date are exported one
//! at a time per process, and the record is the arbiter across processes (see [`Exporter::export`]).
//! Re-exporting the same generation writes byte-identical content (no timestamps in the file), so
//! redeliveries are harmless.
//!
//! Memory stays bounded whatever the slate's size: the batch's results are read a page at a time
//! (by document id, which is the player order) and each player is written to the temporary file as
//! it comes, fingerprinted on the way (see `export_file`); no step holds the whole batch or file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use firestore::{FirestoreDb, FirestoreInstant};
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::export_file::{FileHead, StreamedExport};
use super::staged_file::{StagedFile, same_contents};
use super::store::{EXPORTS, ExportRecord, batch_predictions_page, export_record, firestore_error, published_batch};
use super::types::PlayerPrediction;
use crate::batch::status::skipped_items;
use crate::batch::store::{BatchStore, CountedTransaction, StoreError};
use crate::consumer::{Delivery, MessageHandler, Outcome};
use crate::messages::ReadyMessage;

/// Version of the export file's schema; bumped only on an incompatible change.
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// The front-end file of one date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportFile {
    pub schema_version: u32,
    pub game_date: String,
    pub batch_id: String,
    pub generation: u64,
    /// Players on the slate (the batch's expected items); `None` when the batch record is gone.
    #[serde(default)]
    pub slate_players: Option<u64>,
    /// Players predicted (the batch's done items).
    #[serde(default)]
    pub predicted_players: Option<u64>,
    /// `predicted_players / slate_players`, as recorded on the batch when it was finalized.
    #[serde(default)]
    pub coverage: Option<f64>,
    /// Players sorted by `player_lookup`.
    pub players: Vec<PlayerPrediction>,
    /// The distinct `model_version`s of `players` (one, unless predictions of a generation were made by
    /// workers of different releases), sorted.
    #[serde(default)]
    pub model_versions: Vec<String>,
    /// Slate players the model declined (too little history), with the reason; by `player_lookup`.
    #[serde(default)]
    pub skipped_players: Vec<SkippedPlayer>,
    pub attribution: String,
}

/// A slate player without predictions, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPlayer {
    pub player_lookup: String,
    pub reason: String,
}

const ATTRIBUTION: &str = "Statistics originate from NBA.com (via the MIT-licensed NocturneBear/NBA-Data-2010-2024 and \
spon7ge/NBA-Prop-Predictor data sets). Prop lines are synthetic: the half point nearest the median of the player's last 20 games, priced from \
the share of those games over it with a standard vig.";

/// What handling one ready event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOutcome {
    Written {
        path: PathBuf,
        players: usize,
    },
    /// A newer generation is already exported (or consolidated) for the date.
    SkippedOlder {
        exported_generation: u64,
    },
    /// This generation is recorded and its file is in place, byte for byte: a redelivered ready event.
    AlreadyExported,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub struct Exporter {
    db: FirestoreDb,
    dir: PathBuf,
    /// One lock per date: ready events of one date are exported one at a time in this process (the
    /// role runs many handlers at once), so two generations never interleave their check and rename.
    date_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Re-exports of a newer recorded generation one ready event may do after its own rename (each one
/// follows another process's newer record; more than this means the date is regenerated faster
/// than it is exported, and the next ready event catches up).
const MAX_CATCH_UPS: usize = 3;

/// Results read per query while writing a file: a page of ~300 predictions is a few hundred KiB in
/// memory whatever the slate's size, and N = 5,000 takes 17 queries (Firestore bills per document
/// read, so the page size does not change the cost).
const EXPORT_PAGE_SIZE: u32 = 300;

/// Which generation of a date to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    batch_id: String,
    generation: u64,
}

impl Exporter {
    pub fn new(db: FirestoreDb, dir: PathBuf) -> Self {
        Self { db, dir, date_locks: Default::default() }
    }

    pub fn path_for(&self, game_date: &str) -> PathBuf {
        self.dir.join(format!("{game_date}.json"))
    }

    /// Exports the ready event's generation, then makes sure the file is not behind the record.
    ///
    /// Within a process, one date is exported at a time. Across processes the record `exports/{date}`
    /// is the arbiter: it only moves forward (compare-and-set), the record is re-read just before the
    /// rename (a newer one means this export stands down), and after the rename, if a newer generation
    /// was recorded meanwhile (its exporter may have renamed before this one did), that generation is
    /// written again. So the file never stays at an older generation than the record.
    pub async fn export(&self, ready: &ReadyMessage) -> Result<ExportOutcome, ExportError> {
        let date = ready.game_date.to_string();
        let lock = self.date_lock(&date);
        let _one_at_a_time = lock.lock().await;
        let target = Target { batch_id: ready.batch_id.clone(), generation: ready.generation };
        let outcome = self.export_generation(&date, &target).await?;
        self.catch_up(&date).await?;
        Ok(outcome)
    }

    fn date_lock(&self, date: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means a thread panicked while inserting; the map is still valid.
        let mut locks = self.date_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(locks.entry(date.to_string()).or_default())
    }

    /// While the record names a newer generation than the file holds (or the file is gone), writes
    /// the recorded generation.
    async fn catch_up(&self, date: &str) -> Result<(), ExportError> {
        for _ in 0..MAX_CATCH_UPS {
            let Some(record) = export_record(&self.db, date).await? else {
                return Ok(());
            };
            let in_file = generation_in_file(&self.path_for(date));
            if in_file.is_some_and(|generation| generation >= record.generation) {
                return Ok(());
            }
            tracing::warn!(
                game_date = date,
                recorded_generation = record.generation,
                file_generation = in_file,
                "export file behind its record; writing the recorded generation"
            );
            let target = Target { batch_id: record.batch_id, generation: record.generation };
            if let ExportOutcome::SkippedOlder { .. } = self.export_generation(date, &target).await? {
                // An even newer generation is published; its own ready event exports it.
                return Ok(());
            }
        }
        Ok(())
    }

    async fn export_generation(&self, date: &str, target: &Target) -> Result<ExportOutcome, ExportError> {
        // The pointer only says whether a newer generation is published; the predictions are the
        // target batch's own results, which nothing changes after the batch finished.
        let published = published_batch(&self.db, date).await?.map_or(0, |(_, generation)| generation);
        if published > target.generation {
            return Ok(ExportOutcome::SkippedOlder { exported_generation: published });
        }
        let path = self.path_for(date);
        // The file is written (to a temporary name) first: the record carries its fingerprint, which
        // only the whole stream gives. A temporary file not renamed below is removed when dropped.
        let staged = self.stage_file(date, target, &path).await?;
        let record = ExportRecord {
            game_date: date.to_string(),
            batch_id: target.batch_id.clone(),
            generation: target.generation,
            location: path.display().to_string(),
            checksum: staged.checksum.clone(),
            players: staged.players,
            coverage: staged.coverage,
        };
        match self.advance_record(&record).await? {
            RecordAdvance::Newer(exported_generation) => {
                return Ok(ExportOutcome::SkippedOlder { exported_generation });
            }
            // The file may be missing if the exporter died between the record and the rename.
            RecordAdvance::AlreadyRecorded if same_contents(&path, staged.file.path()).unwrap_or(false) => {
                return Ok(ExportOutcome::AlreadyExported);
            }
            RecordAdvance::AlreadyRecorded | RecordAdvance::Advanced => {}
        }
        if let Some(in_place) = generation_in_file(&path)
            && in_place > target.generation
        {
            return Ok(ExportOutcome::SkippedOlder { exported_generation: in_place });
        }
        // Just before the rename: another process may have recorded a newer generation since.
        if let Some(recorded) = export_record(&self.db, date).await?
            && recorded.generation > target.generation
        {
            return Ok(ExportOutcome::SkippedOlder { exported_generation: recorded.generation });
        }
        let players = staged.players as usize;
        staged.file.rename_to(&path).map_err(|source| ExportError::Io { path: path.clone(), source })?;
        Ok(ExportOutcome::Written { path, players })
    }

    /// Writes the target generation's file next to `path` under a temporary name, fsynced, reading
    /// the batch's results a page at a time: memory holds one page, never the batch.
    async fn stage_file(&self, date: &str, target: &Target, path: &Path) -> Result<Staged, ExportError> {
        // Coverage comes from the batch, where finalization recorded it once; re-exports read the same.
        let store = BatchStore::new(self.db.clone());
        let batch = store.header(&target.batch_id).await?;
        // Skipped players are the few the model declined, not the slate: read them whole.
        let skipped_players: Vec<SkippedPlayer> = if batch.as_ref().and_then(|b| b.skipped_count).unwrap_or(0) > 0 {
            skipped_items(&store, &target.batch_id)
                .await?
                .into_iter()
                .map(|s| SkippedPlayer { player_lookup: s.item, reason: s.reason })
                .collect()
        } else {
            Vec::new()
        };
        let coverage = batch.as_ref().and_then(|b| b.coverage);
        let head = FileHead {
            schema_version: EXPORT_SCHEMA_VERSION,
            game_date: date,
            batch_id: &target.batch_id,
            generation: target.generation,
            slate_players: batch.as_ref().map(|b| b.expected_count),
            predicted_players: batch.as_ref().and_then(|b| b.done_count),
            coverage,
        };
        let io_error = |source| ExportError::Io { path: path.to_path_buf(), source };
        let (file, staged) = StagedFile::create(path).map_err(io_error)?;
        let mut export = StreamedExport::begin(std::io::BufWriter::new(file), &head).map_err(io_error)?;
        let mut after: Option<String> = None;
        loop {
            // Paging is safe without a snapshot: a finished batch's results no longer change.
            let page = batch_predictions_page(&self.db, &target.batch_id, after.as_deref(), EXPORT_PAGE_SIZE).await?;
            for (_, player) in &page {
                export.player(player).map_err(io_error)?;
            }
            match page.last() {
                Some((id, _)) if page.len() == EXPORT_PAGE_SIZE as usize => after = Some(id.clone()),
                _ => break,
            }
        }
        let finished = export.finish(&skipped_players, ATTRIBUTION).map_err(io_error)?;
        let file = finished.out.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        Ok(Staged { file: staged, checksum: finished.checksum, players: finished.players, coverage })
    }

    /// CAS on `exports/{date}`: records this export unless a newer generation, or this very export
    /// (same generation and checksum), is recorded already.
    async fn advance_record(&self, record: &ExportRecord) -> Result<RecordAdvance, StoreError> {
        let record = record.clone();
        self.db
            .counted_transaction("export_record", |db, tx| {
                let record = record.clone();
                async move {
                    let existing: Option<ExportRecord> =
                        db.fluent().select().by_id_in(EXPORTS).obj().one(&record.game_date).await?;
                    match existing {
                        Some(existing) if existing.generation > record.generation => {
                            return Ok(RecordAdvance::Newer(existing.generation));
                        }
                        Some(existing) if existing == record => return Ok(RecordAdvance::AlreadyRecorded),
                        _ => {}
                    }
                    db.fluent()
                        .update()
                        .in_col(EXPORTS)
                        .document_id(&record.game_date)
                        .object(&StoredExportRecord { record: record.clone(), exported_at: FirestoreInstant::now() })
                        .add_to_transaction(tx)?;
                    Ok(RecordAdvance::Advanced)
                }
                .boxed()
            })
            .await
            .map_err(firestore_error("recording an export"))
    }
}

/// What the compare-and-set on `exports/{date}` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordAdvance {
    Advanced,
    AlreadyRecorded,
    Newer(u64),
}

/// The export record as stored: the record plus when it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredExportRecord {
    #[serde(flatten)]
    record: ExportRecord,
    #[serde(with = "firestore::serialize_as_timestamp")]
    exported_at: FirestoreInstant,
}

/// The generation of the file at `path`, read as a stream (the players are skipped, not kept).
fn generation_in_file(path: &Path) -> Option<u64> {
    #[derive(Deserialize)]
    struct Generation {
        generation: u64,
    }
    let file = std::fs::File::open(path).ok()?;
    serde_json::from_reader::<_, Generation>(std::io::BufReader::new(file)).ok().map(|f| f.generation)
}

/// An export staged under a temporary name, with what its record needs.
struct Staged {
    file: StagedFile,
    checksum: String,
    players: u64,
    coverage: Option<f64>,
}

/// Exporter: `predictions-ready-exporter`.
pub struct ExportRole(pub Exporter);

impl MessageHandler for ExportRole {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let ready = match ReadyMessage::parse(&delivery.data) {
            Ok(ready) => ready,
            Err(invalid) => return Outcome::Reject(invalid.to_string()),
        };
        match self.0.export(&ready).await {
            Ok(ExportOutcome::Written { path, players }) => {
                tracing::info!(game_date = %ready.game_date, generation = ready.generation, batch_id = ready.batch_id,
                    players, path = %path.display(), "exported");
                Outcome::Ack
            }
            Ok(ExportOutcome::AlreadyExported) => {
                tracing::info!(game_date = %ready.game_date, generation = ready.generation, batch_id = ready.batch_id,
                    "export already in place: nothing written");
                Outcome::Ack
            }
            Ok(ExportOutcome::SkippedOlder { exported_generation }) => {
                tracing::info!(game_date = %ready.game_date, generation = ready.generation, exported_generation,
                    "export skipped: a newer generation is exported");
                Outcome::Ack
            }
            Err(ExportError::Store(error)) if !error.is_transient() => Outcome::Reject(error.to_string()),
            Err(error) => Outcome::Retry(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::staged_file::tests::{stage, temp_dir};
    use super::*;

    #[test]
    fn reads_the_generation_of_the_file_in_place() {
        let dir = temp_dir("gen");
        let path = dir.join("d.json");
        assert_eq!(generation_in_file(&path), None);
        let file = ExportFile {
            schema_version: 1,
            game_date: "2024-04-22".into(),
            batch_id: "b".into(),
            generation: 7,
            slate_players: None,
            predicted_players: None,
            coverage: None,
            players: vec![],
            model_versions: vec![],
            skipped_players: vec![],
            attribution: String::new(),
        };
        stage(&path, &serde_json::to_vec_pretty(&file).unwrap()).rename_to(&path).unwrap();
        assert_eq!(generation_in_file(&path), Some(7));
        std::fs::write(&path, b"{\"generation\": 8, \"players\": [").unwrap();
        assert_eq!(generation_in_file(&path), None, "a truncated file has no generation");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
