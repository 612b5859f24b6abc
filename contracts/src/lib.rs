//! sphr-contracts: native Rust contracts and the API they see.
//!
//! ```text
//!   endorser ──> Registry::get(name) ──> Contract::invoke(&mut dyn Ctx, function, args)
//!                                              |  get / put / delete / range (own namespace)
//!                                              |  caller(), tx_id(), tx_time(), emit()
//!                                              v
//!                                  Ctx (the node's simulator: records the read set and
//!                                       buffers the write set; nothing touches state yet)
//! ```
//!
//! Contracts are deterministic: they see no clock but the tx time, no randomness, and no I/O but
//! [`Ctx`]. Every endorsing node runs the same function on the same committed state and must get
//! byte-identical results, or the transaction fails its endorsement policy. Contracts never see
//! sled, libp2p or HTTP.

pub mod consent;
pub mod healthcare;
pub mod kv;

use std::collections::BTreeMap;
use std::sync::Arc;

use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::PublicKey;

/// Longest key a contract may use.
pub const MAX_KEY_LEN: usize = 512;
/// Largest value a contract may write.
pub const MAX_VALUE_LEN: usize = 256 * 1024;
/// Most entries one range read may return.
pub const MAX_RANGE_LEN: usize = 1000;
/// Most events one transaction may emit.
pub const MAX_EVENTS: usize = 16;

/// Key-value pairs returned by a range read.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Who is calling, from the creator's verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Subject id within the org.
    pub id: String,
    /// Organisation name.
    pub org: String,
    /// Role from the certificate.
    pub role: Role,
    /// The caller's ed25519 key.
    pub public_key: PublicKey,
    /// The caller's proxy re-encryption key, if the certificate carries one.
    pub pre_public_key: Option<Vec<u8>>,
}

/// Why a contract call failed. The message is returned to the client; it must never hold
/// patient data in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// No contract of that name is registered.
    #[error("unknown contract {0:?}")]
    UnknownContract(String),
    /// The contract has no such function.
    #[error("contract {contract} has no function {function:?}")]
    UnknownFunction { contract: String, function: String },
    /// The arguments are wrong in number or form.
    #[error("bad arguments: {0}")]
    BadArgs(String),
    /// The caller may not do this.
    #[error("access denied: {0}")]
    Denied(String),
    /// A key the function needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The function's business rule refused the call (e.g. insufficient balance, wrong status).
    #[error("refused: {0}")]
    Refused(String),
    /// A key, value, range or event is over its limit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The state could not be read (storage failure on the endorsing node).
    #[error("state unavailable: {0}")]
    State(String),
}

/// What a contract sees of the world.
///
/// Correctness requirements for implementations:
/// - `get` and `range` read committed state as of the simulation's start, overlaid with the
///   transaction's own earlier writes, and record every key read with its version (the read
///   set) so the committer can detect a conflict;
/// - `put` and `delete` only buffer writes (the write set); nothing is visible to others until
///   the transaction commits valid;
/// - keys are confined to the contract's own namespace: a contract cannot read or write another
///   contract's keys;
/// - the limits above are enforced with [`ContractError::Limit`].
pub trait Ctx {
    /// The value at `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError>;
    /// Deletes `key`.
    fn delete(&mut self, key: &[u8]) -> Result<(), ContractError>;
    /// Keys in `[start, end)` in key order, at most `limit` (capped at [`MAX_RANGE_LEN`]).
    fn range(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, ContractError>;
    /// The transaction's creator.
    fn caller(&self) -> &Caller;
    /// The transaction id.
    fn tx_id(&self) -> Hash32;
    /// The transaction time from the signed proposal (Unix milliseconds): the only clock.
    fn tx_time_ms(&self) -> u64;
    /// Emits an event delivered to listeners when the transaction commits valid.
    fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError>;
}

/// A native contract.
///
/// Correctness requirements: `invoke` is a pure function of (the state read through `ctx`,
/// the caller, the tx id and time, `function`, `args`): no clocks, randomness, threads, I/O or
/// global state. It must not panic on any argument bytes.
pub trait Contract: Send + Sync {
    /// The contract's name: its namespace in the world state and its name in genesis.
    fn name(&self) -> &'static str;
    /// The functions it offers (for help text and validation).
    fn functions(&self) -> &'static [&'static str];
    /// Whether `function` only reads (may be evaluated without ordering).
    fn is_query(&self, function: &str) -> bool;
    /// Runs `function` with `args` and returns its response payload.
    fn invoke(
        &self,
        ctx: &mut dyn Ctx,
        function: &str,
        args: &[Vec<u8>],
    ) -> Result<Vec<u8>, ContractError>;
}

