//! What the fuzz targets share: the recorded negotiations of both machines (the same code
//! the property tests use, core/tests/support/negotiation.rs) and the replay of one role
//! with arbitrary peer bytes after a valid prefix.

use std::sync::OnceLock;

#[path = "../../core/tests/support/negotiation.rs"]
pub mod negotiation;

use negotiation::{negotiate, prefix, replay_with_tail, Scenario, Transcript, SCENARIOS};

/// Which role a target drives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The initiating entity, fed what the receiving entity sent.
    Initiator,
    /// The receiving entity, fed what the initiating entity sent.
    Receiver,
}

fn transcripts() -> &'static [(Scenario, Transcript)] {
    static T: OnceLock<Vec<(Scenario, Transcript)>> = OnceLock::new();
    T.get_or_init(|| SCENARIOS.iter().map(|s| (*s, negotiate(*s))).collect())
}

/// Input layout: byte 0 picks the scenario, bytes 1-2 (big-endian) the length of the
/// valid prefix of the peer's real bytes, byte 3 the read size for the rest (0: one read);
/// the rest is fed after the prefix.
pub fn run_role(role: Role, data: &[u8]) {
    let [s, k1, k2, chunk, tail @ ..] = data else {
        return;
    };
    let (scenario, t) = &transcripts()[usize::from(*s) % SCENARIOS.len()];
    let peer = match role {
        Role::Initiator => &t.to_initiator,
        Role::Receiver => &t.to_receiver,
    };
    let total: usize = peer.iter().map(Vec::len).sum();
    let k = usize::from(u16::from_be_bytes([*k1, *k2])) % (total + 1);
    let chunk = match chunk {
        0 => tail.len(),
        c => usize::from(*c),
    };
    let epochs = prefix(peer, k);
    let run = match role {
        Role::Initiator => replay_with_tail(
            scenario.initiator(),
            scenario.tls_info(true),
            &epochs,
            tail,
            chunk,
        ),
        Role::Receiver => replay_with_tail(
            scenario.receiver(),
            scenario.tls_info(false),
            &epochs,
            tail,
            chunk,
        ),
    };
    // No input may produce a negotiated stream that skipped TLS or authentication.
    if run.negotiated() {
        use xmpp_handshake_core::connection::{Event, Step};
        for step in [Step::TlsEstablished, Step::Authenticated] {
            assert!(
                run.events.contains(&Event::Step(step)),
                "negotiated without {step:?}"
            );
        }
    }
}
