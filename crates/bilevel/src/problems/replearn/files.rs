//! Loading an instance's data from `.npy` or CSV files and saving it with its closed-form
//! optimum.

use super::optimum::PINV_RTOL;
use super::{RepLearning, Scaling};
use crate::error::{Error, Result};
use faer::Mat;
use std::path::Path;

impl RepLearning {
    /// Loads X_trn, Y_trn, X_val, Y_val from `.npy` files (float64 or float32, 1-D arrays
    /// become one column).
    pub fn from_npy(
        x_trn: &Path,
        y_trn: &Path,
        x_val: &Path,
        y_val: &Path,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        let read = |p: &Path| -> Result<Mat<f64>> {
            let m = crate::npy::read_matrix(p)?;
            crate::problem::check_data_scale(&p.display().to_string(), m.as_ref())?;
            Ok(m)
        };
        Self::from_data(
            read(x_trn)?,
            read(y_trn)?,
            read(x_val)?,
            read(y_val)?,
            h,
            scaling,
        )
    }

    /// Loads X_trn, Y_trn, X_val, Y_val from CSV files (comma-separated numbers, one sample
    /// per line; a first line that is not numeric is taken as a header).
    pub fn from_csv(
        x_trn: &Path,
        y_trn: &Path,
        x_val: &Path,
        y_val: &Path,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        let read = |p: &Path| -> Result<Mat<f64>> {
            let m = read_csv_matrix(p)?;
            crate::problem::check_data_scale(&p.display().to_string(), m.as_ref())?;
            Ok(m)
        };
        Self::from_data(
            read(x_trn)?,
            read(y_trn)?,
            read(x_val)?,
            read(y_val)?,
            h,
            scaling,
        )
    }

    /// Loads `x_trn`, `y_trn`, `x_val`, `y_val` from `dir`, each as `.npy` or else `.csv`.
    pub fn from_dir(dir: &Path, h: usize, scaling: Scaling) -> Result<Self> {
        // The scale is checked here too, so that a value too large names its file.
        let scaled = |p: &Path, m: Mat<f64>| -> Result<Mat<f64>> {
            crate::problem::check_data_scale(&p.display().to_string(), m.as_ref())?;
            Ok(m)
        };
        let load = |name: &str| -> Result<Mat<f64>> {
            let npy = dir.join(format!("{name}.npy"));
            let csv = dir.join(format!("{name}.csv"));
            if npy.exists() {
                scaled(&npy, crate::npy::read_matrix(&npy)?)
            } else if csv.exists() {
                scaled(&csv, read_csv_matrix(&csv)?)
            } else {
                Err(Error::File {
                    path: npy.display().to_string(),
                    reason: format!(
                        "neither {name}.npy nor {name}.csv exists in {}",
                        dir.display()
                    ),
                })
            }
        };
        Self::from_data(
            load("x_trn")?,
            load("y_trn")?,
            load("x_val")?,
            load("y_val")?,
            h,
            scaling,
        )
    }

    /// Writes the data as given (x_trn.npy, y_trn.npy, x_val.npy, y_val.npy), the closed-form
    /// Z* (z_star.npy) and a summary (optimum.json: regime, f*_full, g*_full, flag, scaling,
    /// pseudo-inverse tolerance) into `dir`.
    pub fn save_npy(&self, dir: &Path) -> Result<()> {
        let werr = |e: std::io::Error| Error::Write {
            path: dir.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(werr)?;
        for (name, a) in ["x_trn", "y_trn", "x_val", "y_val"].iter().zip(&self.raw) {
            crate::npy::write_matrix(&dir.join(format!("{name}.npy")), a)?;
        }
        crate::npy::write_matrix(&dir.join("z_star.npy"), &self.z_star)?;
        let meta = serde_json::json!({
            "problem": "f = 1/2 ||X_val W1 W2 - Y_val||^2, g = 1/2 ||X_trn W1 W2 - Y_trn||^2",
            "scaling": self.scaling, "h": self.h, "regime": self.regime,
            "certified_global": self.certified, "f_star_full": self.f_full,
            "g_star_full": self.g_full, "f_at_w1_zero": self.f_zero, "flagged": self.flagged(),
            "pinv_rtol": PINV_RTOL,
        });
        let path = dir.join("optimum.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&meta).unwrap_or_default(),
        )
        .map_err(werr)
    }
}

/// Reads a CSV file of numbers (one row per line, comma-separated; a non-numeric first line is
/// a header). Ragged rows, empty files and NaN/Inf are errors naming the file, row and column.
pub fn read_csv_matrix(path: &Path) -> Result<Mat<f64>> {
    let ferr = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    // A regular file only (a FIFO would block), and no more values than its size allows: a
    // value takes at least two bytes of text ("1,") and 16 of memory (parsed, then the matrix).
    let (file, len) = crate::data::open_data_file(path)?;
    crate::limits::MemoryLimit::global().check_values(
        &format!("the table in {}", path.display()),
        len / 2 + 1,
        16,
        &format!("the size of {}", path.display()),
    )?;
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (k, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| ferr(e.to_string()))?;
        let parsed: std::result::Result<Vec<f64>, _> = rec.iter().map(str::parse::<f64>).collect();
        match parsed {
            Ok(row) => {
                if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                    return Err(Error::NonFinite {
                        what: format!("{} (line {}, column {})", path.display(), k + 1, j + 1),
                        index: rows.len() * row.len() + j,
                    });
                }
                if let Some(first) = rows.first()
                    && first.len() != row.len()
                {
                    return Err(ferr(format!(
                        "line {} has {} values, earlier lines have {}: every row must have the same number of columns",
                        k + 1,
                        row.len(),
                        first.len()
                    )));
                }
                rows.push(row);
            }
            Err(e) if k == 0 => {
                let _ = e; // a header line
            }
            Err(e) => {
                return Err(ferr(format!("line {} is not numeric ({e})", k + 1)));
            }
        }
    }
    if rows.is_empty() {
        return Err(ferr("no numeric rows".into()));
    }
    let (r, c) = (rows.len(), rows[0].len());
    Ok(Mat::from_fn(r, c, |i, j| rows[i][j]))
}
