//! libFuzzer driver for the `image_archive` target; the body (and what it checks) is
//! `kiln_fuzzing::TARGETS`' entry of that name, which CI also replays over `fuzz/corpus/image_archive/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (kiln_fuzzing::target("image_archive").expect("a known target").run)(data)
});
