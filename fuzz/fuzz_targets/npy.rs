//! The .npy reader (features and labels) on arbitrary bytes, under a 64 MB memory limit.
#![no_main]

use bilevel::limits::MemoryLimit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = MemoryLimit::new(64 << 20);
    if let Ok(m) = bilevel::npy::read_matrix_from_bytes(data, "fuzz.npy", &limit) {
        assert!(m.nrows() * m.ncols() <= 8 << 20);
    }
    let _ = bilevel::data::read_labels_from_bytes(data, "fuzz.npy", &limit);
});
