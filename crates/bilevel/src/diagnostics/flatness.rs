//! Upper-level flatness (method.md, section 4b): fits of
//! |f(u, w*(u)) − f(u, v)| ≤ c ‖w*(u) − v‖^α + δ,  1 < α ≤ 1.5,
//! along a run, beside ‖∇F_γ(u)‖ with exact responses, so that a stall of PBGD-Free (or any
//! solver) at a non-stationary point of F_γ is reported rather than hidden.
//!
//! The fit. Given samples (r_i, y_i) = (‖w* − v_i‖, |f(u, w*) − f(u, v_i)|), for each α the
//! tightest envelope is the linear program min mean_i(c r_i^α + δ − y_i) over c, δ ≥ 0 subject to
//! c r_i^α + δ ≥ y_i for all i (the bound must hold at every sample; among the bounds that do,
//! the one with the least mean slack). For fixed c the best δ is max_i (y_i − c r_i^α)₊, so the
//! objective is convex piecewise linear in c and a golden-section search finds its minimum. α is
//! chosen by the least mean slack over a grid of 50 values in (1, 1.5], refined by golden-section
//! search between the best value's neighbours. On exact data y = c₀ r^α₀ + δ₀ the slack is zero
//! at (c₀, α₀, δ₀) and positive elsewhere, so the fit recovers the constants.
//!
//! The floor. The PBGD-Free theorem's stationarity term is δ^{2(α−1)/α}; with δ made unit-free
//! (divided by the largest sampled gap) it lies in [0, 1]: 0 for a flat upper level (δ = 0), near
//! 1 when the fit needs α → 1 (an upper level that changes linearly away from w*, as in the
//! counterexample), where the bound says nothing.

use crate::linalg::{dist, norm};
use crate::penalty::Penalty;
use crate::problem::Problem;
use crate::problems::replearn::{RepLearning, pinv_solve};
use crate::trace::{Observer, Snapshot};
use faer::{Mat, MatRef};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A fitted flatness bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlatnessFit {
    /// Modulus c.
    pub c: f64,
    /// Exponent α ∈ (1, 1.5].
    pub alpha: f64,
    /// Residual δ.
    pub delta: f64,
    /// Largest sampled gap |f(u, w*) − f(u, v)|.
    pub max_gap: f64,
    /// Largest sampled distance ‖w* − v‖.
    pub max_dist: f64,
    /// (δ / max_gap)^{2(α−1)/α} ∈ [0, 1] (0 when every gap is 0): the theorem's stationarity
    /// term, unit-free.
    pub floor: f64,
}

const ALPHA_LO: f64 = 1.0;
const ALPHA_HI: f64 = 1.5;
const GRID: usize = 50;
const GOLDEN: f64 = 0.618_033_988_749_894_8;

/// Least-slack (c, δ) for exponent α, and the mean slack.
fn envelope(samples: &[(f64, f64)], alpha: f64) -> (f64, f64, f64) {
    let n = samples.len() as f64;
    let p: Vec<f64> = samples.iter().map(|&(r, _)| r.powf(alpha)).collect();
    let mean_p = p.iter().sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let delta_at = |c: f64| {
        samples
            .iter()
            .zip(&p)
            .map(|(&(_, y), &pi)| y - c * pi)
            .fold(0.0f64, f64::max)
    };
    let obj = |c: f64| c * mean_p + delta_at(c);
    // Beyond c_hi every sample with r > 0 is covered by c r^α alone: the objective only grows.
    let c_hi = samples
        .iter()
        .zip(&p)
        .filter(|(_, pi)| **pi > 0.0)
        .map(|(&(_, y), &pi)| y / pi)
        .fold(0.0f64, f64::max);
    let c = golden_min(obj, 0.0, c_hi, 200);
    let delta = delta_at(c);
    (c, delta, c * mean_p + delta - mean_y)
}

/// Minimizer of a unimodal function on [a, b] by golden-section search.
fn golden_min(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, iters: usize) -> f64 {
    if b <= a {
        return a;
    }
    let mut x1 = b - GOLDEN * (b - a);
    let mut x2 = a + GOLDEN * (b - a);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..iters {
        if f1 <= f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - GOLDEN * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + GOLDEN * (b - a);
            f2 = f(x2);
        }
        if b - a <= 1e-15 * b.abs().max(1e-300) {
            break;
        }
    }
    // The ends are candidates too (a minimum at c = 0 or at the top of the range).
    let mid = 0.5 * (a + b);
    [mid, a, b]
        .into_iter()
        .min_by(|x, y| f(*x).total_cmp(&f(*y)))
        .unwrap_or(mid)
}

