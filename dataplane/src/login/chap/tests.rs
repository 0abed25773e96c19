//! CHAP rules, one table per rule: digests against published vectors, binary encodings,
//! algorithm choice, and every way a response can be wrong.

use super::*;

const RANDOM: ChapRandom = ChapRandom {
    identifier: 42,
    challenge: [0xa5; limits::CHAP_CHALLENGE_BYTES],
};

fn policy(algorithms: &[ChapAlgorithm], mutual: bool) -> ChapPolicy {
    ChapPolicy {
        username: "alice".into(),
        secret: b"initiator-secret-1".to_vec(),
        mutual: mutual.then(|| ("target-name".to_string(), b"target-secret-22".to_vec())),
        algorithms: algorithms.to_vec(),
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hex(b: &[u8]) -> String {
    encode_hex(b)
}

fn reply_keys(out: &[u8]) -> Vec<(String, String)> {
    crate::pdu::text::parse(out).unwrap()
}

fn get<'a>(k: &'a [(String, String)], key: &str) -> Option<&'a str> {
    k.iter().find(|(a, _)| a == key).map(|(_, v)| v.as_str())
}

/// Runs AuthMethod and CHAP_A, returning the state machine waiting for CHAP_N/CHAP_R and
/// the algorithm it chose.
fn challenged(p: &ChapPolicy, offer: &str) -> (Chap, ChapAlgorithm) {
    let mut c = Chap::new(Some(RANDOM));
    let mut out = Vec::new();
    let step = c.step(&kv(&[("AuthMethod", "CHAP,None")]), Some(p), &mut out);
    assert_eq!(step, Ok(Progress::Pending));
    assert_eq!(get(&reply_keys(&out), "AuthMethod"), Some("CHAP"));
    let mut out = Vec::new();
    let step = c.step(&kv(&[("CHAP_A", offer)]), Some(p), &mut out);
    assert_eq!(step, Ok(Progress::Pending));
    let k = reply_keys(&out);
    assert_eq!(get(&k, "CHAP_I"), Some("42"));
    assert_eq!(get(&k, "CHAP_C"), Some(hex(&RANDOM.challenge).as_str()));
    let n: u64 = get(&k, "CHAP_A").unwrap().parse().unwrap();
    (c, ChapAlgorithm::from_number(n).unwrap())
}

#[test]
fn digests_match_published_vectors() {
    // H(identifier || secret || challenge) with 'a' || "bc" || "" is H("abc"), whose value
    // is published for each algorithm (RFC 1321, FIPS 180-2, FIPS 202 examples).
    let cases = [
        (ChapAlgorithm::Md5, "0x900150983cd24fb0d6963f7d28e17f72"),
        (
            ChapAlgorithm::Sha1,
            "0xa9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            ChapAlgorithm::Sha256,
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "0x3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        ),
    ];
    for (alg, want) in cases {
        let got = alg.response(b'a', b"bc", b"");
        assert_eq!(hex(&got), want, "{alg:?}");
        assert_eq!(got.len(), alg.digest_bytes(), "{alg:?}");
    }
}

#[test]
fn decodes_hex_and_base64_binary_values() {
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("0x0102ff", Some(&[1, 2, 0xff])),
        ("0X0A", Some(&[0x0a])),
        ("0x1", Some(&[1])),
        ("0x102", Some(&[1, 2])),
        ("0bAQI=", Some(&[1, 2])),
        ("0BAQID", Some(&[1, 2, 3])),
        ("0bAQ==", Some(&[1])),
        ("0x", None),
        ("0xzz", None),
        ("0x 1", None),
        ("0b", None),
        ("0bA", None),
        ("0bA===", None),
        ("0bAQ!=", None),
        ("0102", None),
        ("", None),
    ];
    for (v, want) in cases {
        assert_eq!(decode_binary(v).as_deref(), *want, "{v:?}");
    }
}

#[test]
fn picks_the_strongest_algorithm_both_sides_allow() {
    use ChapAlgorithm::*;
    let cases: &[(&[ChapAlgorithm], &str, Option<ChapAlgorithm>)] = &[
        (&ChapAlgorithm::ALL, "5,6,7,8", Some(Sha3_256)),
        (&ChapAlgorithm::ALL, "8,7,6,5", Some(Sha3_256)),
        (&ChapAlgorithm::ALL, "5", Some(Md5)),
        (&[Md5, Sha256], "5,6,7", Some(Sha256)),
        (&ChapAlgorithm::ALL, "7,junk,99,5", Some(Sha256)),
        // A target that refuses MD5 fails an initiator that only has MD5.
        (&[Sha256, Sha3_256], "5", None),
        (&ChapAlgorithm::ALL, "1,2,3", None),
        (&ChapAlgorithm::ALL, "", None),
    ];
    for (allowed, offer, want) in cases {
        let p = policy(allowed, false);
        let mut c = Chap::new(Some(RANDOM));
        let mut out = Vec::new();
        let got = c
            .step(
                &kv(&[("AuthMethod", "CHAP"), ("CHAP_A", offer)]),
                Some(&p),
                &mut out,
            )
            .ok()
            .and_then(|_| get(&reply_keys(&out), "CHAP_A").map(str::to_string))
            .and_then(|n| ChapAlgorithm::from_number(n.parse().ok()?));
        assert_eq!(got, *want, "allowed {allowed:?} offer {offer:?}");
    }
}

