//! The initiating entity: a real negotiation's receiving-entity bytes up to any point,
//! then arbitrary bytes in reads of any size (see `xmpp_handshake_fuzz::run_role`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmpp_handshake_fuzz::{run_role, Role};

fuzz_target!(|data: &[u8]| run_role(Role::Initiator, data));
