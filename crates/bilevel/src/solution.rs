//! What a user reads off a solution (u, v): named arrays in the problem's own terms (sample
//! weights and the trained model for hyper-cleaning, the two layers for representation
//! learning), and their `.npy` files.

use crate::error::{Error, Result};
use npyz::WriterBuilder;
use std::path::Path;

/// The values of a [`View`].
#[derive(Debug, Clone, PartialEq)]
pub enum ViewData {
    /// Floating-point values, row-major.
    F64(Vec<f64>),
    /// Booleans (a mask), row-major.
    Bool(Vec<bool>),
    /// Names (class names in code order), written as a JSON array.
    Names(Vec<String>),
}

/// One named array of a solution, row-major with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// File stem and attribute name (`sample_weights`, `model`, `w1`, ...).
    pub name: String,
    /// Shape: one entry for a vector, two (rows, columns) for a matrix.
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub data: ViewData,
    /// One line on what it holds, for reports and docstrings.
    pub doc: String,
}

impl View {
    /// A float vector.
    pub fn vector(name: &str, doc: &str, v: Vec<f64>) -> View {
        View {
            name: name.into(),
            shape: vec![v.len()],
            data: ViewData::F64(v),
            doc: doc.into(),
        }
    }

    /// A boolean mask.
    pub fn mask(name: &str, doc: &str, v: Vec<bool>) -> View {
        View {
            name: name.into(),
            shape: vec![v.len()],
            data: ViewData::Bool(v),
            doc: doc.into(),
        }
    }

    /// A matrix stored column-major in `col_major` (the layout of the problems' flat
    /// variables), turned row-major here.
    pub fn matrix(name: &str, doc: &str, rows: usize, cols: usize, col_major: &[f64]) -> View {
        debug_assert_eq!(col_major.len(), rows * cols);
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(col_major[i + j * rows]);
            }
        }
        View {
            name: name.into(),
            shape: vec![rows, cols],
            data: ViewData::F64(data),
            doc: doc.into(),
        }
    }

    /// A list of names: entry i names code i.
    pub fn names(name: &str, doc: &str, v: Vec<String>) -> View {
        View {
            name: name.into(),
            shape: vec![v.len()],
            data: ViewData::Names(v),
            doc: doc.into(),
        }
    }

    /// The file extension the view is written with: `npy` for arrays, `json` for names.
    pub fn extension(&self) -> &'static str {
        match self.data {
            ViewData::Names(_) => "json",
            _ => "npy",
        }
    }

    /// Writes the view: arrays as C-order `.npy` files (float64 or bool), names as a JSON array.
    pub fn save(&self, path: &Path) -> Result<()> {
        match &self.data {
            ViewData::Names(v) => {
                let text = serde_json::to_string_pretty(v).map_err(|e| file_err(path, e))?;
                std::fs::write(path, text).map_err(|e| file_err(path, e))
            }
            _ => save_npy(path, &self.shape, &self.data),
        }
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `data` with `shape` as a C-order `.npy` file.
pub fn save_npy(path: &Path, shape: &[usize], data: &ViewData) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| file_err(path, e))?;
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let buf = std::io::BufWriter::new(f);
    match data {
        ViewData::F64(v) => {
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(buf)
                .begin_nd()
                .map_err(|e| file_err(path, e))?;
            w.extend(v.iter().copied()).map_err(|e| file_err(path, e))?;
            w.finish().map_err(|e| file_err(path, e))
        }
        ViewData::Names(_) => Err(file_err(
            path,
            "names are written as JSON (View::save), not as .npy",
        )),
        ViewData::Bool(v) => {
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(buf)
                .begin_nd()
                .map_err(|e| file_err(path, e))?;
            w.extend(v.iter().copied()).map_err(|e| file_err(path, e))?;
            w.finish().map_err(|e| file_err(path, e))
        }
    }
}

/// How good a solution is in the problem's own terms, beside the trace: for hyper-cleaning the
/// accuracy of the iterate, of the unweighted and oracle models and of the model retrained on
/// the kept samples, the share of the gap closed, and the cleaning scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assessment {
    /// Section title.
    pub title: String,
    /// Column names of the table.
    pub header: Vec<String>,
    /// Table rows, formatted.
    pub rows: Vec<Vec<String>>,
    /// The same numbers as data (NaN written as null).
    pub summary: serde_json::Value,
    /// What the numbers mean, in a sentence each.
    pub notes: Vec<String>,
}