/// Fits c, α ∈ (1, 1.5] and δ of |f(u, w*) − f(u, v)| ≤ c ‖w* − v‖^α + δ to samples
/// (distance, gap) by least mean slack (module docs). None when no sample is finite.
pub fn fit_flatness(samples: &[(f64, f64)]) -> Option<FlatnessFit> {
    let s: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(r, y)| r.is_finite() && y.is_finite() && *r >= 0.0)
        .map(|(r, y)| (r, y.abs()))
        .collect();
    if s.is_empty() {
        return None;
    }
    let max_gap = s.iter().map(|x| x.1).fold(0.0f64, f64::max);
    let max_dist = s.iter().map(|x| x.0).fold(0.0f64, f64::max);
    if max_gap == 0.0 {
        return Some(FlatnessFit {
            c: 0.0,
            alpha: ALPHA_HI,
            delta: 0.0,
            max_gap,
            max_dist,
            floor: 0.0,
        });
    }
    // Scale distances to [0, 1] so r^α stays well conditioned; c scales back by max_dist^α.
    let scale = if max_dist > 0.0 { max_dist } else { 1.0 };
    let t: Vec<(f64, f64)> = s.iter().map(|&(r, y)| (r / scale, y)).collect();
    let slack = |a: f64| envelope(&t, a).2;
    let h = (ALPHA_HI - ALPHA_LO) / GRID as f64;
    // From α = 1.5 down, keeping the first of equal slacks: ties go to the flatter exponent.
    let mut best = (ALPHA_HI, slack(ALPHA_HI));
    for k in (1..GRID).rev() {
        let a = ALPHA_LO + h * k as f64;
        let sl = slack(a);
        if sl < best.1 {
            best = (a, sl);
        }
    }
    let lo = (best.0 - h).max(ALPHA_LO + 1e-9);
    let hi = (best.0 + h).min(ALPHA_HI);
    let refined = golden_min(slack, lo, hi, 100);
    let alpha = if slack(refined) <= best.1 {
        refined
    } else {
        best.0
    };
    let (c, delta, _) = envelope(&t, alpha);
    let c = c / scale.powf(alpha);
    let floor = (delta / max_gap).powf(2.0 * (alpha - 1.0) / alpha);
    Some(FlatnessFit {
        c,
        alpha,
        delta,
        max_gap,
        max_dist,
        floor,
    })
}

/// One row of the flatness table, at one record of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlatnessRow {
    /// Iteration of the record.
    pub iter: usize,
    /// γ of the record.
    pub gamma: f64,
    /// ‖∇F_γ(u)‖ with exact responses w*(u), v_γ*(u) (NaN where v_γ* has no closed form).
    pub grad_reduced: f64,
    /// ‖u − Proj(u − ∇F_γ(u))‖, the gradient mapping with unit step (equals `grad_reduced`
    /// without a box on u).
    pub grad_reduced_map: f64,
    /// ‖γ (∇_u g(u, v_γ*) − ∇_u g(u, w*))‖: the term PBGD-Free drops.
    pub dropped: f64,
    /// ‖v − w*(u)‖.
    pub dist_w: f64,
    /// ‖v − v_γ*(u)‖ (NaN where v_γ* is unknown).
    pub dist_v_gamma: f64,
    /// The fit on this record's samples (NaN fields when none).
    pub c: f64,
    /// Fitted α.
    pub alpha: f64,
    /// Fitted δ.
    pub delta: f64,
    /// Largest sampled gap.
    pub max_gap: f64,
    /// Unit-free stationarity term (δ/max_gap)^{2(α−1)/α}.
    pub floor: f64,
}

impl FlatnessRow {
    /// Column names, in the order of [`FlatnessRow::values`].
    pub const COLUMNS: [&'static str; 12] = [
        "iter",
        "gamma",
        "grad_reduced",
        "grad_reduced_map",
        "dropped",
        "dist_w",
        "dist_v_gamma",
        "c",
        "alpha",
        "delta",
        "max_gap",
        "floor",
    ];

    /// The row's values (iteration as f64).
    pub fn values(&self) -> [f64; 12] {
        [
            self.iter as f64,
            self.gamma,
            self.grad_reduced,
            self.grad_reduced_map,
            self.dropped,
            self.dist_w,
            self.dist_v_gamma,
            self.c,
            self.alpha,
            self.delta,
            self.max_gap,
            self.floor,
        ]
    }
}

