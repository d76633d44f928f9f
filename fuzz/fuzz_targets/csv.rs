//! The CSV readers (numeric tables and label columns) on arbitrary bytes, under a 64 MB
//! memory limit.
#![no_main]

use bilevel::limits::MemoryLimit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = MemoryLimit::new(64 << 20);
    if let Ok(m) = bilevel::data::read_csv_from_bytes(data, "fuzz.csv", &limit) {
        assert!(m.nrows() > 0);
    }
    if let Ok((codes, names)) = bilevel::data::read_labels_from_bytes(data, "fuzz.csv", &limit)
        && let Some(n) = names
    {
        assert!(codes.iter().all(|&c| c < n.len()));
    }
});
