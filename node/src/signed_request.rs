//! Signed HTTP requests: a caller proves who it is to a node's API with its sphr identity (the
//! certificate its org CA issued and its ed25519 key), on top of TLS.
//!
//! ```text
//!  client: sign(identity, network id, method, path, now)
//!     x-sphr-certificate: hex(CBOR certificate)
//!     x-sphr-timestamp:   Unix ms, decimal
//!     x-sphr-signature:   hex(ed25519 over  "sphr-signed-request/v1" ‖ network id (32)
//!                                            ‖ len ‖ METHOD ‖ len ‖ path?query ‖ timestamp (u64 BE))
//!  node:   verify(headers, method, path, trust, now) -> the caller's Certificate
//!     1. the three headers present, each well formed and within its size limit
//!     2. |timestamp - now| <= trust.max_skew_ms
//!     3. the certificate's org is in genesis, its CA signed it, now is inside its validity window
//!     4. the signature verifies (ZIP-215, `sphr_crypto::keys`) under the certificate's key
//! ```
//!
//! The signed message binds the network id (a request for one network is refused by another),
//! the method and the path with its query string (a signature for one resource does not open
//! another), and the time (a captured request is only good within the skew window; TLS keeps
//! requests from being captured in the first place). The body is not signed: the routes that
//! use this scheme are reads (`GET`), whose answer is for the caller only.
//!
//! Used by `GET /v1/bundles/{id}` (sealed SPHR bundles for their grantee) and meant for any
//! route that must know its caller: call [`verify`] first, then decide on the certificate's
//! org, subject and role. Errors name what was wrong and never echo header values.

use axum::http::HeaderMap;
use sphr_crypto::cert::Certificate;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::Signature;
use sphr_types::GenesisConfig;
use std::sync::Arc;

use crate::identity::Identity;

/// Header carrying the caller's certificate: hex of its CBOR encoding.
pub const HEADER_CERTIFICATE: &str = "x-sphr-certificate";
/// Header carrying the signing time: Unix milliseconds, decimal.
pub const HEADER_TIMESTAMP: &str = "x-sphr-timestamp";
/// Header carrying the signature: 128 hex characters (ed25519).
pub const HEADER_SIGNATURE: &str = "x-sphr-signature";
/// Default largest difference between the signing time and the node's clock: 5 minutes, as
/// proposals allow.
pub const DEFAULT_MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// Longest path (with its query string) that is signed or verified.
pub const MAX_PATH_LEN: usize = 4096;
/// Domain separation of the signed message.
const DOMAIN: &[u8] = b"sphr-signed-request/v1";

/// Why a signed request was refused. [`SignedRequestError::kind`] gives a short stable name for
/// metrics and error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    /// A header of the scheme is missing: the request is not signed.
    #[error("the request is not signed: header {0} is missing")]
    Missing(&'static str),
    /// A header is present but not well formed.
    #[error("header {header}: {why}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong (never the value).
        why: &'static str,
    },
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    PathTooLong,
    /// The signing time is too far from the node's clock.
    #[error(
        "the request was signed at {signed_ms} ms, {skew_ms} ms away from this node's clock (at most {max_ms} ms)"
    )]
    ClockSkew {
        /// The signing time.
        signed_ms: u64,
        /// The difference.
        skew_ms: u64,
        /// The most allowed.
        max_ms: u64,
    },
    /// The certificate's org is not in this network.
    #[error("the certificate's organisation is not in this network")]
    UnknownOrg,
    /// The certificate is malformed, not signed by its org's CA, or outside its validity window.
    #[error("the certificate is not valid here: {0}")]
    BadCertificate(String),
    /// The signature does not verify under the certificate's key.
    #[error("the signature does not verify for this method, path, time and network")]
    BadSignature,
    /// The identity could not sign (encoding failed).
    #[error("signing the request: {0}")]
    Sign(String),
}

impl SignedRequestError {
    /// A short stable name: `unsigned`, `malformed`, `clock_skew`, `unknown_org`,
    /// `bad_certificate`, `bad_signature`, `sign`.
    pub fn kind(&self) -> &'static str {
        match self {
            SignedRequestError::Missing(_) => "unsigned",
            SignedRequestError::Malformed { .. } | SignedRequestError::PathTooLong => "malformed",
            SignedRequestError::ClockSkew { .. } => "clock_skew",
            SignedRequestError::UnknownOrg => "unknown_org",
            SignedRequestError::BadCertificate(_) => "bad_certificate",
            SignedRequestError::BadSignature => "bad_signature",
            SignedRequestError::Sign(_) => "sign",
        }
    }
}

/// What a node trusts: the network id and the org CAs of genesis, and the clock skew allowed.
#[derive(Clone, Debug)]
pub struct Trust {
    network_id: Hash32,
    genesis: Arc<GenesisConfig>,
    max_skew_ms: u64,
}

