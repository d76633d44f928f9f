//! Reading and writing dense matrices as NumPy `.npy` files (f64 or f32; C or Fortran order),
//! with checks that name the file and the problem.

use crate::error::{Error, Result};
use faer::Mat;
use npyz::WriterBuilder;
use std::path::Path;

fn file_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads a 1-D or 2-D array of floats (a 1-D array becomes one column). NaN or Inf entries are
/// an error.
pub fn read_matrix(path: &Path) -> Result<Mat<f64>> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| file_err(path, format!("not a valid .npy file ({e})")))?;
    let shape = npy.shape().to_vec();
    let order = npy.order();
    let (rows, cols) = match shape.as_slice() {
        [n] => (*n as usize, 1usize),
        [r, c] => (*r as usize, *c as usize),
        s => {
            return Err(file_err(
                path,
                format!("expected a 1-D or 2-D array, found shape {s:?}"),
            ));
        }
    };
    let dtype = npy.dtype().descr();
    let data: Vec<f64> = match dtype
        .trim_matches(['\'', '"'])
        .trim_start_matches(['<', '>', '|', '='])
    {
        "f8" => npy.into_vec::<f64>().map_err(|e| file_err(path, e))?,
        "f4" => npy
            .into_vec::<f32>()
            .map_err(|e| file_err(path, e))?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => {
            return Err(file_err(
                path,
                format!("unsupported dtype {other}; save the array as float64 (or float32)"),
            ));
        }
    };
    if data.len() != rows * cols {
        return Err(file_err(
            path,
            format!(
                "truncated: the header promises {} values, the file holds {}",
                rows * cols,
                data.len()
            ),
        ));
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            what: path.display().to_string(),
            index: i,
        });
    }
    Ok(match order {
        npyz::Order::C => Mat::from_fn(rows, cols, |i, j| data[i * cols + j]),
        npyz::Order::Fortran => Mat::from_fn(rows, cols, |i, j| data[i + j * rows]),
    })
}

/// Writes a matrix as a C-order float64 `.npy` file.
pub fn write_matrix(path: &Path, m: &Mat<f64>) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| file_err(path, e))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[m.nrows() as u64, m.ncols() as u64])
        .writer(std::io::BufWriter::new(f))
        .begin_nd()
        .map_err(|e| file_err(path, e))?;
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            w.push(&m[(i, j)]).map_err(|e| file_err(path, e))?;
        }
    }
    w.finish().map_err(|e| file_err(path, e))
}