/// An observer, usable with any solver on a problem that knows w*(u): at each record, samples
/// `samples` points on the segment from w*(u) to the current v (and as many from w*(u) to
/// v_γ*(u) where known), fits the flatness bound ([`fit_flatness`]) and records ‖∇F_γ(u)‖ with
/// exact responses. Records with γ = 0 (methods on the nested objective) get NaN for the
/// γ-dependent columns. The rows are kept here and also added to the trace as the columns
/// [`FlatnessObserver::COLUMNS`] (the row without `iter` and `gamma`, which every record has).
pub struct FlatnessObserver<'a> {
    problem: &'a dyn Problem,
    /// Points per segment (end points included); below 2, no samples and no fit (only the
    /// gradient columns, for long runs).
    pub samples: usize,
    /// The table, one row per record.
    pub rows: Vec<FlatnessRow>,
    stop: Option<(f64, Arc<AtomicBool>)>,
    pen: Penalty,
    w: Vec<f64>,
    vg: Vec<f64>,
    pt: Vec<f64>,
    gu1: Vec<f64>,
    gu2: Vec<f64>,
    pu: Vec<f64>,
    /// First record iteration with ‖∇F_γ(u)‖ ≤ the stop tolerance.
    pub reached: Option<usize>,
}

impl<'a> FlatnessObserver<'a> {
    /// The trace columns this observer adds, in the order of [`FlatnessRow::values`] after
    /// `iter` and `gamma`; the fit's columns carry a `flatness_` prefix.
    pub const COLUMNS: [&'static str; 10] = [
        "grad_reduced",
        "grad_reduced_map",
        "dropped",
        "dist_w",
        "dist_v_gamma",
        "flatness_c",
        "flatness_alpha",
        "flatness_delta",
        "flatness_max_gap",
        "flatness_floor",
    ];

    /// An observer for `problem` with 16 points per segment. Without an exact lower-level
    /// solution the rows hold NaN.
    pub fn new(problem: &'a dyn Problem) -> Self {
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        FlatnessObserver {
            problem,
            samples: 16,
            rows: Vec::new(),
            stop: None,
            pen: Penalty::new(nu, nv),
            w: vec![0.0; nv],
            vg: vec![0.0; nv],
            pt: vec![0.0; nv],
            gu1: vec![0.0; nu],
            gu2: vec![0.0; nu],
            pu: vec![0.0; nu],
            reached: None,
        }
    }

    /// Also sets `flag` (pass it as the run's `interrupt`) at the first record with
    /// ‖∇F_γ(u)‖ ≤ `tol`, so the run stops there ([`FlatnessObserver::reached`] says where).
    pub fn stop_below(mut self, tol: f64, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some((tol, flag));
        self
    }

    /// The last row, if any.
    pub fn last(&self) -> Option<&FlatnessRow> {
        self.rows.last()
    }

    fn segment(&mut self, u: &[f64], to: &[f64], f0: f64, out: &mut Vec<(f64, f64)>) {
        let n = self.samples;
        let d = dist(&self.w, to);
        for j in 0..n {
            let t = j as f64 / (n - 1) as f64;
            for ((p, a), b) in self.pt.iter_mut().zip(&self.w).zip(to) {
                *p = a + t * (b - a);
            }
            let y = (f0 - self.problem.f(u, &self.pt, None, None)).abs();
            out.push((t * d, y));
        }
    }
}

impl Observer for FlatnessObserver<'_> {
    fn columns(&self) -> Vec<String> {
        Self::COLUMNS.iter().map(|s| s.to_string()).collect()
    }

    fn values(&self, out: &mut Vec<f64>) {
        match self.rows.last() {
            Some(r) => out.extend_from_slice(&r.values()[2..]),
            None => out.extend(std::iter::repeat_n(f64::NAN, Self::COLUMNS.len())),
        }
    }

    fn observe(&mut self, snap: &Snapshot<'_>) {
        let nan = f64::NAN;
        let p = self.problem;
        let (u, v) = (snap.u, snap.v);
        let gamma = snap.record.gamma;
        let mut row = FlatnessRow {
            iter: snap.record.iter,
            gamma,
            grad_reduced: nan,
            grad_reduced_map: nan,
            dropped: nan,
            dist_w: nan,
            dist_v_gamma: nan,
            c: nan,
            alpha: nan,
            delta: nan,
            max_gap: nan,
            floor: nan,
        };
        if !p.has_ll_solution() || !p.ll_solution(u, &mut self.w) {
            self.rows.push(row);
            return;
        }
        row.dist_w = dist(v, &self.w);
        let sampling = self.samples >= 2;
        let f0 = p.f(u, &self.w, None, None);
        let mut samples = Vec::with_capacity(2 * self.samples);
        if sampling {
            let v_owned = v.to_vec();
            self.segment(u, &v_owned, f0, &mut samples);
        }
        let has_vg = gamma > 0.0
            && p.has_penalty_v_solution()
            && p.penalty_v_solution(u, gamma, &mut self.vg);
        if has_vg {
            row.dist_v_gamma = dist(v, &self.vg);
            if sampling {
                let vg = self.vg.clone();
                self.segment(u, &vg, f0, &mut samples);
            }
            self.pen.eval(p, u, &self.vg, &self.w, gamma, true, false);
            row.grad_reduced = norm(&self.pen.du);
            for ((q, a), b) in self.pu.iter_mut().zip(u).zip(&self.pen.du) {
                *q = a - b;
            }
            p.project_u(&mut self.pu);
            row.grad_reduced_map = dist(u, &self.pu);
            p.g(u, &self.vg, Some(&mut self.gu1), None);
            p.g(u, &self.w, Some(&mut self.gu2), None);
            row.dropped = gamma * dist(&self.gu1, &self.gu2);
        }
        if let Some(fit) = fit_flatness(&samples) {
            row.c = fit.c;
            row.alpha = fit.alpha;
            row.delta = fit.delta;
            row.max_gap = fit.max_gap;
            row.floor = fit.floor;
        }
        if let Some((tol, flag)) = &self.stop
            && self.reached.is_none()
            && row.grad_reduced_map <= *tol
        {
            self.reached = Some(row.iter);
            flag.store(true, Ordering::Relaxed);
        }
        self.rows.push(row);
    }
}

