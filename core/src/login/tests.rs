//! The byte format of [`LoginMemory`]: round trips, and every malformed input a typed
//! error (exhaustive truncation and versions, proptest for arbitrary bytes).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::sasl::ScramHash;
use crate::stream::features::StreamFeatures;

fn entry() -> ScramCacheEntry {
    ScramCacheEntry::from_password(ScramHash::Sha256, "pencil", b"salt-of-sixteen!", 4096)
}

fn full() -> LoginMemory {
    LoginMemory {
        scram: Some(entry()),
        offer: Some(MechanismSet::from_names(["SCRAM-SHA-256", "PLAIN"])),
        mechanism: Some(Mechanism::ScramSha256),
        channel_binding: Some(CbPolicy::WhenOffered),
        fast_token: Some(FastToken {
            mechanism: "HT-SHA-256-EXPR".into(),
            token: b"s3cr3t-token".to_vec(),
            expires: Some(UnixTime(1_900_000_000)),
        }),
        fast_count: 7,
        bound_before: true,
        channel_bound: true,
        user_agent_id: Some("2f4c0a8e-6c0d-4d6b-9a0e-7c1f3b8d9e10".into()),
        sasl2: true,
        sasl2_inline: Some(Sasl2Inline {
            bind2: true,
            bind2_sm: false,
            sm: true,
            fast_0rtt: true,
        }),
    }
}

#[test]
fn memories_round_trip() {
    let no_expiry = LoginMemory {
        fast_token: Some(FastToken {
            mechanism: String::new(),
            token: Vec::new(),
            expires: None,
        }),
        ..LoginMemory::default()
    };
    let keys_only = LoginMemory {
        scram: Some(entry()),
        ..LoginMemory::default()
    };
    for memory in [full(), LoginMemory::default(), no_expiry, keys_only] {
        let bytes = memory.to_bytes().unwrap();
        assert_eq!(bytes[0], VERSION);
        assert!(bytes.len() <= MAX_LEN);
        assert_eq!(LoginMemory::from_bytes(&bytes), Ok(memory));
    }
    assert_eq!(LoginMemory::default().to_bytes().unwrap(), [VERSION, 0, 0]);
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = full().to_bytes().unwrap();
    for n in 0..bytes.len() {
        assert_eq!(
            LoginMemory::from_bytes(&bytes[..n]),
            Err(LoginMemoryError::Truncated),
            "{n} of {} bytes",
            bytes.len()
        );
    }
}

