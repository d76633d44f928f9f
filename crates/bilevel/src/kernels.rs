//! Shared dense kernels of the least-squares problems: the parallelism rule, a row-split
//! product, and the fused pass that computes R = X Z − Y and Xᵀ R with one read of X; and its
//! generalization to any per-row map ([`map_pass`], the softmax passes of hyper-cleaning).

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

/// dst = lhs · rhs with `par`; under rayon parallelism dst is split into one sequential
/// product per thread (skinny products parallelize better this way than inside the GEMM).
pub(crate) fn matmul_par(
    dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    par: Par,
) {
    matmul_par_into(dst, Accum::Replace, lhs, rhs, 1.0, par)
}

/// dst = alpha · lhs · rhs (`Accum::Replace`) or dst += alpha · lhs · rhs (`Accum::Add`), split
/// over threads as [`matmul_par`]: a tall dst (a skinny product) by rows, a wide one (a
/// low-rank update) by columns, so that each thread writes whole columns and no cache line of
/// dst is shared between threads but at one boundary (row blocks of a column-major matrix
/// share a line at every column: twice as slow on an accumulated update, measured).
pub(crate) fn matmul_par_into(
    dst: MatMut<'_, f64>,
    accum: Accum,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
    par: Par,
) {
    fn split(
        dst: MatMut<'_, f64>,
        lhs: MatRef<'_, f64>,
        rhs: MatRef<'_, f64>,
        scale: (Accum, f64),
        parts: usize,
    ) {
        let by_cols = dst.ncols() >= 8 * parts && 4 * dst.ncols() >= dst.nrows();
        let len = if by_cols { dst.ncols() } else { dst.nrows() };
        if parts <= 1 || len < 2 * parts {
            matmul(dst, scale.0, lhs, rhs, scale.1, Par::Seq);
            return;
        }
        let half = parts / 2;
        let mid = len * half / parts;
        if by_cols {
            let (d0, d1) = dst.split_at_col_mut(mid);
            let (r0, r1) = rhs.split_at_col(mid);
            rayon::join(
                || split(d0, lhs, r0, scale, half),
                || split(d1, lhs, r1, scale, parts - half),
            );
        } else {
            let (d0, d1) = dst.split_at_row_mut(mid);
            let (l0, l1) = lhs.split_at_row(mid);
            rayon::join(
                || split(d0, l0, rhs, scale, half),
                || split(d1, l1, rhs, scale, parts - half),
            );
        }
    }
    match par {
        Par::Seq => matmul(dst, accum, lhs, rhs, alpha, Par::Seq),
        _ => split(dst, lhs, rhs, (accum, alpha), rayon::current_num_threads()),
    }
}

/// dst = lhs · rhs for a wide column-major lhs (m × h, a layer's weights) and a skinny rhs,
/// split over threads along the inner dimension: thread t multiplies lhs's columns
/// [h·t/T, h·(t+1)/T) (its own contiguous block of memory, the same block that
/// [`matmul_par_into`] gives it for lhsᵀ·(·) and for a rank-k update of lhs) into its own
/// partial, and the partials are summed in a fixed order (deterministic for a given thread
/// count). Keeping each thread on one block of lhs across all of an iteration's products
/// matters when the host places the two vCPUs on different core complexes: a row split here
/// and a column split there moved a quarter of the matrix between their caches per product,
/// and the medium iteration ran at one thread's speed. `partials` holds the T − 1 partials
/// (m × k each, made on first use).
pub(crate) fn matmul_par_inner(
    mut dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    partials: &mut Vec<Mat<f64>>,
    par: Par,
) {
    let parts = match par {
        Par::Seq => 1,
        _ => rayon::current_num_threads().min(lhs.ncols() / 8).max(1),
    };
    if parts == 1 {
        matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
        return;
    }
    let (m, k, h) = (dst.nrows(), dst.ncols(), lhs.ncols());
    partials.truncate(parts - 1);
    for p in partials.iter_mut() {
        if (p.nrows(), p.ncols()) != (m, k) {
            *p = Mat::zeros(m, k);
        }
    }
    while partials.len() < parts - 1 {
        partials.push(Mat::zeros(m, k));
    }
    // Part t takes lhs's columns [h·t/T, h·(t+1)/T): for two threads the same halves as
    // matmul_par_into's split.
    let block = |t: usize| (h * t / parts, h * (t + 1) / parts);
    let product = |t: usize, out: MatMut<'_, f64>| {
        let (lo, hi) = block(t);
        let (l, r) = (lhs.subcols(lo, hi - lo), rhs.subrows(lo, hi - lo));
        matmul(out, Accum::Replace, l, r, 1.0, Par::Seq);
    };
    use rayon::prelude::*;
    rayon::join(
        || product(0, dst.rb_mut()),
        || {
            partials
                .par_iter_mut()
                .enumerate()
                .for_each(|(i, p)| product(i + 1, p.as_mut()))
        },
    );
    for p in partials.iter() {
        dst += p;
    }
}

