//! Small vector helpers and dense solves shared by problems and solvers.

use crate::error::{Error, Result};
use faer::prelude::*;
use faer::{Mat, MatRef, Side};

/// Euclidean norm.
pub fn norm(x: &[f64]) -> f64 {
    dot(x, x).sqrt()
}

/// Inner product.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// y ← y + a·x.
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// ‖x − y‖.
pub fn dist(x: &[f64], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt()
}

/// Column vector view of a slice.
pub fn col(x: &[f64]) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(x, x.len(), 1)
}

/// Copies a one-column matrix into a Vec.
pub fn to_vec(m: MatRef<'_, f64>) -> Vec<f64> {
    (0..m.nrows()).map(|i| m[(i, 0)]).collect()
}

/// Solves A X = B for symmetric positive-definite A by Cholesky.
pub fn spd_solve(what: &str, a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
    let llt = a.llt(Side::Lower).map_err(|_| {
        Error::data(
            what,
            "matrix is not symmetric positive definite (Cholesky failed)",
        )
    })?;
    Ok(llt.solve(b))
}

/// Largest and smallest eigenvalue of a symmetric matrix.
pub fn sym_eig_range(a: MatRef<'_, f64>) -> Result<(f64, f64)> {
    let ev = a.self_adjoint_eigenvalues(Side::Lower).map_err(|_| {
        Error::data(
            "symmetric matrix",
            "eigenvalue computation did not converge",
        )
    })?;
    let lo = ev.first().copied().unwrap_or(0.0);
    let hi = ev.last().copied().unwrap_or(0.0);
    Ok((lo, hi))
}
