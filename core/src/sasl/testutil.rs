//! Test helpers: a deterministic RNG and a client-against-server driver.

use alloc::string::String;

use super::base64;
use super::client::ClientMechanism;
use super::credentials::CredentialStore;
use super::error::{SaslError, SaslFailure};
use super::server::{ServerMechanism, ServerStep};

/// xorshift64*: deterministic, NOT cryptographic; the marker trait is for tests only.
pub(crate) struct TestRng(u64);

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for TestRng {}

pub(crate) fn rng(seed: u64) -> TestRng {
    TestRng(seed | 1)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success {
        authcid: String,
        authzid: Option<String>,
    },
    ServerFailed(SaslFailure),
    ClientFailed(SaslError),
}

/// Runs one exchange, each payload through the XML layer's base64 both ways.
pub(crate) fn exchange<S: CredentialStore>(
    client: &mut ClientMechanism,
    server: &mut ServerMechanism,
    store: &S,
) -> Outcome {
    let wire = |d: Option<&[u8]>| {
        base64::decode_payload(&base64::encode_payload(d)).expect("own base64 decodes")
    };
    let mut to_server = match client.initial_response() {
        Ok(r) => wire(r.as_deref()),
        Err(e) => return Outcome::ClientFailed(e),
    };
    for _ in 0..10 {
        match server.step(store, to_server.as_deref()) {
            Err(f) => return Outcome::ServerFailed(f),
            Ok(ServerStep::Challenge(c)) => {
                let c = wire(Some(&c)).unwrap_or_default();
                match client.challenge(&c) {
                    Ok(r) => to_server = wire(Some(&r)),
                    Err(e) => return Outcome::ClientFailed(e),
                }
            }
            Ok(ServerStep::Success {
                additional_data,
                authcid,
                authzid,
            }) => {
                let data = wire(additional_data.as_deref());
                return match client.success(data.as_deref()) {
                    Ok(()) => Outcome::Success { authcid, authzid },
                    Err(e) => Outcome::ClientFailed(e),
                };
            }
        }
    }
    panic!("exchange did not end");
}
