//! SASL (RFC 6120 §6): mechanisms for both roles.
