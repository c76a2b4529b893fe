//! Wire schemas of the pipeline's messages (JSON bodies, UTF-8) and their validation.
//!
//! Parsing is strict: a message that can never succeed (bad JSON, unknown field or mode, bad date,
//! oversize) is an [`InvalidMessage`], which consumers turn into a dead-letter with the reason.

mod game_date;
mod trigger;
mod work;

pub use game_date::GameDate;
pub use trigger::{TriggerMessage, TriggerMode};
pub use work::{
    CompletionMessage, CompletionStatus, MAX_ERROR_CHARS, ReadyMessage, RequestMessage, validate_document_id,
};

use thiserror::Error;

/// Largest message body accepted, far above any legitimate message and well below Pub/Sub's 10 MB, so a
/// runaway `metadata` is refused at the door instead of being copied into Firestore documents.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest serialized `metadata` object of a trigger.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Why a message body can never be processed; the text becomes the `reject_reason` attribute.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidMessage {
    #[error("message is {size} bytes, over the {max}-byte limit")]
    Oversize { size: usize, max: usize },
    #[error("message is not valid JSON for this schema: {0}")]
    Json(String),
    #[error("invalid game_date {0:?}: expected a calendar date as YYYY-MM-DD")]
    GameDate(String),
    #[error("metadata is {size} bytes, over the {max}-byte limit")]
    MetadataTooLarge { size: usize, max: usize },
    #[error("metadata must be a JSON object")]
    MetadataNotObject,
    #[error("{field} {id:?} cannot be a Firestore document id (empty, '/', '.', '..', '__*__' or over 1500 bytes)")]
    DocumentId { field: &'static str, id: String },
    #[error("{field} is {len} characters, over the {max}-character limit")]
    FieldTooLong { field: &'static str, len: usize, max: usize },
}

/// Parses a JSON body into `T` after checking its size.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, InvalidMessage> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(InvalidMessage::Oversize { size: body.len(), max: MAX_MESSAGE_BYTES });
    }
    serde_json::from_slice(body).map_err(|e| InvalidMessage::Json(e.to_string()))
}
