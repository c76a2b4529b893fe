//! What a worker reads for one player: the slate's header (league context), the player's slate entry
//! and the player's game logs. The engine reads them with the item's marker in one
//! `BatchGetDocuments` ([`crate::batch::domain::ItemHandler::input_documents`]); this module names
//! them and decodes them.

use firestore::FirestoreDb;

use super::store::{PLAYER_LOGS, PlayerLogs, SLATE_PLAYERS, SLATES, SlateHeader, firestore_error};
use super::types::SlateEntry;
use crate::batch::domain::ItemInputs;
use crate::batch::store::StoreError;
use crate::gcp::firestore::batch_get;

/// The documents one prediction reads; `None` where a document does not exist.
#[derive(Debug, Default)]
pub struct WorkerInputs {
    pub slate: Option<SlateHeader>,
    pub entry: Option<SlateEntry>,
    pub logs: Option<PlayerLogs>,
}

/// The full resource names of `slates/{date}`, `slates/{date}/players/{player}` and
/// `player_logs/{player}` under `root` (the database's documents path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputNames {
    pub slate: String,
    pub entry: String,
    pub logs: String,
}

impl InputNames {
    pub fn new(root: &str, date: &str, player: &str) -> Self {
        let slate = format!("{root}/{SLATES}/{date}");
        Self {
            entry: format!("{slate}/{SLATE_PLAYERS}/{player}"),
            logs: format!("{root}/{PLAYER_LOGS}/{player}"),
            slate,
        }
    }

    pub fn of(db: &FirestoreDb, date: &str, player: &str) -> Self {
        Self::new(db.get_documents_path(), date, player)
    }

    pub fn all(&self) -> Vec<String> {
        vec![self.slate.clone(), self.entry.clone(), self.logs.clone()]
    }

    /// The player's inputs as read; a document that does not decode is a permanent error.
    pub fn decode(&self, inputs: &ItemInputs) -> Result<WorkerInputs, StoreError> {
        let decoding = firestore_error("decoding a player's inputs");
        Ok(WorkerInputs {
            slate: inputs.decode(&self.slate).map_err(&decoding)?,
            entry: inputs.decode(&self.entry).map_err(&decoding)?,
            logs: inputs.decode(&self.logs).map_err(&decoding)?,
        })
    }
}

/// Reads a player's inputs on their own, in one request within the handle's RPC timeout (the worker
/// reads them with its marker instead; the bench's ceiling reads them alone).
pub async fn worker_inputs(db: &FirestoreDb, date: &str, player: &str) -> Result<WorkerInputs, StoreError> {
    let names = InputNames::of(db, date, player);
    let documents = batch_get(db, names.all()).await.map_err(firestore_error("reading a player's inputs"))?;
    names.decode(&ItemInputs::new(documents))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "projects/p/databases/(default)/documents";

    #[test]
    fn a_players_inputs_are_named_by_full_resource_name() {
        let names = InputNames::new(ROOT, "2024-05-01", "lebronjames");
        assert_eq!(names.slate, format!("{ROOT}/{SLATES}/2024-05-01"));
        assert_eq!(names.entry, format!("{ROOT}/{SLATES}/2024-05-01/{SLATE_PLAYERS}/lebronjames"));
        assert_eq!(names.logs, format!("{ROOT}/{PLAYER_LOGS}/lebronjames"));
        assert_eq!(names.all(), vec![names.slate.clone(), names.entry.clone(), names.logs.clone()]);
    }

    #[test]
    fn missing_inputs_decode_as_none() {
        let inputs = InputNames::new(ROOT, "2024-05-01", "nobody").decode(&ItemInputs::default()).unwrap();
        assert!(inputs.slate.is_none() && inputs.entry.is_none() && inputs.logs.is_none());
    }

    #[test]
    fn a_found_input_decodes_and_a_malformed_one_is_a_permanent_error() {
        let names = InputNames::new(ROOT, "2024-05-01", "lebronjames");
        let logs = PlayerLogs {
            player_lookup: "lebronjames".into(),
            player_name: "LeBron James".into(),
            games: Vec::new(),
            checksum: "c".into(),
        };
        let document = FirestoreDb::serialize_to_doc(&names.logs, &logs).unwrap();
        let inputs = ItemInputs::new([(names.logs.clone(), document)].into());
        assert!(names.decode(&inputs).unwrap().logs.is_some());

        let mut malformed = FirestoreDb::serialize_to_doc(&names.entry, &logs).unwrap();
        malformed.fields.clear();
        let inputs = ItemInputs::new([(names.entry.clone(), malformed)].into());
        let error = names.decode(&inputs).unwrap_err();
        assert!(!error.is_transient(), "{error}");
    }
}
