//! libFuzzer driver for the `dockerfile` target; the body (and what it checks) is
//! `kiln_fuzzing::TARGETS`' entry of that name, which CI also replays over `fuzz/corpus/dockerfile/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (kiln_fuzzing::target("dockerfile").expect("a known target").run)(data)
});