#[test]
fn accepts_the_right_one_way_response_in_every_encoding() {
    for alg in ChapAlgorithm::ALL {
        let p = policy(&[alg], false);
        let right = alg.response(RANDOM.identifier, &p.secret, &RANDOM.challenge);
        let b64 = {
            // Hand-encoded base64, independent of the decoder under test.
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::from("0b");
            for c in right.chunks(3) {
                let n = c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - c.len()));
                for i in 0..4 {
                    if i <= c.len() {
                        s.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
                    } else {
                        s.push('=');
                    }
                }
            }
            s
        };
        for encoded in [
            hex(&right),
            hex(&right).to_uppercase().replacen("0X", "0x", 1),
            b64,
        ] {
            let (mut c, chosen) = challenged(&p, &alg.number().to_string());
            assert_eq!(chosen, alg);
            let mut out = Vec::new();
            let step = c.step(
                &kv(&[("CHAP_N", "alice"), ("CHAP_R", &encoded)]),
                Some(&p),
                &mut out,
            );
            assert_eq!(step, Ok(Progress::Complete), "{alg:?} {encoded}");
            assert!(c.is_done());
            assert!(out.is_empty(), "one-way CHAP sends nothing back");
        }
    }
}

#[test]
fn refuses_every_wrong_response_with_the_same_status() {
    let p = policy(&[ChapAlgorithm::Sha256], true);
    let alg = ChapAlgorithm::Sha256;
    let right = hex(&alg.response(RANDOM.identifier, &p.secret, &RANDOM.challenge));
    let wrong_secret = hex(&alg.response(RANDOM.identifier, b"guess-guess-1", &RANDOM.challenge));
    let wrong_id = hex(&alg.response(RANDOM.identifier ^ 1, &p.secret, &RANDOM.challenge));
    let md5_of_right =
        hex(&ChapAlgorithm::Md5.response(RANDOM.identifier, &p.secret, &RANDOM.challenge));
    let short = right[..right.len() - 2].to_string();
    let long_name = "a".repeat(limits::CHAP_NAME_BYTES_MAX + 1);
    let reflected = hex(&RANDOM.challenge);
    let short_chal = hex(&[7u8; limits::CHAP_CHALLENGE_PEER_BYTES_MIN - 1]);
    let huge_chal = hex(&vec![7u8; limits::CHAP_CHALLENGE_PEER_BYTES_MAX + 1]);
    let good_chal = hex(&[7u8; limits::CHAP_CHALLENGE_PEER_BYTES_MIN]);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "wrong secret",
            vec![("CHAP_N", "alice"), ("CHAP_R", &wrong_secret)],
        ),
        (
            "wrong identifier",
            vec![("CHAP_N", "alice"), ("CHAP_R", &wrong_id)],
        ),
        (
            "wrong name",
            vec![("CHAP_N", "mallory"), ("CHAP_R", &right)],
        ),
        ("empty name", vec![("CHAP_N", ""), ("CHAP_R", &right)]),
        (
            "overlong name",
            vec![("CHAP_N", &long_name), ("CHAP_R", &right)],
        ),
        (
            "other algorithm",
            vec![("CHAP_N", "alice"), ("CHAP_R", &md5_of_right)],
        ),
        ("truncated", vec![("CHAP_N", "alice"), ("CHAP_R", &short)]),
        (
            "not encoded",
            vec![("CHAP_N", "alice"), ("CHAP_R", &right[2..])],
        ),
        ("bad hex", vec![("CHAP_N", "alice"), ("CHAP_R", "0xgg")]),
        ("no name", vec![("CHAP_R", &right)]),
        ("no response", vec![("CHAP_N", "alice")]),
        (
            "response twice",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &wrong_secret),
                ("CHAP_R", &right),
            ],
        ),
        (
            "algorithm again",
            vec![("CHAP_A", "7"), ("CHAP_N", "alice"), ("CHAP_R", &right)],
        ),
        (
            "reflected challenge",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &right),
                ("CHAP_I", "1"),
                ("CHAP_C", &reflected),
            ],
        ),
        (
            "short challenge",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &right),
                ("CHAP_I", "1"),
                ("CHAP_C", &short_chal),
            ],
        ),
        (
            "huge challenge",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &right),
                ("CHAP_I", "1"),
                ("CHAP_C", &huge_chal),
            ],
        ),
        (
            "identifier out of range",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &right),
                ("CHAP_I", "256"),
                ("CHAP_C", &good_chal),
            ],
        ),
        (
            "challenge without identifier",
            vec![
                ("CHAP_N", "alice"),
                ("CHAP_R", &right),
                ("CHAP_C", &good_chal),
            ],
        ),
        (
            "identifier without challenge",
            vec![("CHAP_N", "alice"), ("CHAP_R", &right), ("CHAP_I", "9")],
        ),
    ];
    for (what, pairs) in cases {
        let (mut c, _) = challenged(&p, "7");
        let mut out = Vec::new();
        assert_eq!(
            c.step(&kv(&pairs), Some(&p), &mut out),
            Err(status::AUTH_FAILURE),
            "{what}"
        );
        assert!(!c.is_done(), "{what}");
    }
}

