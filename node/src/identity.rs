//! Identities of users and nodes: a certificate issued by an org CA and its ed25519 key.
//!
//! ```text
//!   identity.json (mode 0600)
//!   {"certificate": "<hex CBOR Certificate>", "secret_key": "<hex 32-byte ed25519 seed>"}
//!        │ Identity::load: size limit, shape of the certificate, key matches certificate
//!        v
//!   Identity { cert, key } ──signs──> proposals (users), endorsements and batches (nodes)
//! ```
//!
//! The file is created with mode 0600 in one `open(2)` (`O_CREAT | O_EXCL`), so it is never
//! readable by others, even for an instant, and an existing identity is never overwritten.
//! Secret key bytes live only in buffers wiped on drop, and no `Debug` or log line prints them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sphr_crypto::cert::{CertError, Certificate};
use sphr_crypto::keys::{KeyError, PublicKey, SecretKey};
use sphr_crypto::pre::PreSecretKey;
use sphr_types::GenesisConfig;
use zeroize::Zeroizing;

/// Largest identity file accepted (a certificate is at most 2 KiB, hex doubles it).
pub const MAX_IDENTITY_FILE_BYTES: u64 = 64 * 1024;

/// The mode of every file holding a secret key.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Why an identity could not be loaded, saved or accepted.
///
/// What follows: the command or node start that needed the identity stops and prints the error,
/// which names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists already; identities are never overwritten.
    #[error("identity file {path} exists already; remove it first to replace it")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_IDENTITY_FILE_BYTES`].
    #[error("identity file {path} is {len} bytes, more than the {limit} bytes an identity takes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not the expected JSON, or a field is not valid hex.
    #[error("identity file {path}: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The certificate in the file is malformed.
    #[error("identity file {path}: bad certificate: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with the certificate.
        #[source]
        source: CertError,
    },
    /// The secret key in the file is malformed.
    #[error("identity file {path}: bad secret key: {source}")]
    SecretKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with the key.
        #[source]
        source: KeyError,
    },
    /// The secret key does not belong to the certificate.
    #[error(
        "identity {what}: the secret key's public key {key} is not the certificate's key {cert_key}"
    )]
    KeyMismatch {
        /// The file, or the certificate's name when there is no file.
        what: String,
        /// The public key of the secret key.
        key: PublicKey,
        /// The key in the certificate.
        cert_key: PublicKey,
    },
    /// The identity could not be encoded.
    #[error("encoding {0}")]
    Encoding(String),
    /// The certificate was not issued by a CA of the network, or is out of its validity window.
    #[error("identity {name} is not valid in network {network}: {why}")]
    NotInNetwork {
        /// `subject@org`.
        name: String,
        /// The network's name.
        network: String,
        /// Why.
        why: String,
    },
}

/// A certificate and the secret key of the public key it certifies.
///
/// The fields are public for the endorser and gateway, which sign with `key` and attach `cert`;
/// [`Identity::new`] and [`Identity::load`] check that they belong together.
#[derive(Clone)]
pub struct Identity {
    /// The certificate issued by the holder's org CA.
    pub cert: Certificate,
    /// The holder's ed25519 key: its public key is `cert.body.public_key`.
    pub key: SecretKey,
    /// The holder's proxy re-encryption key, when the certificate carries its public half
    /// (people who receive sealed data: patients, professionals). Nodes have none.
    pub pre: Option<PreSecretKey>,
}

/// The JSON on disk. `secret_key` is moved into a wiped buffer as soon as it is read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    certificate: String,
    secret_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pre_secret_key: Option<String>,
}

impl Identity {
    /// Pairs a certificate with its key, refusing a key that is not the certificate's.
    pub fn new(cert: Certificate, key: SecretKey) -> Result<Self, IdentityError> {
        let id = Identity {
            cert,
            key,
            pre: None,
        };
        id.check_key(&id.cert.name())?;
        Ok(id)
    }

    /// Adds the proxy re-encryption secret key, refusing one whose public key is not the one
    /// in the certificate.
    pub fn with_pre(mut self, pre: PreSecretKey) -> Result<Self, IdentityError> {
        let want = self.cert.body.pre_public_key.as_deref();
        let got = pre.public_key().to_bytes();
        if want != Some(got.as_slice()) {
            return Err(IdentityError::Malformed {
                path: std::path::PathBuf::from(self.name()),
                why: "the proxy re-encryption key is not the one in the certificate".into(),
            });
        }
        self.pre = Some(pre);
        Ok(self)
    }

    /// `subject@org`.
    pub fn name(&self) -> String {
        self.cert.name()
    }

    /// The public key (the certificate's).
    pub fn public_key(&self) -> PublicKey {
        self.cert.body.public_key
    }