/// dst ← dst + alpha · src, or dst ← alpha · src when `overwrite`, column by column with the
/// SIMD-dispatched loops of [`crate::linalg`] (faer's element-wise loops compile for baseline
/// x86-64). Both matrices must have contiguous columns (owned matrices and their blocks do).
pub(crate) fn cols_axpy(
    alpha: f64,
    src: MatRef<'_, f64>,
    mut dst: MatMut<'_, f64>,
    overwrite: bool,
) {
    assert_eq!((src.nrows(), src.ncols()), (dst.nrows(), dst.ncols()));
    for j in 0..src.ncols() {
        let x = src.col(j).try_as_col_major().expect("contiguous column");
        let y = dst
            .rb_mut()
            .col_mut(j)
            .try_as_col_major_mut()
            .expect("contiguous column");
        if overwrite {
            crate::linalg::scale_into(alpha, x.as_slice(), y.as_slice_mut());
        } else {
            crate::linalg::axpy(alpha, x.as_slice(), y.as_slice_mut());
        }
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
        (0..rayon::current_num_threads().max(1))
            .map(|_| Part::new(max_rows, m, k))
            .collect()
    }

    /// One thread's share (see [`Part::pool`]).
    pub(crate) fn new(max_rows: usize, m: usize, k: usize) -> Part {
        let rows = (BLOCK_BYTES / (8 * m.max(1))).max(8).min(max_rows.max(1));
        Part {
            r: Mat::zeros(rows, k),
            g: Mat::zeros(m, k),
            val: [0.0; 2],
        }
    }

    /// The partial Xᵀ R of the last pass (its first `kg` columns).
    pub(crate) fn g(&self, kg: usize) -> MatRef<'_, f64> {
        self.g.as_ref().subcols(0, kg)
    }

    /// Swaps the partial Xᵀ R with `g` (same shape: m × the columns this part was made for)
    /// instead of copying it, for a caller that is the only part; returns [`Part::sums`].
    pub(crate) fn swap_g(&mut self, g: &mut Mat<f64>) -> [f64; 2] {
        assert_eq!((g.nrows(), g.ncols()), (self.g.nrows(), self.g.ncols()));
        std::mem::swap(&mut self.g, g);
        self.val
    }

    /// The partial sums of squared residuals of the last pass, per column group.
    pub(crate) fn sums(&self) -> [f64; 2] {
        self.val
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
    /// X is upper trapezoidal (row i is zero left of column i, as the R of a QR): each row
    /// block reads only the columns from its first row on, and the threads split the rows by
    /// nonzeros instead of by count.
    pub upper: bool,
    /// The same X stored by columns, where the caller has it: the product X Z of each row
    /// block then reads it instead of X's rows, which the GEMM would first pack into columns
    /// (7–13 % of a pass at the benchmark sizes, a third at small ones; the transposed
    /// product Xᵀ R reads X's rows, which are Xᵀ's columns).
    pub cols: Option<MatRef<'a, f64>>,
}

/// Row ranges of the threads of a pass over an `nrows` × `ncols` matrix: equal row counts, or
/// for an upper trapezoidal matrix equal numbers of nonzeros (row i holds ncols − i of them).
fn thread_bounds(nrows: usize, ncols: usize, threads: usize, upper: bool) -> Vec<usize> {
    let mut bounds = vec![0; threads + 1];
    if !upper {
        let chunk = nrows.div_ceil(threads);
        for (t, b) in bounds.iter_mut().enumerate() {
            *b = (t * chunk).min(nrows);
        }
        return bounds;
    }
    let width = |i: usize| ncols.saturating_sub(i);
    let total: usize = (0..nrows).map(width).sum();
    let (mut t, mut acc) = (1, 0);
    for i in 0..nrows {
        if t < threads && acc * threads >= t * total {
            bounds[t] = i;
            t += 1;
        }
        acc += width(i);
    }
    for b in &mut bounds[t..] {
        *b = nrows;
    }
    bounds
}

