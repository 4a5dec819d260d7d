//! TLS for XMPP with rustls: the server certificate verifier (RFC 6120 §13.7.2).
pub mod verify;
