//! The Hashed Token mechanisms FAST uses (XEP-0484 §3, draft-schmaus-kitten-sasl-ht):
//! `HT-SHA-256-NONE` and the channel-bound `HT-SHA-256-ENDP` (`tls-server-end-point`),
//! `-UNIQ` (`tls-unique`) and `-EXPR` (`tls-exporter`). One round trip: the client sends
//! `authcid NUL HMAC(token, "Initiator" || cb-data)`; the server proves it knows the token
//! too with `HMAC(token, "Responder" || cb-data)` in the success's additional data.
//! [`HtClient`] is the client's exchange; [`initiator_proof_matches`] and
//! [`responder_proof`] are the server's side of the same two HMACs.

use alloc::string::String;
use alloc::vec::Vec;

use super::channel_binding::{ChannelBindingData, ChannelBindingType};
use super::error::SaslError;
use super::scram::{ct_eq, ScramHash};

/// An `HT-*` mechanism this crate implements (SHA-256 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HtMechanism {
    /// `HT-SHA-256-NONE`: no channel binding.
    Sha256None,
    /// `HT-SHA-256-ENDP`: `tls-server-end-point`.
    Sha256Endp,
    /// `HT-SHA-256-UNIQ`: `tls-unique`.
    Sha256Uniq,
    /// `HT-SHA-256-EXPR`: `tls-exporter`.
    Sha256Expr,
}

impl HtMechanism {
    /// Every one, channel-bound ones first, in the client's channel-binding preference.
    pub const PREFERENCE: [HtMechanism; 4] = [
        HtMechanism::Sha256Expr,
        HtMechanism::Sha256Endp,
        HtMechanism::Sha256Uniq,
        HtMechanism::Sha256None,
    ];

    /// The registered name.
    pub const fn name(self) -> &'static str {
        match self {
            HtMechanism::Sha256None => "HT-SHA-256-NONE",
            HtMechanism::Sha256Endp => "HT-SHA-256-ENDP",
            HtMechanism::Sha256Uniq => "HT-SHA-256-UNIQ",
            HtMechanism::Sha256Expr => "HT-SHA-256-EXPR",
        }
    }

    /// The mechanism with this exact name.
    pub fn from_name(name: &str) -> Option<Self> {
        HtMechanism::PREFERENCE
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The channel-binding type it binds to, if any.
    pub const fn channel_binding(self) -> Option<ChannelBindingType> {
        match self {
            HtMechanism::Sha256None => None,
            HtMechanism::Sha256Endp => Some(ChannelBindingType::TlsServerEndPoint),
            HtMechanism::Sha256Uniq => Some(ChannelBindingType::TlsUnique),
            HtMechanism::Sha256Expr => Some(ChannelBindingType::TlsExporter),
        }
    }

    /// The mechanism to request a token for among the `offered` FAST mechanisms: the same
    /// channel-binding rule as SCRAM's (bound when this TLS layer has data of the type,
    /// `tls-exporter` first), unbound otherwise.
    pub fn choose<'a>(
        offered: impl IntoIterator<Item = &'a str> + Clone,
        cb: &ChannelBindingData,
        bind: bool,
    ) -> Option<Self> {
        HtMechanism::PREFERENCE.into_iter().find(|m| {
            offered.clone().into_iter().any(|o| o == m.name())
                && match m.channel_binding() {
                    Some(t) => bind && cb.get(t).is_some(),
                    None => true,
                }
        })
    }
}

/// `HMAC-SHA-256(token, label || cb-data)`: the proofs of both sides.
fn proof(token: &[u8], label: &[u8], cb_data: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(label.len() + cb_data.len());
    data.extend_from_slice(label);
    data.extend_from_slice(cb_data);
    ScramHash::Sha256.hmac(token, &data)
}

/// The server's check of an initial response's proof: whether `proof` is
/// `HMAC(token, "Initiator" || cb-data)`, compared in constant time.
pub fn initiator_proof_matches(token: &[u8], cb_data: &[u8], proof_sent: &[u8]) -> bool {
    ct_eq(proof_sent, &proof(token, b"Initiator", cb_data))
}

/// The server's proof for the success's additional data: `HMAC(token, "Responder" ||
/// cb-data)` (mutual authentication).
pub fn responder_proof(token: &[u8], cb_data: &[u8]) -> Vec<u8> {
    proof(token, b"Responder", cb_data)
}

