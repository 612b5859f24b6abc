//! TLS for the client API: TLS 1.3 only, the ring provider, certificates from genesis.
//!
//! ```text
//!   sphr-node genesis ──> OUT/orgs/<Org>/tls-ca.pem     org X.509 CA (the org CA's ed25519 key)
//!                    ──> OUT/orgs/<Org>/nodes/<n>/tls.crt, tls.key   (the node's ed25519 key)
//!                    ──> OUT/tls-ca.pem                  every org's CA: what clients trust
//!
//!   node:   server_config(tls.crt, tls.key)  ── TLS 1.3, ALPN http/1.1 ──  client_config(tls-ca.pem)
//! ```
//!
//! Both sides build their config with `builder_with_provider(ring)` and
//! `with_protocol_versions(&[&TLS13])`, so neither depends on a process-wide default provider
//! and a TLS 1.2 peer is refused with a `protocol_version` alert. A client trusts exactly the
//! certificates of the bundle it is given, never the system's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// Largest PEM file read (a bundle of a few dozen CA certificates fits easily).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The only application protocol spoken over the API's TLS.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a TLS configuration could not be built.
///
/// What follows: the node (or client command) does not start, and the error names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("TLS file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_PEM_BYTES`].
    #[error("TLS file {path} is over the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A file is not the PEM expected, or holds none of the items expected.
    #[error("TLS file {path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the certificates or key (wrong key for the certificate, unsupported key).
    #[error("TLS configuration from {path}: {source}")]
    Rustls {
        /// The file whose content was refused.
        path: PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider: ring, as everywhere in sphr.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads at most [`MAX_PEM_BYTES`] into a buffer wiped on drop (it may hold a private key).
fn read_limited(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    use std::io::Read;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_PEM_BYTES,
        });
    }
    Ok(buf)
}

/// Reads every `CERTIFICATE` section of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_limited(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            why: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            why: "no CERTIFICATE section".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_limited(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        why: format!("no usable PRIVATE KEY section: {e}"),
    })
}

/// The API server's TLS configuration: TLS 1.3 only, ALPN `http/1.1`, no client certificates
/// (clients prove who they are by signing proposals), the chain in `cert_pem` (leaf first) and
/// the key in `key_pem`.
///
/// Web browsers (Chromium, Firefox) do not offer ed25519 in TLS, so they could not even reach
/// the explorer with the node's ed25519 certificate: a client whose hello does not offer
/// ed25519 gets instead a self-signed ECDSA P-256 certificate made when this configuration is
/// built ([`BROWSER_CERT_NAME`]). sphr clients always offer ed25519 and get the node's
/// certificate; a browser user trusts the explorer's certificate by exception (or behind a
/// reverse proxy with a certificate of their own).
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert_pem)?;
    let key = load_key(key_pem)?;
    let provider = provider();
    let node =
        CertifiedKey::from_der(certs, key, &provider).map_err(|source| TlsError::Rustls {
            path: key_pem.to_path_buf(),
            source,
        })?;
    let browser = browser_cert(&provider).map_err(|why| TlsError::Pem {
        path: cert_pem.to_path_buf(),
        why: format!("making the browser certificate: {why}"),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            path: cert_pem.to_path_buf(),
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NodeCerts {
            node: Arc::new(node),
            browser: Arc::new(browser),
        }));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The subject of the certificate served to clients that do not offer ed25519.
pub const BROWSER_CERT_NAME: &str = "sphr-node (self-signed, for web browsers)";

/// A self-signed ECDSA P-256 certificate for `localhost` and `127.0.0.1`.
fn browser_cert(provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let kp =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, BROWSER_CERT_NAME);
    let cert = params.self_signed(&kp).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(kp.serialize_der().into());
    CertifiedKey::from_der(vec![cert.der().clone()], key, provider).map_err(|e| e.to_string())
}

/// Picks the node's certificate for clients that offer ed25519, else the browser certificate.
#[derive(Debug)]
struct NodeCerts {
    node: Arc<CertifiedKey>,
    browser: Arc<CertifiedKey>,
}

