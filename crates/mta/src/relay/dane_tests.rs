//! TLSA matching against certificates made by rcgen: DANE-EE by certificate and by key, every
//! matching type, DANE-TA through the chain, unusable and malformed records, the DNS states.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

struct Pki {
    ca: CertificateDer<'static>,
    ee: CertificateDer<'static>,
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let ee_key = KeyPair::generate().unwrap();
    let ee = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&ee_key, &issuer)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        ee: ee.der().clone(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn spki(cert: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
    c.public_key().raw.to_vec()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn sha512(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA512, b)
        .as_ref()
        .to_vec()
}

fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
    Tlsa {
        usage,
        selector,
        matching,
        data,
    }
}

fn run(records: &[Tlsa], chain: &[CertificateDer<'static>], host: &str) -> Result<Matched, String> {
    check(records, chain, host, UnixTime::now(), &provider())
}

#[test]
fn dane_ee_by_key_or_certificate_any_matching() {
    let p = pki("mx.example");
    let chain = [p.ee.clone(), p.ca.clone()];
    let key = spki(&p.ee);
    for r in [
        rec(3, 1, 1, sha256(&key)),
        rec(3, 1, 2, sha512(&key)),
        rec(3, 1, 0, key.clone()),
        rec(3, 0, 1, sha256(&p.ee)),
        rec(3, 0, 2, sha512(&p.ee)),
        rec(3, 0, 0, p.ee.to_vec()),
    ] {
        assert_eq!(
            run(std::slice::from_ref(&r), &chain, "mx.example"),
            Ok(Matched::EndEntity),
            "{r:?}"
        );
        // DANE-EE checks no name (RFC 7672 §3.1.1).
        assert_eq!(run(&[r], &chain, "other.example"), Ok(Matched::EndEntity));
    }
}

#[test]
fn a_wrong_record_does_not_match() {
    let p = pki("mx.example");
    let other = pki("mx.example");
    let chain = [p.ee.clone(), p.ca.clone()];
    let wrong = rec(3, 1, 1, sha256(&spki(&other.ee)));
    let err = run(&[wrong], &chain, "mx.example.").unwrap_err();
    assert_eq!(err, "no TLSA record matches the certificate of mx.example");
    // One good record among wrong ones is enough.
    let good = rec(3, 1, 1, sha256(&spki(&p.ee)));
    let wrong = rec(3, 1, 1, vec![0; 32]);
    assert!(run(&[wrong, good], &chain, "mx.example").is_ok());
    // The TA record of another CA does not match either.
    let other_ta = rec(2, 0, 1, sha256(&other.ca));
    assert!(run(&[other_ta], &chain, "mx.example").is_err());
    // No certificate at all.
    assert!(run(&[rec(3, 1, 1, sha256(&spki(&p.ee)))], &[], "mx.example").is_err());
}

#[test]
fn dane_ta_chains_and_checks_the_name() {
    let p = pki("mx.example");
    let chain = [p.ee.clone(), p.ca.clone()];
    for r in [
        rec(2, 0, 1, sha256(&p.ca)),
        rec(2, 1, 1, sha256(&spki(&p.ca))),
        rec(2, 1, 2, sha512(&spki(&p.ca))),
    ] {
        assert_eq!(
            run(std::slice::from_ref(&r), &chain, "mx.example"),
            Ok(Matched::TrustAnchor)
        );
        let err = run(&[r], &chain, "other.example").unwrap_err();
        assert!(
            err.contains("does not verify from its TLSA trust anchor"),
            "{err}"
        );
    }
    // The anchor must be in the chain the server sent.
    let ta = rec(2, 0, 1, sha256(&p.ca));
    assert!(run(
        std::slice::from_ref(&ta),
        std::slice::from_ref(&p.ee),
        "mx.example"
    )
    .is_err());
    // A TA record naming the end entity's own key is not a DANE-EE record.
    let ee_as_ta = rec(2, 1, 1, sha256(&spki(&p.ee)));
    assert!(run(&[ee_as_ta], &chain, "mx.example").is_err());
    // A chain whose end entity another CA issued does not verify from this anchor.
    let q = pki("mx.example");
    assert!(run(&[ta], &[q.ee.clone(), p.ca.clone()], "mx.example").is_err());
}

#[test]
fn pkix_and_malformed_records_are_unusable() {
    let p = pki("mx.example");
    let key = sha256(&spki(&p.ee));
    let records = vec![
        rec(0, 1, 1, key.clone()),
        rec(1, 1, 1, key.clone()),
        rec(3, 2, 1, key.clone()),
        rec(3, 1, 3, key.clone()),
        rec(3, 1, 1, key[..31].to_vec()),
        rec(3, 1, 2, key.clone()),
    ];
    assert!(usable(&records).is_empty());
    let good = rec(3, 1, 1, key);
    assert_eq!(usable(&[records[0].clone(), good.clone()]), vec![good]);
}

#[test]
fn dns_answers_become_states() {
    let r = rec(3, 1, 1, vec![7; 32]);
    let secure = |records: Vec<Tlsa>, authentic| Ok(SecureAnswer { authentic, records });
    assert_eq!(
        state_of("mx.example", secure(vec![r.clone()], true)),
        DaneState::Required(Arc::new(vec![r.clone()]))
    );
    // Not authenticated: as if there were none.
    assert_eq!(
        state_of("mx.example", secure(vec![r], false)),
        DaneState::None
    );
    // Only unusable records: no DANE.
    assert_eq!(
        state_of("mx.example", secure(vec![rec(1, 1, 1, vec![7; 32])], true)),
        DaneState::None
    );
    assert_eq!(
        state_of("mx.example", Err(Failure::NoRecords)),
        DaneState::None
    );
    assert_eq!(
        state_of("mx.example", Err(Failure::NxDomain)),
        DaneState::None
    );
    assert!(matches!(
        state_of("mx.example", Err(Failure::Temporary("SERVFAIL".into()))),
        DaneState::Defer(e) if e.contains("TLSA lookup for mx.example failed")
    ));
}
