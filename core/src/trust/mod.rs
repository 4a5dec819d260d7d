//! Certificate identity, trust and pinning (RFC 6120 §13.7.2, RFC 6125).