impl ResolvesServerCert for NodeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .signature_schemes()
            .contains(&SignatureScheme::ED25519)
        {
            Some(self.node.clone())
        } else {
            Some(self.browser.clone())
        }
    }
}

/// A client's TLS configuration: TLS 1.3 only, ALPN `http/1.1`, trusting exactly the
/// certificates in `ca_bundle_pem` (normally `OUT/tls-ca.pem` from `sphr-node genesis`).
pub fn client_config(ca_bundle_pem: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_bundle_pem)? {
        roots.add(cert).map_err(|source| TlsError::Rustls {
            path: ca_bundle_pem.to_path_buf(),
            source,
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            path: ca_bundle_pem.to_path_buf(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Loopback handshakes for tests, here and in [`crate::genesis`].
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Accepts one connection and answers "pong" to whatever comes first; returns the
    /// handshake result of the server side.
    pub async fn serve_once(
        listener: TcpListener,
        config: Arc<ServerConfig>,
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        let (tcp, _) = listener.accept().await?;
        let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok(alpn)
    }

    pub async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> (
        Result<Vec<u8>, std::io::Error>,
        Result<Option<Vec<u8>>, std::io::Error>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = tokio::spawn(serve_once(listener, server));
        let name = ServerName::try_from(name.to_string()).unwrap();
        let client_result = async {
            let tcp = TcpStream::connect(addr).await?;
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await?;
            assert_eq!(
                tls.get_ref().1.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            tls.write_all(b"ping").await?;
            let mut out = Vec::new();
            tls.read_to_end(&mut out).await?;
            Ok(out)
        }
        .await;
        (client_result, server_task.await.unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{handshake, serve_once};
    use super::*;
    use crate::genesis::{GenesisSpec, generate};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SPEC: &str = r#"
        network = "tlstest"
        [[orgs]]
        name = "OrgA"
        [[orgs.nodes]]
        name = "n0"
        api_port = 17443
        p2p_port = 17000
        ops_port = 19443
        [[orgs]]
        name = "OrgB"
        [[orgs.nodes]]
        name = "n1"
        host = "localhost"
        api_port = 17444
        p2p_port = 17001
        ops_port = 19444
        [[contracts]]
        name = "kv"
        policy = "ALL"
    "#;

    fn network(dir: &Path) -> PathBuf {
        let spec = GenesisSpec::from_toml_str(SPEC, Path::new("test.toml")).unwrap();
        generate(&spec, dir, crate::now_ms()).unwrap();
        dir.to_path_buf()
    }

    #[tokio::test]
    async fn node_certificate_handshakes_with_the_network_ca() {
        let dir = tempfile::tempdir().unwrap();
        let out = network(dir.path());
        let client = client_config(&out.join("tls-ca.pem")).unwrap();
        for (org, node, names) in [
            ("OrgA", "n0", ["127.0.0.1", "localhost"]),
            ("OrgB", "n1", ["localhost", "127.0.0.1"]),
        ] {
            let node_dir = out.join("orgs").join(org).join("nodes").join(node);
            let server =
                server_config(&node_dir.join("tls.crt"), &node_dir.join("tls.key")).unwrap();
            for name in names {
                let (c, s) = handshake(server.clone(), client.clone(), name).await;
                assert_eq!(c.unwrap(), b"pong", "{org}/{node} as {name}");
                assert_eq!(s.unwrap(), Some(ALPN_HTTP1.to_vec()));
            }
            // A name the certificate does not hold is refused.
            let (c, _) = handshake(server.clone(), client.clone(), "elsewhere.example").await;
            assert!(c.is_err());
        }
        // A client trusting one org's CA only still reaches that org's node.
        let only_a = client_config(&out.join("orgs/OrgA/tls-ca.pem")).unwrap();
        let node_dir = out.join("orgs/OrgA/nodes/n0");
        let server = server_config(&node_dir.join("tls.crt"), &node_dir.join("tls.key")).unwrap();
        let (c, _) = handshake(server, only_a.clone(), "127.0.0.1").await;
        assert!(c.is_ok());
        // ... but not OrgB's.
        let node_dir = out.join("orgs/OrgB/nodes/n1");
        let server = server_config(&node_dir.join("tls.crt"), &node_dir.join("tls.key")).unwrap();
        let (c, _) = handshake(server, only_a, "127.0.0.1").await;
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn a_client_of_another_network_is_refused() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let a = network(dir_a.path());
        let b = network(dir_b.path());
        let node_dir = a.join("orgs/OrgA/nodes/n0");
        let server = server_config(&node_dir.join("tls.crt"), &node_dir.join("tls.key")).unwrap();
        let foreign = client_config(&b.join("tls-ca.pem")).unwrap();
        let (c, s) = handshake(server, foreign, "127.0.0.1").await;
        let err = c.unwrap_err();
        assert!(
            err.to_string().contains("UnknownIssuer") || err.to_string().contains("certificate"),
            "{err}"
        );
        assert!(s.is_err());
    }

    /// A TLS 1.2 ClientHello (no `supported_versions` extension, TLS 1.2 suites only) gets a
    /// fatal `protocol_version` alert and no ServerHello.
    #[tokio::test]
    async fn a_tls12_only_client_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = network(dir.path());
        let node_dir = out.join("orgs/OrgA/nodes/n0");
        let server = server_config(&node_dir.join("tls.crt"), &node_dir.join("tls.key")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = tokio::spawn(serve_once(listener, server));

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&tls12_client_hello()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        // Record: type alert (21), version, length 2, level fatal (2), protocol_version (70).
        assert!(answer.len() >= 7, "{answer:?}");
        assert_eq!(answer[0], 21, "expected an alert record, got {answer:?}");
        assert_eq!(&answer[5..7], &[2, 70], "expected fatal protocol_version");
        assert!(server_task.await.unwrap().is_err());
    }

    fn tls12_client_hello() -> Vec<u8> {
        fn with_len16(body: &[u8]) -> Vec<u8> {
            let mut v = (body.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(body);
            v
        }
        fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
            let mut v = kind.to_be_bytes().to_vec();
            v.extend(with_len16(body));
            v
        }
        let mut hello = vec![0x03, 0x03]; // legacy_version TLS 1.2
        hello.extend([7u8; 32]); // random
        hello.push(0); // empty session id
        // ECDHE-ECDSA/RSA AES-128-GCM, ECDHE-ECDSA CHACHA20: TLS 1.2 suites only.
        hello.extend(with_len16(&[0xc0, 0x2b, 0xc0, 0x2f, 0xcc, 0xa9]));
        hello.extend([1, 0]); // compression: null
        let mut exts = Vec::new();
        // signature_algorithms: ed25519, ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
        exts.extend(ext(13, &with_len16(&[0x08, 0x07, 0x04, 0x03, 0x08, 0x04])));
        exts.extend(ext(10, &with_len16(&[0x00, 0x1d, 0x00, 0x17]))); // groups: x25519, p256
        exts.extend(ext(11, &[1, 0])); // ec_point_formats: uncompressed
        hello.extend(with_len16(&exts));
        let mut handshake = vec![1u8]; // ClientHello
        let len = hello.len() as u32;
        handshake.extend(&len.to_be_bytes()[1..]);
        handshake.extend(hello);
        let mut record = vec![22u8, 0x03, 0x01]; // handshake record
        record.extend(with_len16(&handshake));
        record
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        assert!(
            server_config(&missing, &missing)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
        // A key that is not the certificate's is refused.
        let out = network(dir.path());
        let a = out.join("orgs/OrgA/nodes/n0");
        let b = out.join("orgs/OrgB/nodes/n1");
        let e = server_config(&a.join("tls.crt"), &b.join("tls.key")).unwrap_err();
        assert!(e.to_string().contains("tls.key"), "{e}");
    }
}
