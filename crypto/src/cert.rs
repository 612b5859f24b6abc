//! Certificates issued by an organisation's CA.
//!
//! ```text
//!   org CA key (ed25519, listed in genesis)
//!        | signs CBOR(CertificateBody)
//!        v
//!   Certificate { body: subject, org, role, ed25519 key, PRE key?, validity }, issuer signature
//! ```
//!
//! The issuer is named by the org: the verifier looks the org's CA key up in genesis and checks
//! the signature and the validity window. The body is CBOR-encoded deterministically, so the
//! signed bytes are the same on every node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::hash::{Hash32, sha256};
use crate::keys::{KeyError, PublicKey, SecretKey, Signature};

/// Longest subject or org name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Longest encoded PRE public key accepted (a GT element and a G2 point fit easily).
pub const MAX_PRE_KEY_LEN: usize = 1024;
/// Largest encoded certificate accepted.
pub const MAX_CERT_BYTES: usize = 2048;

/// What a certificate holder is in the network. The healthcare and consent contracts decide
/// access by role and org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An organisation's administrator.
    Admin,
    /// A node (peer, orderer) of an organisation.
    Node,
    /// A patient.
    Patient,
    /// A doctor.
    Doctor,
    /// A nurse.
    Nurse,
    /// A laboratory technician.
    Lab,
    /// An insurance officer.
    Insurer,
    /// A pharmacist.
    Pharmacist,
    /// An auditor, who may read audit trails.
    Auditor,
    /// A generic application client (load generators, integration services).
    Client,
}

impl Role {
    /// All roles, in declaration order.
    pub const ALL: [Role; 10] = [
        Role::Admin,
        Role::Node,
        Role::Patient,
        Role::Doctor,
        Role::Nurse,
        Role::Lab,
        Role::Insurer,
        Role::Pharmacist,
        Role::Auditor,
        Role::Client,
    ];

    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Node => "node",
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Lab => "lab",
            Role::Insurer => "insurer",
            Role::Pharmacist => "pharmacist",
            Role::Auditor => "auditor",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CertError::Invalid(format!("unknown role {s:?}")))
    }
}

/// What the CA signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    /// The holder's id, unique within its org (e.g. `alice`, `node0`).
    pub subject: String,
    /// The issuing organisation's name, as in genesis.
    pub org: String,
    /// The holder's role.
    pub role: Role,
    /// The holder's ed25519 key.
    pub public_key: PublicKey,
    /// The holder's proxy re-encryption public key (patients and those who receive sealed data).
    #[serde(with = "serde_bytes")]
    pub pre_public_key: Option<Vec<u8>>,
    /// Valid from (Unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

/// A certificate: a body and the org CA's signature over its CBOR encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The signed content.
    pub body: CertificateBody,
    /// The org CA's signature over `cbor(body)`.
    pub signature: Signature,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// A field is malformed (name too long, bad key, empty validity window).
    #[error("invalid certificate: {0}")]
    Invalid(String),
    /// The CA signature does not verify.
    #[error("certificate of {subject}@{org} is not signed by the CA of {org}")]
    BadIssuerSignature { subject: String, org: String },
    /// Used before `not_before`.
    #[error("certificate of {subject}@{org} is not valid before {not_before} (now {now})")]
    NotYetValid {
        subject: String,
        org: String,
        not_before: u64,
        now: u64,
    },
    /// Used at or after `not_after`.
    #[error("certificate of {subject}@{org} expired at {not_after} (now {now})")]
    Expired {
        subject: String,
        org: String,
        not_after: u64,
        now: u64,
    },
    /// Encoding failed.
    #[error("certificate encoding: {0}")]
    Encoding(String),
}