/// An HT initial response split into its `authcid` and proof; `None` when it has no NUL
/// or the name is not UTF-8 or empty.
pub fn split_initial_response(ir: &[u8]) -> Option<(&str, &[u8])> {
    let nul = ir.iter().position(|&b| b == 0)?;
    let name = core::str::from_utf8(&ir[..nul]).ok()?;
    (!name.is_empty()).then_some((name, &ir[nul + 1..]))
}

/// One HT exchange (client side).
pub struct HtClient {
    mechanism: HtMechanism,
    cb_data: Vec<u8>,
    token: Vec<u8>,
    sent: bool,
}

impl core::fmt::Debug for HtClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HtClient")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl HtClient {
    /// Starts an exchange with `token` (as the server issued it, XEP-0484 §3.3).
    pub fn new(
        mechanism: HtMechanism,
        token: &[u8],
        cb: &ChannelBindingData,
    ) -> Result<Self, SaslError> {
        let cb_data = match mechanism.channel_binding() {
            Some(t) => cb
                .get(t)
                .ok_or(SaslError::ChannelBindingUnavailable)?
                .to_vec(),
            None => Vec::new(),
        };
        Ok(HtClient {
            mechanism,
            cb_data,
            token: token.to_vec(),
            sent: false,
        })
    }

    /// The mechanism.
    pub fn mechanism(&self) -> HtMechanism {
        self.mechanism
    }

    fn hmac(&self, label: &[u8]) -> Vec<u8> {
        proof(&self.token, label, &self.cb_data)
    }

    /// The initial response: `username NUL HMAC(token, "Initiator" || cb-data)`.
    pub fn initial_response(&mut self, username: &str) -> Result<Vec<u8>, SaslError> {
        if username.is_empty() {
            return Err(SaslError::MissingCredentials("user name"));
        }
        if username.contains('\0') {
            return Err(SaslError::InvalidCredentials("user name"));
        }
        self.sent = true;
        let mut out = String::from(username).into_bytes();
        out.push(0);
        out.extend_from_slice(&self.hmac(b"Initiator"));
        Ok(out)
    }

    /// The success's additional data must be `HMAC(token, "Responder" || cb-data)`: the
    /// server knows the token (mutual authentication).
    pub fn success(&self, additional_data: Option<&[u8]>) -> Result<(), SaslError> {
        if !self.sent {
            return Err(SaslError::UnexpectedSuccess);
        }
        let data = additional_data.ok_or(SaslError::MissingServerSignature)?;
        if ct_eq(data, &self.hmac(b"Responder")) {
            Ok(())
        } else {
            Err(SaslError::ServerSignatureMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ht_messages_are_the_hmacs_of_the_draft() {
        let mut c =
            HtClient::new(HtMechanism::Sha256None, b"tok", &ChannelBindingData::none()).unwrap();
        let ir = c.initial_response("alice").unwrap();
        assert!(ir.starts_with(b"alice\0"));
        assert_eq!(ir[6..], ScramHash::Sha256.hmac(b"tok", b"Initiator")[..]);
        let responder = ScramHash::Sha256.hmac(b"tok", b"Responder");
        c.success(Some(&responder)).unwrap();
        assert_eq!(
            c.success(Some(b"forged")),
            Err(SaslError::ServerSignatureMismatch)
        );
        assert_eq!(c.success(None), Err(SaslError::MissingServerSignature));
    }

    #[test]
    fn channel_bound_ht_needs_the_binding_data() {
        assert_eq!(
            HtClient::new(HtMechanism::Sha256Endp, b"t", &ChannelBindingData::none()).unwrap_err(),
            SaslError::ChannelBindingUnavailable
        );
        let cb = ChannelBindingData {
            server_end_point: Some(alloc::vec![7; 32]),
            ..Default::default()
        };
        let offered = ["HT-SHA-256-NONE", "HT-SHA-256-ENDP"];
        assert_eq!(
            HtMechanism::choose(offered, &cb, true),
            Some(HtMechanism::Sha256Endp)
        );
        assert_eq!(
            HtMechanism::choose(offered, &cb, false),
            Some(HtMechanism::Sha256None)
        );
        assert_eq!(
            HtMechanism::choose(["HT-SHA-256-NONE"], &ChannelBindingData::none(), true),
            Some(HtMechanism::Sha256None)
        );
    }
}
