//! The exporter's streamed file against the real Firestore emulator: a batch of more results than one
//! page is written page by page, each player once and in player order, equal to the batch's
//! predictions read whole; the record's checksum is the file's; a re-export finds it in place. The
//! batch mixes both places a result is stored (in its done marker, and a document of its own as older
//! batches have them), with markers of items that have no result in between.

mod common;

use common::TestEnv;
use common::nba::{publish_batch, put_item_marker};
use futures::StreamExt;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::ReadyMessage;
use props_pipeline::nba::export::{ExportFile, ExportOutcome, Exporter};
use props_pipeline::nba::store::{batch_predictions, export_record, fingerprint};
use props_pipeline::nba::types::PlayerPrediction;

const DATE: &str = "2024-04-22";
/// More than two pages of the exporter's 300: two full pages and a partial one.
const PLAYERS: usize = 650;

fn prediction(player: &str, i: usize) -> PlayerPrediction {
    serde_json::from_value(serde_json::json!({
        "player_lookup": player, "player_name": format!("Player {i}"), "team": "AAA", "opponent": "BBB",
        "game_date": DATE, "projected_minutes": 20.0 + (i % 17) as f64, "games_used": 10,
        "props": [{"stat": "points", "line": 10.5, "projection": 11.0 + (i % 7) as f64, "p_over": 0.55,
            "market_p_over": 0.5, "edge": 0.05, "recommendation": "OVER", "confidence": 0.3,
            "distribution": "normal"}],
        "offered": true, "model_version": if i.is_multiple_of(2) { "m-a" } else { "m-b" }
    }))
    .expect("a prediction")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_a_page_is_exported_once_per_player_in_player_order() {
    let env = TestEnv::new("export-pages").await;
    let db = env.firestore().await;
    let store = BatchStore::new(db.clone());
    // Written in an order unrelated to the ids, so the file's order is the read's, not the write's.
    futures::stream::iter((0..PLAYERS).rev())
        .for_each_concurrent(32, |i| {
            let (store, db) = (&store, &db);
            async move {
                let player = format!("p{:04}", (i * 7) % PLAYERS);
                let result = prediction(&player, i);
                if i % 3 == 0 {
                    store.stage_result("b1", &player, &result).await.expect("stage a result");
                } else {
                    put_item_marker(db, "b1", &player, "done", Some(&result)).await;
                }
                // Items without a result, ordered between the players: neither page nor file has them.
                let status = ["pending", "failed", "skipped"][i % 3];
                put_item_marker::<PlayerPrediction>(db, "b1", &format!("{player}x"), status, None).await;
            }
        })
        .await;
    publish_batch(&db, DATE, "b1", 1).await;

    let dir = std::env::temp_dir().join(format!("props-export-pages-{}", rand::random::<u32>()));
    let exporter = Exporter::new(db.clone(), dir.clone());
    let ready = ReadyMessage {
        game_date: DATE.parse().expect("a date"),
        batch_id: "b1".into(),
        generation: 1,
        results_count: PLAYERS as u64,
        failed_count: 0,
    };
    let outcome = exporter.export(&ready).await.expect("export");
    assert!(matches!(outcome, ExportOutcome::Written { players: PLAYERS, .. }), "{outcome:?}");

    let bytes = std::fs::read(exporter.path_for(DATE)).expect("the file");
    let file: ExportFile = serde_json::from_slice(&bytes).expect("the file parses");
    let mut expected: Vec<PlayerPrediction> =
        batch_predictions(&db, "b1", 1).await.expect("read the batch").into_iter().map(|p| p.prediction).collect();
    expected.sort_by(|a, b| a.player_lookup.cmp(&b.player_lookup));
    assert_eq!(expected.len(), PLAYERS);
    assert_eq!(file.players, expected, "every player once, in player order, as stored");
    assert_eq!(file.model_versions, ["m-a", "m-b"]);
    assert_eq!((file.batch_id.as_str(), file.generation), ("b1", 1));
    let record = export_record(&db, DATE).await.expect("read the record").expect("a record");
    assert_eq!(record.checksum, fingerprint(&bytes));
    assert_eq!(record.players, PLAYERS as u64);

    // A redelivered ready event streams the same bytes and finds them in place.
    assert_eq!(exporter.export(&ready).await.expect("export again"), ExportOutcome::AlreadyExported);
    assert_eq!(std::fs::read(exporter.path_for(DATE)).expect("the file"), bytes);
    let leftovers = std::fs::read_dir(&dir).expect("the folder").count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
    std::fs::remove_dir_all(&dir).ok();
}