/// Rows per block of an upper trapezoidal pass: finer than the cache bound, so that the skipped
/// zeros approach half of the matrix (at least 8 blocks per thread, at least 16 rows each).
fn upper_block(nrows: usize, threads: usize, cache_rows: usize) -> usize {
    nrows.div_ceil(8 * threads).max(16).min(cache_rows)
}

/// r ← r − y and Σ r² of the result, in eight interleaved partial sums (a fixed order, so the
/// result does not depend on the SIMD width the CPU dispatches to).
fn sub_squares(r: &mut [f64], y: &[f64]) -> f64 {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            let mut acc = [0.0f64; 8];
            let mut rc = r.chunks_exact_mut(8);
            let mut yc = y.chunks_exact(8);
            for (rb, yb) in (&mut rc).zip(&mut yc) {
                for l in 0..8 {
                    rb[l] -= yb[l];
                    acc[l] += rb[l] * rb[l];
                }
            }
            for (l, (ri, yi)) in rc
                .into_remainder()
                .iter_mut()
                .zip(yc.remainder())
                .enumerate()
            {
                *ri -= yi;
                acc[l] += *ri * *ri;
            }
            ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
        },
    )
}

/// The rows one thread covers in a pass, in blocks of `block` rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassRange {
    pub lo: usize,
    pub hi: usize,
    pub block: usize,
    pub upper: bool,
}

