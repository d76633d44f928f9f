//! The data readers on hostile and everyday inputs: .npy headers that overflow or lie, truncated
//! files, NaN located by row and column, every integer label width, class names, gzip bombs,
//! ragged CSV, FIFOs and directories. Huge inputs run under a small `MemoryLimit` set here, so
//! a reader that forgot a check fails the test instead of taking the machine down.

use bilevel::Error;
use bilevel::data::{
    UserDataPaths, load_user_data, load_user_data_with, read_csv_from_bytes, read_idx_from_bytes,
    read_idx_with, read_labels_from_bytes, read_table, read_table_with,
};
use bilevel::limits::MemoryLimit;
use bilevel::npy::{read_matrix, read_matrix_from_bytes, read_matrix_with, write_matrix};
use faer::Mat;
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-readers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A .npy file (format 1.0) with the given header fields and raw data bytes.
fn npy(descr: &str, fortran: bool, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    let f = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {dims}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f8(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn small() -> MemoryLimit {
    MemoryLimit::new(1 << 20)
}

fn big() -> MemoryLimit {
    MemoryLimit::new(1 << 30)
}

// ---------- .npy ----------

#[test]
fn npy_shape_that_overflows_is_a_clear_error_not_a_wrap() {
    // Issue 18 item 3: (2^62, 4) wrapped rows * cols to 0 and panicked in the allocator.
    let b = npy("<f8", false, &[1 << 62, 4], &[]);
    let e = read_matrix_from_bytes(&b, "crafted.npy", &big()).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("crafted.npy") && s.contains("overflows"), "{s}");
    // The same through a file and the machine's own limit.
    let d = tmpdir("overflow");
    std::fs::write(d.join("c.npy"), &b).unwrap();
    let e = read_matrix(&d.join("c.npy")).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    // A shape whose element count fits but whose bytes do not.
    let b = npy("<f8", false, &[1 << 61, 1], &[]);
    let e = read_matrix_from_bytes(&b, "c.npy", &big()).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    // A size that does not fit 64 bits at all.
    let mut b = npy("<f8", false, &[1], &[0; 8]);
    let s = String::from_utf8_lossy(&b).replace("(1,)", "(99999999999999999999,)");
    b = s.into_bytes();
    assert!(read_matrix_from_bytes(&b, "c.npy", &big()).is_err());
}

#[test]
fn npy_data_larger_than_the_budget_is_refused_before_allocating() {
    // 2^20 × 4 float64 values = 32 MiB with the data present, limit 1 MiB.
    let data = vec![0u8; (1 << 20) * 4 * 8];
    let b = npy("<f8", false, &[1 << 20, 4], &data);
    let e = read_matrix_from_bytes(&b, "big.npy", &small()).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::TooLarge { .. }), "{s}");
    assert!(
        s.contains("33.6 MB") && s.contains("1.0 MB") && s.contains("big.npy"),
        "{s}"
    );
    assert!(
        s.contains("--max-memory") && s.contains("max_memory"),
        "{s}"
    );
    // u1 data: 1 byte in the file, 8 in memory — the budget counts the matrix, not the file.
    let b = npy("|u1", false, &[1 << 18], &vec![1u8; 1 << 18]);
    let e = read_matrix_from_bytes(&b, "u1.npy", &small()).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // An empty array with a huge other side is refused too (callers would loop over it).
    let b = npy("<f8", false, &[0, 1 << 40], &[]);
    assert!(matches!(
        read_matrix_from_bytes(&b, "e.npy", &small()).unwrap_err(),
        Error::TooLarge { .. }
    ));
}

