//! Node configuration (`NodeConfig::parse`, `validate`): `node.toml`. Parsed, validated (the
//! listen addresses, limits and the tracing filter; the file checks look at paths that do not
//! exist) and round-tripped through TOML.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sphr_node::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut cfg) = NodeConfig::parse(text, Path::new("node.toml")) else {
        return;
    };
    let again = toml::to_string(&cfg).expect("a parsed config must serialise as TOML");
    let back = NodeConfig::parse(&again, Path::new("again.toml"))
        .unwrap_or_else(|e| panic!("re-serialised config refused: {e}\n{again}"));
    assert_eq!(back, cfg, "config TOML round trip");
    // Keep `validate`'s file checks off the real filesystem: resolve every relative path under
    // a directory that does not exist. (Absolute paths stay as written; `is_file` only stats.)
    cfg.resolve_paths(Path::new("/nonexistent-sphr-fuzz"));
    let _ = cfg.validate();
    let _ = cfg.api_listen();
});
