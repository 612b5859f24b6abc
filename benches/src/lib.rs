//! sphr-bench: criterion micro-benchmarks (`benches/benches/*.rs`: ed25519 and CBOR, the
//! ledger's validation and commit, proxy re-encryption). Results with the machine and the
//! command are in `BENCHMARKS.md` at the repository root.