impl CertificateBody {
    /// Checks the fields' shapes (not the signature).
    pub fn check_shape(&self) -> Result<(), CertError> {
        for (what, v) in [("subject", &self.subject), ("org", &self.org)] {
            if v.is_empty() || v.len() > MAX_NAME_LEN {
                return Err(CertError::Invalid(format!(
                    "{what} must be 1 to {MAX_NAME_LEN} bytes"
                )));
            }
            if v.chars().any(|c| c.is_control() || c == '@') {
                return Err(CertError::Invalid(format!(
                    "{what} holds a control character or '@'"
                )));
            }
        }
        self.public_key
            .validate()
            .map_err(|e: KeyError| CertError::Invalid(e.to_string()))?;
        if let Some(k) = &self.pre_public_key
            && (k.is_empty() || k.len() > MAX_PRE_KEY_LEN)
        {
            return Err(CertError::Invalid(format!(
                "pre_public_key must be 1 to {MAX_PRE_KEY_LEN} bytes"
            )));
        }
        if self.not_before >= self.not_after {
            return Err(CertError::Invalid(
                "not_before must be earlier than not_after".into(),
            ));
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Result<Vec<u8>, CertError> {
        cbor::to_vec(self).map_err(|e| CertError::Encoding(e.to_string()))
    }
}

impl Certificate {
    /// The CA `ca` signs `body`.
    pub fn issue(ca: &SecretKey, body: CertificateBody) -> Result<Self, CertError> {
        body.check_shape()?;
        let signature = ca.sign(&body.signed_bytes()?);
        Ok(Certificate { body, signature })
    }

    /// Checks the shape, the CA signature under `ca_key`, and that `now` (Unix seconds) is
    /// inside the validity window.
    pub fn verify(&self, ca_key: &PublicKey, now: u64) -> Result<(), CertError> {
        self.verify_signature(ca_key)?;
        self.check_validity(now)
    }

    /// Checks the shape and the CA signature only.
    pub fn verify_signature(&self, ca_key: &PublicKey) -> Result<(), CertError> {
        self.body.check_shape()?;
        ca_key
            .verify(&self.body.signed_bytes()?, &self.signature)
            .map_err(|_| CertError::BadIssuerSignature {
                subject: self.body.subject.clone(),
                org: self.body.org.clone(),
            })
    }

    /// Checks that `now` is inside the validity window.
    pub fn check_validity(&self, now: u64) -> Result<(), CertError> {
        let b = &self.body;
        if now < b.not_before {
            return Err(CertError::NotYetValid {
                subject: b.subject.clone(),
                org: b.org.clone(),
                not_before: b.not_before,
                now,
            });
        }
        if now >= b.not_after {
            return Err(CertError::Expired {
                subject: b.subject.clone(),
                org: b.org.clone(),
                not_after: b.not_after,
                now,
            });
        }
        Ok(())
    }

    /// `subject@org`.
    pub fn name(&self) -> String {
        format!("{}@{}", self.body.subject, self.body.org)
    }

    /// The CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CertError> {
        cbor::to_vec(self).map_err(|e| CertError::Encoding(e.to_string()))
    }

    /// Decodes a certificate (at most [`MAX_CERT_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        cbor::from_slice(bytes, MAX_CERT_BYTES).map_err(|e| CertError::Encoding(e.to_string()))
    }

    /// SHA-256 of the encoding: a cache key for certificates already checked.
    pub fn fingerprint(&self) -> Result<Hash32, CertError> {
        Ok(sha256(&self.to_bytes()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pk: PublicKey) -> CertificateBody {
        CertificateBody {
            subject: "alice".into(),
            org: "HospitalOrg".into(),
            role: Role::Doctor,
            public_key: pk,
            pre_public_key: None,
            not_before: 100,
            not_after: 200,
        }
    }

    #[test]
    fn issue_and_verify() {
        let ca = SecretKey::generate().unwrap();
        let user = SecretKey::generate().unwrap();
        let cert = Certificate::issue(&ca, body(user.public_key())).unwrap();
        assert!(cert.verify(&ca.public_key(), 150).is_ok());
        assert!(matches!(
            cert.verify(&ca.public_key(), 99),
            Err(CertError::NotYetValid { .. })
        ));
        assert!(matches!(
            cert.verify(&ca.public_key(), 200),
            Err(CertError::Expired { .. })
        ));
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            cert.verify(&other.public_key(), 150),
            Err(CertError::BadIssuerSignature { .. })
        ));
        let mut forged = cert.clone();
        forged.body.role = Role::Admin;
        assert!(forged.verify(&ca.public_key(), 150).is_err());
        let back = Certificate::from_bytes(&cert.to_bytes().unwrap()).unwrap();
        assert_eq!(back, cert);
    }

    #[test]
    fn shapes_refused() {
        let ca = SecretKey::generate().unwrap();
        let user = SecretKey::generate().unwrap();
        let mut b = body(user.public_key());
        b.subject = "a@b".into();
        assert!(Certificate::issue(&ca, b).is_err());
        let mut b = body(user.public_key());
        b.not_after = b.not_before;
        assert!(Certificate::issue(&ca, b).is_err());
        assert_eq!("doctor".parse::<Role>().unwrap(), Role::Doctor);
        assert!("wizard".parse::<Role>().is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn arb_role() -> impl Strategy<Value = Role> {
        (0..Role::ALL.len()).prop_map(|i| Role::ALL[i])
    }

    proptest! {
        #[test]
        fn certificate_round_trip(subject in "[a-z][a-z0-9_-]{0,20}", org in "[A-Z][A-Za-z]{0,15}",
                                  role in arb_role(), seed in any::<[u8; 32]>(),
                                  pre in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..200)),
                                  nb in 0u64..1_000_000, len in 1u64..1_000_000) {
            let ca = SecretKey::from_bytes(&[9; 32]);
            let key = SecretKey::from_bytes(&seed);
            let body = CertificateBody {
                subject, org, role, public_key: key.public_key(), pre_public_key: pre,
                not_before: nb, not_after: nb + len,
            };
            let cert = Certificate::issue(&ca, body).unwrap();
            let back = Certificate::from_bytes(&cert.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(&back, &cert);
            prop_assert!(back.verify(&ca.public_key(), nb).is_ok());
            prop_assert_eq!(back.fingerprint().unwrap(), cert.fingerprint().unwrap());
        }

        #[test]
        fn garbage_certificates_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Certificate::from_bytes(&bytes);
        }
    }
}
