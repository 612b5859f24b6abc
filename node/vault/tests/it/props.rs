//! Proptest round trips of the stored and exported types; garbage gives errors, not panics.

use proptest::prelude::*;
use sphr_crypto::cbor::{from_slice, to_vec};
use sphr_crypto::hash::Hash32;
use sphr_vault::{
    BUNDLE_VERSION, Bundle, Date, Field, HubKind, HubRecord, HubRef, LinkRecord, SatKey, SatRecord,
    SatRow, SatelliteRows, SealedBundle, TagMap, Value, open_bundle, seal_bundle,
};

fn hash32() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn hub_kind() -> impl Strategy<Value = HubKind> {
    prop::sample::select(HubKind::ALL.to_vec())
}

fn date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=31).prop_filter_map("a real date", |(y, m, d)| Date::new(y, m, d))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        date().prop_map(Value::Date),
        ".{0,40}".prop_map(Value::Text),
    ]
}

fn fields() -> impl Strategy<Value = Vec<Field>> {
    proptest::collection::vec(
        ("[a-z_]{1,20}", value()).prop_map(|(name, value)| Field { name, value }),
        0..8,
    )
}

fn source() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}"
}

fn satellite() -> impl Strategy<Value = (HubKind, String)> {
    (hub_kind(), "[a-z0-9]{1,12}", "[a-z0-9]{1,12}")
        .prop_map(|(h, a, b)| (h, format!("sat_{}_{a}_{b}", h.as_str())))
}

fn bundle() -> impl Strategy<Value = Bundle> {
    let sats = proptest::collection::vec(
        (
            source(),
            satellite(),
            proptest::collection::vec(
                (hash32(), any::<u64>(), fields()).prop_map(|(parent, load_time_ms, fields)| {
                    SatRow {
                        parent,
                        load_time_ms,
                        fields,
                    }
                }),
                0..4,
            ),
        )
            .prop_map(|(source, (hub, satellite), rows)| SatelliteRows {
                source,
                satellite,
                hub,
                rows,
            }),
        0..4,
    );
    (
        hash32(),
        hash32(),
        ".{1,20}",
        proptest::collection::vec(source(), 0..3),
        proptest::collection::vec("[A-Z ]{1,10}", 0..3),
        proptest::collection::vec(".{0,12}", 0..3),
        any::<u64>(),
        sats,
    )
        .prop_map(
            |(id, patient, hospital, sources, tags, rule_ids, created_ms, satellites)| Bundle {
                version: BUNDLE_VERSION,
                id,
                patient,
                hospital,
                sources,
                tags,
                rule_ids,
                created_ms,
                satellites,
            },
        )
}

fn round_trip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = to_vec(v).unwrap();
    let back: T = from_slice(&bytes, 1 << 20).unwrap();
    assert_eq!(
        to_vec(&back).unwrap(),
        bytes,
        "re-encoding is byte-identical"
    );
    back
}

proptest! {
    #[test]
    fn stored_records_round_trip(
        kind in hub_kind(),
        bk in ".{0,30}",
        src in source(),
        t in any::<u64>(),
        id in any::<u64>(),
        refs in proptest::collection::vec((hub_kind(), hash32()), 0..5),
        parent in hash32(),
        link in proptest::option::of(hash32()),
        line in any::<u64>(),
        f in fields(),
    ) {
        let hub = HubRecord { kind, business_key: bk, record_source: src.clone(), load_time_ms: t, ingest_id: id };
        prop_assert_eq!(round_trip(&hub), hub);
        let link_rec = LinkRecord {
            hubs: refs.into_iter().map(|(kind, key)| HubRef { kind, key }).collect(),
            record_source: src,
            load_time_ms: t,
            ingest_id: id,
        };
        prop_assert_eq!(round_trip(&link_rec), link_rec);
        let sat = SatRecord { hub: kind, parent, link, load_time_ms: t, ingest_id: id, line, fields: f };
        prop_assert_eq!(round_trip(&sat), sat);
    }

    #[test]
    fn sat_keys_round_trip(patient in hash32(), src in source(), (_, sat) in satellite(), parent in hash32(), diff in hash32()) {
        let key = SatKey { patient, source: src, satellite: sat, parent, hash_diff: diff };
        prop_assert_eq!(SatKey::decode(&key.encode()).unwrap(), key);
    }

    #[test]
    fn tag_maps_round_trip(map in proptest::collection::btree_map("[A-Z]{1,8}", proptest::collection::btree_set("[a-z_]{1,20}", 1..4), 0..6)) {
        let map: TagMap = map;
        prop_assert_eq!(round_trip(&map), map);
    }

    #[test]
    fn bundles_round_trip_in_cbor(b in bundle()) {
        let bytes = b.to_cbor().unwrap();
        prop_assert_eq!(&bytes, &b.to_cbor().unwrap());
        let back = Bundle::from_cbor(&bytes, bytes.len()).unwrap();
        prop_assert_eq!(&back, &b);
        prop_assert_eq!(back.to_cbor().unwrap(), bytes);
    }

    #[test]
    fn sealed_bundles_round_trip(b in bundle()) {
        let (sealed, key) = seal_bundle(&b).unwrap();
        let bytes = sealed.to_bytes().unwrap();
        let back = SealedBundle::from_bytes(&bytes, bytes.len()).unwrap();
        prop_assert_eq!(&back, &sealed);
        prop_assert_eq!(open_bundle(&back, &key).unwrap(), b);
    }

    #[test]
    fn garbage_decodes_to_errors(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SatKey::decode(&bytes);
        let _ = Bundle::from_cbor(&bytes, 1 << 16);
        let _ = SealedBundle::from_bytes(&bytes, 1 << 16);
        let _ = from_slice::<SatRecord>(&bytes, 1 << 16);
        let _ = from_slice::<Date>(&bytes, 1 << 16);
        let sealed = SealedBundle { version: 1, id: Hash32([0; 32]), nonce: [0; 12], ciphertext: bytes };
        prop_assert!(open_bundle(&sealed, &[0; 32]).is_err());
    }
}