#[test]
fn npy_truncated_and_padded_files_say_what_the_header_promised() {
    let b = npy("<f8", false, &[3, 2], &f8(&[1.0, 2.0, 3.0, 4.0, 5.0]));
    let e = read_matrix_from_bytes(&b, "t.npy", &big())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.npy")
            && e.contains("header promises 6 values (48 bytes)")
            && e.contains("holds only 40 bytes"),
        "{e}"
    );
    assert!(!e.contains("fill whole buffer"), "{e}");
    // A header promising a huge array in a tiny file is also truncation, not an allocation.
    let b = npy("<f8", false, &[1 << 30, 1 << 10], &[0; 16]);
    let e = read_matrix_from_bytes(&b, "t.npy", &big()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Bytes beyond the declared data.
    let b = npy("<f8", false, &[1], &f8(&[1.0, 2.0]));
    let e = read_matrix_from_bytes(&b, "t.npy", &big()).unwrap_err();
    assert!(e.to_string().contains("beyond"), "{e}");
    // A cut header and a file that is not .npy at all.
    let b = npy("<f8", false, &[1], &f8(&[1.0]));
    for cut in [0, 5, 9, 40] {
        let e = read_matrix_from_bytes(&b[..cut], "t.npy", &big()).unwrap_err();
        assert!(
            e.to_string().contains("not a valid .npy file"),
            "{cut}: {e}"
        );
    }
}

#[test]
fn npy_nan_is_located_by_row_and_column_without_start_point_hints() {
    let d = tmpdir("nan");
    let m = Mat::from_fn(3, 4, |i, j| if (i, j) == (1, 2) { f64::NAN } else { 1.0 });
    write_matrix(&d.join("x.npy"), &m).unwrap();
    let e = read_matrix(&d.join("x.npy")).unwrap_err().to_string();
    assert!(
        e.contains("x.npy") && e.contains("row 1, column 2") && e.contains("0-based"),
        "{e}"
    );
    assert!(!e.contains("start point"), "{e}");
    // Fortran order: the flat index differs, the location does not.
    let mut vals = vec![1.0; 12];
    vals[2 * 3 + 1] = f64::INFINITY; // column 2, row 1 in column-major order
    let b = npy("<f8", true, &[3, 4], &f8(&vals));
    let e = read_matrix_from_bytes(&b, "f.npy", &big())
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1, column 2"), "{e}");
    // 1-D arrays name the index.
    let b = npy(
        "<f4",
        false,
        &[3],
        &[0f32, 0.0, f32::NAN].map(f32::to_le_bytes).concat(),
    );
    let e = read_matrix_from_bytes(&b, "v.npy", &big())
        .unwrap_err()
        .to_string();
    assert!(e.contains("index 2"), "{e}");
}