/// The contracts a node runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    contracts: BTreeMap<String, Arc<dyn Contract>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every contract shipped with sphr.
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(kv::KvContract));
        r.register(Arc::new(consent::ConsentContract));
        r.register(Arc::new(healthcare::HealthcareContract));
        r
    }

    /// Adds a contract, replacing one of the same name.
    pub fn register(&mut self, c: Arc<dyn Contract>) {
        self.contracts.insert(c.name().to_string(), c);
    }

    /// The contract called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Contract>, ContractError> {
        self.contracts
            .get(name)
            .ok_or_else(|| ContractError::UnknownContract(name.to_string()))
    }

    /// The names of all registered contracts.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.contracts.keys().map(String::as_str)
    }
}

/// Checks that `args` has exactly `n` items.
pub fn expect_args(args: &[Vec<u8>], n: usize, usage: &str) -> Result<(), ContractError> {
    if args.len() != n {
        return Err(ContractError::BadArgs(format!(
            "expected {n} argument(s): {usage}; got {}",
            args.len()
        )));
    }
    Ok(())
}

/// An argument as UTF-8 text.
pub fn arg_str<'a>(args: &'a [Vec<u8>], i: usize, what: &str) -> Result<&'a str, ContractError> {
    let a = args
        .get(i)
        .ok_or_else(|| ContractError::BadArgs(format!("missing argument {what}")))?;
    std::str::from_utf8(a).map_err(|_| ContractError::BadArgs(format!("{what} is not UTF-8")))
}

/// An argument as a decimal unsigned integer.
pub fn arg_u64(args: &[Vec<u8>], i: usize, what: &str) -> Result<u64, ContractError> {
    arg_str(args, i, what)?
        .parse::<u64>()
        .map_err(|_| ContractError::BadArgs(format!("{what} must be a non-negative integer")))
}

#[cfg(test)]
pub(crate) mod test_ctx {
    //! An in-memory `Ctx` for unit tests of contracts only.
    use super::*;

    pub struct MemCtx {
        pub state: BTreeMap<Vec<u8>, Vec<u8>>,
        pub caller: Caller,
        pub events: Vec<(String, Vec<u8>)>,
    }

    impl MemCtx {
        pub fn new(role: Role) -> Self {
            let pk = sphr_crypto::keys::SecretKey::from_bytes(&[7; 32]).public_key();
            MemCtx {
                state: BTreeMap::new(),
                caller: Caller {
                    id: "tester".into(),
                    org: "TestOrg".into(),
                    role,
                    public_key: pk,
                    pre_public_key: None,
                },
                events: vec![],
            }
        }
    }

    impl Ctx for MemCtx {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
            Ok(self.state.get(key).cloned())
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ContractError> {
            self.state.insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), ContractError> {
            self.state.remove(key);
            Ok(())
        }
        fn range(
            &mut self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<KvPairs, ContractError> {
            Ok(self
                .state
                .range(start.to_vec()..end.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn caller(&self) -> &Caller {
            &self.caller
        }
        fn tx_id(&self) -> Hash32 {
            Hash32::ZERO
        }
        fn tx_time_ms(&self) -> u64 {
            0
        }
        fn emit(&mut self, name: &str, payload: &[u8]) -> Result<(), ContractError> {
            self.events.push((name.into(), payload.to_vec()));
            Ok(())
        }
    }
}
