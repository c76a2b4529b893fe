//! The NBA domain plugged into the batch engine: the slate lists the items, the model handles one
//! player. Nothing is consolidated: a finished batch's predictions stay in its results, and readers
//! follow the date's published pointer to them (see `store::current_predictions`).

use firestore::FirestoreDb;

use super::inputs::InputNames;
use super::model::{ModelConfig, ModelError, league_model_version, predict};
use super::store::{slate_header, slate_players};
use super::types::PlayerPrediction;
use crate::batch::domain::{BatchDomain, DomainError, ItemHandler, ItemInputs, ItemOutcome};
use crate::batch::store::{BatchStore, StoreError};
use crate::messages::{GameDate, RequestMessage};

/// The coordinator's side: items are the players on the date's slate.
pub struct NbaDomain {
    store: BatchStore,
}

impl NbaDomain {
    pub fn new(store: BatchStore) -> Self {
        Self { store }
    }

    fn db(&self) -> &FirestoreDb {
        self.store.db()
    }
}

fn storage(error: StoreError) -> DomainError {
    if error.is_transient() {
        DomainError::Transient(error.to_string())
    } else {
        DomainError::Permanent(error.to_string())
    }
}

impl BatchDomain for NbaDomain {
    async fn list_items(&self, game_date: GameDate) -> Result<Vec<String>, DomainError> {
        let date = game_date.to_string();
        if slate_header(self.db(), &date).await.map_err(storage)?.is_none() {
            return Err(DomainError::Permanent(format!(
                "no slate for {date}: no games that day, or not loaded yet (`props-pipeline load --game-date {date}` \
                 builds it when the data has games on {date})"
            )));
        }
        slate_players(self.db(), &date).await.map_err(storage)
    }

    /// The model version the slate's league context (its calibration map) gives every prediction of
    /// the date, so the batch names the model that ran.
    async fn model_version(&self, game_date: GameDate) -> Result<Option<String>, DomainError> {
        let header = slate_header(self.db(), &game_date.to_string()).await.map_err(storage)?;
        Ok(header.map(|h| league_model_version(&h.league)))
    }
}

/// The worker's side: one player's history and slate entry in, the player's prediction out (the
/// engine stores it with the item's marker).
pub struct NbaWorker {
    store: BatchStore,
    config: ModelConfig,
}

impl NbaWorker {
    pub fn new(store: BatchStore, config: ModelConfig) -> Self {
        Self { store, config }
    }
}

impl ItemHandler for NbaWorker {
    type Result = PlayerPrediction;

    /// The slate's header, the player's slate entry and logs, read with the item's marker.
    fn input_documents(&self, request: &RequestMessage) -> Vec<String> {
        self.input_names(request).all()
    }

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<PlayerPrediction> {
        match self.predict(request, inputs) {
            Ok(outcome) => outcome,
            Err(DomainError::Permanent(reason)) => ItemOutcome::Failed(reason),
            Err(DomainError::Transient(reason)) => ItemOutcome::Retry(reason),
        }
    }
}

impl NbaWorker {
    fn input_names(&self, request: &RequestMessage) -> InputNames {
        InputNames::of(self.store.db(), &request.game_date.to_string(), &request.item)
    }

    /// A missing slate or entry fails the item; missing logs are no history (the model skips it).
    fn predict(
        &self,
        request: &RequestMessage,
        inputs: &ItemInputs,
    ) -> Result<ItemOutcome<PlayerPrediction>, DomainError> {
        let date = request.game_date.to_string();
        let player = &request.item;
        let inputs = self.input_names(request).decode(inputs).map_err(storage)?;
        let header = inputs.slate.ok_or_else(|| DomainError::Permanent(format!("no slate for {date}")))?;
        let entry =
            inputs.entry.ok_or_else(|| DomainError::Permanent(format!("{player} is not on the {date} slate")))?;
        let history = inputs.logs.map(|logs| logs.games).unwrap_or_default();
        // A player the model cannot price (too little history: a veteran new to the playoffs) is
        // skipped with the reason, not failed: nothing is wrong, and retrying cannot change it. Other
        // model errors (bad lines or odds) are permanent failures of this item.
        let prediction = match predict(&history, &entry, &header.league, &self.config) {
            Ok(prediction) => prediction,
            Err(ModelError::InsufficientHistory { games, required, .. }) => {
                return Ok(ItemOutcome::Skipped(insufficient_history_reason(games, required)));
            }
            Err(error) => return Err(DomainError::Permanent(error.to_string())),
        };
        let predictions_count = prediction.props.len() as u64;
        Ok(ItemOutcome::Done { result: prediction, results_count: predictions_count })
    }
}

/// The reason a player is skipped for too little history (the item is named by its marker).
pub fn insufficient_history_reason(games: usize, required: usize) -> String {
    format!("{games} usable games before the game date, {required} required")
}
