//! Warm-started exact solves (least squares, λ > 0): both weighted ridge systems (g* and the
//! v block of L_γ) solved together by block conjugate gradients from a secant fit to the path
//! of earlier solutions, preconditioned by inverses from an earlier u. Between refreshes an
//! iteration costs a few fused passes over X_trn (O(N m n) each) instead of the N m² weighted
//! Gram; a refresh costs the Gram and two m³ factorizations.

use super::exact::flatten;
use super::{Cleaning, CleaningLoss, ExactSolve};
use crate::error::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

/// What the warm-started exact solves carry from one call to the next.
#[derive(Debug, Default)]
pub(super) struct WarmSolves {
    /// Preconditioners (None before the first solve).
    factors: Option<Factors>,
    /// The last solutions of both systems with their u, oldest first (at most
    /// [`WARM_HISTORY`] + 1; the warm start extrapolates along them, see [`secant_start`]).
    path: Vec<(Vec<f64>, Mat<f64>)>,
    /// The last solution of both systems, [w, W], with its residual rows
    /// X_trn [w, W] − [Y, Y] carried along by the solve (see [`Cleaning::fused_penalty`]).
    image: Option<(Mat<f64>, Mat<f64>)>,
    /// Scratch for the rows X_trn P of each product (N × 2n), kept between solves.
    xp: Option<Mat<f64>>,
}

/// Inverses of the two weighted ridge systems at the weights of their last refresh: the
/// preconditioners of the warm-started exact solves ([`Cleaning::solve_exact`]). Explicit
/// inverses (from the Cholesky factors) because one product with 10 right-hand sides runs at
/// GEMM speed where two triangular solves do not.
#[derive(Debug)]
struct Factors {
    /// (XᵀΨX + λI)⁻¹.
    g: Mat<f64>,
    /// γ and (X_valᵀX_val + γ (XᵀΨX + λI))⁻¹.
    v: Option<(f64, Mat<f64>)>,
    /// Column norms of both right-hand sides at the refresh (the scale of the stopping test;
    /// the right-hand sides move slowly with u).
    scale: Vec<f64>,
    /// Iterations of the last preconditioned solve (a growing count means stale factors).
    last_iters: usize,
}

/// Relative residual to which the warm-started solves run: at the level of a direct
/// Cholesky solve of these systems (condition numbers up to about 1e5 on Fashion-MNIST).
const SOLVE_RTOL: f64 = 1e-12;
/// Factors are refreshed when the last preconditioned solve took more iterations than this.
const REFRESH_ITERS: usize = 3;
/// Preconditioned solves give up after this many iterations and refresh the factors.
const MAX_PCG_ITERS: usize = 30;
/// Steps of the solution path the warm start fits (see [`secant_start`]).
const WARM_HISTORY: usize = 5;
/// Below this many features the direct solve costs little and is always used.
const PCG_MIN_FEATURES: usize = 200;

/// Warm start of the exact solves at `u` from the path of earlier solutions (u_i, x_i): the
/// secant model x(u) ≈ x_last + Σ c_i (x_{i+1} − x_i), with c the least-squares fit of
/// u − u_last by the steps u_{i+1} − u_i. The iterates move smoothly in u, so this is several
/// orders of magnitude closer than the last solution (on the Fashion-MNIST run: initial
/// residuals about 1e-11 against 2e-3 from the last solution and 2e-5 from a line through the
/// last two). None without two solutions.
pub(super) fn secant_start(path: &[(Vec<f64>, Mat<f64>)], u: &[f64]) -> Option<Mat<f64>> {
    let (ul, xl) = path.last()?;
    let k = path.len() - 1;
    if k == 0 {
        return None;
    }
    let steps: Vec<Vec<f64>> = path
        .windows(2)
        .map(|w| w[1].0.iter().zip(&w[0].0).map(|(a, b)| a - b).collect())
        .collect();
    let target: Vec<f64> = u.iter().zip(ul).map(|(a, b)| a - b).collect();
    let c = lstsq_small(&steps, &target);
    let mut x = xl.clone();
    for (i, ci) in c.iter().enumerate() {
        let (a, b) = (&path[i + 1].1, &path[i].1);
        x += (a - b) * faer::Scale(*ci);
    }
    Some(x)
}

