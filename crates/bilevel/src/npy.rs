//! Reading and writing dense matrices as NumPy `.npy` files, with checks that name the file and
//! the problem.
//!
//! The reader parses the header itself so that every size is checked before anything is
//! allocated: the shape's product (checked, never wrapped), the data's byte count against the
//! file's size, and the matrix against the memory budget ([`crate::limits`]). It accepts
//! float64/32, signed and unsigned integers of 1, 2, 4 and 8 bytes and bool, either byte order,
//! C or Fortran order; values become f64.

use crate::error::{Error, Result};
use crate::limits::{MemoryLimit, checked_product};
use faer::Mat;
use npyz::WriterBuilder;
use std::io::Read;
use std::path::Path;

/// Longest header accepted (NumPy itself refuses more than 10,000 bytes by default).
const MAX_HEADER: u64 = 1 << 20;

fn file_err(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::File {
        path: name.to_string(),
        reason: reason.to_string(),
    }
}

/// The element type of an array.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Int,
    Uint,
    Bool,
}

/// What the header of a `.npy` file says.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    kind: Kind,
    size: usize,
    big_endian: bool,
    fortran: bool,
    shape: Vec<u64>,
}

/// Reads a 1-D or 2-D numeric array (a 1-D array becomes one column). NaN or Inf entries are
/// an error naming their row and column. The memory limit is [`MemoryLimit::global`].
pub fn read_matrix(path: &Path) -> Result<Mat<f64>> {
    read_matrix_with(path, &MemoryLimit::global())
}

/// [`read_matrix`] under the memory limit `limit`.
pub fn read_matrix_with(path: &Path, limit: &MemoryLimit) -> Result<Mat<f64>> {
    let name = path.display().to_string();
    let (file, len) = crate::data::open_data_file(path)?;
    read_npy(std::io::BufReader::new(file), len, &name, limit)
}

/// [`read_matrix`] on the bytes of a `.npy` file; `name` names the source in errors.
pub fn read_matrix_from_bytes(bytes: &[u8], name: &str, limit: &MemoryLimit) -> Result<Mat<f64>> {
    read_npy(bytes, bytes.len() as u64, name, limit)
}

fn read_npy(mut r: impl Read, file_len: u64, name: &str, limit: &MemoryLimit) -> Result<Mat<f64>> {
    let not_npy = |why: &str| {
        file_err(
            name,
            format!("not a valid .npy file ({why}); save the array with numpy.save"),
        )
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| not_npy("shorter than the 8-byte preamble"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(not_npy("the file does not start with the magic \\x93NUMPY"));
    }
    let (header_len, len_bytes) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| not_npy("the header length is cut off"))?;
            (u64::from(u16::from_le_bytes(b)), 2u64)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| not_npy("the header length is cut off"))?;
            (u64::from(u32::from_le_bytes(b)), 4u64)
        }
        v => return Err(not_npy(&format!("unknown format version {v}.{}", pre[7]))),
    };
    if header_len > MAX_HEADER {
        return Err(not_npy(&format!(
            "the header claims {header_len} bytes, more than the {MAX_HEADER} accepted"
        )));
    }
    let data_start = 8 + len_bytes + header_len;
    if file_len < data_start {
        return Err(not_npy(&format!(
            "the header claims {header_len} bytes but the file holds only {file_len} bytes in all"
        )));
    }
    let mut text = vec![0u8; header_len as usize];
    r.read_exact(&mut text)
        .map_err(|e| file_err(name, format!("cannot read the header ({e})")))?;
    let text = std::str::from_utf8(&text).map_err(|_| not_npy("the header is not text"))?;
    let h = parse_header(text).map_err(|why| not_npy(&why))?;
    let (rows, cols) = match h.shape.as_slice() {
        [n] => (*n, 1u64),
        [r, c] => (*r, *c),
        s => {
            return Err(file_err(
                name,
                format!("expected a 1-D or 2-D array, found shape {s:?}"),
            ));
        }
    };
    let shape_src = format!("the shape {:?} in the header of {name}", h.shape);
    let what = format!("the array in {name}");
    let count = checked_product(&what, &[rows, cols], &shape_src)?;
    let data_bytes = checked_product(&what, &[count, h.size as u64], &shape_src)?;
    let have = file_len - data_start;
    if have < data_bytes {
        return Err(file_err(
            name,
            format!(
                "truncated: the header promises {count} values ({data_bytes} bytes) but the file holds only {have} bytes of data; save or copy the file again"
            ),
        ));
    }
    if have > data_bytes {
        return Err(file_err(
            name,
            format!(
                "corrupt: {} bytes beyond the {count} values ({data_bytes} bytes) the header declares",
                have - data_bytes
            ),
        ));
    }
    // An empty array with a huge other side would still make callers loop over that side.
    limit.check_values(
        &what,
        rows.max(1).saturating_mul(cols.max(1)),
        8,
        &shape_src,
    )?;
    let (rows, cols) = (rows as usize, cols as usize);
    let mut m = Mat::<f64>::zeros(rows, cols);
    let mut buf = vec![0u8; (64 << 10) / h.size * h.size];
    let mut k = 0usize;
    let count = count as usize;
    while k < count {
        let n = (count - k).min(buf.len() / h.size);
        let chunk = &mut buf[..n * h.size];
        r.read_exact(chunk)
            .map_err(|e| file_err(name, format!("cannot read the data ({e})")))?;
        for item in chunk.chunks_exact(h.size) {
            let x = decode(&h, item);
            let (i, j) = if h.fortran {
                (k % rows, k / rows)
            } else {
                (k / cols, k % cols)
            };
            if !x.is_finite() {
                let at = if h.shape.len() == 1 {
                    format!("index {i}")
                } else {
                    format!("row {i}, column {j}")
                };
                return Err(file_err(
                    name,
                    format!(
                        "non-finite value {x} at {at} (0-based, as NumPy indexes); replace or drop it"
                    ),
                ));
            }
            m[(i, j)] = x;
            k += 1;
        }
    }
    Ok(m)
}

