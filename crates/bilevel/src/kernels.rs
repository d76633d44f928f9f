//! Shared dense kernels of the least-squares problems: the parallelism rule, a row-split
//! product, and the fused pass that computes R = X Z − Y and Xᵀ R with one read of X.

use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::Mutex;

/// Scratch workspaces reused across calls: one per concurrent caller, made on first use, so an
/// evaluation allocates nothing once the pool is warm.
#[derive(Debug)]
pub(crate) struct Pool<T>(Mutex<Vec<T>>);

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool(Mutex::new(Vec::new()))
    }
}

impl<T> Pool<T> {
    /// Runs `f` with a workspace from the pool (`make` builds one when none is free).
    pub(crate) fn with<R>(&self, make: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        let popped = lock().pop();
        let mut ws = popped.unwrap_or_else(make);
        let r = f(&mut ws);
        lock().push(ws);
        r
    }
}

/// Rows per block of a fused pass: a block of X (rows × m) stays in the core's L2 cache
/// between its product and its transposed product.
pub(crate) const BLOCK_BYTES: usize = 512 << 10;

/// Below this many multiply-adds a pass runs on one thread (rayon's hand-off costs more).
pub(crate) const PAR_MIN_FMAS: usize = 1 << 20;

/// Parallelism for a product of `fmas` multiply-adds: the global setting when large enough.
pub(crate) fn par_for(fmas: usize) -> Par {
    if fmas >= PAR_MIN_FMAS {
        faer::get_global_parallelism()
    } else {
        Par::Seq
    }
}

/// dst = lhs · rhs with `par`; under rayon parallelism the rows of dst are split into one
/// sequential product per thread (skinny products parallelize better this way than inside the
/// GEMM).
pub(crate) fn matmul_par(
    dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    par: Par,
) {
    fn split(dst: MatMut<'_, f64>, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>, parts: usize) {
        if parts <= 1 || lhs.nrows() < 2 * parts {
            matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
            return;
        }
        let half = parts / 2;
        let mid = lhs.nrows() * half / parts;
        let (d0, d1) = dst.split_at_row_mut(mid);
        let (l0, l1) = lhs.split_at_row(mid);
        rayon::join(
            || split(d0, l0, rhs, half),
            || split(d1, l1, rhs, parts - half),
        );
    }
    match par {
        Par::Seq => matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq),
        _ => split(dst, lhs, rhs, rayon::current_num_threads()),
    }
}

/// One thread's share of a fused pass.
#[derive(Debug)]
pub(crate) struct Part {
    /// Residual block, rows × k.
    r: Mat<f64>,
    /// Partial Xᵀ R, m × k.
    g: Mat<f64>,
    /// Partial half squared residuals of the two column groups.
    val: [f64; 2],
}

impl Part {
    /// One part per rayon thread, for passes over matrices with `m` columns and at most
    /// `max_rows` rows, with at most `k` right-hand sides.
    pub(crate) fn pool(max_rows: usize, m: usize, k: usize) -> Vec<Part> {
        let rows = (BLOCK_BYTES / (8 * m.max(1))).max(8).min(max_rows.max(1));
        (0..rayon::current_num_threads().max(1))
            .map(|_| Part {
                r: Mat::zeros(rows, k),
                g: Mat::zeros(m, k),
                val: [0.0; 2],
            })
            .collect()
    }
}

/// Optional per-row work of a fused pass.
#[derive(Default)]
pub(crate) struct RowOps<'a> {
    /// Row weights ρ: the transposed product becomes Xᵀ diag(ρ) R.
    pub weight: Option<&'a [f64]>,
    /// Per-row half squared residuals, row-major (row i, group q at `i * groups + q`).
    pub losses: Option<&'a mut [f64]>,
    /// The residual rows X Z − [Y, Y] themselves (before the weights), N × k.
    pub rows: Option<MatMut<'a, f64>>,
}

