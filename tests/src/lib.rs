//! Harness for the cross-crate suites: real servers started on loopback.