/// Representation learning with a closed-form penalty response, for the flatness observer and
/// [`reduced_gradient_norm`]:
/// v_γ†(u), the least-norm minimizer of L_γ(u, ·) = ½‖X_val W1 W2 − Y_val‖² +
/// γ ½‖X_trn W1 W2 − Y_trn‖² (+ const), from the stacked least-squares problem. The minimizer is
/// not unique when h > N + N' (so neither is ∇F_γ by Danskin); the least-norm selection, like
/// the least-norm w*(u) of the problem, makes ‖∇F_γ(u)‖ a well-defined measurement, and it is 0
/// at the certified optimum (every residual is 0 there). Meant for measurements: solvers run on
/// the problem itself.
pub struct LeastNormResponses<'a>(pub &'a RepLearning);

impl Problem for LeastNormResponses<'_> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn dim_u(&self) -> usize {
        self.0.dim_u()
    }
    fn dim_v(&self) -> usize {
        self.0.dim_v()
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.0.f(u, v, gu, gv)
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.0.g(u, v, gu, gv)
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        self.0.ll_solution(u, w)
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn penalty_v_solution(&self, u: &[f64], gamma: f64, v: &mut [f64]) -> bool {
        let (m, h, n) = self.0.shape();
        let [xt, yt, xv, yv] = self.0.data();
        let w1 = MatRef::from_column_major_slice(u, m, h);
        let (nt, nv) = (xt.nrows(), xv.nrows());
        let s = gamma.sqrt();
        let at = xt * w1;
        let av = xv * w1;
        let b = Mat::from_fn(nv + nt, h, |i, j| {
            if i < nv {
                av[(i, j)]
            } else {
                s * at[(i - nv, j)]
            }
        });
        let c = Mat::from_fn(nv + nt, n, |i, j| {
            if i < nv {
                yv[(i, j)]
            } else {
                s * yt[(i - nv, j)]
            }
        });
        match pinv_solve(b.as_ref(), c.as_ref()) {
            Ok(x) => {
                for j in 0..n {
                    for i in 0..h {
                        v[i + j * h] = x[(i, j)];
                    }
                }
                true
            }
            Err(_) => false,
        }
    }
    fn has_penalty_v_solution(&self) -> bool {
        true
    }
}

/// ‖u − Proj(u − ∇F_γ(u))‖ with the closed-form responses w*(u), v_γ*(u) of `p` (‖∇F_γ(u)‖
/// without a box on u); NaN where `p` has no closed forms.
pub fn reduced_gradient_norm(p: &dyn Problem, u: &[f64], gamma: f64) -> f64 {
    let nv = p.dim_v();
    let (mut v, mut w) = (vec![0.0; nv], vec![0.0; nv]);
    if !(p.ll_solution(u, &mut w) && p.penalty_v_solution(u, gamma, &mut v)) {
        return f64::NAN;
    }
    let mut pen = Penalty::new(p.dim_u(), nv);
    pen.eval(p, u, &v, &w, gamma, true, false);
    let mut q: Vec<f64> = u.iter().zip(&pen.du).map(|(a, b)| a - b).collect();
    p.project_u(&mut q);
    dist(u, &q)
}