#[test]
fn other_versions_trailing_and_oversized_input_are_typed_errors() {
    let bytes = full().to_bytes().unwrap();
    for version in 0..=u8::MAX {
        if [VERSION, VERSION_3, VERSION_2, VERSION_1].contains(&version) {
            continue;
        }
        let mut other = bytes.clone();
        other[0] = version;
        assert_eq!(
            LoginMemory::from_bytes(&other),
            Err(LoginMemoryError::UnknownVersion(version))
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        LoginMemory::from_bytes(&longer),
        Err(LoginMemoryError::TrailingBytes)
    );
    let huge = vec![VERSION; MAX_LEN + 1];
    assert_eq!(
        LoginMemory::from_bytes(&huge),
        Err(LoginMemoryError::TooLong {
            len: MAX_LEN + 1,
            max: MAX_LEN
        })
    );
}

#[test]
fn out_of_range_fields_are_invalid() {
    let invalid = |bytes: &[u8]| match LoginMemory::from_bytes(bytes) {
        Err(LoginMemoryError::Invalid(what)) => what,
        other => panic!("{bytes:?}: {other:?}"),
    };
    assert_eq!(invalid(&[VERSION_2, 1 << 7]), "flags");
    assert_eq!(invalid(&[VERSION, 1 << 7, 0]), "flags");
    assert_eq!(invalid(&[VERSION, 0, 1 << 6]), "flags");
    // Version 3 kept no SASL2 inline features; version 4 names them only with their flag.
    assert_eq!(invalid(&[VERSION_3, 0, FLAG2_SASL2_INLINE]), "flags");
    assert_eq!(invalid(&[VERSION, 0, FLAG2_BIND2]), "flags");
    assert_eq!(
        invalid(&[VERSION, 0, FLAG2_USER_AGENT, 2, b'a', 0xff]),
        "user agent id"
    );
    // Version 1 had neither the channel-bound flag nor the retry-unbound policy.
    assert_eq!(invalid(&[VERSION_1, 1 << 6]), "flags");
    assert_eq!(invalid(&[VERSION_1, 1 << 7]), "flags");
    assert_eq!(
        invalid(&[VERSION_1, FLAG_CB_POLICY, 3]),
        "channel-binding policy"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_MECHANISM, 0, Mechanism::ALL.len() as u8]),
        "mechanism"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_CB_POLICY, 0, 4]),
        "channel-binding policy"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_SCRAM, 0, 0, 2, 1, 1]),
        "SCRAM entry"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_FAST, 0, 1, 0xc3]),
        "FAST mechanism name"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_FAST, 0, MAX_FAST_MECHANISM as u8 + 1]),
        "FAST mechanism name"
    );
    assert_eq!(
        invalid(&[VERSION, FLAG_FAST, 0, 0, 0, 0, 2]),
        "FAST token expiry"
    );
    assert_eq!(invalid(&[VERSION, FLAG_FAST, 0, 0, 1, 1]), "FAST token");
    // Every mechanism and policy has its code.
    for m in Mechanism::ALL {
        for cb in CB_POLICIES {
            let memory = LoginMemory {
                mechanism: Some(m),
                channel_binding: Some(cb),
                ..LoginMemory::default()
            };
            let back = LoginMemory::from_bytes(&memory.to_bytes().unwrap()).unwrap();
            assert_eq!(back, memory);
        }
    }
}

#[test]
fn fields_beyond_their_bounds_are_not_written() {
    let mut memory = full();
    memory.fast_token.as_mut().unwrap().token = vec![0; MAX_FAST_TOKEN + 1];
    assert_eq!(
        memory.to_bytes(),
        Err(LoginMemoryError::TooLong {
            len: MAX_FAST_TOKEN + 1,
            max: MAX_FAST_TOKEN
        })
    );
    let mut memory = full();
    memory.fast_token.as_mut().unwrap().mechanism = "HT-SHA-256-ÉXPR".into();
    assert_eq!(
        memory.to_bytes(),
        Err(LoginMemoryError::Invalid("FAST mechanism name"))
    );
    // A server-chosen salt so long that the entry does not fit.
    let memory = LoginMemory {
        scram: Some(ScramCacheEntry::from_password(
            ScramHash::Sha1,
            "pw",
            &[7; MAX_LEN],
            4096,
        )),
        ..LoginMemory::default()
    };
    assert!(matches!(
        memory.to_bytes(),
        Err(LoginMemoryError::TooLong { .. })
    ));
}

#[test]
fn debug_shows_no_secret() {
    let text = alloc::format!("{:?}", full());
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("HT-SHA-256-EXPR"), "{text}");
    let error = alloc::format!("{}", LoginMemoryError::Truncated);
    assert!(error.contains("discard it"), "{error}");
}

