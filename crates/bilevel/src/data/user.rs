//! User data for the cleaning problem: features and labels from `.npy` or CSV files.
//!
//! Features: `.npy` (any float, integer or bool dtype) or CSV of numbers (a first line that does
//! not parse as numbers is a header). Labels: `.npy` of any integer width, bool, or floats that
//! are whole numbers; or CSV of integer class indices or of class names (strings), which are
//! numbered 0..k−1 in sorted order of the names found in the training, validation and test
//! label files together. A label CSV whose line count is one more than its feature file's rows
//! starts with a header line.

use crate::error::{Error, Result};
use crate::limits::MemoryLimit;
use crate::problems::cleaning::{CleaningData, Split};
use faer::Mat;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Most classes a data set may have (a stray huge label must not become 10¹² classes).
pub const MAX_CLASSES: usize = 100_000;

/// Paths of a user data set. Feature files hold one sample per row; label files one class per
/// row (an integer index from 0, or a class name); the optional corruption mask one 0/1 (or
/// true/false) per training sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDataPaths {
    /// Training features.
    pub train_x: PathBuf,
    /// Training labels (observed, possibly noisy).
    pub train_y: PathBuf,
    /// Validation features.
    pub val_x: PathBuf,
    /// Validation labels (clean).
    pub val_y: PathBuf,
    /// Test features (optional).
    #[serde(default)]
    pub test_x: Option<PathBuf>,
    /// Test labels (with `test_x`).
    #[serde(default)]
    pub test_y: Option<PathBuf>,
    /// Known corruption mask of the training labels (optional; enables precision/recall/F1).
    #[serde(default)]
    pub corrupted: Option<PathBuf>,
    /// Number of classes (default: largest label + 1, or the number of class names).
    #[serde(default)]
    pub classes: Option<usize>,
}

/// A loaded user data set and, when the labels were class names, the names: class `k` of the
/// data is `classes[k]` (write them beside the solution).
#[derive(Debug, Clone)]
pub struct UserData {
    /// The checked data.
    pub data: CleaningData,
    /// Class names in class-index order, when the label files held names.
    pub classes: Option<Vec<String>>,
}

fn ferr(name: &str, reason: impl Into<String>) -> Error {
    Error::File {
        path: name.to_string(),
        reason: reason.into(),
    }
}

fn ext_of(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x93NUMPY")
}

/// Reads a numeric matrix from `.npy` or CSV (comma-separated numbers, one row per sample; a
/// first line that does not parse as numbers is a header). NaN and Inf are errors naming the
/// file, row and column. The memory limit is [`MemoryLimit::global`].
pub fn read_table(path: &Path) -> Result<Mat<f64>> {
    read_table_with(path, &MemoryLimit::global())
}

/// [`read_table`] under the memory limit `limit`.
pub fn read_table_with(path: &Path, limit: &MemoryLimit) -> Result<Mat<f64>> {
    let name = path.display().to_string();
    match ext_of(path).as_str() {
        "npy" => crate::npy::read_matrix_with(path, limit),
        "csv" | "txt" => {
            let (f, _) = super::open_data_file(path)?;
            read_csv(f, &name, limit)
        }
        other => Err(ferr(
            &name,
            format!("unknown extension `{other}`: use .npy or .csv"),
        )),
    }
}

/// The CSV reader of [`read_table`] on bytes; `name` names the source in errors.
pub fn read_csv_from_bytes(bytes: &[u8], name: &str, limit: &MemoryLimit) -> Result<Mat<f64>> {
    read_csv(bytes, name, limit)
}

/// Counts the bytes handed to the CSV parser since the last record, and refuses a record longer
/// than `cap` (the parser buffers a whole record, so one endless line would be read into memory).
struct Counted<R> {
    inner: R,
    since: Rc<Cell<u64>>,
    cap: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let since = self.since.get() + n as u64;
        self.since.set(since);
        if since > self.cap {
            return Err(std::io::Error::other(format!(
                "a line longer than {} (the memory limit allows no more)",
                crate::limits::human_bytes(self.cap)
            )));
        }
        Ok(n)
    }
}

/// A CSV reader over `r` whose records are bounded by the memory limit.
fn csv_reader<R: Read>(r: R, limit: &MemoryLimit) -> (csv::Reader<Counted<R>>, Rc<Cell<u64>>) {
    let since = Rc::new(Cell::new(0));
    let rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(Counted {
            inner: r,
            since: since.clone(),
            cap: (limit.bytes / 4).max(1 << 16),
        });
    (rd, since)
}

fn csv_error(name: &str, e: csv::Error) -> Error {
    let at = e
        .position()
        .map(|p| format!("line {}: ", p.line()))
        .unwrap_or_default();
    let why = match e.into_kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    };
    ferr(name, format!("{at}{why}"))
}

