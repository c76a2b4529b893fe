//! The bench's own Pub/Sub plumbing (the raw-capacity and ceiling runs, the ready tap): their topics,
//! their load (every message published at once) and subscribers that pull and ack until told to stop,
//! handing each message on.

use std::time::{Duration, Instant};

use bytes::Bytes;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::MessageStream;
use props_pipeline::gcp::pubsub::PubSub;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// When the messages of [`publish_and_wait`] were confirmed and arrived, in seconds from the first publish.
pub struct Arrival {
    /// Until every publish was confirmed.
    pub publish_secs: f64,
    /// Until every message arrived, or until the wait gave up.
    pub total_secs: f64,
    /// Whether every message arrived within the wait.
    pub in_time: bool,
}

/// Creates topic `name` and a subscription of the same name to it.
pub async fn create_topic_and_subscription(pubsub: &PubSub, name: &str) -> anyhow::Result<()> {
    let settings = pubsub.settings();
    pubsub.topic_admin.create_topic().set_name(settings.topic_path(name)).send().await?;
    pubsub
        .subscription_admin
        .create_subscription()
        .set_name(settings.subscription_path(name))
        .set_topic(settings.topic_path(name))
        .set_ack_deadline_seconds(60)
        .send()
        .await?;
    Ok(())
}

/// Publishes `bodies` to `topic` all at once (the load), then waits up to `within` until `arrived`
/// says every message came through (its subscribers signal `all_arrived` when they see the last one).
pub async fn publish_and_wait<B: Into<Bytes>>(
    pubsub: &PubSub,
    topic: &str,
    bodies: impl IntoIterator<Item = B>,
    all_arrived: &Notify,
    arrived: impl Fn() -> bool,
    within: Duration,
) -> anyhow::Result<Arrival> {
    let publisher = pubsub.publisher(topic);
    let started = Instant::now();
    let publishes = bodies.into_iter().map(|body| publisher.publish(Message::new().set_data(body)));
    for result in futures::future::join_all(publishes).await {
        result?;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let finished = tokio::time::timeout(within, async {
        if !arrived() {
            all_arrived.notified().await;
        }
    })
    .await;
    Ok(Arrival { publish_secs, total_secs: started.elapsed().as_secs_f64(), in_time: finished.is_ok() })
}

/// Acks every message of `stream` and passes it to `on_message`, until `stop` or the stream ends; then
/// flushes the acks. `what` names the subscriber in error lines.
pub fn spawn_acking(
    mut stream: MessageStream,
    stop: CancellationToken,
    what: &'static str,
    mut on_message: impl FnMut(Message) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = stream.next() => next,
            };
            match next {
                Some(Ok((message, ack))) => {
                    ack.ack();
                    on_message(message);
                }
                Some(Err(error)) => eprintln!("{what}: {error}"),
                None => break,
            }
        }
        stream.shutdown_token().shutdown().await;
    })
}
