//! Publishing a rejected message to its dead-letter topic.
//!
//! The dead-lettered copy keeps the original data and attributes, so an operator can replay it as is,
//! and adds why and where it was rejected.

use google_cloud_pubsub::model::Message;

use super::handler::Delivery;
use crate::gcp::GcpError;
use crate::gcp::pubsub::PubSub;

/// Attribute carrying the handler's reason for rejecting the message.
pub const REJECT_REASON: &str = "reject_reason";
/// Attribute naming the subscription that rejected the message.
pub const SOURCE_SUBSCRIPTION: &str = "source_subscription";
/// Attribute carrying the rejected message's own id (the copy gets a new one).
pub const ORIGINAL_MESSAGE_ID: &str = "original_message_id";
/// Attribute carrying the delivery attempt on which the message was rejected.
pub const DELIVERY_ATTEMPT: &str = "delivery_attempt";

/// Longest `reject_reason` kept: Pub/Sub limits an attribute value to 1024 bytes.
const MAX_REASON_BYTES: usize = 1000;

/// Publishes the dead-letter copy of `delivery` and returns its message id.
pub async fn publish_rejected(
    pubsub: &PubSub,
    dead_letter_topic: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<String, GcpError> {
    let mut attributes = delivery.attributes.clone();
    attributes.insert(REJECT_REASON.into(), truncate_to_char_boundary(reason, MAX_REASON_BYTES).to_string());
    attributes.insert(SOURCE_SUBSCRIPTION.into(), delivery.subscription.clone());
    attributes.insert(ORIGINAL_MESSAGE_ID.into(), delivery.message_id.clone());
    if let Some(attempt) = delivery.delivery_attempt {
        attributes.insert(DELIVERY_ATTEMPT.into(), attempt.to_string());
    }
    let message = Message::new().set_data(delivery.data.clone()).set_attributes(attributes);
    pubsub.publish(dead_letter_topic, message).await
}

fn truncate_to_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let end = (0..=max_bytes).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_reasons_on_a_char_boundary() {
        assert_eq!(truncate_to_char_boundary("short", 10), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncate_to_char_boundary(&long, MAX_REASON_BYTES);
        assert_eq!(cut.len(), 1000);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