    fn check_key(&self, what: &str) -> Result<(), IdentityError> {
        let key = self.key.public_key();
        let cert_key = self.cert.body.public_key;
        if key != cert_key {
            return Err(IdentityError::KeyMismatch {
                what: what.to_string(),
                key,
                cert_key,
            });
        }
        Ok(())
    }

    /// Checks that the certificate was issued by the CA of its org in `genesis` and that
    /// `now_s` (Unix seconds) is inside its validity window.
    pub fn check_in_network(
        &self,
        genesis: &GenesisConfig,
        now_s: u64,
    ) -> Result<(), IdentityError> {
        let not_in = |why: String| IdentityError::NotInNetwork {
            name: self.name(),
            network: genesis.network.clone(),
            why,
        };
        let org = genesis
            .org(&self.cert.body.org)
            .ok_or_else(|| not_in(format!("no org named {:?}", self.cert.body.org)))?;
        self.cert
            .verify(&org.ca_key, now_s)
            .map_err(|e| not_in(e.to_string()))
    }

    /// Reads and checks an identity file: at most [`MAX_IDENTITY_FILE_BYTES`], the JSON shape,
    /// the certificate's shape, and that the secret key is the certificate's.
    ///
    /// A file that others may read is accepted with a warning (the key may have leaked).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let malformed = |why: String| IdentityError::Malformed {
            path: path.to_path_buf(),
            why,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.len() > MAX_IDENTITY_FILE_BYTES {
            return Err(IdentityError::TooLarge {
                path: path.to_path_buf(),
                len: meta.len(),
                limit: MAX_IDENTITY_FILE_BYTES,
            });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                target: "sphr::identity",
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "identity file is readable by other users; its secret key may have leaked",
            );
        }
        let mut bytes = Zeroizing::new(Vec::new());
        // One byte more than the limit, in case the file grew after the metadata was read.
        file.take(MAX_IDENTITY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_IDENTITY_FILE_BYTES {
            return Err(IdentityError::TooLarge {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
                limit: MAX_IDENTITY_FILE_BYTES,
            });
        }
        let parsed: IdentityFile = serde_json::from_slice(&bytes).map_err(|e| {
            malformed(format!(
                "not identity JSON {{\"certificate\": hex, \"secret_key\": hex}}: {e}"
            ))
        })?;
        let IdentityFile {
            certificate,
            secret_key,
            pre_secret_key,
        } = parsed;
        let pre_secret_key = pre_secret_key.map(Zeroizing::new);
        let secret_key = Zeroizing::new(secret_key);
        let cert_bytes = hex::decode(certificate.trim())
            .map_err(|e| malformed(format!("\"certificate\" is not hex: {e}")))?;
        let cert =
            Certificate::from_bytes(&cert_bytes).map_err(|source| IdentityError::Certificate {
                path: path.to_path_buf(),
                source,
            })?;
        cert.body
            .check_shape()
            .map_err(|source| IdentityError::Certificate {
                path: path.to_path_buf(),
                source,
            })?;
        let key = SecretKey::from_hex(&secret_key).map_err(|source| IdentityError::SecretKey {
            path: path.to_path_buf(),
            source,
        })?;
        let id = Identity {
            cert,
            key,
            pre: None,
        };
        id.check_key(&path.display().to_string())?;
        match pre_secret_key {
            None => Ok(id),
            Some(hex_key) => {
                let bytes = Zeroizing::new(
                    hex::decode(hex_key.trim())
                        .map_err(|_| malformed("\"pre_secret_key\" is not hex".into()))?,
                );
                let pre = PreSecretKey::from_bytes(&bytes)
                    .map_err(|e| malformed(format!("\"pre_secret_key\": {e}")))?;
                id.with_pre(pre).map_err(|_| {
                    malformed(
                        "\"pre_secret_key\" does not match the certificate's pre_public_key".into(),
                    )
                })
            }
        }
    }

    /// The identity file's bytes (JSON), in a buffer wiped on drop.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let cert_bytes = self
            .cert
            .to_bytes()
            .map_err(|e| IdentityError::Encoding(format!("certificate of {}: {e}", self.name())))?;
        let secret_hex = self.key.to_hex();
        #[derive(Serialize)]
        struct Out<'a> {
            certificate: String,
            secret_key: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pre_secret_key: Option<&'a str>,
        }
        let pre_hex = self
            .pre
            .as_ref()
            .map(|p| Zeroizing::new(hex::encode(p.to_bytes().as_slice())));
        let mut json = Zeroizing::new(
            serde_json::to_vec_pretty(&Out {
                certificate: hex::encode(cert_bytes),
                secret_key: secret_hex.as_str(),
                pre_secret_key: pre_hex.as_ref().map(|h| h.as_str()),
            })
            .map_err(|e| IdentityError::Encoding(format!("identity of {}: {e}", self.name())))?,
        );
        json.push(b'\n');
        Ok(json)
    }

    /// Writes the identity to a new file created with mode 0600. Refuses to overwrite an
    /// existing file; the parent directory must exist.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        self.check_key(&path.display().to_string())?;
        let json = self.to_json()?;
        write_new_file(path, &json, SECRET_FILE_MODE).map_err(|e| match e {
            e if e.kind() == std::io::ErrorKind::AlreadyExists => IdentityError::AlreadyExists {
                path: path.to_path_buf(),
            },
            source => IdentityError::Io {
                path: path.to_path_buf(),
                source,
            },
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.cert.name())
            .field("role", &self.cert.body.role)
            .field("public_key", &self.cert.body.public_key)
            .finish_non_exhaustive()
    }
}