/// One pass over the rows of X: for Z with one or two groups of n columns (n = Y's columns),
/// returns ½‖X Z_q − Y‖² for each group q and writes G = Xᵀ diag(ρ) (X Z − [Y, Y]) restricted
/// to its first `g.ncols()` columns (ρ = 1 unless `ops.weight` is given). Each block of rows is
/// multiplied twice while it is in cache, so X crosses the memory bus once; blocks are split
/// over the threads when the pass is large. Results are deterministic for a given thread count
/// (partials are summed in a fixed order).
pub(crate) fn fused_pass(
    x: MatRef<'_, f64>,
    y: MatRef<'_, f64>,
    z: MatRef<'_, f64>,
    mut g: MatMut<'_, f64>,
    parts: &mut [Part],
    ops: RowOps<'_>,
) -> [f64; 2] {
    let (nrows, n) = (x.nrows(), y.ncols());
    let (k, kg) = (z.ncols(), g.ncols());
    let groups = k / n;
    let block = parts[0].r.nrows();
    let threads = if x.nrows() * x.ncols() * k >= PAR_MIN_FMAS {
        parts.len().min(nrows.div_ceil(block))
    } else {
        1
    };
    let parts = &mut parts[..threads];
    let chunk = nrows.div_ceil(threads);
    let weight = ops.weight;
    let work = |t: usize,
                part: &mut Part,
                mut losses: Option<&mut [f64]>,
                mut rows: Option<MatMut<'_, f64>>| {
        part.val = [0.0; 2];
        let (lo, hi) = (t * chunk, ((t + 1) * chunk).min(nrows));
        if lo >= hi && kg > 0 {
            part.g.fill(0.0);
        }
        if let Some(l) = losses.as_deref_mut() {
            l.fill(0.0);
        }
        let mut first = true;
        let mut i0 = lo;
        while i0 < hi {
            let b = block.min(hi - i0);
            let xb = x.subrows(i0, b);
            let mut rb = part.r.as_mut().submatrix_mut(0, 0, b, k);
            matmul(rb.rb_mut(), Accum::Replace, xb, z, 1.0, Par::Seq);
            for q in 0..groups {
                let mut s = 0.0;
                for j in 0..n {
                    let yc = y.col(j).subrows(i0, b);
                    let rc = rb.rb_mut().col_mut(q * n + j);
                    match losses.as_deref_mut() {
                        None => {
                            for (ri, yi) in rc.iter_mut().zip(yc.iter()) {
                                *ri -= yi;
                                s += *ri * *ri;
                            }
                        }
                        Some(l) => {
                            let l = &mut l[(i0 - lo) * groups..];
                            for (i, (ri, yi)) in rc.iter_mut().zip(yc.iter()).enumerate() {
                                *ri -= yi;
                                let sq = *ri * *ri;
                                s += sq;
                                l[i * groups + q] += 0.5 * sq;
                            }
                        }
                    }
                }
                part.val[q] += s;
            }
            if let Some(out) = rows.as_mut() {
                out.rb_mut().subrows_mut(i0 - lo, b).copy_from(rb.rb());
            }
            if kg > 0 {
                if let Some(wt) = weight {
                    let wt = &wt[i0..i0 + b];
                    for j in 0..kg {
                        let rc = rb.rb_mut().col_mut(j);
                        rc.iter_mut().zip(wt).for_each(|(r, w)| *r *= w);
                    }
                }
                let acc = if first { Accum::Replace } else { Accum::Add };
                let gp = part.g.as_mut().submatrix_mut(0, 0, x.ncols(), kg);
                matmul(
                    gp,
                    acc,
                    xb.transpose(),
                    rb.rb().subcols(0, kg),
                    1.0,
                    Par::Seq,
                );
            }
            first = false;
            i0 += b;
        }
    };
    let mut losses = ops.losses;
    let mut rows = ops.rows;
    if threads == 1 {
        work(
            0,
            &mut parts[0],
            losses.as_deref_mut().map(|l| &mut l[..nrows * groups]),
            rows.as_mut().map(|r| r.rb_mut().subrows_mut(0, nrows)),
        );
    } else {
        use rayon::prelude::*;
        let mut slices: Vec<Option<&mut [f64]>> = match losses {
            Some(l) => l[..nrows * groups]
                .chunks_mut(chunk * groups)
                .map(Some)
                .collect(),
            None => Vec::new(),
        };
        slices.resize_with(threads, || None);
        let mut row_chunks: Vec<Option<MatMut<'_, f64>>> = Vec::with_capacity(threads);
        if let Some(mut r) = rows {
            for _ in 0..threads {
                let take = chunk.min(r.nrows());
                let (head, tail) = r.split_at_row_mut(take);
                row_chunks.push(Some(head));
                r = tail;
            }
        }
        row_chunks.resize_with(threads, || None);
        parts
            .par_iter_mut()
            .zip(slices.into_par_iter())
            .zip(row_chunks.into_par_iter())
            .enumerate()
            .for_each(|(t, ((part, l), r))| work(t, part, l, r));
    }
    let mut val = [0.0; 2];
    for (t, part) in parts.iter().enumerate() {
        val[0] += part.val[0];
        val[1] += part.val[1];
        if kg > 0 {
            let gp = part.g.as_ref().submatrix(0, 0, x.ncols(), kg);
            if t == 0 {
                g.copy_from(gp);
            } else {
                g += gp;
            }
        }
    }
    [0.5 * val[0], 0.5 * val[1]]
}
