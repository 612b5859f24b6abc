//! Network specifications (`GenesisSpec::from_toml_str`): the TOML `sphr-node genesis`
//! reads. Parsed and validated (no keys are made); what passes must survive a TOML round trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sphr_node::genesis::{GenesisSpec, MAX_SPEC_BYTES};

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_SPEC_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = GenesisSpec::from_toml_str(text, Path::new("fuzz.toml")) else {
        return;
    };
    let again = toml::to_string(&spec).expect("a valid spec must serialise as TOML");
    let back = GenesisSpec::from_toml_str(&again, Path::new("again.toml"))
        .unwrap_or_else(|e| panic!("re-serialised spec refused: {e}\n{again}"));
    assert_eq!(back, spec, "spec TOML round trip");
});
