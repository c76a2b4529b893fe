//! The bench's own subscribers (the raw-capacity streams and the ready tap): pull and ack until told
//! to stop, handing each message on.

use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::MessageStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