fn decode(h: &Header, b: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    if h.big_endian {
        // Right-align so that from_be_bytes of the 8-byte buffer reads the value.
        a[8 - h.size..].copy_from_slice(b);
    } else {
        a[..h.size].copy_from_slice(b);
    }
    let u = if h.big_endian {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    };
    match (h.kind, h.size) {
        (Kind::Float, 8) => f64::from_bits(u),
        (Kind::Float, _) => f64::from(f32::from_bits(u as u32)),
        (Kind::Bool, _) => f64::from(u8::from(u != 0)),
        (Kind::Uint, _) => u as f64,
        (Kind::Int, s) => {
            // Sign-extend from s bytes.
            let shift = 64 - 8 * s as u32;
            (((u << shift) as i64) >> shift) as f64
        }
    }
}

fn parse_descr(d: &str) -> std::result::Result<(Kind, usize, bool), String> {
    let (big, t) = match d.as_bytes().first() {
        Some(b'>') => (true, &d[1..]),
        Some(b'<' | b'|' | b'=') => (false, &d[1..]),
        _ => (false, d),
    };
    let (kind, size) = match t {
        "f8" | "d" => (Kind::Float, 8),
        "f4" | "f" => (Kind::Float, 4),
        "i1" | "b" => (Kind::Int, 1),
        "i2" | "h" => (Kind::Int, 2),
        "i4" | "i" => (Kind::Int, 4),
        "i8" | "q" => (Kind::Int, 8),
        "u1" | "B" => (Kind::Uint, 1),
        "u2" | "H" => (Kind::Uint, 2),
        "u4" | "I" => (Kind::Uint, 4),
        "u8" | "Q" => (Kind::Uint, 8),
        "b1" | "?" => (Kind::Bool, 1),
        _ => {
            return Err(format!(
                "unsupported dtype '{d}': save the array as float64, float32, a signed or unsigned integer type or bool"
            ));
        }
    };
    Ok((kind, size, big))
}

