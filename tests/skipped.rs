//! The *skipped* item outcome against the real emulators: an item the domain declines with a reason
//! is terminal, outside the failure policy, lowers coverage, and `status`, `missing`'s listing, the
//! audit trail and the NBA export show it with its reason.

mod common;

use std::time::Duration;

use common::harness::{DATE, Harness, completion, date, items, trigger};
use common::nba::{NbaEnv, exported, final_header};
use props_pipeline::batch::documents::{ItemStatus, batch_id_for};
use props_pipeline::batch::engine::{CompletionReport, FinalizeReport};
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::status::{self, SkippedItem, skipped_items};
use props_pipeline::messages::{CompletionMessage, CompletionStatus, TriggerMessage, TriggerMode};
use props_pipeline::nba::domain::NbaWorker;
use props_pipeline::nba::model::ModelConfig;

fn skipped(ok: &CompletionMessage, reason: &str) -> CompletionMessage {
    CompletionMessage {
        status: CompletionStatus::Skipped,
        results_count: 0,
        error: Some(reason.to_string()),
        ..ok.clone()
    }
}

fn failed(ok: &CompletionMessage) -> CompletionMessage {
    CompletionMessage {
        status: CompletionStatus::Failed,
        results_count: 0,
        error: Some("broken (test)".into()),
        ..ok.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_items_are_terminal_outside_the_failure_policy_and_reported_with_their_reason() {
    let harness = Harness::new("skipped-engine").await;
    harness.domain.set_items(date(), items(10));
    // 1 failed of the 7 attempted is 14%, under 20%; counting the 3 skipped as failures would be 40%.
    let engine = harness.engine(EngineSettings { tolerated_failed_fraction: 0.2, ..Default::default() });
    *harness.domain.model_version.lock().unwrap() = Some("test-model-7".into());
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(header.model_version.as_deref(), Some("test-model-7"), "the domain's version is on the header");
    let all = items(10);

    for item in &all[..3] {
        let report = engine.complete(&skipped(&completion(&header, item), &format!("{item}: no data"))).await;
        assert!(matches!(report, Ok(CompletionReport::Recorded(FinalizeReport::NotReady))), "{report:?}");
    }
    // A duplicate of a skipped completion changes nothing, and a later "ok" for it is a duplicate too.
    let again = engine.complete(&skipped(&completion(&header, &all[0]), "other reason")).await.unwrap();
    assert!(matches!(again, CompletionReport::Duplicate(_)), "{again:?}");
    let late_ok = engine.complete(&completion(&header, &all[0])).await.unwrap();
    assert!(matches!(late_ok, CompletionReport::Duplicate(_)), "{late_ok:?}");
    engine.complete(&failed(&completion(&header, &all[3]))).await.unwrap();
    for item in &all[4..9] {
        engine.complete(&completion(&header, item)).await.unwrap();
    }

    let running = status::one(&harness.store, &batch_id).await.unwrap().unwrap();
    assert_eq!((running.done, running.failed, running.skipped, running.pending), (5, 1, 3, 1));
    let last = engine.complete(&completion(&header, &all[9])).await.unwrap();
    assert_eq!(last, CompletionReport::Recorded(FinalizeReport::Finalized(BatchState::Complete)));

    let finished = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(
        (finished.state, finished.done_count, finished.failed_count, finished.skipped_count),
        (BatchState::Complete, Some(6), Some(1), Some(3))
    );
    assert_eq!(finished.coverage, Some(0.6), "skipped items lower coverage");
    let report = status::one(&harness.store, &batch_id).await.unwrap().unwrap();
    assert_eq!((report.skipped, report.pending, report.coverage), (3, 0, Some(0.6)));
    assert_eq!(report.model_version.as_deref(), Some("test-model-7"), "status shows the batch's model version");

    let expected: Vec<SkippedItem> =
        all[..3].iter().map(|item| SkippedItem { item: item.clone(), reason: format!("{item}: no data") }).collect();
    assert_eq!(skipped_items(&harness.store, &batch_id).await.unwrap(), expected, "the first reason is kept");
    let marker = harness.store.item(&batch_id, &all[0]).await.unwrap().unwrap();
    assert_eq!((marker.status, marker.attempts), (ItemStatus::Skipped, 1));
    let audit = harness.store.audit_record("t1").await.unwrap().expect("the trigger is audited");
    assert_eq!(audit.skipped_items, Some(expected), "the audit trail lists the skipped items");
    assert_eq!(audit.model_version.as_deref(), Some("test-model-7"), "and the model version of its batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_only_skipped_items_completes_with_zero_coverage() {
    let harness = Harness::new("skipped-all").await;
    harness.domain.set_items(date(), items(2));
    let engine = harness.engine(EngineSettings { tolerated_failed_fraction: 0.0, ..Default::default() });
    engine.start(&trigger(TriggerMode::Start), "t1").await.unwrap();
    let batch_id = batch_id_for(DATE, "t1");
    let header = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!(header.model_version, None, "a domain without a version records none");
    for item in items(2) {
        engine.complete(&skipped(&completion(&header, &item), "declined")).await.unwrap();
    }
    let finished = harness.store.header(&batch_id).await.unwrap().unwrap();
    assert_eq!((finished.state, finished.coverage), (BatchState::Complete, Some(0.0)));
}

/// README's example date: before the skipped outcome, 7 of its 52 players failed for too little history
/// and the batch ended FAILED over the tolerated 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_date_completes_and_its_export_lists_the_skipped_players() {
    const README_DATE: &str = "2024-04-22";
    let mut nba = NbaEnv::new("skipped-nba", &[README_DATE]).await;
    nba.run_roles(NbaWorker::new(nba.store.clone(), ModelConfig::default()), EngineSettings::default());
    let trigger = TriggerMessage::new(README_DATE, TriggerMode::Start, "skipped".into(), None, String::new()).unwrap();
    let message_id = nba.env.publish(&nba.env.topics.trigger_topic, trigger.to_json(), &[]).await;
    let batch_id = batch_id_for(README_DATE, &message_id);
    let header = final_header(&nba.store, &batch_id).await;

    assert_eq!(header.state, BatchState::Complete, "{header:?}");
    assert_eq!(header.failed_count, Some(0), "no player fails: {header:?}");
    let skipped_count = header.skipped_count.expect("recorded at finalize");
    assert!(skipped_count > 0, "this date has players without enough playoff history: {header:?}");
    assert_eq!(header.done_count.unwrap() + skipped_count, header.expected_count);

    let file = exported(&nba.export_path(README_DATE), header.generation, Duration::from_secs(60)).await;
    assert_eq!(file.skipped_players.len() as u64, skipped_count);
    assert!(
        file.skipped_players.iter().all(|s| s.reason.contains("usable games before the game date")),
        "{:?}",
        file.skipped_players
    );
    assert!(file.players.iter().all(|p| file.skipped_players.iter().all(|s| s.player_lookup != p.player_lookup)));
    assert_eq!(file.model_versions.len(), 1, "{:?}", file.model_versions);
    assert!(file.model_versions[0].starts_with("props-model-2+cal."), "a calibrated model: {:?}", file.model_versions);
    assert_eq!(header.model_version.as_ref(), Some(&file.model_versions[0]), "the batch names the model that ran");
    assert!(file.players.iter().any(|p| p.offered) && file.players.iter().any(|p| !p.offered));
    nba.stop().await;
}
