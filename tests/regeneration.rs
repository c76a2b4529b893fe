//! Supersede is a swap, never a delete-first: a regeneration whose worker fails every item ends FAILED
//! and leaves the previous generation current and exported; the next regeneration that succeeds swaps
//! it, and the audit trail counts what was superseded and replaced.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::nba::{NbaEnv, final_header};
use common::wait_for;
use props_pipeline::batch::audit::AuditOutcome;
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::domain::{ItemHandler, ItemInputs, ItemOutcome};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::{RequestMessage, TriggerMessage, TriggerMode};
use props_pipeline::nba::domain::NbaWorker;
use props_pipeline::nba::export::ExportFile;
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::nba::store::{
    StoredPrediction, batch_predictions, current_predictions, export_record, published_batch,
};
use props_pipeline::nba::types::PlayerPrediction;

const DATE: &str = "2023-05-02";

/// The real worker, except that every item of generation 2 fails (the model service is down).
struct FailsGenerationTwo(NbaWorker);

impl ItemHandler for FailsGenerationTwo {
    type Result = PlayerPrediction;

    fn input_documents(&self, request: &RequestMessage) -> Vec<String> {
        self.0.input_documents(request)
    }

    async fn handle_item(&self, request: &RequestMessage, inputs: &ItemInputs) -> ItemOutcome<PlayerPrediction> {
        if request.generation == 2 {
            return ItemOutcome::Failed("model service unavailable (test)".into());
        }
        self.0.handle_item(request, inputs).await
    }
}

async fn publish(nba: &NbaEnv, mode: TriggerMode, reason: &str) -> String {
    let trigger = TriggerMessage::new(DATE, mode, reason.into(), None, String::new()).unwrap();
    let message_id = nba.env.publish(&nba.env.topics.trigger_topic, trigger.to_json(), &[]).await;
    batch_id_for(DATE, &message_id)
}

fn by_player(predictions: Vec<StoredPrediction>) -> BTreeMap<String, StoredPrediction> {
    predictions.into_iter().map(|p| (p.prediction.player_lookup.clone(), p)).collect()
}

async fn exported_generation(nba: &NbaEnv, generation: u64) -> Vec<u8> {
    let path = nba.export_path(DATE);
    wait_for("the export", Duration::from_secs(60), async || {
        let bytes = std::fs::read(&path).ok()?;
        let file: ExportFile = serde_json::from_slice(&bytes).ok()?;
        (file.generation == generation).then_some(bytes)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_regeneration_whose_worker_fails_every_item_leaves_the_previous_generation_current_and_exported() {
    let mut nba = NbaEnv::new("regen-fail", &[DATE]).await;
    let worker = FailsGenerationTwo(NbaWorker::new(nba.store.clone(), ModelConfig::default()));
    nba.run_roles(worker, EngineSettings::default());
    let (db, store) = (nba.db.clone(), nba.store.clone());

    // Generation 1 completes, consolidates and is exported.
    let first = final_header(&store, &publish(&nba, TriggerMode::Start, "morning run").await).await;
    assert_eq!(first.state, BatchState::Complete, "{first:?}");
    let predicted = first.done_count.unwrap();
    let export_before = exported_generation(&nba, 1).await;
    let file: ExportFile = serde_json::from_slice(&export_before).unwrap();
    assert_eq!(file.slate_players, Some(first.expected_count));
    assert_eq!(file.predicted_players, Some(predicted));
    assert_eq!(file.coverage, first.coverage);
    assert_eq!(first.coverage, Some(predicted as f64 / first.expected_count as f64));
    let current_before = by_player(current_predictions(&db, DATE).await.unwrap());
    assert_eq!(current_before.len() as u64, predicted);
    let record_before = export_record(&db, DATE).await.unwrap().expect("generation 1 exported");
    let audit = store.audit_record(&first.trigger_message_id).await.unwrap().expect("audited");
    assert_eq!(
        (audit.outcome, audit.superseded_count, audit.replacement_count),
        (AuditOutcome::Started, Some(0), Some(predicted))
    );

    // Generation 2: every item fails, the failure policy ends the batch FAILED, nothing consolidates.
    let second = final_header(&store, &publish(&nba, TriggerMode::RegenerateWithSupersede, "injury news").await).await;
    assert_eq!((second.state, second.generation), (BatchState::Failed, 2), "{second:?}");
    assert_eq!(second.failed_count, Some(second.expected_count));
    assert_eq!(second.coverage, Some(0.0));
    // Give a stray export (there must be none) time to land before comparing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let current_after = by_player(current_predictions(&db, DATE).await.unwrap());
    assert_eq!(current_after, current_before, "generation 1 is still the current answer, untouched");
    assert!(current_after.values().all(|p| p.generation == 1 && p.batch_id == first.batch_id));
    assert_eq!(published_batch(&db, DATE).await.unwrap(), Some((first.batch_id.clone(), 1)), "the pointer stayed");
    assert_eq!(std::fs::read(nba.export_path(DATE)).unwrap(), export_before, "the export file is unchanged");
    assert_eq!(export_record(&db, DATE).await.unwrap(), Some(record_before), "the export record is unchanged");
    assert_eq!(store.header(&first.batch_id).await.unwrap().unwrap().state, BatchState::Complete);
    let audit = store.audit_record(&second.trigger_message_id).await.unwrap().expect("audited");
    assert_eq!(audit.outcome, AuditOutcome::Superseding);
    assert_eq!(audit.supersedes_batch_id.as_deref(), Some(first.batch_id.as_str()));
    assert_eq!((audit.superseded_count, audit.replacement_count), (None, None), "never consolidated");

    // Generation 3 succeeds: now, and only now, generation 1 is superseded.
    let third = final_header(&store, &publish(&nba, TriggerMode::RegenerateWithSupersede, "retry").await).await;
    assert_eq!((third.state, third.generation), (BatchState::Complete, 3), "{third:?}");
    exported_generation(&nba, 3).await;
    let current = current_predictions(&db, DATE).await.unwrap();
    assert!(current.iter().all(|p| p.generation == 3 && p.batch_id == third.batch_id));
    assert_eq!(published_batch(&db, DATE).await.unwrap(), Some((third.batch_id.clone(), 3)));
    // Generation 1's predictions were never copied or changed, only unpublished.
    let older = by_player(batch_predictions(&db, &first.batch_id, 1).await.unwrap());
    assert_eq!(older, current_before, "generation 1 is still readable where its workers wrote it");
    let audit = store.audit_record(&third.trigger_message_id).await.unwrap().expect("audited");
    assert_eq!(audit.supersedes_batch_id.as_deref(), Some(second.batch_id.as_str()));
    assert_eq!(audit.supersedes_batch_state, Some(BatchState::Failed));
    assert_eq!((audit.superseded_count, audit.replacement_count), (Some(predicted), Some(third.done_count.unwrap())));
    nba.stop().await;
}