fn outcome() -> Outcome {
    Outcome {
        features: StreamFeatures::default(),
        stream_id: Some("s1".into()),
        secure: true,
        mechanism: Some(Mechanism::ScramSha1),
        jid: Some("juliet@example.com/balcony".into()),
        scram_cache: Some(entry()),
        sasl_offer: Some(MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"])),
        sasl2: false,
        sasl2_inline: None,
        fast_token: None,
        fast_token_rejected: false,
        #[cfg(feature = "dialback")]
        dialback: false,
        bidi: false,
    }
}

#[test]
fn a_login_is_remembered_from_its_outcome_and_used_by_the_next() {
    let policy = SaslPolicy {
        channel_binding: CbPolicy::Off,
        ..SaslPolicy::default()
    };
    let memory = LoginMemory::from_outcome(&outcome(), &policy);
    assert_eq!(memory.scram, Some(entry()));
    assert_eq!(memory.offer, outcome().sasl_offer);
    assert_eq!(memory.mechanism, Some(Mechanism::ScramSha1));
    assert_eq!(memory.channel_binding, Some(CbPolicy::Off));
    assert!(memory.bound_before);
    assert_eq!(memory.fast_token, None);

    let sasl = ClientSasl {
        policy: policy.clone(),
        ..ClientSasl::password("juliet", "pw", None)
    }
    .with_memory(&memory);
    assert_eq!(sasl.credentials.scram_cache, Some(entry()));
    assert_eq!(sasl.pipeline_offer, memory.offer);

    // No offer kept: the mechanism stands for it under the same policy only.
    let no_offer = LoginMemory {
        offer: None,
        ..memory.clone()
    };
    assert_eq!(
        no_offer.pipeline_offer(&policy),
        Some(MechanismSet::default().with(Mechanism::ScramSha1))
    );
    assert_eq!(no_offer.pipeline_offer(&SaslPolicy::default()), None);

    // A mechanism the caller named wins over the memory's offer.
    let named = ClientSasl {
        pipeline_mechanism: Some(Mechanism::Plain),
        ..ClientSasl::password("juliet", "pw", None)
    }
    .with_memory(&memory);
    assert_eq!(named.pipeline_offer, None);
    assert_eq!(named.pipeline_mechanism, Some(Mechanism::Plain));

    // Nothing kept: nothing changes.
    let cold = ClientSasl::password("juliet", "pw", None).with_memory(&LoginMemory::default());
    assert_eq!(cold.credentials.scram_cache, None);
    assert_eq!(cold.pipeline_offer, None);
}

/// Bytes written by format version 1 (before the channel-bound flag), byte for byte as
/// that version wrote them: still read, as a server that never bound the channel.
#[test]
fn version_1_is_still_read_as_never_channel_bound() {
    let v1 = LoginMemory {
        channel_bound: false,
        user_agent_id: None,
        sasl2: false,
        sasl2_inline: None,
        fast_count: 0,
        ..full()
    };
    let mut bytes = v1.to_bytes().unwrap();
    assert_eq!(bytes[1] & FLAG_CHANNEL_BOUND, 0);
    // The FAST count (version 4) ends these bytes.
    assert_eq!(bytes.split_off(bytes.len() - 4), [0; 4]);
    bytes[0] = VERSION_1;
    assert_eq!(bytes.remove(2), 0, "no second flags byte before version 3");
    assert_eq!(LoginMemory::from_bytes(&bytes), Ok(v1));
    // A literal version-1 memory: offer SCRAM-SHA-1 + PLAIN, mechanism, policy off, bound.
    let offer = MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"]).bits();
    let m = Mechanism::ALL
        .iter()
        .position(|m| *m == Mechanism::ScramSha1)
        .unwrap() as u8;
    let [hi, lo] = offer.to_be_bytes();
    let old = [
        VERSION_1,
        FLAG_OFFER | FLAG_MECHANISM | FLAG_CB_POLICY | FLAG_BOUND,
        hi,
        lo,
        m,
        2,
    ];
    let read = LoginMemory::from_bytes(&old).unwrap();
    assert_eq!(read.offer, Some(MechanismSet::from_bits(offer)));
    assert_eq!(read.mechanism, Some(Mechanism::ScramSha1));
    assert_eq!(read.channel_binding, Some(CbPolicy::Off));
    assert!(read.bound_before);
    assert!(!read.channel_bound);
    // Written again, it is the current version.
    assert_eq!(read.to_bytes().unwrap()[0], VERSION);
}

/// Counts for FAST in TLS 0-RTT (XEP-0484 §3.4): positive, one higher each attempt, carried
/// on while the token stays, from 0 again for a new one.
#[test]
fn the_fast_count_rises_per_attempt_and_restarts_with_a_new_token() {
    let mut memory = LoginMemory {
        fast_count: 0,
        ..full()
    };
    assert_eq!(memory.next_fast_count(), Some(1));
    assert_eq!(memory.next_fast_count(), Some(2));
    let sasl = ClientSasl::password("juliet", "pw", None).with_memory(&memory);
    assert_eq!(sasl.sasl2.fast_count, Some(2));
    // A login with the same token keeps counting; a new token starts again.
    let same = LoginMemory::from_outcome(&outcome(), &SaslPolicy::default())
        .remembering(Some(&memory), false);
    assert_eq!(same.fast_count, 2);
    let new = LoginMemory {
        fast_token: memory.fast_token.clone(),
        ..LoginMemory::default()
    }
    .remembering(Some(&memory), false);
    assert_eq!(new.fast_count, 0);
    assert_eq!(LoginMemory::default().next_fast_count(), None, "no token");
    memory.fast_count = u32::MAX;
    assert_eq!(
        memory.next_fast_count(),
        None,
        "no count is ever sent twice"
    );
}

/// Before each attempt the count rises only where the server allowed FAST in TLS 0-RTT
/// (the count is sent only there); and only a token usable before the handshake is done
/// (no channel binding) with a user agent and that offer's shape makes a login ready for
/// early data.
#[test]
fn the_count_rises_per_attempt_only_where_0_rtt_was_offered() {
    use crate::stream::features::Sasl2Inline;
    let inline = |fast_0rtt| Sasl2Inline {
        bind2: true,
        bind2_sm: true,
        sm: true,
        fast_0rtt,
    };
    let mut offered = LoginMemory {
        fast_count: 4,
        sasl2_inline: Some(inline(true)),
        ..full()
    };
    assert_eq!(offered.next_attempt_count(), Some(5));
    assert_eq!(offered.fast_count, 5);
    let mut not_offered = LoginMemory {
        fast_count: 4,
        sasl2_inline: Some(inline(false)),
        ..full()
    };
    assert_eq!(not_offered.next_attempt_count(), None);
    assert_eq!(not_offered.fast_count, 4);

    let ready = |memory: &LoginMemory| {
        let mut sasl = ClientSasl::password("juliet", "pw", None).with_memory(memory);
        sasl.sasl2.user_agent_id = Some("ua".into());
        sasl.sasl2.early_data_ready()
    };
    let token = |mechanism: &str| {
        Some(crate::login::FastToken {
            mechanism: mechanism.into(),
            token: b"secret-token:fast-1".to_vec(),
            expires: None,
        })
    };
    offered.fast_token = token("HT-SHA-256-NONE");
    assert!(ready(&offered));
    offered.fast_token = token("HT-SHA-256-EXPR");
    assert!(
        !ready(&offered),
        "tls-exporter exists only after the handshake"
    );
    not_offered.fast_token = token("HT-SHA-256-NONE");
    assert!(!ready(&not_offered), "the server did not allow 0-RTT");
}

/// Bytes written by format version 3 (before SASL2's inline features were kept): still
/// read, with nothing kept of the inline features, so the next login waits for them.
#[test]
fn version_3_is_still_read_without_sasl2_inline_features() {
    let v3 = LoginMemory {
        sasl2_inline: None,
        fast_count: 0,
        ..full()
    };
    let mut bytes = v3.to_bytes().unwrap();
    bytes[0] = VERSION_3;
    // Version 3 had no FAST count: the token's field ends before the user agent id.
    let id = v3.user_agent_id.as_deref().unwrap();
    let count_at = bytes.len() - id.len() - 1 - 4;
    assert_eq!(
        bytes.drain(count_at..count_at + 4).collect::<Vec<_>>(),
        [0; 4]
    );
    assert_eq!(LoginMemory::from_bytes(&bytes), Ok(v3));
}

/// A verified -PLUS login sets the channel-bound flag; an unbound one does not clear what an
/// earlier memory knew (HSTS-like).
#[test]
fn channel_bound_is_learned_from_a_plus_login_and_never_forgotten() {
    let plus = Outcome {
        mechanism: Some(Mechanism::ScramSha1Plus),
        ..outcome()
    };
    let bound = LoginMemory::from_outcome(&plus, &SaslPolicy::default());
    assert!(bound.channel_bound);
    let unbound = LoginMemory::from_outcome(&outcome(), &SaslPolicy::default());
    assert!(!unbound.channel_bound);
    assert!(
        unbound
            .clone()
            .remembering(Some(&bound), false)
            .channel_bound
    );
    assert!(!unbound.clone().remembering(None, false).channel_bound);
    assert!(
        !unbound
            .clone()
            .remembering(Some(&unbound), false)
            .channel_bound
    );
    // The retry policy is remembered as such.
    let retry = SaslPolicy {
        channel_binding: CbPolicy::RetryUnbound,
        ..SaslPolicy::default()
    };
    let memory = LoginMemory::from_outcome(&outcome(), &retry);
    assert_eq!(memory.channel_binding, Some(CbPolicy::RetryUnbound));
    let bytes = memory.to_bytes().unwrap();
    assert_eq!(LoginMemory::from_bytes(&bytes), Ok(memory));
}

fn memories() -> impl Strategy<Value = LoginMemory> {
    let fast = (
        "[A-Z0-9-]{0,64}",
        proptest::collection::vec(any::<u8>(), 0..=MAX_FAST_TOKEN),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(mechanism, token, expires)| FastToken {
            mechanism,
            token,
            expires: expires.map(UnixTime),
        });
    let scram = (proptest::collection::vec(any::<u8>(), 0..64), 1..100_000u32).prop_map(
        |(salt, iterations)| {
            // Any keys serve the format: derive cheap ones.
            ScramCacheEntry::from_password(ScramHash::Sha1, "pw", &salt, iterations.min(2))
        },
    );
    (
        proptest::option::of(scram),
        proptest::option::of(any::<u16>()),
        proptest::option::of(0..Mechanism::ALL.len()),
        proptest::option::of(0..CB_POLICIES.len()),
        proptest::option::of(fast),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of("[0-9a-f-]{0,64}"),
        any::<bool>(),
        proptest::option::of(any::<(bool, bool, bool, bool)>()),
        any::<u32>(),
    )
        .prop_map(
            |(
                scram,
                offer,
                mechanism,
                cb,
                fast_token,
                bound_before,
                channel_bound,
                user_agent_id,
                sasl2,
                inline,
                count,
            )| LoginMemory {
                fast_count: if fast_token.is_some() { count } else { 0 },
                scram,
                offer: offer.map(MechanismSet::from_bits),
                mechanism: mechanism.map(|i| Mechanism::ALL[i]),
                channel_binding: cb.map(|i| CB_POLICIES[i]),
                fast_token,
                bound_before,
                channel_bound,
                user_agent_id,
                sasl2,
                sasl2_inline: inline.map(|(bind2, bind2_sm, sm, fast_0rtt)| Sasl2Inline {
                    bind2,
                    bind2_sm,
                    sm,
                    fast_0rtt,
                }),
            },
        )
}

proptest! {
    #[test]
    fn any_memory_round_trips(memory in memories()) {
        let bytes = memory.to_bytes().unwrap();
        prop_assert!(bytes.len() <= MAX_LEN);
        prop_assert_eq!(LoginMemory::from_bytes(&bytes), Ok(memory));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(memory) = LoginMemory::from_bytes(&bytes) {
            let again = memory.to_bytes().unwrap();
            prop_assert_eq!(LoginMemory::from_bytes(&again), Ok(memory));
        }
    }

    #[test]
    fn damaged_encodings_are_errors_or_memories(
        memory in memories(),
        at in any::<proptest::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut bytes = memory.to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let _ = LoginMemory::from_bytes(&bytes);
    }
}