#[test]
fn npy_reads_every_numeric_dtype_in_both_byte_orders_and_layouts() {
    let lim = big();
    let read = |b: Vec<u8>| read_matrix_from_bytes(&b, "d.npy", &lim).unwrap();
    let col = |m: &Mat<f64>| (0..m.nrows()).map(|i| m[(i, 0)]).collect::<Vec<_>>();
    assert_eq!(
        col(&read(npy("|i1", false, &[3], &[0, 1, 0xff]))),
        [0.0, 1.0, -1.0]
    );
    assert_eq!(col(&read(npy("|u1", false, &[2], &[7, 255]))), [7.0, 255.0]);
    assert_eq!(
        col(&read(npy(
            "<i2",
            false,
            &[2],
            &[(-3i16).to_le_bytes(), 9i16.to_le_bytes()].concat()
        ))),
        [-3.0, 9.0]
    );
    assert_eq!(
        col(&read(npy(
            ">i2",
            false,
            &[2],
            &[(-3i16).to_be_bytes(), 9i16.to_be_bytes()].concat()
        ))),
        [-3.0, 9.0]
    );
    assert_eq!(
        col(&read(npy("<u2", false, &[1], &60000u16.to_le_bytes()))),
        [60000.0]
    );
    assert_eq!(
        col(&read(npy(
            "<i4",
            false,
            &[2],
            &[4i32.to_le_bytes(), (-5i32).to_le_bytes()].concat()
        ))),
        [4.0, -5.0]
    );
    assert_eq!(
        col(&read(npy(
            ">u4",
            false,
            &[1],
            &4_000_000_000u32.to_be_bytes()
        ))),
        [4e9]
    );
    assert_eq!(
        col(&read(npy(
            "<i8",
            false,
            &[2],
            &[2i64.to_le_bytes(), (-1i64).to_le_bytes()].concat()
        ))),
        [2.0, -1.0]
    );
    assert_eq!(
        col(&read(npy("<u8", false, &[1], &3u64.to_le_bytes()))),
        [3.0]
    );
    assert_eq!(
        col(&read(npy("|b1", false, &[3], &[1, 0, 1]))),
        [1.0, 0.0, 1.0]
    );
    assert_eq!(
        col(&read(npy(">f8", false, &[1], &2.5f64.to_be_bytes()))),
        [2.5]
    );
    // C and Fortran order give the same matrix.
    let c = read(npy(
        "<f8",
        false,
        &[2, 3],
        &f8(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    ));
    let f = read(npy(
        "<f8",
        true,
        &[2, 3],
        &f8(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]),
    ));
    assert_eq!(c, f);
    assert_eq!(c[(1, 2)], 6.0);
    // Complex, strings and 3-D arrays are refused with the reason.
    let e = read_matrix_from_bytes(&npy("<c16", false, &[1], &[0; 16]), "c.npy", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported dtype"), "{e}");
    let e = read_matrix_from_bytes(&npy("<f8", false, &[1, 1, 1], &[0; 8]), "c.npy", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1-D or 2-D"), "{e}");
}

// ---------- regular files only ----------

#[test]
fn a_fifo_or_a_directory_is_refused_at_once() {
    let d = tmpdir("fifo");
    let fifo = d.join("pipe.npy");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let mut cases: Vec<PathBuf> = vec![d.clone(), d.join("dir.csv")];
    std::fs::create_dir_all(d.join("dir.csv")).unwrap();
    if ok {
        cases.push(fifo.clone());
        cases.push(d.join("pipe.csv"));
        std::fs::rename(&fifo, d.join("pipe.csv")).unwrap();
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
    }
    for p in cases {
        // In a thread, so that a reader that blocks fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            let a = read_matrix(&q).map(|_| ()).map_err(|e| e.to_string());
            let b = read_table(&q).map(|_| ()).map_err(|e| e.to_string());
            let c = read_idx_with(&q, &MemoryLimit::new(1 << 20))
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = tx.send((a, b, c));
        });
        let (a, b, c) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("reading {} blocked", p.display()));
        for r in [a, b, c] {
            let e = r.unwrap_err();
            assert!(e.contains(&*p.display().to_string()), "{e}");
            if p.extension().is_some_and(|x| x == "npy") || p.ends_with("pipe.csv") {
                assert!(e.contains("regular file"), "{e}");
            }
        }
    }
    let e = read_matrix(&d).unwrap_err().to_string();
    assert!(
        e.contains("a directory") && e.contains("regular file"),
        "{e}"
    );
    if ok {
        let e = read_matrix(&fifo).unwrap_err().to_string();
        assert!(e.contains("named pipe (FIFO)"), "{e}");
    }
}

// ---------- IDX ----------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut b = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b
}

#[test]
fn idx_gzip_bomb_hits_the_budget_not_the_machine() {
    // 64 MiB of zeros behind a header promising exactly that: about 64 kB compressed.
    let n: u32 = 64 << 20;
    let mut raw = idx_header(0x08, &[n]);
    raw.resize(raw.len() + n as usize, 0);
    let gz = gzip(&raw);
    assert!(gz.len() < 1 << 20);
    let e = read_idx_from_bytes(&gz, "bomb.gz", &small()).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("bomb.gz"), "{e}");
    // A header that promises little followed by a flood: only size + 1 bytes are inflated.
    let mut raw = idx_header(0x08, &[4]);
    raw.resize(raw.len() + (32 << 20), 0);
    let e = read_idx_from_bytes(&gzip(&raw), "flood.gz", &small()).unwrap_err();
    assert!(e.to_string().contains("beyond"), "{e}");
    // Within the budget the same file reads.
    let mut raw = idx_header(0x08, &[2, 3]);
    raw.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    let a = read_idx_from_bytes(&gzip(&raw), "ok.gz", &small()).unwrap();
    assert_eq!(a.items(), (2, 3));
    assert_eq!(a, read_idx_from_bytes(&raw, "ok", &small()).unwrap());
}

