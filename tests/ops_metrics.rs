//! Metrics recorded in process by the engine and the consumer runtime: a whole batch counts its
//! Firestore transactions and messages. Its own test binary, because the recorder is process-global.

mod common;

use std::time::Duration;

use common::harness::{Harness, date, items};
use common::ops::metric;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::TriggerMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_counts_its_transactions_and_messages() {
    let metrics = props_pipeline::ops::metrics::install().expect("install the recorder");
    let mut harness = Harness::new("ops-tx").await;
    harness.domain.set_items(date(), items(20));
    let engine = harness.engine(EngineSettings::default());
    harness.run_all_roles(&engine);
    let batch_id = harness.publish_trigger(TriggerMode::Start).await;
    let header = harness.wait_for_final(&batch_id, Duration::from_secs(120)).await;
    harness.stop().await;
    assert_eq!(header.state, BatchState::Complete);

    let text = metrics.render();
    let committed = |operation: &str| {
        metric(&text, &format!(r#"props_transactions_total{{operation="{operation}",outcome="committed"}}"#))
    };
    assert_eq!(committed("begin_batch"), Some(1.0), "{text}");
    assert_eq!(committed("seal"), Some(1.0), "{text}");
    // Workers record their items (one guarded commit each); completions only announce.
    assert_eq!(committed("record_item"), Some(20.0), "{text}");
    for operation in ["claim_finalize", "finish", "record_ready"] {
        assert!(committed(operation).is_some_and(|n| n >= 1.0), "{operation}: {text}");
    }
    assert!(!text.contains(r#"outcome="failed""#), "{text}");
    let messages = |subscription: &str, outcome: &str| {
        let series = format!(r#"props_messages_total{{subscription="{subscription}",outcome="{outcome}"}}"#);
        metric(&text, &series).unwrap_or_else(|| panic!("no {series}: {text}"))
    };
    assert_eq!(messages("prediction-trigger-coordinator", "ack"), 1.0, "{text}");
    assert_eq!(messages("prediction-requests-worker", "ack"), 20.0, "{text}");
    // A completion that finds the finalize claim held by a concurrent handler is acked (the holder
    // finishes); one whose finalize failed transiently is retried, and the harness stops once the batch
    // is final, perhaps before that redelivery: every completion was handled at least once.
    let completions = "prediction-completions-coordinator";
    assert!(messages(completions, "ack") + messages(completions, "retry") >= 20.0, "{text}");
    assert_eq!(messages(completions, "reject"), 0.0, "{text}");
}
