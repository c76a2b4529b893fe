//! The Firestore handle against the real emulator: the compare-and-set primitives the engine builds on.

mod common;

use common::TestEnv;
use firestore::FirestoreWritePrecondition;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Marker {
    state: String,
}

#[tokio::test]
async fn create_if_absent_succeeds_once_and_stale_update_times_are_refused() {
    let env = TestEnv::new("firestore").await;
    let db = env.firestore().await;
    let write = |state: &str, precondition: FirestoreWritePrecondition| {
        let marker = Marker { state: state.into() };
        let db = db.clone();
        async move {
            db.fluent()
                .update()
                .in_col("markers")
                .precondition(precondition)
                .document_id("m1")
                .object(&marker)
                .execute::<Marker>()
                .await
        }
    };
    let absent = || FirestoreWritePrecondition::Exists(false);
    write("pending", absent()).await.expect("first create");
    assert!(write("pending", absent()).await.is_err(), "a second create of the same document must be refused");

    let doc = db.fluent().select().by_id_in("markers").one("m1").await.unwrap().expect("document exists");
    let seen = firestore::timestamp_utils::from_timestamp(doc.update_time.unwrap()).unwrap();
    let seen = || FirestoreWritePrecondition::UpdateTime(seen);
    write("done", seen()).await.expect("update at the time we read");
    assert!(write("failed", seen()).await.is_err(), "an update based on a stale read must be refused");
    let stored: Marker = db.fluent().select().by_id_in("markers").obj().one("m1").await.unwrap().unwrap();
    assert_eq!(stored, Marker { state: "done".into() });
}
