//! Inputs the fuzz targets (fuzz/, scripts/fuzz.sh) found to crash the readers, kept as
//! regression tests. Each must now give Ok or a clear error.

use bilevel::Error;
use bilevel::data::{read_csv_from_bytes, read_idx_from_bytes, read_labels_from_bytes};
use bilevel::limits::MemoryLimit;
use bilevel::npy::read_matrix_from_bytes;

/// The 64 MB limit the fuzz targets run under.
fn limit() -> MemoryLimit {
    MemoryLimit::new(64 << 20)
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::new();
    for ch in digits.chunks(4) {
        let mut n = 0u32;
        for (k, &d) in ch.iter().enumerate() {
            n |= u32::from(d) << (18 - 6 * k);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..ch.len()]);
    }
    out
}

/// Every reader on one input: none may panic.
fn all_readers(bytes: &[u8]) {
    let l = limit();
    let _ = read_matrix_from_bytes(bytes, "r.npy", &l);
    let _ = read_idx_from_bytes(bytes, "r.idx", &l);
    let _ = read_csv_from_bytes(bytes, "r.csv", &l);
    let _ = read_labels_from_bytes(bytes, "r.csv", &l);
}

#[test]
fn idx_zero_first_size_with_overflowing_item_size() {
    // idx target, crash-5d9441c2: 19 dimensions, the first 0 (so 0 values in all), the rest
    // 2^32 − 1: the values per item (the product of the rest) overflowed in `items()`.
    let bytes = b64(
        "AAAIEwAAAAAA//////////////////////8FAAAAAAAA/////wD//wAAAP///////////////////////2BggmL+////ZmZgZgZGAABK98Y=",
    );
    assert_eq!(&bytes[..4], &[0, 0, 8, 0x13]);
    let e = read_idx_from_bytes(&bytes, "crash.idx", &limit()).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    all_readers(&bytes);
}
