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

/// y ← y + a·x. Compiled for the widest SIMD the CPU has (runtime dispatch; the release
/// build targets baseline x86-64, whose SSE2 loop took 3–4 times as long on the solvers' u
/// updates). Bit-identical on every path: each entry is one multiply and one add, never fused.
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi += a * xi;
            }
        },
    );
}

/// y ← a·x, SIMD-dispatched as [`axpy`].
pub fn scale_into(a: f64, x: &[f64], y: &mut [f64]) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi = a * xi;
            }
        },
    );
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

/// Preconditioned conjugate gradients on every column of A X = B at once (A symmetric positive
/// definite, given by `apply(P, AP)`; `precond` applies M⁻¹ ≈ A⁻¹ in place), from the start X
/// passed in, whose residual R = B − A X the caller gives (it can often form it more cheaply
/// than B itself). Each column has its own step sizes; the products are shared, so k columns
/// cost one block product per iteration. Stops when every column satisfies
/// ‖r_j‖ ≤ tol · scale_j (the recursively updated residual; scale_j is typically ‖b_j‖) and
/// returns the iterations taken, or None after `max_iter` iterations (X then holds the last
/// iterate). `stepped(a)` is told the step sizes after each update X += P diag(a), so a caller
/// can carry a linear image of X along (X's rows under the data, say) from the products it made.
#[allow(clippy::too_many_arguments)]
pub fn block_pcg(
    mut r: Mat<f64>,
    scale: &[f64],
    mut x: faer::MatMut<'_, f64>,
    mut apply: impl FnMut(MatRef<'_, f64>, faer::MatMut<'_, f64>),
    mut precond: impl FnMut(faer::MatMut<'_, f64>),
    mut stepped: impl FnMut(&[f64]),
    tol: f64,
    max_iter: usize,
) -> Option<usize> {
    let (m, k) = (r.nrows(), r.ncols());
    let col_dot = |a: MatRef<'_, f64>, c: MatRef<'_, f64>, j: usize| -> f64 {
        a.col(j)
            .iter()
            .zip(c.col(j).iter())
            .map(|(p, q)| p * q)
            .sum()
    };
    let done =
        |r: &Mat<f64>| (0..k).all(|j| col_dot(r.as_ref(), r.as_ref(), j).sqrt() <= tol * scale[j]);
    if done(&r) {
        return Some(0);
    }
    let mut z = r.clone();
    precond(z.as_mut());
    let mut p = z.clone();
    let mut q = Mat::<f64>::zeros(m, k);
    let mut rz: Vec<f64> = (0..k).map(|j| col_dot(r.as_ref(), z.as_ref(), j)).collect();
    let mut alpha = vec![0.0; k];
    for it in 1..=max_iter {
        apply(p.as_ref(), q.as_mut());
        for (j, aj) in alpha.iter_mut().enumerate() {
            let pq = col_dot(p.as_ref(), q.as_ref(), j);
            // A converged column (r = 0) has pq = 0: it takes no step.
            let a = if pq > 0.0 { rz[j] / pq } else { 0.0 };
            *aj = a;
            for i in 0..m {
                x[(i, j)] += a * p[(i, j)];
                r[(i, j)] -= a * q[(i, j)];
            }
        }
        stepped(&alpha);
        if done(&r) {
            return Some(it);
        }
        z.copy_from(&r);
        precond(z.as_mut());
        for j in 0..k {
            let rz_new = col_dot(r.as_ref(), z.as_ref(), j);
            let beta = if rz[j] > 0.0 { rz_new / rz[j] } else { 0.0 };
            rz[j] = rz_new;
            for i in 0..m {
                p[(i, j)] = z[(i, j)] + beta * p[(i, j)];
            }
        }
    }
    None
}
