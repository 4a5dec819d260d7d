//! What both negotiating roles share (RFC 6120 §4–§7): the [`Negotiator`] surface a
//! [`Connection`](crate::connection::Connection) drives, the events and outcome they report,
//! the outbox they write into, and the outer loop that hands each frame the peer sends to
//! the state waiting for it ([`dispatch`]). The roles themselves are
//! [`crate::initiator`] and [`crate::receiver`].

pub(crate) mod dispatch;
mod event;
mod negotiator;

pub(crate) use dispatch::{qualified_name, received_stream_error};
pub use event::{Closed, Event, Outcome, Stanza, Step, TlsInfo};
pub use negotiator::Negotiator;
pub(crate) use negotiator::Outbox;
