//! The challenge certificate parsed back with x509-parser, the pure choice, real rustls
//! handshakes (in memory) against port 443's configuration, and the HTTPS listener on a
//! socket closing a validation after its handshake.

use super::*;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection};
use x509_parser::extensions::GeneralName;

const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

fn digest_of(key_authorization: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes())
        .as_ref()
        .to_vec()
}

#[test]
fn challenge_certificate_names_the_host_and_holds_the_digest_critically() {
    let digest = digest_of("token.thumbprint");
    let (der, key) = challenge_certificate("mx.example.test", &digest).unwrap();
    assert!(!key.is_empty());
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<_> = san.value.general_names.iter().collect();
    assert_eq!(names, [&GeneralName::DNSName("mx.example.test")]);
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .expect("acmeIdentifier extension");
    assert!(ext.critical);
    // extnValue is the DER of an OCTET STRING (tag 4, length 32) holding the digest.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest);
    assert_eq!(ext.value, &expected[..]);
    // Self-signed: issuer is subject.
    assert_eq!(cert.issuer(), cert.subject());
}

#[test]
fn a_digest_of_another_size_is_refused() {
    assert!(challenge_certificate("mx.example.test", &[0; 31]).is_err());
}

#[test]
fn only_a_hello_offering_acme_tls_alone_is_a_validation() {
    let alpn = |list: &'static [&'static [u8]]| Some(list.iter().copied());
    assert_eq!(
        choose(Some("MX.Example.test"), alpn(&[ACME_TLS_1])),
        Choice::Challenge("mx.example.test".into())
    );
    assert_eq!(choose(None, alpn(&[ACME_TLS_1])), Choice::Refuse);
    assert_eq!(
        choose(Some("mx.example.test"), alpn(&[b"http/1.1", ACME_TLS_1])),
        Choice::Normal
    );
    assert_eq!(
        choose(Some("mx.example.test"), alpn(&[b"h2", b"http/1.1"])),
        Choice::Normal
    );
    assert_eq!(choose(Some("mx.example.test"), alpn(&[])), Choice::Normal);
    assert_eq!(
        choose(Some("mx.example.test"), None::<std::iter::Empty<&[u8]>>),
        Choice::Normal
    );
}

/// Accepts any server certificate: the tests look at what was served.
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn base_config() -> ServerConfig {
    let params = rcgen::CertificateParams::new(vec!["mx.example.test".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from(key.serialize_der()),
    ))
    .unwrap();
    let normal = CertifiedKey::new(vec![cert.der().clone()], signing);
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::new(normal))))
}

fn client(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(client)
}

/// One handshake in memory: the served leaf (DER) and the agreed protocol, or the error.
fn handshake(
    server: Arc<ServerConfig>,
    name: &str,
    alpn: &[&[u8]],
) -> Result<(Vec<u8>, Option<Vec<u8>>), rustls::Error> {
    let mut c = ClientConnection::new(
        client(alpn),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            let leaf = c.peer_certificates().unwrap()[0].to_vec();
            return Ok((leaf, s.alpn_protocol().map(|p| p.to_vec())));
        }
    }
    panic!("handshake did not finish");
}

fn has_acme_extension(der: &[u8]) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
}

#[test]
fn port_443_serves_the_challenge_certificate_only_to_validations() {
    let base = base_config();
    let pending = Pending::default();
    let https = https_config(&base, pending.clone());
    // The mail services' configuration is untouched: no ALPN, so never acme-tls/1.
    assert!(base.alpn_protocols.is_empty());
    assert!(https.alpn_protocols.iter().any(|p| p == ACME_TLS_1));

    let digest = digest_of("tok.thumb");
    pending.insert("mx.example.test", &digest).unwrap();
    let (leaf, alpn) = handshake(https.clone(), "mx.example.test", &[ACME_TLS_1]).unwrap();
    assert!(has_acme_extension(&leaf));
    assert_eq!(alpn.as_deref(), Some(ACME_TLS_1));
    assert!(is_validation(alpn.as_deref()));

    // A browser gets the normal certificate and http/1.1 while the challenge is pending.
    let (leaf, alpn) = handshake(https.clone(), "mx.example.test", &[b"h2", b"http/1.1"]).unwrap();
    assert!(!has_acme_extension(&leaf));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (leaf, alpn) = handshake(https.clone(), "mx.example.test", &[]).unwrap();
    assert!(!has_acme_extension(&leaf));
    assert_eq!(alpn, None);

    // Another name, or after the order: no certificate, the handshake fails.
    assert!(handshake(https.clone(), "other.example.test", &[ACME_TLS_1]).is_err());
    pending.remove("MX.example.test");
    assert!(handshake(https.clone(), "mx.example.test", &[ACME_TLS_1]).is_err());

    // The mail ports' configuration ignores acme-tls/1: normal certificate, no protocol.
    pending.insert("mx.example.test", &digest).unwrap();
    let (leaf, alpn) = handshake(Arc::new(base), "mx.example.test", &[ACME_TLS_1]).unwrap();
    assert!(!has_acme_extension(&leaf));
    assert_eq!(alpn, None);
}

/// Through the listener on a real socket: a validation gets its certificate and then the
/// end of the stream at once; an HTTPS client on the same port gets its answer.
#[tokio::test]
async fn the_listener_closes_a_validation_after_the_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pending = Pending::default();
    pending
        .insert("mx.example.test", &digest_of("tok.thumb"))
        .unwrap();
    let https = https_config(&base_config(), pending);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    tokio::spawn(crate::listener::serve(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(https)),
        app,
        crate::listener::Limits::default(),
        crate::listener::Slots::new(4),
        shutdown,
    ));
    let connect = |alpn: &[&[u8]]| {
        let tls = tokio_rustls::TlsConnector::from(client(alpn));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("mx.example.test").unwrap();
            tls.connect(name, tcp).await.unwrap()
        }
    };
    let mut validation = connect(&[ACME_TLS_1]).await;
    let (_, conn) = validation.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_1));
    assert!(has_acme_extension(&conn.peer_certificates().unwrap()[0]));
    // Whatever the client sends, nothing comes back but the end of the stream.
    let _ = validation
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        validation.read_to_end(&mut got),
    )
    .await;
    assert!(read.is_ok(), "still open");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    let mut browser = connect(&[b"http/1.1"]).await;
    browser
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = browser.read_to_end(&mut got).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
        "{text}"
    );
}