#[test]
fn answers_a_mutual_challenge_with_the_target_secret() {
    let p = policy(&ChapAlgorithm::ALL, true);
    let (mut c, alg) = challenged(&p, "5,7");
    assert_eq!(alg, ChapAlgorithm::Sha256);
    let right = hex(&alg.response(RANDOM.identifier, &p.secret, &RANDOM.challenge));
    let their_chal = [0x11u8; 16];
    let mut out = Vec::new();
    let step = c.step(
        &kv(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &right),
            ("CHAP_I", "0x07"),
            ("CHAP_C", &hex(&their_chal)),
        ]),
        Some(&p),
        &mut out,
    );
    assert_eq!(step, Ok(Progress::Complete));
    let k = reply_keys(&out);
    assert_eq!(get(&k, "CHAP_N"), Some("target-name"));
    let want = hex(&alg.response(7, b"target-secret-22", &their_chal));
    assert_eq!(get(&k, "CHAP_R"), Some(want.as_str()));
}

#[test]
fn refuses_a_mutual_challenge_when_no_target_secret_is_configured() {
    let p = policy(&ChapAlgorithm::ALL, false);
    let (mut c, alg) = challenged(&p, "7");
    let right = hex(&alg.response(RANDOM.identifier, &p.secret, &RANDOM.challenge));
    let mut out = Vec::new();
    let step = c.step(
        &kv(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &right),
            ("CHAP_I", "1"),
            ("CHAP_C", &hex(&[3u8; 16])),
        ]),
        Some(&p),
        &mut out,
    );
    assert_eq!(step, Err(status::AUTH_FAILURE));
}

#[test]
fn refuses_out_of_order_keys_and_no_chap_offer() {
    let p = policy(&ChapAlgorithm::ALL, false);
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("only None offered", &[("AuthMethod", "None")]),
        ("no AuthMethod", &[("CHAP_A", "5")]),
        (
            "response before challenge",
            &[("AuthMethod", "CHAP"), ("CHAP_N", "alice")],
        ),
        ("empty request", &[]),
    ];
    for (what, pairs) in cases {
        let mut c = Chap::new(Some(RANDOM));
        let mut out = Vec::new();
        assert_eq!(
            c.step(&kv(pairs), Some(&p), &mut out),
            Err(status::AUTH_FAILURE),
            "{what}"
        );
    }
}

#[test]
fn without_randomness_chap_fails_closed() {
    let p = policy(&ChapAlgorithm::ALL, false);
    let mut c = Chap::new(None);
    let mut out = Vec::new();
    assert_eq!(
        c.step(
            &kv(&[("AuthMethod", "CHAP"), ("CHAP_A", "5")]),
            Some(&p),
            &mut out
        ),
        Err(status::TARGET_ERROR)
    );
}

#[test]
fn without_a_policy_only_none_is_agreed() {
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        Result<Progress, (u8, u8)>,
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        (
            &[("AuthMethod", "CHAP,None")],
            Ok(Progress::Complete),
            Some("None"),
        ),
        (
            &[("AuthMethod", "None")],
            Ok(Progress::Complete),
            Some("None"),
        ),
        (&[], Ok(Progress::Complete), None),
        (&[("AuthMethod", "CHAP")], Err(status::AUTH_FAILURE), None),
        (&[("CHAP_A", "5")], Err(status::AUTH_FAILURE), None),
    ];
    for (pairs, want, answer) in cases {
        let mut c = Chap::new(Some(RANDOM));
        let mut out = Vec::new();
        assert_eq!(c.step(&kv(pairs), None, &mut out), *want, "{pairs:?}");
        assert_eq!(get(&reply_keys(&out), "AuthMethod"), *answer, "{pairs:?}");
    }
}

#[test]
fn policy_debug_never_shows_secrets() {
    let p = policy(&ChapAlgorithm::ALL, true);
    let shown = format!("{p:?}");
    assert!(shown.contains("alice") && shown.contains("target-name"));
    assert!(!shown.contains("secret"), "{shown}");
}