/// Creates `path` (which must not exist) with `mode` from the start, writes `data` and syncs it
/// to disk. On a failed write the partial file is removed.
///
/// The mode is given to `open(2)` and set again on the open file, so a umask that would leave
/// the owner without write access does not change it, and no moment exists when the file has
/// wider permissions.
pub fn write_new_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Best effort: the write error is the one worth reporting.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_crypto::cert::{CertificateBody, Role};

    fn identity(ca: &SecretKey, seed: u8) -> Identity {
        let key = SecretKey::from_bytes(&[seed; 32]);
        let cert = Certificate::issue(
            ca,
            CertificateBody {
                subject: format!("user{seed}"),
                org: "Org1".into(),
                role: Role::Doctor,
                public_key: key.public_key(),
                pre_public_key: None,
                not_before: 10,
                not_after: 1_000,
            },
        )
        .unwrap();
        Identity::new(cert, key).unwrap()
    }

    #[test]
    fn save_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        let ca = SecretKey::from_bytes(&[1; 32]);
        let id = identity(&ca, 7);
        id.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.cert, id.cert);
        assert_eq!(back.key.public_key(), id.key.public_key());
        // Never overwritten.
        assert!(matches!(
            id.save(&path),
            Err(IdentityError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn mismatched_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        let ca = SecretKey::from_bytes(&[1; 32]);
        let id = identity(&ca, 7);
        let other = SecretKey::from_bytes(&[8; 32]);
        let json = serde_json::json!({
            "certificate": hex::encode(id.cert.to_bytes().unwrap()),
            "secret_key": other.to_hex().as_str(),
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let err = Identity::load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch { .. }));
        let msg = err.to_string();
        assert!(msg.contains("bad.json"), "{msg}");
        assert!(msg.contains("not the certificate's key"), "{msg}");
        assert!(Identity::new(id.cert.clone(), other).is_err());
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        for (content, want) in [
            ("not json", "not identity JSON"),
            (r#"{"certificate": "zz", "secret_key": "00"}"#, "not hex"),
            (
                r#"{"certificate": "00", "secret_key": "00", "extra": 1}"#,
                "unknown field",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let msg = Identity::load(&path).unwrap_err().to_string();
            assert!(msg.contains("x.json") && msg.contains(want), "{msg}");
        }
        std::fs::write(&path, vec![b' '; MAX_IDENTITY_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::TooLarge { .. })
        ));
        let missing = dir.path().join("missing.json");
        assert!(
            Identity::load(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.json")
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let ca = SecretKey::from_bytes(&[1; 32]);
        let id = identity(&ca, 7);
        let shown = format!("{id:?}");
        assert!(!shown.contains(id.key.to_hex().as_str()));
        assert!(shown.contains("user7@Org1"));
    }

    #[test]
    fn network_check_uses_the_org_ca() {
        use sphr_types::{BlockCutting, NodeConfig, OrgConfig, RaftTimings};
        let ca = SecretKey::from_bytes(&[1; 32]);
        let id = identity(&ca, 7);
        let g = GenesisConfig {
            network: "t".into(),
            created_ms: 0,
            orgs: vec![OrgConfig {
                name: "Org1".into(),
                ca_key: ca.public_key(),
            }],
            nodes: vec![NodeConfig {
                name: "n".into(),
                org: "Org1".into(),
                public_key: SecretKey::from_bytes(&[2; 32]).public_key(),
                api_addr: "127.0.0.1:1".into(),
                p2p_addr: "127.0.0.1:2".into(),
                consenter: true,
                raft_id: 1,
            }],
            block: BlockCutting::default(),
            raft: RaftTimings::default(),
            contracts: vec![],
        };
        assert!(id.check_in_network(&g, 500).is_ok());
        assert!(id.check_in_network(&g, 5_000).is_err());
        let mut other = g.clone();
        other.orgs[0].ca_key = SecretKey::from_bytes(&[3; 32]).public_key();
        assert!(id.check_in_network(&other, 500).is_err());
    }
}
