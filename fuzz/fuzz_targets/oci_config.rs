//! libFuzzer driver for the `oci_config` target; the body (and what it checks) is
//! `kiln_fuzzing::TARGETS`' entry of that name, which CI also replays over `fuzz/corpus/oci_config/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (kiln_fuzzing::target("oci_config").expect("a known target").run)(data)
});
