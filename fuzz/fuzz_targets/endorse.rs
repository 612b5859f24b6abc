//! The endorser's whole path (`Endorser::endorse`: decode, network id, creator certificate
//! under its org CA, signature, clock, contract, simulation, signing), then the committer's
//! validation of the transaction it endorsed, on an in-memory state that carries over from one
//! step to the next.
//!
//! A random signed proposal never verifies, so most steps are built: the fuzzer picks the
//! creator from a fixed cast (`sphr_fuzz::net`), the contract, the function, the arguments and
//! the nonce, and the step is signed with the creator's real key; this reaches the contracts'
//! argument decoders with hostile arguments. Other steps hand raw bytes to the endorser.
//!
//! Property: a transaction the endorser signed, committed at once on the state it was
//! simulated on, is VALID (or a DUPLICATE_TXID of one committed before): endorser and committer
//! agree on every rule they share.
#![no_main]

use std::sync::{Arc, LazyLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;
use sphr_contracts::Registry;
use sphr_crypto::hash::Hash32;
use sphr_fuzz::net::{MemState, NET, NOW_MS, apply};
use sphr_ledger::Validator;
use sphr_node::endorser::Endorser;
use sphr_node::identity::Identity;
use sphr_types::{
    BlockHeader, Proposal, ProposalHeader, SignedProposal, Transaction, ValidationCode,
};

static ENDORSER: LazyLock<Endorser> = LazyLock::new(|| {
    let node = NET.net.node(0, 0);
    let identity = Identity::new(node.cert.clone(), node.key.clone()).expect("node identity");
    Endorser::new(
        Arc::new(NET.net.genesis.clone()),
        NET.network_id(),
        Registry::with_builtin(),
        identity,
    )
});

/// Functions of the built-in contracts (kv, consent, healthcare), so that most steps reach a
/// function's body. The contract is picked apart, so a function also meets the wrong contract.
const FUNCTIONS: &[&str] = &[
    "put",
    "get",
    "delete",
    "transfer",
    "registerHospital",
    "registerStaff",
    "removeStaff",
    "registerPatient",
    "createRule",
    "revokeRule",
    "listRules",
    "requestAccess",
    "getRequest",
    "getAuditTrail",
    "deliverBundleKey",
    "getBundleKeys",
    "getLineage",
    "getHospital",
    "requestAppointment",
    "getAllAppointment",
    "acceptAppointment",
    "rejectAppointment",
    "getAppointmentStatus",
    "generatePrescription",
    "generateBillAndUpdatePrescriptionOthers",
    "generateBillAndUpdatePrescriptionDoctor",
    "getPendingPaymentRequests",
    "registerInsurance",
    "getInsuranceRegistrationRequests",
    "registerInsuranceRequestStatus",
    "acceptInsuranceRegistrationRequest",
    "getBillStatus",
    "getBillStatusPatient",
    "approvePaymentRequest",
    "getBillStatusInsurance",
    "getInsurancePaymentRequests",
    "payInsurancePaymentRequests",
    "payBill",
    "confirmBillPayment",
    "markPrescriptionPaid",
    "getPrescriptionPatient",
    "requestPrescriptionOthers",
    "allowPrescriptionOthers",
    "getPrescriptionOthers",
    "getLabReports",
    "getOrgUsers",
    "registerUser",
];

#[derive(Arbitrary, Debug)]
enum Step {
    /// A proposal built from these fields and signed by the creator.
    Built {
        creator: u8,
        contract: u8,
        function: Function,
        args: Vec<Vec<u8>>,
        nonce: u8,
        skew_ms: i32,
        wrong_network: bool,
    },
    /// Raw signed proposal bytes.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Function {
    Known(u8),
    Other(String),
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut state = MemState::default();
    let mut validator = Validator::new(&NET.net.genesis, NET.network_id());
    let mut prev = NET.net.genesis_block.header.clone();
    for _ in 0..8 {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        let Some(sp) = build(step) else { continue };
        let Ok(e) = ENDORSER.endorse(&state, &sp, NOW_MS) else {
            continue;
        };
        // What the gateway does with an endorsement: assemble the transaction and order it.
        let payload: sphr_types::ResponsePayload =
            sphr_types::decode(&e.payload_bytes, sphr_types::MAX_RESPONSE_BYTES)
                .expect("own payload must decode");
        assert_eq!(payload, e.payload);
        assert_eq!(payload.tx_id, e.tx_id);
        let tx = Transaction {
            signed_proposal: sp,
            response: e.payload_bytes,
            endorsements: vec![e.endorsement],
        };
        let raw = tx.to_bytes().expect("encode tx");
        let header = BlockHeader {
            number: prev.number + 1,
            previous_hash: prev.hash(),
            data_hash: Hash32::ZERO,
            timestamp_ms: NOW_MS,
        };
        let checked = validator
            .validate(&header, &[raw], &state)
            .expect("in-memory store cannot fail");
        let code = checked.codes()[0];
        let was_committed = state.index.contains_key(&e.tx_id);
        match code {
            ValidationCode::Valid => assert!(!was_committed),
            ValidationCode::DuplicateTxid => assert!(was_committed),
            other => panic!(
                "the endorser signed {}.{} but the committer says {other:?}",
                e.proposal.contract, e.proposal.function
            ),
        }
        apply(&mut state, &checked);
        prev = header;
    }
});

fn build(step: Step) -> Option<SignedProposal> {
    match step {
        Step::Raw(bytes) => SignedProposal::from_bytes(&bytes).ok(),
        Step::Built {
            creator,
            contract,
            function,
            args,
            nonce,
            skew_ms,
            wrong_network,
        } => {
            let who = NET.person(creator);
            let contract = match contract % 3 {
                0 => "kv",
                1 => "consent",
                _ => "healthcare",
            };
            let function = match &function {
                Function::Known(i) => FUNCTIONS[usize::from(*i) % FUNCTIONS.len()],
                Function::Other(s) => s.as_str(),
            };
            let p = Proposal {
                header: ProposalHeader {
                    network_id: if wrong_network {
                        Hash32([1; 32])
                    } else {
                        NET.network_id()
                    },
                    creator: who.cert.clone(),
                    // Few nonces, so replays happen.
                    nonce: Hash32([nonce % 16; 32]),
                    timestamp_ms: NOW_MS.saturating_add_signed(i64::from(skew_ms)),
                },
                contract: contract.into(),
                function: function.into(),
                args: args.into_iter().take(70).map(ByteBuf::from).collect(),
            };
            p.sign(&who.key).ok()
        }
    }
}