/// Least-squares coefficients c minimizing ‖Σ c_i a_i − b‖ for a few long columns a_i, by
/// Gram–Schmidt with reorthogonalization (QR, not the normal equations: the steps of a smooth
/// path are nearly parallel and their differences carry the curvature). A column that is
/// dependent on the earlier ones to 1e-10 of its norm gets coefficient 0.
fn lstsq_small(cols: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    use crate::linalg::{axpy, dot, norm};
    let k = cols.len();
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    let mut r = vec![vec![0.0; k]; k];
    let mut kept = vec![false; k];
    for (j, a) in cols.iter().enumerate() {
        let mut v = a.clone();
        for _ in 0..2 {
            for (i, qi) in q.iter().enumerate() {
                if qi.is_empty() {
                    continue;
                }
                let h = dot(qi, &v);
                r[i][j] += h;
                axpy(-h, qi, &mut v);
            }
        }
        let nv = norm(&v);
        if nv > 1e-10 * norm(a) && nv > 0.0 {
            v.iter_mut().for_each(|x| *x /= nv);
            r[j][j] = nv;
            kept[j] = true;
            q.push(v);
        } else {
            q.push(Vec::new());
        }
    }
    let qb: Vec<f64> = q
        .iter()
        .map(|qi| if qi.is_empty() { 0.0 } else { dot(qi, b) })
        .collect();
    let mut c = vec![0.0; k];
    for j in (0..k).rev() {
        if kept[j] {
            let s: f64 = (j + 1..k).map(|l| r[j][l] * c[l]).sum();
            c[j] = (qb[j] - s) / r[j][j];
        }
    }
    c
}

impl Cleaning {
    /// True when the exact solves run as warm-started preconditioned CG
    /// ([`Cleaning::solve_exact`], see [`ExactSolve`]).
    pub(super) fn uses_pcg(&self) -> bool {
        let possible = self.s.loss == CleaningLoss::LeastSquares && self.s.lambda > 0.0;
        match self.s.exact_solve {
            ExactSolve::Direct => false,
            ExactSolve::WarmCg => possible,
            ExactSolve::Auto => possible && self.data.features() >= PCG_MIN_FEATURES,
        }
    }

    /// X_valᵀX_val with both triangles (for products) and a zero N × n target (the fused pass
    /// then computes Xᵀ Ψ X P).
    fn pcg_constants(&self) -> &(Mat<f64>, Mat<f64>) {
        self.val_full.get_or_init(|| {
            let g = &self.val_system().0;
            let m = g.nrows();
            let full = Mat::from_fn(m, m, |i, j| if i >= j { g[(i, j)] } else { g[(j, i)] });
            (full, Mat::zeros(self.data.train.len(), self.data.classes))
        })
    }

