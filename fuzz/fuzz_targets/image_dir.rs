//! libFuzzer driver for the `image_dir` target; the body (and what it checks) is
//! `kiln_fuzzing::TARGETS`' entry of that name, which CI also replays over `fuzz/corpus/image_dir/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (kiln_fuzzing::target("image_dir").expect("a known target").run)(data)
});
