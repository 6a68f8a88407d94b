//! kiln's build-cache document (`--cache-from`): parsed against the layer count of the
//! document itself and of an image (inline caches); what parses survives serialization.

use kiln_engine::fuzzing::{CacheConfig, parse_key};

pub fn document(data: &[u8]) {
    for layers in [None, Some(0), Some(3)] {
        let Ok(doc) = CacheConfig::parse(data, layers) else {
            continue;
        };
        let again = CacheConfig::parse(&doc.to_bytes(), layers)
            .unwrap_or_else(|e| panic!("a parsed cache document does not read back: {e}"));
        assert_eq!(again, doc);
        let available = layers.unwrap_or(doc.layers.len());
        for record in &doc.records {
            assert!(record.chain.iter().all(|&i| (i as usize) < available));
            assert!(record.keys.iter().all(|k| parse_key(k).is_some()));
        }
    }
}