#[test]
fn idx_sizes_are_checked_and_garbage_is_named() {
    // 2^32-1 in each of 3 dimensions overflows with 8-byte values.
    let b = idx_header(0x0E, &[u32::MAX, u32::MAX, u32::MAX]);
    let e = read_idx_from_bytes(&b, "o.idx", &big()).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    // Fits 64 bits, far beyond the file: truncation is named before any allocation.
    let b = idx_header(0x08, &[60000, 28, 28]);
    let e = read_idx_from_bytes(&b, "t.idx", &small()).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Gzip magic followed by garbage, and a gzip stream cut short.
    let e = read_idx_from_bytes(&[0x1f, 0x8b, 1, 2, 3, 4, 5], "g.gz", &small()).unwrap_err();
    assert!(e.to_string().contains("gzip"), "{e}");
    let mut raw = idx_header(0x08, &[100]);
    raw.extend((0..100u8).map(|k| k.wrapping_mul(37)));
    let gz = gzip(&raw);
    for cut in [3, 10, gz.len() / 2, gz.len() - 4] {
        let e = read_idx_from_bytes(&gz[..cut], "cut.gz", &small()).unwrap_err();
        assert!(e.to_string().contains("cut.gz"), "{e}");
    }
    // A flipped CRC is caught.
    let mut bad = gz.clone();
    let k = bad.len() - 6;
    bad[k] ^= 0xff;
    assert!(read_idx_from_bytes(&bad, "crc.gz", &small()).is_err());
}

// ---------- CSV ----------

#[test]
fn csv_messages_name_file_line_and_column() {
    let lim = big();
    let e = read_csv_from_bytes(b"a,b\n1,2\n3\n", "r.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("r.csv") && e.contains("line 3") && e.contains("1 columns"),
        "{e}"
    );
    let e = read_csv_from_bytes(b"1,2\n3,x7\n", "n.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 2, column 2") && e.contains("`x7` is not a number"),
        "{e}"
    );
    let e = read_csv_from_bytes(b"1,2\n3,inf\n", "i.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("non-finite") && e.contains("sample 1, feature 1") && e.contains("line 2"),
        "{e}"
    );
    // 1e400 overflows to inf when parsed: also non-finite, named.
    let e = read_csv_from_bytes(b"1e400\n", "o.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite"), "{e}");
    let e = read_csv_from_bytes(b"", "e.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no data rows"), "{e}");
    let e = read_csv_from_bytes(b"1,\xff\n", "u.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("UTF-8") || e.contains("no data rows"), "{e}");
    // A header, a byte-order mark, spaces and CRLF are fine.
    let m = read_csv_from_bytes(b"\xef\xbb\xbfx,y\r\n 1, 2\r\n3 ,4\r\n", "ok.csv", &lim).unwrap();
    assert_eq!((m.nrows(), m.ncols(), m[(1, 0)]), (2, 2, 3.0));
}

#[test]
fn csv_rows_stop_at_the_budget_and_an_endless_line_is_refused() {
    // 100,000 rows × 4 values = 9.6 MB at 24 bytes a value; limit 1 MiB.
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&format!("{i},1,2,3\n"));
    }
    let e = read_csv_from_bytes(text.as_bytes(), "huge.csv", &small()).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::TooLarge { .. }), "{s}");
    assert!(
        s.contains("huge.csv") && s.contains("rows read so far"),
        "{s}"
    );
    // One line of 4 MB with no newline.
    let line = "1,".repeat(2 << 20);
    let e = read_csv_from_bytes(line.as_bytes(), "line.csv", &small())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line.csv") && e.contains("longer than"), "{e}");
}

// ---------- labels ----------

#[test]
fn labels_of_every_integer_width_and_bool_are_read() {
    let lim = big();
    let codes = |b: Vec<u8>| read_labels_from_bytes(&b, "y.npy", &lim).unwrap().0;
    assert_eq!(codes(npy("|i1", false, &[3], &[0, 2, 1])), [0, 2, 1]);
    assert_eq!(codes(npy("|u1", false, &[2], &[3, 0])), [3, 0]);
    let le = |xs: &[i64], w: usize| -> Vec<u8> {
        xs.iter()
            .flat_map(|x| x.to_le_bytes()[..w].to_vec())
            .collect()
    };
    for w in [2usize, 4, 8] {
        for kind in ['i', 'u'] {
            let d = format!("<{kind}{w}");
            assert_eq!(
                codes(npy(&d, false, &[3], &le(&[1, 0, 4], w))),
                [1, 0, 4],
                "{d}"
            );
        }
    }
    assert_eq!(codes(npy("|b1", false, &[3], &[1, 0, 1])), [1, 0, 1]);
    // Whole-number floats, and a 2-D column.
    assert_eq!(codes(npy("<f8", false, &[2, 1], &f8(&[2.0, 0.0]))), [2, 0]);
    assert_eq!(
        codes(npy(
            "<f4",
            false,
            &[2],
            &[1f32, 3.0].map(f32::to_le_bytes).concat()
        )),
        [1, 3]
    );
}