/// The text of field `j` of a record, trimmed, with a byte-order mark removed.
fn field_text(rec: &csv::ByteRecord, j: usize) -> std::result::Result<&str, ()> {
    let s = std::str::from_utf8(rec.get(j).unwrap_or(b"")).map_err(|_| ())?;
    Ok(s.trim_start_matches('\u{feff}').trim())
}

fn read_csv(r: impl Read, name: &str, limit: &MemoryLimit) -> Result<Mat<f64>> {
    let (mut rd, since) = csv_reader(r, limit);
    let mut vals: Vec<f64> = Vec::new();
    let (mut rows, mut cols) = (0usize, 0usize);
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(name, e)),
        }
        since.set(0);
        let line = rec.position().map_or(0, |p| p.line());
        let is_first = std::mem::replace(&mut first, false);
        let mut parsed = Vec::with_capacity(rec.len());
        let mut bad = None;
        for j in 0..rec.len() {
            match field_text(&rec, j) {
                Ok(t) => match t.parse::<f64>() {
                    Ok(x) => parsed.push(x),
                    Err(_) => {
                        bad = Some((j, format!("`{}` is not a number", short(t))));
                        break;
                    }
                },
                Err(()) => {
                    bad = Some((j, "the field is not UTF-8 text".to_string()));
                    break;
                }
            }
        }
        if let Some((j, why)) = bad {
            if is_first {
                continue; // a header line
            }
            return Err(ferr(
                name,
                format!("line {line}, column {} (1-based): {why}", j + 1),
            ));
        }
        if rows == 0 {
            cols = parsed.len();
        } else if parsed.len() != cols {
            return Err(ferr(
                name,
                format!(
                    "line {line}: {} columns, the first data line has {cols}",
                    parsed.len()
                ),
            ));
        }
        if let Some(j) = parsed.iter().position(|x| !x.is_finite()) {
            return Err(ferr(
                name,
                format!(
                    "non-finite value {} at sample {rows}, feature {j} (0-based; line {line}, column {} of the file); replace or drop it",
                    parsed[j],
                    j + 1
                ),
            ));
        }
        vals.extend_from_slice(&parsed);
        rows += 1;
        // The values, the slack of a growing Vec and the final matrix: 24 bytes per value.
        // (Messages are formatted only on failure: this runs once per row.)
        if (vals.len() as u64).saturating_mul(24) > limit.bytes {
            limit.check_values(
                &format!("the table in {name} ({rows} rows read so far)"),
                vals.len() as u64,
                24,
                &format!("the size of {name}"),
            )?;
        }
    }
    if rows == 0 {
        return Err(ferr(name, "no data rows"));
    }
    Ok(Mat::from_fn(rows, cols, |i, j| vals[i * cols + j]))
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A label file as read, before classes are assigned.
enum LabelFile {
    /// Values of a `.npy` file.
    Npy(Vec<f64>),
    /// Fields of a one-column CSV with their line numbers.
    Csv(Vec<(String, u64)>),
}

fn read_label_npy(m: Mat<f64>, name: &str) -> Result<LabelFile> {
    if m.ncols() != 1 {
        return Err(ferr(
            name,
            format!(
                "labels must be one column (a 1-D array), found {} columns",
                m.ncols()
            ),
        ));
    }
    Ok(LabelFile::Npy((0..m.nrows()).map(|i| m[(i, 0)]).collect()))
}

fn read_label_csv(r: impl Read, name: &str, limit: &MemoryLimit) -> Result<LabelFile> {
    let (mut rd, since) = csv_reader(r, limit);
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut rec = csv::ByteRecord::new();
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(name, e)),
        }
        since.set(0);
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != 1 {
            return Err(ferr(
                name,
                format!(
                    "line {line}: labels must be one column, found {} (pandas: write with index=False)",
                    rec.len()
                ),
            ));
        }
        let t = field_text(&rec, 0)
            .map_err(|()| ferr(name, format!("line {line}: the label is not UTF-8 text")))?;
        bytes += t.len() as u64 + 48;
        if bytes > limit.bytes {
            limit.check(
                &format!("the labels in {name}"),
                bytes,
                &format!("the size of {name}"),
            )?;
        }
        out.push((t.to_string(), line));
    }
    if out.is_empty() {
        return Err(ferr(name, "no data rows"));
    }
    Ok(LabelFile::Csv(out))
}

