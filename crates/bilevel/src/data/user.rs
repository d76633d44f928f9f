//! User data for the cleaning problem: features and labels from `.npy` or CSV files.

use crate::error::{Error, Result};
use crate::problems::cleaning::{CleaningData, Split};
use faer::Mat;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Paths of a user data set. Feature files hold one sample per row; label files one integer
/// class index (0-based) per row; the optional corruption mask one 0/1 per training sample.
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
    /// Number of classes (default: largest label + 1).
    #[serde(default)]
    pub classes: Option<usize>,
}

fn ferr(path: &Path, reason: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a numeric matrix from `.npy` (float32/64) or CSV (comma-separated numbers, one row
/// per sample; a first line that does not parse as numbers is taken as a header). NaN and Inf
/// are kept here and rejected by [`CleaningData::new`] with the sample and feature named.
pub fn read_table(path: &Path) -> Result<Mat<f64>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => crate::npy::read_matrix(path),
        "csv" | "txt" => read_csv(path),
        other => Err(ferr(
            path,
            format!("unknown extension `{other}`: use .npy or .csv"),
        )),
    }
}

fn read_csv(path: &Path) -> Result<Mat<f64>> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| ferr(path, e.to_string()))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (k, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| ferr(path, e.to_string()))?;
        let parsed: std::result::Result<Vec<f64>, _> =
            rec.iter().map(|s| s.parse::<f64>()).collect();
        match parsed {
            Ok(v) => {
                if let Some(first) = rows.first()
                    && first.len() != v.len()
                {
                    return Err(ferr(
                        path,
                        format!(
                            "line {}: {} columns, the first data line has {}",
                            k + 1,
                            v.len(),
                            first.len()
                        ),
                    ));
                }
                rows.push(v);
            }
            Err(_) if k == 0 => continue,
            Err(e) => return Err(ferr(path, format!("line {}: not a number ({e})", k + 1))),
        }
    }
    if rows.is_empty() {
        return Err(ferr(path, "no data rows"));
    }
    let c = rows[0].len();
    Ok(Mat::from_fn(rows.len(), c, |i, j| rows[i][j]))
}

fn read_labels(path: &Path) -> Result<Vec<usize>> {
    let m = read_table(path)?;
    if m.ncols() != 1 {
        return Err(ferr(
            path,
            format!("labels must be one column, found {}", m.ncols()),
        ));
    }
    (0..m.nrows())
        .map(|i| {
            let y = m[(i, 0)];
            if y.is_finite() && y >= 0.0 && y.fract() == 0.0 {
                Ok(y as usize)
            } else {
                Err(ferr(
                    path,
                    format!("row {i}: label {y} is not a non-negative integer class index"),
                ))
            }
        })
        .collect()
}

/// Loads and checks a user data set (row counts, labels in range, finite features).
pub fn load_user_data(p: &UserDataPaths) -> Result<CleaningData> {
    let train = Split::new(read_table(&p.train_x)?, read_labels(&p.train_y)?);
    let val = Split::new(read_table(&p.val_x)?, read_labels(&p.val_y)?);
    let m = train.x.ncols();
    let test = match (&p.test_x, &p.test_y) {
        (Some(x), Some(y)) => Split::new(read_table(x)?, read_labels(y)?),
        (None, None) => Split::empty(m),
        _ => {
            return Err(Error::setting(
                "test_x / test_y",
                "only one given",
                "give both test files or neither",
            ));
        }
    };
    let corrupted = match &p.corrupted {
        Some(path) => Some(
            read_labels(path)?
                .into_iter()
                .enumerate()
                .map(|(i, c)| match c {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(ferr(
                        path,
                        format!("row {i}: the corruption mask holds 0 or 1, found {c}"),
                    )),
                })
                .collect::<Result<Vec<bool>>>()?,
        ),
        None => None,
    };
    let classes = p.classes.unwrap_or_else(|| {
        train
            .labels
            .iter()
            .chain(&val.labels)
            .chain(&test.labels)
            .max()
            .map_or(0, |l| l + 1)
    });
    CleaningData::new(
        train,
        val,
        test,
        classes,
        corrupted,
        format!("user data ({})", p.train_x.display()),
    )
}
