//! The emulator's raw capacity, the ceiling the pipeline is compared with: publish N messages through
//! the same client and batching publisher the pipeline uses, and streaming-pull and ack them on as
//! many streams, with the same flow control, as the pipeline's worker processes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use props_pipeline::gcp::pubsub::PubSub;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::pull::{create_topic_and_subscription, publish_and_wait, spawn_acking};

#[derive(Debug, Clone, serde::Serialize)]
pub struct RawFigures {
    pub messages: usize,
    pub streams: usize,
    /// From the first publish until every publish was confirmed.
    pub publish_secs: f64,
    pub publish_per_sec: f64,
    /// From the first publish until every message was acked once (pull runs while publishing).
    pub publish_pull_ack_secs: f64,
    pub messages_per_sec: f64,
}

/// A request-sized body (a prediction request is about 200 bytes of JSON).
fn body(index: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"batch_id":"2031-01-01-m1","game_date":"2031-01-01","generation":1,"player_lookup":"benchplayer{index:06}","correlation_id":"bench-raw","attempt":1}}"#
    ))
}

pub async fn measure(
    pubsub: &PubSub,
    name: &str,
    messages: usize,
    streams: usize,
    max_outstanding: i64,
    within: Duration,
) -> anyhow::Result<RawFigures> {
    create_topic_and_subscription(pubsub, name).await?;
    let settings = pubsub.settings();

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let all_acked = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let mut pullers = Vec::new();
    for _ in 0..streams {
        let stream = pubsub
            .subscriber
            .subscribe(settings.subscription_path(name))
            .set_max_outstanding_messages(max_outstanding)
            .build();
        let (acked, all_acked) = (Arc::clone(&acked), Arc::clone(&all_acked));
        pullers.push(spawn_acking(stream, stop.clone(), "raw pull", move |message| {
            let mut acked = acked.lock().expect("acked lock");
            acked.insert(message.message_id);
            if acked.len() >= messages {
                all_acked.notify_one();
            }
        }));
    }

    let all_arrived = || acked.lock().expect("acked lock").len() >= messages;
    let arrival = publish_and_wait(pubsub, name, (0..messages).map(body), &all_acked, all_arrived, within).await?;
    stop.cancel();
    for puller in pullers {
        let _ = puller.await;
    }
    let received = acked.lock().expect("acked lock").len();
    anyhow::ensure!(arrival.in_time, "raw capacity: only {received} of {messages} messages arrived within {within:?}");
    Ok(RawFigures {
        messages,
        streams,
        publish_secs: arrival.publish_secs,
        publish_per_sec: messages as f64 / arrival.publish_secs,
        publish_pull_ack_secs: arrival.total_secs,
        messages_per_sec: messages as f64 / arrival.total_secs,
    })
}