fn read_label_file(path: &Path, limit: &MemoryLimit) -> Result<LabelFile> {
    let name = path.display().to_string();
    match ext_of(path).as_str() {
        "npy" => read_label_npy(crate::npy::read_matrix_with(path, limit)?, &name),
        "csv" | "txt" => {
            let (f, _) = super::open_data_file(path)?;
            read_label_csv(f, &name, limit)
        }
        other => Err(ferr(
            &name,
            format!("unknown extension `{other}`: use .npy or .csv"),
        )),
    }
}

/// One label file to resolve: its name, its contents and the number of samples it must label
/// (when known; a CSV with one line more starts with a header).
struct LabelSource {
    name: String,
    file: LabelFile,
    rows: Option<usize>,
}

impl LabelSource {
    /// CSV fields without the header line, if there is one.
    fn csv_rows(&self) -> &[(String, u64)] {
        match &self.file {
            LabelFile::Csv(v) => {
                let numeric_body =
                    v.len() > 1 && v[1..].iter().all(|(t, _)| t.parse::<f64>().is_ok());
                // A non-numeric line above numbers is a header whatever the count, so that a
                // missing label is reported instead of "label" becoming a class name.
                let header = (numeric_body && v[0].0.parse::<f64>().is_err())
                    || self.rows.is_some_and(|n| v.len() == n + 1);
                if header { &v[1..] } else { v }
            }
            LabelFile::Npy(_) => &[],
        }
    }
}

fn check_class_index(name: &str, at: &str, y: f64) -> Result<usize> {
    if !(y.is_finite() && y >= 0.0 && y.fract() == 0.0) {
        return Err(ferr(
            name,
            format!(
                "{at}: label {y} is not a non-negative integer class index (labels are 0-based class indices or class names)"
            ),
        ));
    }
    if y >= MAX_CLASSES as f64 {
        return Err(ferr(
            name,
            format!(
                "{at}: label {y} is too large: at most {MAX_CLASSES} classes are supported (labels 0..{}); the labels must be class indices from 0",
                MAX_CLASSES - 1
            ),
        ));
    }
    Ok(y as usize)
}

/// Class indices per label file, and the class names when the labels are names.
type Resolved = (Vec<Vec<usize>>, Option<Vec<String>>);

/// Class indices for every source, and the class names when the labels are names.
fn resolve_labels(srcs: &[LabelSource]) -> Result<Resolved> {
    let names_mode = srcs.iter().any(|s| {
        matches!(s.file, LabelFile::Csv(_))
            && s.csv_rows().iter().any(|(t, _)| t.parse::<f64>().is_err())
    });
    if !names_mode {
        let codes = srcs
            .iter()
            .map(|s| match &s.file {
                LabelFile::Npy(v) => v
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| check_class_index(&s.name, &format!("row {i} (0-based)"), y))
                    .collect(),
                LabelFile::Csv(_) => s
                    .csv_rows()
                    .iter()
                    .enumerate()
                    .map(|(i, (t, line))| {
                        let y = t.parse::<f64>().unwrap_or(f64::NAN);
                        check_class_index(&s.name, &format!("sample {i} (line {line})"), y)
                    })
                    .collect(),
            })
            .collect::<Result<Vec<Vec<usize>>>>()?;
        return Ok((codes, None));
    }
    // Class names: numbered in sorted order over every label file.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for s in srcs {
        if let LabelFile::Npy(_) = s.file {
            let first = srcs
                .iter()
                .find(|o| matches!(o.file, LabelFile::Csv(_)))
                .map_or("another file", |o| o.name.as_str());
            return Err(ferr(
                &s.name,
                format!(
                    "holds numeric labels while {first} holds class names: give every label file as class names (CSV) or every one as class indices"
                ),
            ));
        }
        for (i, (t, line)) in s.csv_rows().iter().enumerate() {
            if t.is_empty() {
                return Err(ferr(
                    &s.name,
                    format!("sample {i} (line {line}): empty label"),
                ));
            }
            index.insert(t.as_str(), 0);
        }
    }
    if index.len() > MAX_CLASSES {
        return Err(ferr(
            &srcs[0].name,
            format!(
                "the label files name {} distinct classes, more than the {MAX_CLASSES} supported",
                index.len()
            ),
        ));
    }
    for (k, v) in index.values_mut().enumerate() {
        *v = k;
    }
    let codes = srcs
        .iter()
        .map(|s| {
            s.csv_rows()
                .iter()
                .map(|(t, _)| index[t.as_str()])
                .collect()
        })
        .collect();
    let names = index.keys().map(|k| k.to_string()).collect();
    Ok((codes, Some(names)))
}

