//! The HTML pages, one file per view, rendered with maud (escaped by default, checked at compile time).

pub mod batch;
pub mod batches;
pub mod date;
pub mod layout;
pub mod records;
