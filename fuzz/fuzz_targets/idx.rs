//! The IDX reader (gzip or raw) on arbitrary bytes, under a 64 MB memory limit: a gzip bomb
//! must stop at the limit.
#![no_main]

use bilevel::limits::MemoryLimit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = MemoryLimit::new(64 << 20);
    if let Ok(a) = bilevel::data::read_idx_from_bytes(data, "fuzz.idx", &limit) {
        let _ = a.items();
        if a.len() <= 1 << 16 {
            let _ = a.to_f64();
        }
    }
});