/// The label reader on the bytes of one `.npy` or CSV label file (told apart by the `.npy`
/// magic): class indices and, for class names, the names in index order.
pub fn read_labels_from_bytes(
    bytes: &[u8],
    name: &str,
    limit: &MemoryLimit,
) -> Result<(Vec<usize>, Option<Vec<String>>)> {
    let file = if is_npy(bytes) {
        read_label_npy(
            crate::npy::read_matrix_from_bytes(bytes, name, limit)?,
            name,
        )?
    } else {
        read_label_csv(bytes, name, limit)?
    };
    let (mut codes, names) = resolve_labels(&[LabelSource {
        name: name.to_string(),
        file,
        rows: None,
    }])?;
    Ok((codes.pop().unwrap_or_default(), names))
}

fn read_mask(path: &Path, rows: usize, limit: &MemoryLimit) -> Result<Vec<bool>> {
    let name = path.display().to_string();
    let bad = |at: String, v: &str| {
        ferr(
            &name,
            format!("{at}: the corruption mask holds 0 or 1 (or true/false), found {v}"),
        )
    };
    let src = LabelSource {
        name: name.clone(),
        file: read_label_file(path, limit)?,
        rows: Some(rows),
    };
    match &src.file {
        LabelFile::Npy(v) => v
            .iter()
            .enumerate()
            .map(|(i, &c)| match c {
                0.0 => Ok(false),
                1.0 => Ok(true),
                _ => Err(bad(format!("row {i} (0-based)"), &c.to_string())),
            })
            .collect(),
        LabelFile::Csv(_) => src
            .csv_rows()
            .iter()
            .enumerate()
            .map(|(i, (t, line))| {
                match t.to_ascii_lowercase().as_str() {
                    "true" => return Ok(true),
                    "false" => return Ok(false),
                    _ => {}
                }
                match t.parse::<f64>() {
                    Ok(0.0) => Ok(false),
                    Ok(1.0) => Ok(true),
                    _ => Err(bad(format!("sample {i} (line {line})"), &short(t))),
                }
            })
            .collect(),
    }
}

/// Loads and checks a user data set (row counts, labels in range, finite features) under the
/// memory limit [`MemoryLimit::global`].
pub fn load_user_data(p: &UserDataPaths) -> Result<CleaningData> {
    Ok(load_user_data_with(p, &MemoryLimit::global())?.data)
}

/// [`load_user_data`] under the memory limit `limit` (applied to each file), keeping the
/// class names when the labels are names.
pub fn load_user_data_with(p: &UserDataPaths, limit: &MemoryLimit) -> Result<UserData> {
    if let Some(c) = p.classes
        && c > MAX_CLASSES
    {
        return Err(Error::setting(
            "classes",
            c,
            format!("at most {MAX_CLASSES} classes are supported"),
        ));
    }
    let test_paths = match (&p.test_x, &p.test_y) {
        (Some(x), Some(y)) => Some((x, y)),
        (None, None) => None,
        _ => {
            return Err(Error::setting(
                "test_x / test_y",
                "only one given",
                "give both test files or neither",
            ));
        }
    };
    let train_x = read_table_with(&p.train_x, limit)?;
    let val_x = read_table_with(&p.val_x, limit)?;
    let test_x = match test_paths {
        Some((x, _)) => Some(read_table_with(x, limit)?),
        None => None,
    };
    let mut srcs = vec![
        LabelSource {
            name: p.train_y.display().to_string(),
            file: read_label_file(&p.train_y, limit)?,
            rows: Some(train_x.nrows()),
        },
        LabelSource {
            name: p.val_y.display().to_string(),
            file: read_label_file(&p.val_y, limit)?,
            rows: Some(val_x.nrows()),
        },
    ];
    if let (Some((_, y)), Some(x)) = (test_paths, &test_x) {
        srcs.push(LabelSource {
            name: y.display().to_string(),
            file: read_label_file(y, limit)?,
            rows: Some(x.nrows()),
        });
    }
    let (mut codes, names) = resolve_labels(&srcs)?;
    let m = train_x.ncols();
    let test = match test_x {
        Some(x) => Split::new(x, codes.pop().unwrap_or_default()),
        None => Split::empty(m),
    };
    let val = Split::new(val_x, codes.pop().unwrap_or_default());
    let train = Split::new(train_x, codes.pop().unwrap_or_default());
    let corrupted = match &p.corrupted {
        Some(path) => Some(read_mask(path, train.len(), limit)?),
        None => None,
    };
    let classes = p.classes.unwrap_or_else(|| match &names {
        Some(n) => n.len(),
        None => train
            .labels
            .iter()
            .chain(&val.labels)
            .chain(&test.labels)
            .max()
            .map_or(0, |l| l + 1),
    });
    let data = CleaningData::new(
        train,
        val,
        test,
        classes,
        corrupted,
        format!("user data ({})", p.train_x.display()),
    )?;
    Ok(UserData {
        data,
        classes: names,
    })
}
