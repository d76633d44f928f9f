//! The IDX format of (Fashion-)MNIST: a 4-byte magic (0, 0, type code, number of dimensions),
//! big-endian u32 sizes, then the values in row-major order. Files may be gzip-compressed
//! (detected by the gzip magic bytes, not the file name).

use crate::error::{Error, Result};
use std::io::Read;
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

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
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
        self.dims.iter().product()
    }

    /// True when the array holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of items (the first size) and the number of values per item.
    pub fn items(&self) -> (usize, usize) {
        match self.dims.split_first() {
            Some((n, rest)) => (*n, rest.iter().product()),
            None => (0, 0),
        }
    }

    /// Value `k` (row-major) as f64.
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
    /// errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < 4 {
            return Err(err(
                path,
                format!(
                    "not an IDX file: {} bytes, shorter than the 4-byte header",
                    bytes.len()
                ),
            ));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(err(
                path,
                format!(
                    "not an IDX file: the magic number must start with two zero bytes, found {:#04x} {:#04x} (corrupt file or wrong format)",
                    bytes[0], bytes[1]
                ),
            ));
        }
        let code = bytes[2];
        let size = type_size(code).ok_or_else(|| {
            err(path, format!("corrupt IDX header: unknown type code {code:#04x} (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)"))
        })?;
        let nd = bytes[3] as usize;
        if nd == 0 {
            return Err(err(path, "corrupt IDX header: zero dimensions"));
        }
        let head = 4 + 4 * nd;
        if bytes.len() < head {
            return Err(err(
                path,
                format!(
                    "truncated IDX file: the header declares {nd} dimensions but the file ends after {} bytes",
                    bytes.len()
                ),
            ));
        }
        let dims: Vec<usize> = (0..nd)
            .map(|k| {
                u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().expect("4 bytes"))
                    as usize
            })
            .collect();
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|c| c.checked_mul(size))
            .ok_or_else(|| err(path, format!("corrupt IDX header: sizes {dims:?} overflow")))?;
        let have = bytes.len() - head;
        if have < count {
            return Err(err(
                path,
                format!(
                    "truncated IDX file: the header promises {dims:?} values ({count} bytes of data), the file holds {have}; download or install it again"
                ),
            ));
        }
        if have > count {
            return Err(err(
                path,
                format!(
                    "corrupt IDX file: {} bytes of data beyond the {dims:?} values the header declares",
                    have - count
                ),
            ));
        }
        Ok(IdxArray {
            dims,
            type_code: code,
            payload: bytes[head..].to_vec(),
        })
    }
}

/// Reads an IDX file, gzip-compressed or raw.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let bytes = if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                err(
                    path,
                    format!(
                        "corrupt or truncated gzip stream ({e}); download or install the file again"
                    ),
                )
            })?;
        out
    } else {
        raw
    };
    IdxArray::parse(&bytes, path)
}
