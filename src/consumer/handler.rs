//! What the consumer runtime hands to a role, and what the role answers.

use std::collections::HashMap;

use bytes::Bytes;

/// One received message, detached from its Pub/Sub ack handle (the runtime keeps that).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub data: Bytes,
    pub attributes: HashMap<String, String>,
    /// 1 on the first delivery, growing with each redelivery. Pub/Sub reports it only for subscriptions
    /// with a dead-letter policy; `None` elsewhere.
    pub delivery_attempt: Option<i32>,
    /// The subscription the message came from (short id).
    pub subscription: String,
}

/// A handler's decision about one message. The runtime acts on it only after the handler returned, so
/// a handler acks by returning [`Outcome::Ack`] after its writes are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or nothing to do): acknowledge.
    Ack,
    /// A transient failure: nack, so Pub/Sub redelivers after the subscription's backoff and, past the
    /// maximum delivery attempts, dead-letters it.
    Retry(String),
    /// The message can never succeed: publish it to the dead-letter topic with this `reject_reason`,
    /// then acknowledge.
    Reject(String),
}

/// A role's message handler. Handlers run concurrently, so they keep no per-message state of their own.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// A shared handler is a handler: lets one instance serve several consumers.
impl<T: MessageHandler> MessageHandler for std::sync::Arc<T> {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send {
        T::handle(self, delivery)
    }
}
