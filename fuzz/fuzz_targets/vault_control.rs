//! Vault control and tag files and the value parsers behind ingestion
//! (node/vault/src/{control,tags,infer,model}.rs), and the stored bundle decoders. The first
//! byte picks the decoder, the rest is its input.
//!
//! Properties: what parses is consistent (a tag normalises to a fixed point, the type inferred
//! for a value parses that value, a date prints as what it parses back to), and bundles round
//! trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sphr_vault::{
    Bundle, ColumnControl, ColumnType, Date, HubControl, Limits, SatelliteName, SealedBundle,
    normalise_business_key, normalise_tag, parse_tag_file,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, b)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    match sel % 6 {
        0 => {
            if let Ok(c) = ColumnControl::parse("columns.csv", b, &limits) {
                assert!(c.entries().len() <= limits.max_columns);
            }
        }
        1 => {
            let _ = HubControl::parse("hubs.csv", b, &limits);
        }
        2 => {
            if let Ok(map) = parse_tag_file("tags.csv", b, &limits) {
                for tag in map.keys() {
                    let n = normalise_tag(tag).expect("a parsed tag is a tag");
                    assert_eq!(&n, tag, "tags come out normalised");
                }
            }
        }
        3 => {
            let Ok(s) = std::str::from_utf8(b) else {
                return;
            };
            if let Ok(t) = normalise_tag(s) {
                assert_eq!(
                    normalise_tag(&t).as_ref().ok(),
                    Some(&t),
                    "normalise_tag is idempotent"
                );
            }
            let k = normalise_business_key(s);
            assert_eq!(
                normalise_business_key(&k),
                k,
                "normalise_business_key is idempotent"
            );
            if let Ok(name) = SatelliteName::parse(s) {
                assert_eq!(SatelliteName::parse(name.as_str()).ok(), Some(name.clone()));
                let _ = name.hub();
            }
        }
        4 => {
            let Ok(s) = std::str::from_utf8(b) else {
                return;
            };
            let v = s.trim();
            if v.is_empty() {
                return;
            }
            let t = ColumnType::of(v);
            assert!(
                t.parse(v).is_some(),
                "{v:?} inferred as {t} does not parse as {t}"
            );
            if let Some(d) = Date::parse(v) {
                assert_eq!(
                    Date::parse(&d.to_string()),
                    Some(d),
                    "date display round trip"
                );
                let (y, m, dd) = d.ymd();
                assert_eq!(Date::new(y, m, dd), Some(d));
            }
        }
        _ => {
            if let Ok(sealed) = SealedBundle::from_bytes(b, 1 << 20) {
                let bytes = sealed.to_bytes().expect("encode");
                assert_eq!(
                    SealedBundle::from_bytes(&bytes, usize::MAX).expect("own"),
                    sealed
                );
            }
            if let Ok(bundle) = Bundle::from_cbor(b, 1 << 20) {
                let bytes = bundle.to_cbor().expect("encode");
                assert_eq!(Bundle::from_cbor(&bytes, usize::MAX).expect("own"), bundle);
                let _ = bundle.to_json();
            }
        }
    }
});