    /// The exact lower-level solution w = (XᵀΨX + λI)⁻¹ XᵀΨY at ψ(u), and with `gamma` also the
    /// exact v block W = argmin L_γ(u, ·), both solved together (one block of 2n right-hand
    /// sides) by conjugate gradients from the secant fit to the path of earlier solutions
    /// ([`secant_start`]; the values passed in before there is a path), preconditioned by the
    /// inverses of both systems at an earlier u, to a relative residual of [`SOLVE_RTOL`].
    /// The factors are refreshed at the current u (and the systems then solved directly) when
    /// there are none yet, γ changed, the last solve needed more than [`REFRESH_ITERS`]
    /// iterations, or this one does not converge in [`MAX_PCG_ITERS`]. Between refreshes an
    /// iteration costs a few fused passes over X_trn instead of an N m² Gram.
    pub(super) fn solve_exact(
        &self,
        u: &[f64],
        gamma: Option<f64>,
        w: &mut [f64],
        v: Option<&mut [f64]>,
    ) -> Result<()> {
        use crate::kernels::{RowOps, fused_pass};
        use faer::linalg::solvers::{DenseSolveCore, Solve};
        let (m, n) = self.shape();
        let lam = self.s.lambda;
        let psi = self.weights(u);
        let k = if gamma.is_some() { 2 * n } else { n };
        let (gval, zeros) = self.pcg_constants();
        let bval = &self.val_system().1;
        let mut x = Mat::<f64>::zeros(m, k);
        x.as_mut()
            .subcols_mut(0, n)
            .copy_from(MatRef::from_column_major_slice(w, m, n));
        if let Some(v) = v.as_deref() {
            x.as_mut()
                .subcols_mut(n, n)
                .copy_from(MatRef::from_column_major_slice(v, m, n));
        }
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let WarmSolves {
            factors: fac,
            path,
            image,
            xp: xp_buf,
        } = &mut *warm;
        // A solve of both systems rebuilds the image (or drops it when it refreshes instead)
        // and reuses its rows buffer; a g*-only solve leaves it alone.
        let old_rows = if k == 2 * n {
            image.take().map(|(_, rows)| rows)
        } else {
            None
        };
        // The v block's solutions depend on γ: after a change the path no longer fits.
        if let (Some(gm), Some(f)) = (gamma, fac.as_ref())
            && f.v.as_ref().map(|(g, _)| *g) != Some(gm)
        {
            path.clear();
        }
        if let Some(x0) = secant_start(path, u) {
            x = x0.subcols(0, k).to_owned();
        }
        let fresh = match fac.as_ref() {
            None => false,
            Some(f) => {
                f.last_iters <= REFRESH_ITERS
                    && (gamma.is_none() || f.v.as_ref().map(|(g, _)| *g) == gamma)
            }
        };
        let mut iters = None;
        let mut tracked = None;
        if let (true, Some(f)) = (fresh, fac.as_ref()) {
            // out = A P − [B_w, γ B_w] for targets Y (B_w = XᵀΨY), or A P for zero targets:
            // Xᵀ Ψ (X P − Y) from one fused pass, then λ P, and for the v block X_valᵀX_val P
            // and the factor γ.
            // `rows` receives X P − Y (before the weights).
            let op = |p: MatRef<'_, f64>,
                      y: MatRef<'_, f64>,
                      mut out: faer::MatMut<'_, f64>,
                      rows: Option<faer::MatMut<'_, f64>>| {
                self.with_work(|ws| {
                    fused_pass(
                        self.rows_trn.transpose(),
                        y,
                        p,
                        out.as_mut(),
                        &mut ws.parts,
                        RowOps {
                            weight: Some(&psi),
                            losses: None,
                            rows,
                            cols: Some(self.data.train.x.as_ref()),
                            ..RowOps::default()
                        },
                    )
                });
                for j in 0..n {
                    for i in 0..m {
                        out[(i, j)] += lam * p[(i, j)];
                    }
                }
                if let Some(gm) = gamma {
                    let mut t = Mat::<f64>::zeros(m, n);
                    matmul(
                        t.as_mut(),
                        Accum::Replace,
                        gval,
                        p.subcols(n, n),
                        1.0,
                        Par::Seq,
                    );
                    for j in 0..n {
                        for i in 0..m {
                            let o = &mut out[(i, n + j)];
                            *o = t[(i, j)] + gm * (*o + lam * p[(i, n + j)]);
                        }
                    }
                }
            };
            // With both systems, the residual rows X x − [Y, Y] of the iterate are carried along
            // (from the rows of the first pass and of each product), so the evaluation that
            // follows at this solution needs no pass over X_trn of its own.
            let track = k == 2 * n;
            let shape = if track {
                (self.data.train.len(), k)
            } else {
                (0, 0)
            };
            let sized = |b: Mat<f64>| (b.shape() == shape).then_some(b);
            let mut rr = old_rows
                .and_then(sized)
                .unwrap_or_else(|| Mat::zeros(shape.0, shape.1));
            let xp = xp_buf
                .take()
                .and_then(sized)
                .unwrap_or_else(|| Mat::zeros(shape.0, shape.1));
            let xp = std::cell::RefCell::new(xp);
            let apply = |p: MatRef<'_, f64>, out: faer::MatMut<'_, f64>| {
                let mut xp = xp.borrow_mut();
                op(p, zeros.as_ref(), out, track.then(|| xp.as_mut()))
            };
            let par = crate::kernels::par_for(m * m * n);
            let mut t = Mat::<f64>::zeros(m, k);
            let precond = |mut z: faer::MatMut<'_, f64>| {
                let blocks = [Some(&f.g), f.v.as_ref().map(|(_, a)| a)];
                for (b, inv) in blocks.into_iter().take(k / n).enumerate() {
                    let inv = inv.expect("the v block has its inverse");
                    let dst = t.as_mut().subcols_mut(b * n, n);
                    crate::kernels::matmul_par(
                        dst,
                        inv.as_ref(),
                        z.as_ref().subcols(b * n, n),
                        par,
                    );
                }
                z.copy_from(&t);
            };
            // R0 = B − A X0 from the pass with the targets, so XᵀΨY itself is never formed:
            // op gives A X0 − [B_w, γ B_w], and B_v = X_valᵀY_val + γ B_w.
            let mut r0 = Mat::<f64>::zeros(m, k);
            op(
                x.as_ref(),
                self.y_trn.as_ref(),
                r0.as_mut(),
                track.then(|| rr.as_mut()),
            );
            for j in 0..k {
                for i in 0..m {
                    let b = if j < n { 0.0 } else { bval[(i, j - n)] };
                    r0[(i, j)] = b - r0[(i, j)];
                }
            }
            let stepped = |a: &[f64]| {
                if track {
                    let xp = xp.borrow();
                    for (j, &aj) in a.iter().enumerate() {
                        let (dst, src) = (rr.col_mut(j), xp.col(j));
                        dst.iter_mut()
                            .zip(src.iter())
                            .for_each(|(d, s)| *d += aj * s);
                    }
                }
            };
            iters = crate::linalg::block_pcg(
                r0,
                &f.scale[..k],
                x.as_mut(),
                apply,
                precond,
                stepped,
                SOLVE_RTOL,
                MAX_PCG_ITERS,
            );
            if track && iters.is_some() {
                tracked = Some(rr);
            }
            *xp_buf = Some(xp.into_inner());
        }
        let count = |i: usize, by: usize| {
            self.solve_counts[i].fetch_add(by, std::sync::atomic::Ordering::Relaxed);
        };
        match (iters, fac.as_mut()) {
            (Some(it), Some(f)) => {
                f.last_iters = it;
                count(1, 1);
                count(2, it);
            }
            _ => {
                count(0, 1);
                // Refresh at the current weights: factor both systems and solve directly.
                let sys = self.system_at(u);
                let mut a = sys.0.clone();
                for i in 0..m {
                    a[(i, i)] += lam;
                }
                let not_spd = |what: &str| {
                    Error::data(
                        what.to_string(),
                        "matrix is not symmetric positive definite (Cholesky failed)",
                    )
                };
                let lg = a
                    .llt(Side::Lower)
                    .map_err(|_| not_spd("weighted ridge system X^T diag(psi) X + lambda I"))?;
                let old = fac.take();
                let col_norms = |b: MatRef<'_, f64>| -> Vec<f64> {
                    (0..b.ncols()).map(|j| b.col(j).norm_l2()).collect()
                };
                let bw = sys.1.as_ref();
                let mut scale = col_norms(bw);
                let mut xw = x.as_mut().subcols_mut(0, n);
                xw.copy_from(bw);
                lg.solve_in_place(xw);
                let lv = match gamma {
                    Some(gm) => {
                        let av = &self.val_system().0 + &a * faer::Scale(gm);
                        let l = av.llt(Side::Lower).map_err(|_| {
                            not_spd("penalty v-block system X_val^T X_val + gamma (X^T diag(psi) X + lambda I)")
                        })?;
                        let bv = bval + bw * faer::Scale(gm);
                        scale.extend(col_norms(bv.as_ref()));
                        let mut xv = x.as_mut().subcols_mut(n, n);
                        xv.copy_from(&bv);
                        l.solve_in_place(xv);
                        Some((gm, l.inverse()))
                    }
                    None => {
                        // Keep the v system's inverse (stale but still a preconditioner).
                        let old = old.filter(|f| f.v.is_some());
                        scale.extend(old.as_ref().map_or(vec![1.0; n], |f| f.scale[n..].to_vec()));
                        old.and_then(|f| f.v)
                    }
                };
                *fac = Some(Factors {
                    g: lg.inverse(),
                    v: lv,
                    scale,
                    last_iters: 0,
                });
            }
        }
        w.copy_from_slice(&flatten(x.as_ref().subcols(0, n)));
        if k == 2 * n {
            if path.len() > WARM_HISTORY {
                path.remove(0);
            }
            path.push((u.to_vec(), x.clone()));
            *image = tracked.map(|rr| (x.clone(), rr));
        }
        if let Some(v) = v {
            v.copy_from_slice(&flatten(x.as_ref().subcols(n, n)));
        }
        Ok(())
    }

    /// Per-sample half squared residuals [ℓ_i(W), ℓ_i(w)] (row-major N × 2) from the residual
    /// rows the last warm-started solve carried along, when (W, w) is exactly its solution
    /// (the Gauss–Seidel u step right after the exact v block); false otherwise.
    pub(super) fn losses_from_image(&self, v: &[f64], w: &[f64], losses: &mut [f64]) -> bool {
        let (m, n) = self.shape();
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let Some((x, rr)) = warm.image.as_ref() else {
            return false;
        };
        let same = |col0: usize, z: &[f64]| {
            (0..n).all(|j| x.col(col0 + j).iter().eq(z[j * m..(j + 1) * m].iter()))
        };
        if !(same(0, w) && same(n, v)) {
            return false;
        }
        for (i, l) in losses.chunks_exact_mut(2).enumerate() {
            let half_sq =
                |c0: usize| 0.5 * (c0..c0 + n).map(|j| rr[(i, j)] * rr[(i, j)]).sum::<f64>();
            l[0] = half_sq(n);
            l[1] = half_sq(0);
        }
        true
    }

    /// Exact solves so far: factor refreshes (direct solves), preconditioned CG solves, and
    /// their total CG iterations (all 0 with direct solves).
    pub fn solve_counts(&self) -> (usize, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let [r, s, it] = [0, 1, 2].map(|i| self.solve_counts[i].load(Relaxed));
        (r, s, it)
    }

    /// [`Cleaning::solve_counts`] in words, for reports.
    pub fn solve_stats(&self) -> String {
        let (r, s, it) = self.solve_counts();
        if r + s == 0 {
            return "direct solves".into();
        }
        format!(
            "{r} factor refreshes (direct solves), {s} preconditioned CG solves, {:.1} CG iterations each",
            it as f64 / s.max(1) as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dist;
    use crate::problem::Problem;
    use crate::problems::cleaning::{CleaningData, CleaningSettings, ClusterConfig};

    #[test]
    fn lstsq_small_recovers_combinations_and_skips_dependent_columns() {
        let a: Vec<f64> = (0..50).map(|i| (i as f64 * 0.3).sin()).collect();
        let b: Vec<f64> = (0..50).map(|i| (i as f64 * 0.7).cos()).collect();
        // Nearly parallel to a: the fit must still separate them (curvature of a path).
        let c: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + 1e-4 * y).collect();
        let target: Vec<f64> = (0..50).map(|i| 2.0 * a[i] - 3.0 * c[i]).collect();
        let coef = lstsq_small(&[a.clone(), c.clone()], &target);
        assert!(
            (coef[0] - 2.0).abs() <= 1e-8 && (coef[1] + 3.0).abs() <= 1e-8,
            "{coef:?}"
        );
        // An exactly dependent column gets 0; the rest still fits.
        let coef = lstsq_small(&[a.clone(), a.clone(), b.clone()], &b);
        assert_eq!(coef[1], 0.0);
        assert!(
            coef[0].abs() <= 1e-12 && (coef[2] - 1.0).abs() <= 1e-12,
            "{coef:?}"
        );
    }

    #[test]
    fn secant_start_is_exact_for_solutions_linear_in_u() {
        // x(u) = x0 + J u: any u in the span of the steps is reproduced to rounding.
        let (nu, m, k) = (30, 6, 4);
        let j = Mat::<f64>::from_fn(m * k, nu, |i, l| ((i * 7 + l * 3) % 11) as f64 - 5.0);
        let x_of = |u: &[f64]| {
            Mat::<f64>::from_fn(m, k, |r, c| {
                1.0 + (0..nu).map(|l| j[(c * m + r, l)] * u[l]).sum::<f64>()
            })
        };
        let us: Vec<Vec<f64>> = (0..5)
            .map(|s| (0..nu).map(|l| ((s * l) as f64 * 0.1).sin()).collect())
            .collect();
        let path: Vec<_> = us.iter().map(|u| (u.clone(), x_of(u))).collect();
        assert!(secant_start(&path[..1], &us[0]).is_none());
        // A new u in the affine span of the path's points.
        let u: Vec<f64> = (0..nu)
            .map(|l| us[4][l] + 0.5 * (us[4][l] - us[3][l]) - 0.25 * (us[2][l] - us[1][l]))
            .collect();
        let x0 = secant_start(&path, &u).unwrap();
        let want = x_of(&u);
        assert!((&x0 - &want).norm_max() <= 1e-10 * want.norm_max());
    }

    /// After a warm-started solve of both systems, the u gradient from the residual rows the
    /// solve carried along equals the one from a fresh pass over X_trn.
    #[test]
    fn carried_residual_rows_give_the_fresh_evaluation() {
        let data = CleaningData::gaussian_clusters(&ClusterConfig {
            n_trn: 300,
            n_val: 100,
            n_test: 10,
            m: 30,
            classes: 3,
            p: 0.4,
            separation: 3.0,
            seed: 3,
        })
        .unwrap();
        let s = CleaningSettings {
            lambda: 1.0,
            exact_solve: ExactSolve::WarmCg,
            ..Default::default()
        };
        let p = Cleaning::new(data, s).unwrap();
        let gamma = 10.0;
        let mut v = vec![0.0; p.dim_v()];
        let mut w = vec![0.0; p.dim_v()];
        // A short path so that the later solves run CG (the first refreshes).
        let mut carried = 0;
        for t in 0..6 {
            let u: Vec<f64> = (0..p.dim_u())
                .map(|i| ((i % 5) as f64 - 2.0) * 0.1 * t as f64)
                .collect();
            assert!(p.penalty_v_solution(&u, gamma, &mut v));
            assert!(p.ll_solution(&u, &mut w));
            let had_image = p.warm.lock().unwrap().image.is_some();
            let (mut du_a, mut du_b, mut dv) = (
                vec![0.0; p.dim_u()],
                vec![0.0; p.dim_u()],
                vec![0.0; p.dim_v()],
            );
            let a = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du_a), None)
                .unwrap();
            // With ∇_W requested the evaluation makes its own pass over X_trn.
            let b = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du_b), Some(&mut dv))
                .unwrap();
            for q in 0..3 {
                assert!(
                    (a[q] - b[q]).abs() <= 1e-10 * b[q].abs().max(1.0),
                    "t {t}: {a:?} {b:?}"
                );
            }
            let scale = du_b.iter().fold(1.0f64, |s, x| s.max(x.abs()));
            assert!(dist(&du_a, &du_b) <= 1e-9 * scale, "t {t}");
            carried += had_image as usize;
        }
        assert!(carried >= 3, "the carried rows were used ({carried} of 6)");
    }
}
