//! (being written)
pub use crate::stream::error::StreamError as Error;