/// One thread's share of [`fused_pass`]: rows [lo, hi) of X in blocks, each multiplied twice
/// while in cache. Leaves the partial half-squares (times two) in `part.val` and the partial
/// Xᵀ diag(ρ) R (m × kg) in `part.g`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass_range(
    x: MatRef<'_, f64>,
    x_cols: Option<MatRef<'_, f64>>,
    y: MatRef<'_, f64>,
    z: MatRef<'_, f64>,
    kg: usize,
    range: PassRange,
    weight: Option<&[f64]>,
    mut losses: Option<&mut [f64]>,
    mut rows: Option<MatMut<'_, f64>>,
    part: &mut Part,
) {
    let (ncols, n, k) = (x.ncols(), y.ncols(), z.ncols());
    let groups = k / n;
    let PassRange {
        lo,
        hi,
        block,
        upper,
    } = range;
    part.val = [0.0; 2];
    if (lo >= hi || upper) && kg > 0 {
        // Upper blocks add into their own rows of G only.
        part.g.fill(0.0);
    }
    if let Some(l) = losses.as_deref_mut() {
        l.fill(0.0);
    }
    let mut first = true;
    let mut i0 = lo;
    while i0 < hi {
        let b = block.min(hi - i0);
        // Columns left of c0 are zero in these rows when X is upper trapezoidal.
        let c0 = if upper { i0.min(ncols) } else { 0 };
        let xb = x.submatrix(i0, c0, b, ncols - c0);
        let xb_fwd = x_cols.map_or(xb, |c| c.submatrix(i0, c0, b, ncols - c0));
        let mut rb = part.r.as_mut().submatrix_mut(0, 0, b, k);
        matmul(
            rb.rb_mut(),
            Accum::Replace,
            xb_fwd,
            z.subrows(c0, ncols - c0),
            1.0,
            Par::Seq,
        );
        for q in 0..groups {
            let mut s = 0.0;
            for j in 0..n {
                let yc = y.col(j).subrows(i0, b);
                let rc = rb.rb_mut().col_mut(q * n + j);
                match losses.as_deref_mut() {
                    None => {
                        // The residual block is a workspace's: its columns are contiguous.
                        let rc = rc.try_as_col_major_mut().expect("contiguous residual");
                        let rc = rc.as_slice_mut();
                        match yc.try_as_col_major() {
                            Some(yc) => s += sub_squares(rc, yc.as_slice()),
                            // Strided targets (a caller's view): the plain loop.
                            None => {
                                for (ri, yi) in rc.iter_mut().zip(yc.iter()) {
                                    *ri -= yi;
                                    s += *ri * *ri;
                                }
                            }
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
            let acc = if first && !upper {
                Accum::Replace
            } else {
                Accum::Add
            };
            let gp = part.g.as_mut().submatrix_mut(c0, 0, ncols - c0, kg);
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
    let (nrows, ncols, n) = (x.nrows(), x.ncols(), y.ncols());
    let (k, kg) = (z.ncols(), g.ncols());
    let groups = k / n;
    let upper = ops.upper;
    let threads = if nrows * ncols * k >= PAR_MIN_FMAS {
        parts.len().min(nrows.div_ceil(parts[0].r.nrows()))
    } else {
        1
    };
    let block = if upper {
        upper_block(nrows, threads, parts[0].r.nrows())
    } else {
        parts[0].r.nrows()
    };
    let parts = &mut parts[..threads];
    let bounds = thread_bounds(nrows, ncols, threads, upper);
    let weight = ops.weight;
    let x_cols = ops.cols;
    if let Some(c) = x_cols {
        assert_eq!(
            (c.nrows(), c.ncols()),
            (nrows, ncols),
            "the column copy of X"
        );
    }
    let work =
        |t: usize, part: &mut Part, losses: Option<&mut [f64]>, rows: Option<MatMut<'_, f64>>| {
            let range = PassRange {
                lo: bounds[t],
                hi: bounds[t + 1],
                block,
                upper,
            };
            pass_range(x, x_cols, y, z, kg, range, weight, losses, rows, part);
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
            Some(mut l) => {
                let mut out = Vec::with_capacity(threads);
                for t in 0..threads {
                    let take = (bounds[t + 1] - bounds[t]) * groups;
                    let (head, tail) = std::mem::take(&mut l).split_at_mut(take);
                    out.push(Some(head));
                    l = tail;
                }
                out
            }
            None => Vec::new(),
        };
        slices.resize_with(threads, || None);
        let mut row_chunks: Vec<Option<MatMut<'_, f64>>> = Vec::with_capacity(threads);
        if let Some(mut r) = rows {
            for t in 0..threads {
                let (head, tail) = r.split_at_row_mut(bounds[t + 1] - bounds[t]);
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
            let gp = part.g.as_ref().submatrix(0, 0, ncols, kg);
            if t == 0 {
                g.copy_from(gp);
            } else {
                g += gp;
            }
        }
    }
    [0.5 * val[0], 0.5 * val[1]]
}

/// The per-row work of a [`map_pass`]: called with the first row of a block, the block's
/// products X_b V (b × k), which it overwrites with the rows R_b whose transposed product is
/// wanted, and the block's rows of the per-row output (`stride` values per row; empty when the
/// pass has none).
pub(crate) trait RowMap: Sync {
    fn rows(&self, i0: usize, block: MatMut<'_, f64>, out: &mut [f64]);
}

/// One pass over the rows of X for a loss that is not least squares: each block of rows gives
/// X_b V, which `op` turns into R_b (softmax probabilities minus targets, a Hessian block
/// applied, ...) and per-row outputs, and then G = Xᵀ R restricted to its first `g.ncols()`
/// columns accumulates X_bᵀ R_b while the block is in cache, so X crosses the memory bus once
/// (as [`fused_pass`] for least squares). `x` is X by rows (its row blocks contiguous: X_bᵀ is a
/// column-major block). The forward product is formed as Vᵀ X_bᵀ (k × b) and transposed into
/// the block: with k ≈ 20 columns that runs at twice the rate of X_b V from X by columns, and
/// 1.3 times that from X's rows (measured at 20,000 × 784, k = 20). Threads split the rows as
/// [`fused_pass`] does and their partial G are summed in a fixed order (deterministic for a
/// given thread count). `parts` must be made for at least `v.ncols()` columns.
pub(crate) fn map_pass(
    x: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    mut g: MatMut<'_, f64>,
    parts: &mut [Part],
    out: Option<&mut [f64]>,
    stride: usize,
    op: &dyn RowMap,
) {
    let (nrows, ncols, k, kg) = (x.nrows(), x.ncols(), v.ncols(), g.ncols());
    assert!(kg <= k && parts[0].r.ncols() >= k && parts[0].g.ncols() >= kg);
    let threads = if nrows * ncols * k >= PAR_MIN_FMAS {
        parts.len().min(nrows.div_ceil(parts[0].r.nrows()))
    } else {
        1
    };
    let block = parts[0].r.nrows();
    let bounds = thread_bounds(nrows, ncols, threads, false);
    let vt = v.transpose().to_owned();
    let work = |t: usize, part: &mut Part, out: &mut [f64]| {
        let (lo, hi) = (bounds[t], bounds[t + 1]);
        let mut first = true;
        let mut i0 = lo;
        let mut zt = Mat::<f64>::zeros(k, block);
        while i0 < hi {
            let b = block.min(hi - i0);
            let xb = x.subrows(i0, b);
            let mut ztb = zt.as_mut().subcols_mut(0, b);
            matmul(
                ztb.rb_mut(),
                Accum::Replace,
                vt.as_ref(),
                xb.transpose(),
                1.0,
                Par::Seq,
            );
            let mut rb = part.r.as_mut().submatrix_mut(0, 0, b, k);
            rb.copy_from(ztb.rb().transpose());
            let o = if stride > 0 {
                &mut out[(i0 - lo) * stride..(i0 - lo + b) * stride]
            } else {
                &mut [][..]
            };
            op.rows(i0, rb.rb_mut(), o);
            if kg > 0 {
                let acc = if first { Accum::Replace } else { Accum::Add };
                let gp = part.g.as_mut().submatrix_mut(0, 0, ncols, kg);
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
        if first && kg > 0 {
            part.g.as_mut().submatrix_mut(0, 0, ncols, kg).fill(0.0);
        }
    };
    let mut out = out.unwrap_or(&mut []);
    let parts = &mut parts[..threads];
    if threads == 1 {
        work(0, &mut parts[0], out);
    } else {
        use rayon::prelude::*;
        let mut slices: Vec<&mut [f64]> = Vec::with_capacity(threads);
        for t in 0..threads {
            let take = if stride > 0 {
                (bounds[t + 1] - bounds[t]) * stride
            } else {
                0
            };
            let (head, tail) = std::mem::take(&mut out).split_at_mut(take);
            slices.push(head);
            out = tail;
        }
        parts
            .par_iter_mut()
            .zip(slices.into_par_iter())
            .enumerate()
            .for_each(|(t, (part, o))| work(t, part, o));
    }
    if kg > 0 {
        for (t, part) in parts.iter().enumerate() {
            let gp = part.g.as_ref().submatrix(0, 0, ncols, kg);
            if t == 0 {
                g.copy_from(gp);
            } else {
                g += gp;
            }
        }
    }
}

/// The data of a least-squares loss ½‖X Z − Y‖² in the form the fused passes read. When X has
/// at least as many rows as columns it is replaced by the R of a QR, X = Q R: then
/// ‖X Z − Y‖² = ‖R Z − QᵀY‖² + ‖(I − Q Qᵀ) Y‖² and Xᵀ(X Z − Y) = Rᵀ(R Z − QᵀY) exactly, for
/// every Z, and R (m × m, upper triangular) holds at most half of X's entries. Both terms are
/// sums of squares, so small losses keep their relative accuracy (unlike the Gram form XᵀX).
#[derive(Debug)]
pub(crate) struct LsData {
    /// The matrix the passes read (R, or X itself), stored by rows: its transpose.
    rows: Mat<f64>,
    /// The same matrix stored by columns (see [`RowOps::cols`]).
    cols: Mat<f64>,
    /// QᵀY (or Y).
    y: Mat<f64>,
    /// ½‖(I − Q Qᵀ) Y‖² (or 0).
    offset: f64,
    upper: bool,
}

impl LsData {
    /// Whether the passes over `rows` samples of `m` features read R instead of X (see
    /// [`crate::linalg::ls_passes_read_r`], also behind the benchmarks' cost model).
    pub(crate) fn reads_r(rows: usize, m: usize) -> bool {
        crate::linalg::ls_passes_read_r(rows, m)
    }

    pub(crate) fn new(x: MatRef<'_, f64>, y: MatRef<'_, f64>) -> Self {
        let (nr, m, n) = (x.nrows(), x.ncols(), y.ncols());
        if !Self::reads_r(nr, m) {
            return LsData {
                rows: x.transpose().to_owned(),
                cols: x.to_owned(),
                y: y.to_owned(),
                offset: 0.0,
                upper: false,
            };
        }
        // One QR of [X, Y]: its R is [[R, QᵀY], [0, T]] with ‖T‖² = ‖(I − Q Qᵀ) Y‖².
        let mut xy = Mat::zeros(nr, m + n);
        xy.as_mut().subcols_mut(0, m).copy_from(x);
        xy.as_mut().subcols_mut(m, n).copy_from(y);
        let qr = xy.qr();
        let r = qr.thin_R();
        let mut offset = 0.0;
        for j in m..m + n {
            for i in m..r.nrows().min(j + 1) {
                offset += r[(i, j)] * r[(i, j)];
            }
        }
        let cols = Mat::from_fn(m, m, |i, j| if i <= j { r[(i, j)] } else { 0.0 });
        LsData {
            rows: cols.transpose().to_owned(),
            cols,
            y: r.submatrix(0, m, m, n).to_owned(),
            offset: 0.5 * offset,
            upper: true,
        }
    }

    /// Rows of the matrix the passes read (m when X was replaced by R).
    pub(crate) fn nrows(&self) -> usize {
        self.rows.ncols()
    }

    /// Thread `t` of `parts`' share of [`LsData::pass`] (rows split as [`fused_pass`] splits
    /// them): leaves its partial sums and its partial G (first `kg` columns) in `part`; the
    /// caller sums the parts in order and finishes the values with [`LsData::values`].
    pub(crate) fn pass_part(
        &self,
        z: MatRef<'_, f64>,
        kg: usize,
        (t, parts): (usize, usize),
        part: &mut Part,
    ) {
        let (nrows, ncols) = (self.rows.ncols(), self.rows.nrows());
        let bounds = thread_bounds(nrows, ncols, parts, self.upper);
        let block = if self.upper {
            upper_block(nrows, parts, part.r.nrows())
        } else {
            part.r.nrows()
        };
        let range = PassRange {
            lo: bounds[t],
            hi: bounds[t + 1],
            block,
            upper: self.upper,
        };
        let (x, x_cols) = (self.rows.transpose(), Some(self.cols.as_ref()));
        pass_range(
            x,
            x_cols,
            self.y.as_ref(),
            z,
            kg,
            range,
            None,
            None,
            None,
            part,
        );
    }

    /// The losses of the first `groups` column groups from the summed raw sums of a pass.
    pub(crate) fn values(&self, sums: [f64; 2], groups: usize) -> [f64; 2] {
        self.with_offset([0.5 * sums[0], 0.5 * sums[1]], groups)
    }

    /// Half squared residuals over the matrix the passes read, plus the part of the loss that
    /// lies outside its column space, for the first `groups` column groups.
    fn with_offset(&self, mut half: [f64; 2], groups: usize) -> [f64; 2] {
        for v in half.iter_mut().take(groups) {
            *v += self.offset;
        }
        half
    }

    /// [`fused_pass`] on this loss: ½‖X Z_q − Y‖² for each group of Z's columns, and
    /// G = Xᵀ(X Z − [Y, Y]) restricted to its first `g.ncols()` columns.
    pub(crate) fn pass(
        &self,
        z: MatRef<'_, f64>,
        g: MatMut<'_, f64>,
        parts: &mut [Part],
    ) -> [f64; 2] {
        let groups = z.ncols() / self.y.ncols().max(1);
        let ops = RowOps {
            upper: self.upper,
            cols: Some(self.cols.as_ref()),
            ..RowOps::default()
        };
        let half = fused_pass(self.rows.transpose(), self.y.as_ref(), z, g, parts, ops);
        self.with_offset(half, groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(seed: u64, r: usize, c: usize) -> Mat<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Mat::from_fn(r, c, |_, _| StandardNormal.sample(&mut rng))
    }

    /// The threaded products against one sequential product, for 1–4 threads (own pools):
    /// the inner-dimension split of a wide lhs, and the row and column splits of
    /// matmul_par_into with both accumulations. 1e-13 relative (the partials change the
    /// summation order).
    #[test]
    fn threaded_products_match_the_sequential_one() {
        let close = |a: MatRef<'_, f64>, b: MatRef<'_, f64>, what: &str| {
            let d = (a - b).norm_l2();
            assert!(d <= 1e-13 * b.norm_l2().max(1e-300), "{what}: {d:e}");
        };
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let par = Par::rayon(threads);
                for (m, h, k) in [(300, 420, 20), (50, 7, 3), (1, 64, 2)] {
                    let w = gaussian(1, m, h);
                    let b = gaussian(2, h, k);
                    let want = &w * &b;
                    let mut got = Mat::zeros(m, k);
                    let mut partials = Vec::new();
                    for _ in 0..2 {
                        // Twice: the second call reuses the partials.
                        matmul_par_inner(got.as_mut(), w.as_ref(), b.as_ref(), &mut partials, par);
                        close(got.as_ref(), want.as_ref(), "inner split");
                    }
                    let g = gaussian(3, m, k);
                    let tall = w.transpose() * &g;
                    let mut d = Mat::zeros(h, k);
                    matmul_par(d.as_mut(), w.transpose(), g.as_ref(), par);
                    close(d.as_ref(), tall.as_ref(), "row split");
                    let mut u = w.clone();
                    matmul_par_into(u.as_mut(), Accum::Add, g.as_ref(), b.transpose(), -0.5, par);
                    let wide = &w - 0.5 * (&g * b.transpose());
                    close(u.as_ref(), wide.as_ref(), "column split, accumulated");
                }
            });
        }
    }

    #[test]
    fn thread_bounds_cover_the_rows_and_balance_the_triangle() {
        for (nrows, ncols, threads) in [(1000, 1000, 2), (784, 784, 3), (50, 100, 2), (7, 7, 4)] {
            for upper in [false, true] {
                let b = thread_bounds(nrows, ncols, threads, upper);
                assert_eq!((b[0], b[threads]), (0, nrows));
                assert!(b.windows(2).all(|w| w[0] <= w[1]), "{b:?}");
                if upper && nrows >= 100 {
                    // Each thread's nonzeros within one row of the even share.
                    let nnz = |lo: usize, hi: usize| (lo..hi).map(|i| ncols - i).sum::<usize>();
                    let share = nnz(0, nrows) / threads;
                    for w in b.windows(2) {
                        assert!(nnz(w[0], w[1]).abs_diff(share) <= ncols, "{b:?}");
                    }
                }
            }
        }
    }

    /// The passes over R from a QR give the losses and Xᵀ(X Z − Y) of the data as given: tall,
    /// square and wide X, one rank-deficient, two column groups, and a size whose pass splits
    /// over threads and row blocks. Tolerance 1e-12 relative to the scale of each quantity.
    #[test]
    fn least_squares_passes_over_r_match_the_data_as_given() {
        let rank_deficient = {
            let a = gaussian(5, 300, 40);
            let b = gaussian(6, 40, 120);
            &a * &b // 300 × 120 of rank 40
        };
        let cases = [
            gaussian(1, 900, 300),
            gaussian(2, 300, 300),
            gaussian(3, 50, 100),
            rank_deficient,
        ];
        for (c, x) in cases.iter().enumerate() {
            let (nr, m, n) = (x.nrows(), x.ncols(), 7);
            let y = gaussian(10 + c as u64, nr, n);
            let z = gaussian(20 + c as u64, m, 2 * n);
            let ls = LsData::new(x.as_ref(), y.as_ref());
            assert_eq!(ls.upper, nr >= m);
            let mut parts = Part::pool(ls.nrows(), m, 2 * n);
            for kg in [0, n, 2 * n] {
                let mut g = Mat::zeros(m, kg);
                let val = ls.pass(z.as_ref(), g.as_mut(), &mut parts);
                for q in 0..2 {
                    let r = x * z.as_ref().subcols(q * n, n) - &y;
                    let want = 0.5 * r.squared_norm_l2();
                    assert!(
                        (val[q] - want).abs() <= 1e-12 * want,
                        "case {c}: {val:?} {want}"
                    );
                    let gr = x.transpose() * &r;
                    for j in (0..kg).filter(|j| j / n == q) {
                        let diff = (g.col(j) - gr.col(j % n)).norm_l2();
                        assert!(diff <= 1e-12 * gr.norm_l2(), "case {c}, column {j}: {diff}");
                    }
                }
            }
        }
    }

    /// An exact fit (Y = X Z) keeps a loss at rounding level, where the Gram form would cancel.
    #[test]
    fn exact_fits_keep_tiny_losses() {
        let x = gaussian(7, 400, 60);
        let z = gaussian(8, 60, 3);
        let y = &x * &z;
        let ls = LsData::new(x.as_ref(), y.as_ref());
        let mut parts = Part::pool(ls.nrows(), 60, 3);
        let [val, _] = ls.pass(z.as_ref(), Mat::zeros(60, 0).as_mut(), &mut parts);
        assert!(val <= 1e-24 * y.squared_norm_l2(), "{val}");
    }
}