impl Trust {
    /// Trusts the org CAs of `genesis` for network `network_id`, with
    /// [`DEFAULT_MAX_SKEW_MS`].
    pub fn new(genesis: Arc<GenesisConfig>, network_id: Hash32) -> Trust {
        Trust {
            network_id,
            genesis,
            max_skew_ms: DEFAULT_MAX_SKEW_MS,
        }
    }

    /// The same trust with another clock skew bound.
    pub fn with_max_skew_ms(mut self, max_skew_ms: u64) -> Trust {
        self.max_skew_ms = max_skew_ms;
        self
    }

    /// The network id requests must be signed for.
    pub fn network_id(&self) -> Hash32 {
        self.network_id
    }
}

/// The bytes that are signed.
pub fn signed_message(network_id: &Hash32, method: &str, path: &str, timestamp_ms: u64) -> Vec<u8> {
    let method = method.to_ascii_uppercase();
    let mut m = Vec::with_capacity(DOMAIN.len() + 32 + 16 + method.len() + path.len() + 8);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(network_id.as_bytes());
    m.extend_from_slice(&(method.len() as u64).to_be_bytes());
    m.extend_from_slice(method.as_bytes());
    m.extend_from_slice(&(path.len() as u64).to_be_bytes());
    m.extend_from_slice(path.as_bytes());
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

/// The headers that sign `method path` (origin form, query string included) as `identity` for
/// network `network_id` at `now_ms`.
pub fn sign(
    identity: &Identity,
    network_id: Hash32,
    method: &str,
    path: &str,
    now_ms: u64,
) -> Result<Vec<(&'static str, String)>, SignedRequestError> {
    if path.len() > MAX_PATH_LEN {
        return Err(SignedRequestError::PathTooLong);
    }
    let cert = identity
        .cert
        .to_bytes()
        .map_err(|e| SignedRequestError::Sign(e.to_string()))?;
    let sig = identity
        .key
        .sign(&signed_message(&network_id, method, path, now_ms));
    Ok(vec![
        (HEADER_CERTIFICATE, hex::encode(cert)),
        (HEADER_TIMESTAMP, now_ms.to_string()),
        (HEADER_SIGNATURE, hex::encode(sig.0)),
    ])
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignedRequestError> {
    let v = headers.get(name).ok_or(SignedRequestError::Missing(name))?;
    v.to_str().map_err(|_| SignedRequestError::Malformed {
        header: name,
        why: "not visible ASCII",
    })
}

/// Checks a signed request (see the module docs) and returns the caller's certificate.
/// `path` is the request's origin-form target, query string included.
pub fn verify(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    trust: &Trust,
    now_ms: u64,
) -> Result<Certificate, SignedRequestError> {
    if path.len() > MAX_PATH_LEN {
        return Err(SignedRequestError::PathTooLong);
    }
    let cert_hex = header(headers, HEADER_CERTIFICATE)?;
    let ts = header(headers, HEADER_TIMESTAMP)?;
    let sig_hex = header(headers, HEADER_SIGNATURE)?;
    if cert_hex.len() > 2 * sphr_crypto::cert::MAX_CERT_BYTES {
        return Err(SignedRequestError::Malformed {
            header: HEADER_CERTIFICATE,
            why: "longer than a certificate",
        });
    }
    let cert_bytes = hex::decode(cert_hex).map_err(|_| SignedRequestError::Malformed {
        header: HEADER_CERTIFICATE,
        why: "not hex",
    })?;
    let cert = Certificate::from_bytes(&cert_bytes).map_err(|_| SignedRequestError::Malformed {
        header: HEADER_CERTIFICATE,
        why: "not a CBOR certificate",
    })?;
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignedRequestError::Malformed {
            header: HEADER_TIMESTAMP,
            why: "not a decimal number of milliseconds",
        });
    }
    let signed_ms: u64 = ts.parse().map_err(|_| SignedRequestError::Malformed {
        header: HEADER_TIMESTAMP,
        why: "not a decimal number of milliseconds",
    })?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut sig).map_err(|_| SignedRequestError::Malformed {
        header: HEADER_SIGNATURE,
        why: "not 128 hex characters",
    })?;
    let skew_ms = signed_ms.abs_diff(now_ms);
    if skew_ms > trust.max_skew_ms {
        return Err(SignedRequestError::ClockSkew {
            signed_ms,
            skew_ms,
            max_ms: trust.max_skew_ms,
        });
    }
    let org = trust
        .genesis
        .org(&cert.body.org)
        .ok_or(SignedRequestError::UnknownOrg)?;
    cert.verify(&org.ca_key, now_ms / 1000)
        .map_err(|e| SignedRequestError::BadCertificate(e.to_string()))?;
    cert.body
        .public_key
        .verify(
            &signed_message(&trust.network_id, method, path, signed_ms),
            &Signature(sig),
        )
        .map_err(|_| SignedRequestError::BadSignature)?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;
    use sphr_crypto::cert::{CertificateBody, Role};
    use sphr_crypto::keys::SecretKey;
    use sphr_types::OrgConfig;

    const NOW: u64 = 1_700_000_000_000;

    fn setup() -> (Trust, Identity, SecretKey) {
        let ca = SecretKey::generate().unwrap();
        let key = SecretKey::generate().unwrap();
        let cert = Certificate::issue(
            &ca,
            CertificateBody {
                subject: "doctor1".into(),
                org: "HospA".into(),
                role: Role::Doctor,
                public_key: key.public_key(),
                pre_public_key: None,
                not_before: NOW / 1000 - 10,
                not_after: NOW / 1000 + 3600,
            },
        )
        .unwrap();
        let genesis = GenesisConfig {
            network: "t".into(),
            created_ms: 0,
            orgs: vec![OrgConfig {
                name: "HospA".into(),
                ca_key: ca.public_key(),
            }],
            nodes: vec![],
            block: Default::default(),
            raft: Default::default(),
            contracts: vec![],
        };
        let trust = Trust::new(Arc::new(genesis), Hash32([7; 32]));
        (trust, Identity::new(cert, key).unwrap(), ca)
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn round_trip() {
        let (trust, id, _) = setup();
        let h = headers(&sign(&id, trust.network_id(), "GET", "/v1/bundles/ab", NOW).unwrap());
        let cert = verify(&h, "GET", "/v1/bundles/ab", &trust, NOW + 1000).unwrap();
        assert_eq!(cert, id.cert);
    }

    #[test]
    fn refusals() {
        let (trust, id, _) = setup();
        let good = sign(&id, trust.network_id(), "GET", "/v1/bundles/ab", NOW).unwrap();
        let h = headers(&good);
        let kind = |r: Result<Certificate, SignedRequestError>| r.unwrap_err().kind();
        // Another path, method, network, or a time outside the window.
        assert_eq!(
            kind(verify(&h, "GET", "/v1/bundles/ac", &trust, NOW)),
            "bad_signature"
        );
        assert_eq!(
            kind(verify(&h, "POST", "/v1/bundles/ab", &trust, NOW)),
            "bad_signature"
        );
        let other = Trust::new(trust.genesis.clone(), Hash32([8; 32]));
        assert_eq!(
            kind(verify(&h, "GET", "/v1/bundles/ab", &other, NOW)),
            "bad_signature"
        );
        assert_eq!(
            kind(verify(
                &h,
                "GET",
                "/v1/bundles/ab",
                &trust,
                NOW + DEFAULT_MAX_SKEW_MS + 1
            )),
            "clock_skew"
        );
        // A header missing or malformed.
        for missing in [HEADER_CERTIFICATE, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut h = h.clone();
            h.remove(missing);
            assert_eq!(
                kind(verify(&h, "GET", "/v1/bundles/ab", &trust, NOW)),
                "unsigned"
            );
        }
        let mut bad = h.clone();
        bad.insert(HEADER_SIGNATURE, HeaderValue::from_static("zz"));
        assert_eq!(
            kind(verify(&bad, "GET", "/v1/bundles/ab", &trust, NOW)),
            "malformed"
        );
        let mut bad = h.clone();
        bad.insert(HEADER_TIMESTAMP, HeaderValue::from_static("-5"));
        assert_eq!(
            kind(verify(&bad, "GET", "/v1/bundles/ab", &trust, NOW)),
            "malformed"
        );
        // A certificate from a CA not in genesis.
        let rogue_ca = SecretKey::generate().unwrap();
        let mut body = id.cert.body.clone();
        body.org = "Rogue".into();
        let rogue = Identity::new(
            Certificate::issue(&rogue_ca, body.clone()).unwrap(),
            id.key.clone(),
        )
        .unwrap();
        let h = headers(&sign(&rogue, trust.network_id(), "GET", "/x", NOW).unwrap());
        assert_eq!(kind(verify(&h, "GET", "/x", &trust, NOW)), "unknown_org");
        // A certificate of a known org signed by another CA.
        body.org = "HospA".into();
        let forged =
            Identity::new(Certificate::issue(&rogue_ca, body).unwrap(), id.key.clone()).unwrap();
        let h = headers(&sign(&forged, trust.network_id(), "GET", "/x", NOW).unwrap());
        assert_eq!(
            kind(verify(&h, "GET", "/x", &trust, NOW)),
            "bad_certificate"
        );
        // Someone else's certificate with one's own key.
        let thief = SecretKey::generate().unwrap();
        let mut stolen = sign(&id, trust.network_id(), "GET", "/x", NOW).unwrap();
        let sig = thief.sign(&signed_message(&trust.network_id(), "GET", "/x", NOW));
        stolen[2].1 = hex::encode(sig.0);
        assert_eq!(
            kind(verify(&headers(&stolen), "GET", "/x", &trust, NOW)),
            "bad_signature"
        );
    }
}
