//! libFuzzer driver for the `oci_manifest` target; the body (and what it checks) is
//! `kiln_fuzzing::TARGETS`' entry of that name, which CI also replays over `fuzz/corpus/oci_manifest/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (kiln_fuzzing::target("oci_manifest").expect("a known target").run)(data)
});