#[test]
fn bad_labels_name_the_file_and_the_first_bad_row() {
    let lim = big();
    let err = |b: Vec<u8>| {
        read_labels_from_bytes(&b, "y.npy", &lim)
            .unwrap_err()
            .to_string()
    };
    let e = err(npy("<f8", false, &[3], &f8(&[0.0, 1.5, 2.5])));
    assert!(
        e.contains("y.npy") && e.contains("row 1") && e.contains("not a non-negative integer"),
        "{e}"
    );
    let e = err(npy(
        "<i8",
        false,
        &[2],
        &[0i64, -3].map(i64::to_le_bytes).concat(),
    ));
    assert!(e.contains("row 1") && e.contains("-3"), "{e}");
    // Issue 18 item 2: 1e12 must not become 1e12 + 1 classes, 1e300 not 0 classes.
    for big_label in [1e12, 1e300, 100_000.0] {
        let e = err(npy("<f8", false, &[2], &f8(&[0.0, big_label])));
        assert!(
            e.contains("row 1") && e.contains("too large") && e.contains("100000 classes"),
            "{e}"
        );
    }
    let e = err(npy("<i8", false, &[1], &(1i64 << 40).to_le_bytes()));
    assert!(e.contains("too large"), "{e}");
    let e = err(npy("<f8", false, &[2, 2], &f8(&[0.0; 4])));
    assert!(e.contains("one column"), "{e}");
    // CSV: the line is named too.
    let e = read_labels_from_bytes(b"0\n1\n2.5\n", "y.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("y.csv") && e.contains("sample 2 (line 3)"),
        "{e}"
    );
    let e = read_labels_from_bytes(b",label\n0,cat\n", "y.csv", &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one column") && e.contains("index=False"), "{e}");
}

#[test]
fn class_names_are_numbered_in_sorted_order() {
    let (codes, names) = read_labels_from_bytes(b"dog\ncat\nbird\ncat\n", "y.csv", &big()).unwrap();
    assert_eq!(names.unwrap(), ["bird", "cat", "dog"]);
    assert_eq!(codes, [2, 1, 0, 1]);
    // A header above integer labels is skipped; integer labels carry no names.
    let (codes, names) = read_labels_from_bytes(b"label\n1\n0\n", "y.csv", &big()).unwrap();
    assert_eq!((codes, names), (vec![1, 0], None));
}

fn write_user_files(d: &Path) -> UserDataPaths {
    let x = |n: usize| Mat::from_fn(n, 2, |i, j| (i + 2 * j) as f64 / 10.0);
    write_matrix(&d.join("xtr.npy"), &x(5)).unwrap();
    write_matrix(&d.join("xva.npy"), &x(3)).unwrap();
    write_matrix(&d.join("xte.npy"), &x(2)).unwrap();
    UserDataPaths {
        train_x: d.join("xtr.npy"),
        train_y: d.join("ytr.csv"),
        val_x: d.join("xva.npy"),
        val_y: d.join("yva.csv"),
        test_x: Some(d.join("xte.npy")),
        test_y: Some(d.join("yte.csv")),
        corrupted: None,
        classes: None,
    }
}

#[test]
fn user_data_with_class_names_maps_every_split_and_returns_the_names() {
    let d = tmpdir("names");
    let p = write_user_files(&d);
    // A header line (one line more than samples); "zebra" is only in validation, "ant" only in
    // test: both still get a code, in sorted order over all three files.
    std::fs::write(&p.train_y, "species\ncat\ndog\ncat\nemu\ndog\n").unwrap();
    std::fs::write(&p.val_y, "dog\nzebra\ncat\n").unwrap();
    std::fs::write(p.test_y.as_ref().unwrap(), "ant\nemu\n").unwrap();
    std::fs::write(d.join("mask.csv"), "False\nTrue\nfalse\n1\n0\n").unwrap();
    let u = load_user_data_with(
        &UserDataPaths {
            corrupted: Some(d.join("mask.csv")),
            ..p.clone()
        },
        &big(),
    )
    .unwrap();
    let names = u.classes.clone().unwrap();
    assert_eq!(names, ["ant", "cat", "dog", "emu", "zebra"]);
    assert_eq!(u.data.classes, 5);
    assert_eq!(u.data.train.labels, [1, 2, 1, 3, 2]);
    assert_eq!(u.data.val.labels, [2, 4, 1]);
    assert_eq!(u.data.test.labels, [0, 3]);
    assert_eq!(u.data.corrupted, [false, true, false, true, false]);
    // load_user_data keeps its signature and returns the same data.
    let data = load_user_data(&p).unwrap();
    assert_eq!(data.train.labels, u.data.train.labels);
    // Mixing class names with numeric .npy labels is refused with both files named.
    write_matrix(&d.join("yva.npy"), &Mat::from_fn(3, 1, |i, _| i as f64)).unwrap();
    let e = load_user_data(&UserDataPaths {
        val_y: d.join("yva.npy"),
        ..p.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("yva.npy") && e.contains("ytr.csv"), "{e}");
    // A stated class count above the cap.
    let e = load_user_data(&UserDataPaths {
        classes: Some(1_000_000_000),
        ..p.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("100000"), "{e}");
}

#[test]
fn user_data_with_integer_npy_labels_of_any_width() {
    let d = tmpdir("intlabels");
    let p = write_user_files(&d);
    let cases: [(&str, usize); 9] = [
        ("|i1", 1),
        ("|u1", 1),
        ("<i2", 2),
        ("<u2", 2),
        ("<i4", 4),
        ("<u4", 4),
        ("<i8", 8),
        ("<u8", 8),
        ("|b1", 1),
    ];
    for (descr, w) in cases {
        let labels = |xs: &[u8]| -> Vec<u8> {
            xs.iter()
                .flat_map(|&x| {
                    let mut v = vec![0u8; w];
                    v[0] = x;
                    v
                })
                .collect()
        };
        std::fs::write(
            d.join("ytr.npy"),
            npy(descr, false, &[5], &labels(&[0, 1, 1, 0, 1])),
        )
        .unwrap();
        std::fs::write(
            d.join("yva.npy"),
            npy(descr, false, &[3], &labels(&[1, 0, 1])),
        )
        .unwrap();
        std::fs::write(d.join("yte.npy"), npy(descr, false, &[2], &labels(&[0, 1]))).unwrap();
        let data = load_user_data(&UserDataPaths {
            train_y: d.join("ytr.npy"),
            val_y: d.join("yva.npy"),
            test_y: Some(d.join("yte.npy")),
            ..p.clone()
        })
        .unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(data.classes, 2, "{descr}");
        assert_eq!(data.train.labels, [0, 1, 1, 0, 1], "{descr}");
    }
    // A training label of 1e12 through the loader: a clear error, never 1e12 + 1 classes.
    std::fs::write(
        d.join("ybig.npy"),
        npy("<f8", false, &[5], &f8(&[0.0, 1.0, 1e12, 0.0, 1.0])),
    )
    .unwrap();
    let e = load_user_data(&UserDataPaths {
        train_y: d.join("ybig.npy"),
        val_y: d.join("yva.npy"),
        test_y: Some(d.join("yte.npy")),
        ..p.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("ybig.npy") && e.contains("row 2") && e.contains("too large"),
        "{e}"
    );
}

#[test]
fn tables_through_the_path_reader_respect_the_limit() {
    let d = tmpdir("paths");
    write_matrix(
        &d.join("m.npy"),
        &Mat::from_fn(400, 400, |i, j| (i + j) as f64),
    )
    .unwrap();
    assert!(matches!(
        read_matrix_with(&d.join("m.npy"), &small()).unwrap_err(),
        Error::TooLarge { .. }
    ));
    assert_eq!(
        read_table_with(&d.join("m.npy"), &big()).unwrap()[(299, 1)],
        300.0
    );
}
