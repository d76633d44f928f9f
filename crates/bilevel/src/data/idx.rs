//! The IDX format of (Fashion-)MNIST: a 4-byte magic (0, 0, type code, number of dimensions),
//! big-endian u32 sizes, then the values in row-major order. Files may be gzip-compressed
//! (detected by the gzip magic bytes, not the file name).

use crate::error::{Error, Result};
use crate::limits::{MemoryLimit, checked_product};
use std::io::{BufRead, Read};
use std::path::Path;

/// An IDX array: sizes, the type code and the raw big-endian payload.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Sizes, outermost first (for images: count, rows, columns).
    pub dims: Vec<usize>,
    /// Type code: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64.
    pub type_code: u8,
    payload: Vec<u8>,
}

fn type_size(code: u8) -> Option<usize> {
    match code {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

impl IdxArray {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.dims.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// True when the array holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of items (the first size) and the number of values per item.
    pub fn items(&self) -> (usize, usize) {
        match self.dims.split_first() {
            // The reader checked every partial product, but `dims` is public: never overflow.
            Some((n, rest)) => (*n, rest.iter().fold(1usize, |a, &d| a.saturating_mul(d))),
            None => (0, 0),
        }
    }

    /// Value `k` (row-major) as f64. Panics when `k >= self.len()`, like slice indexing.
    pub fn get(&self, k: usize) -> f64 {
        let b = &self.payload;
        match self.type_code {
            0x08 => f64::from(b[k]),
            0x09 => f64::from(b[k] as i8),
            0x0B => f64::from(i16::from_be_bytes([b[2 * k], b[2 * k + 1]])),
            0x0C => f64::from(i32::from_be_bytes(
                b[4 * k..4 * k + 4].try_into().expect("4 bytes"),
            )),
            0x0D => f64::from(f32::from_be_bytes(
                b[4 * k..4 * k + 4].try_into().expect("4 bytes"),
            )),
            _ => f64::from_be_bytes(b[8 * k..8 * k + 8].try_into().expect("8 bytes")),
        }
    }

    /// All values as f64, row-major.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|k| self.get(k)).collect()
    }

    /// Parses an IDX array from bytes (already decompressed). `path` names the source in
    /// errors. The bytes are already in memory, so no memory limit applies.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        parse_stream(
            bytes,
            Some(bytes.len() as u64),
            &name,
            &MemoryLimit::new(u64::MAX),
            false,
        )
    }
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Parses an IDX stream. `raw_len` is the stream's length when known (raw files: checked
/// against the header before anything is allocated); a gzip stream is read only as far as the
/// header's size plus one byte, so a gzip bomb costs no more than the budget allows.
fn parse_stream(
    mut r: impl Read,
    raw_len: Option<u64>,
    name: &str,
    limit: &MemoryLimit,
    gz: bool,
) -> Result<IdxArray> {
    let e = |reason: String| Error::File {
        path: name.to_string(),
        reason,
    };
    let io = |x: std::io::Error| {
        if gz {
            e(format!(
                "corrupt or truncated gzip stream ({x}); download or install the file again"
            ))
        } else {
            e(format!("cannot read ({x})"))
        }
    };
    let mut magic = [0u8; 4];
    let got = read_full(&mut r, &mut magic).map_err(io)?;
    if got < 4 {
        return Err(e(format!(
            "not an IDX file: {got} bytes, shorter than the 4-byte header"
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(e(format!(
            "not an IDX file: the magic number must start with two zero bytes, found {:#04x} {:#04x} (corrupt file or wrong format)",
            magic[0], magic[1]
        )));
    }
    let code = magic[2];
    let size = type_size(code).ok_or_else(|| {
        e(format!("corrupt IDX header: unknown type code {code:#04x} (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)"))
    })?;
    let nd = magic[3] as usize;
    if nd == 0 {
        return Err(e("corrupt IDX header: zero dimensions".into()));
    }
    let mut sizes = vec![0u8; 4 * nd];
    let got = read_full(&mut r, &mut sizes).map_err(io)?;
    if got < sizes.len() {
        return Err(e(format!(
            "truncated IDX file: the header declares {nd} dimensions but the file ends after {} bytes",
            4 + got
        )));
    }
    let dims64: Vec<u64> = sizes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let what = format!("the IDX array in {name}");
    let driver = format!("the sizes {dims64:?} in the header of {name}");
    // With a zero among the sizes the product is 0 whatever the others are, but the values per
    // item (the product of the sizes after the first) must still fit: check it with zeros as 1.
    let nonzero: Vec<u64> = dims64.iter().map(|&d| d.max(1)).collect();
    checked_product(&what, &nonzero, &driver)?;
    let count = checked_product(&what, &dims64, &driver)?;
    let count = checked_product(&what, &[count, size as u64], &driver)?;
    let dims: Vec<usize> = dims64.iter().map(|&d| d as usize).collect();
    let head = 4 + 4 * nd as u64;
    if let Some(len) = raw_len {
        let have = len.saturating_sub(head);
        if have < count {
            return Err(e(format!(
                "truncated IDX file: the header promises {dims:?} values ({count} bytes of data), the file holds {have}; download or install it again"
            )));
        }
        if have > count {
            return Err(e(format!(
                "corrupt IDX file: {} bytes of data beyond the {dims:?} values the header declares",
                have - count
            )));
        }
    }
    limit.check(&what, count, &driver)?;
    let mut payload = vec![0u8; count as usize];
    let got = read_full(&mut r, &mut payload).map_err(io)?;
    if (got as u64) < count {
        return Err(e(format!(
            "truncated IDX file: the header promises {dims:?} values ({count} bytes of data), the {} holds {got}; download or install it again",
            if gz { "decompressed stream" } else { "file" }
        )));
    }
    let mut extra = [0u8; 1];
    if read_full(&mut r, &mut extra).map_err(io)? > 0 {
        return Err(e(format!(
            "corrupt IDX file: data beyond the {dims:?} values the header declares"
        )));
    }
    Ok(IdxArray {
        dims,
        type_code: code,
        payload,
    })
}

fn parse_any(mut r: impl BufRead, len: u64, name: &str, limit: &MemoryLimit) -> Result<IdxArray> {
    let head = r
        .fill_buf()
        .map_err(|x| err_named(name, format!("cannot read ({x})")))?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        parse_stream(
            flate2::bufread::MultiGzDecoder::new(r),
            None,
            name,
            limit,
            true,
        )
    } else {
        parse_stream(r, Some(len), name, limit, false)
    }
}

fn err_named(name: &str, reason: String) -> Error {
    Error::File {
        path: name.to_string(),
        reason,
    }
}

/// Reads an IDX file, gzip-compressed or raw, under the memory limit
/// [`MemoryLimit::global`].
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    read_idx_with(path, &MemoryLimit::global())
}

/// [`read_idx`] under the memory limit `limit` (which bounds the decompressed bytes too).
pub fn read_idx_with(path: &Path, limit: &MemoryLimit) -> Result<IdxArray> {
    let (f, len) = super::open_data_file(path)?;
    parse_any(
        std::io::BufReader::new(f),
        len,
        &path.display().to_string(),
        limit,
    )
}

/// [`read_idx`] on the bytes of a file (gzip or raw); `name` names the source in errors.
pub fn read_idx_from_bytes(bytes: &[u8], name: &str, limit: &MemoryLimit) -> Result<IdxArray> {
    parse_any(bytes, bytes.len() as u64, name, limit)
}
