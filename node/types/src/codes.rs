//! Validation codes: the committer's verdict on each transaction of a block.
//!
//! Invalid transactions stay in the block with their code and change no state.

use serde::{Deserialize, Serialize};

/// The verdict on one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationCode {
    /// Applied to the world state.
    Valid,
    /// A key it read changed since it was endorsed (or earlier in the same block).
    MvccReadConflict,
    /// Its endorsements do not satisfy the contract's endorsement policy.
    EndorsementPolicyFailure,
    /// The creator's signature over the proposal does not verify.
    BadSignature,
    /// An endorser's signature does not verify, or the endorser is not a node of its org.
    BadEndorsementSignature,
    /// A transaction with the same id is already committed or earlier in this block.
    DuplicateTxid,
    /// The creator's certificate is not issued by a genesis org CA, or is out of its validity.
    BadCreator,
    /// The transaction could not be decoded or is inconsistent (ids, hashes, namespaces).
    BadPayload,
    /// The proposal names another network.
    WrongNetwork,
    /// The proposal names a contract that genesis does not define.
    UnknownContract,
}

impl ValidationCode {
    /// All codes, in declaration order (for metrics).
    pub const ALL: [ValidationCode; 10] = [
        ValidationCode::Valid,
        ValidationCode::MvccReadConflict,
        ValidationCode::EndorsementPolicyFailure,
        ValidationCode::BadSignature,
        ValidationCode::BadEndorsementSignature,
        ValidationCode::DuplicateTxid,
        ValidationCode::BadCreator,
        ValidationCode::BadPayload,
        ValidationCode::WrongNetwork,
        ValidationCode::UnknownContract,
    ];

    /// The SCREAMING_SNAKE_CASE name, as in the API and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValidationCode::Valid => "VALID",
            ValidationCode::MvccReadConflict => "MVCC_READ_CONFLICT",
            ValidationCode::EndorsementPolicyFailure => "ENDORSEMENT_POLICY_FAILURE",
            ValidationCode::BadSignature => "BAD_SIGNATURE",
            ValidationCode::BadEndorsementSignature => "BAD_ENDORSEMENT_SIGNATURE",
            ValidationCode::DuplicateTxid => "DUPLICATE_TXID",
            ValidationCode::BadCreator => "BAD_CREATOR",
            ValidationCode::BadPayload => "BAD_PAYLOAD",
            ValidationCode::WrongNetwork => "WRONG_NETWORK",
            ValidationCode::UnknownContract => "UNKNOWN_CONTRACT",
        }
    }

    /// Whether the transaction was applied.
    pub fn is_valid(&self) -> bool {
        *self == ValidationCode::Valid
    }
}

impl std::fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
