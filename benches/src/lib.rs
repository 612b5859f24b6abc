//! sphr-bench: criterion micro-benchmarks (`benches/benches/*.rs`: ed25519 and CBOR, the
//! ledger's validation and commit, proxy re-encryption) and the PTE-like load generator
//! `sphr-pte` ([`pte`], binary in `src/bin/sphr-pte.rs`). Results with the machine and the
//! command are in `BENCHMARKS.md` at the repository root.

pub mod pte;