/// A value of the header's Python dict literal.
#[derive(Debug)]
enum PyVal {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

struct Lexer<'a> {
    s: &'a [u8],
    at: usize,
}

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!(
                "header: expected '{}' at byte {}",
                c as char, self.at
            ))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let q = self.peek().ok_or("header: ends inside the dict")?;
        if q != b'\'' && q != b'"' {
            return Err(format!(
                "header: expected a quoted string at byte {}",
                self.at
            ));
        }
        self.at += 1;
        let start = self.at;
        while self.at < self.s.len() && self.s[self.at] != q {
            if self.s[self.at] == b'\\' {
                return Err("header: escapes in strings are not supported".into());
            }
            self.at += 1;
        }
        if self.at == self.s.len() {
            return Err("header: unterminated string".into());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        self.at += 1;
        Ok(out)
    }

    fn value(&mut self) -> std::result::Result<PyVal, String> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(PyVal::Str(self.string()?)),
            Some(b'(') => {
                self.at += 1;
                let mut v = Vec::new();
                loop {
                    match self.peek() {
                        Some(b')') => {
                            self.at += 1;
                            return Ok(PyVal::Tuple(v));
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let start = self.at;
                            while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
                                self.at += 1;
                            }
                            let digits = std::str::from_utf8(&self.s[start..self.at])
                                .map_err(|_| "header: bad digits")?;
                            let n: u64 = digits.parse().map_err(|_| {
                                format!("header: the size {digits} does not fit in 64 bits")
                            })?;
                            v.push(n);
                            if self.s.get(self.at) == Some(&b'L') {
                                self.at += 1;
                            }
                            match self.peek() {
                                Some(b',') => self.at += 1,
                                Some(b')') => {}
                                _ => return Err("header: malformed shape tuple".into()),
                            }
                        }
                        _ => return Err("header: the shape must be a tuple of sizes".into()),
                    }
                }
            }
            _ => {
                let rest = &self.s[self.at..];
                if rest.starts_with(b"True") {
                    self.at += 4;
                    Ok(PyVal::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.at += 5;
                    Ok(PyVal::Bool(false))
                } else {
                    Err(format!(
                        "header: unsupported value at byte {} (structured or object arrays are not supported)",
                        self.at
                    ))
                }
            }
        }
    }
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        at: 0,
    };
    lx.eat(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if lx.peek() == Some(b'}') {
            lx.at += 1;
            break;
        }
        let key = lx.string()?;
        lx.eat(b':')?;
        let val = lx.value()?;
        match (key.as_str(), val) {
            ("descr", PyVal::Str(s)) => descr = Some(s),
            ("fortran_order", PyVal::Bool(b)) => fortran = Some(b),
            ("shape", PyVal::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(format!("header: key '{key}' has an unexpected value {v:?}"));
            }
            _ => {}
        }
        match lx.peek() {
            Some(b',') => lx.at += 1,
            Some(b'}') => {}
            _ => return Err("header: expected ',' or '}' after a value".into()),
        }
    }
    lx.ws();
    if lx.at != lx.s.len() {
        return Err("header: text after the closing '}'".into());
    }
    let descr = descr.ok_or("header: no 'descr' key")?;
    let (kind, size, big_endian) = parse_descr(&descr)?;
    Ok(Header {
        kind,
        size,
        big_endian,
        fortran: fortran.ok_or("header: no 'fortran_order' key")?,
        shape: shape.ok_or("header: no 'shape' key")?,
    })
}

/// Writes a matrix as a C-order float64 `.npy` file.
pub fn write_matrix(path: &Path, m: &Mat<f64>) -> Result<()> {
    let name = path.display().to_string();
    let f = std::fs::File::create(path).map_err(|e| file_err(&name, e))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[m.nrows() as u64, m.ncols() as u64])
        .writer(std::io::BufWriter::new(f))
        .begin_nd()
        .map_err(|e| file_err(&name, e))?;
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            w.push(&m[(i, j)]).map_err(|e| file_err(&name, e))?;
        }
    }
    w.finish().map_err(|e| file_err(&name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dialects() {
        let h =
            parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }   \n").unwrap();
        assert_eq!((h.kind, h.size, h.shape.clone()), (Kind::Int, 8, vec![3]));
        let h =
            parse_header("{\"shape\":(2L,5L),\"descr\":\">u2\",\"fortran_order\":True}").unwrap();
        assert!(h.big_endian && h.fortran && h.shape == vec![2, 5]);
        assert!(
            parse_header("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}")
                .is_err()
        );
        assert!(
            parse_header(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}"
            )
            .is_err()
        );
        assert!(parse_header("{'descr': '<c16', 'fortran_order': False, 'shape': (1,)}").is_err());
        assert!(parse_header("{'descr': '<f8', 'shape': (1,)}").is_err());
        assert!(parse_header("{'descr': '<f8'").is_err());
    }

    #[test]
    fn decode_widths() {
        let h = |kind, size, big_endian| Header {
            kind,
            size,
            big_endian,
            fortran: false,
            shape: vec![],
        };
        assert_eq!(decode(&h(Kind::Int, 1, false), &[0xff]), -1.0);
        assert_eq!(decode(&h(Kind::Int, 2, true), &[0xff, 0xfe]), -2.0);
        assert_eq!(decode(&h(Kind::Uint, 2, true), &[0x01, 0x00]), 256.0);
        assert_eq!(
            decode(&h(Kind::Int, 8, false), &(-7i64).to_le_bytes()),
            -7.0
        );
        assert_eq!(decode(&h(Kind::Float, 4, true), &1.5f32.to_be_bytes()), 1.5);
        assert_eq!(decode(&h(Kind::Bool, 1, false), &[2]), 1.0);
    }
}
