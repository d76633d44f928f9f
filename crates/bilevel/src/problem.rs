//! The bilevel problem interface.
//!
//! Variables are flat `f64` slices: matrix-shaped problems view them in place as faer matrices
//! (`MatRef::from_column_major_slice`), so no copies are made at the boundary.

use crate::error::{Error, Result};

/// Which objective a call refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Upper level, f.
    Upper,
    /// Lower level, g.
    Lower,
}

/// Smoothness constants (Lipschitz constants of the gradients).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Smoothness {
    /// Smoothness of f in the joint variable (u, v).
    pub lf: f64,
    /// Smoothness of g in the joint variable (u, v).
    pub lg: f64,
    /// Smoothness of g(u, ·) in v alone (sets the inner step β ≈ 1/lg_vv).
    pub lg_vv: f64,
}

/// The minimizer set and value of the penalty function L_γ, where a problem knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct PenaltyOptimum {
    /// min L_γ.
    pub value: f64,
    /// A minimizer (u, v), when it is unique.
    pub point: Option<(Vec<f64>, Vec<f64>)>,
}

/// One gradient step on the penalty L_γ from (u, v), with g* estimated at a lower-level point w
/// ([`Problem::penalty_step`]). Both blocks step from the same evaluation (a Jacobi step; with
/// one block left out, a step on the other alone).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PenaltyStep {
    /// u ← u − α_u ∇_u L_γ(u, v) (None: u is left alone and ∇_u L_γ is not formed).
    pub alpha_u: Option<f64>,
    /// v ← v − α_v ∇_v L_γ(u, v) (None: v is left alone).
    pub alpha_v: Option<f64>,
    /// First w ← w − β ∇_v g(u, w), one gradient step of the estimate; the evaluation then
    /// takes g* and ∇g* at the new w (None: w is left alone).
    pub inner_beta: Option<f64>,
}

/// A bilevel problem: min over (u, v) of f(u, v) subject to v ∈ argmin_w g(u, w).
///
/// Required: sizes, f and g with their partial gradients (one call returns the value and
/// writes whichever gradients are asked for). Everything else is optional and unlocks
/// certified answers: the exact lower-level solution, smoothness constants, the bilevel and
/// penalty optima, a box for u.
pub trait Problem: Send + Sync {
    /// Short name, used in traces and reports.
    fn name(&self) -> String;
    /// Length of the upper-level variable u.
    fn dim_u(&self) -> usize;
    /// Length of the lower-level variable v.
    fn dim_v(&self) -> usize;

    /// Upper-level objective f(u, v). When given, `gu` and `gv` are overwritten with ∂f/∂u and
    /// ∂f/∂v.
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64;

    /// Lower-level objective g(u, v), same convention as [`Problem::f`].
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64;

    /// Number of samples that g sums over, for mini-batch (stochastic) gradients; 0 (the
    /// default) when the problem has no mini-batch support. Unlocks the `batch` option of the
    /// solvers.
    fn batch_samples(&self) -> usize {
        0
    }

    /// Unbiased mini-batch estimate of g(u, v) and its partial gradients (same convention as
    /// [`Problem::g`]) from the listed samples, each an index below
    /// [`Problem::batch_samples`] (distinct, as a draw without replacement gives them): the
    /// sample sum is scaled by N/|B|, terms that are not sums over samples (a ridge) enter
    /// unscaled, so averaging over a partition of the samples into equal batches gives g and
    /// its gradient exactly. The default ignores the batch and returns the full g (exact,
    /// hence unbiased); problems that report `batch_samples() > 0` override it.
    fn g_batch(
        &self,
        u: &[f64],
        v: &[f64],
        _batch: &[usize],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        self.g(u, v, gu, gv)
    }

    /// The pieces of the penalty L_γ in one call, for problems that can share work between
    /// f and g (for example one pass over their data for several right-hand sides): returns
    /// [f(u, v), g(u, v), g(u, w)] and writes, when given, `du` = ∇_u f(u, v) + γ (∇_u g(u, v)
    /// − ∇_u g(u, w)) and `dv` = ∇_v f(u, v) + γ ∇_v g(u, v). The default returns None: the
    /// caller then evaluates f and g separately.
    #[allow(clippy::too_many_arguments)]
    fn penalty_eval(
        &self,
        _u: &[f64],
        _v: &[f64],
        _w: &[f64],
        _gamma: f64,
        _du: Option<&mut [f64]>,
        _dv: Option<&mut [f64]>,
    ) -> Option<[f64; 3]> {
        None
    }

    /// Like [`Problem::penalty_eval`], and also writes `gw` = ∇_v g(u, w): the direction of a
    /// gradient step on the value-function estimate w at the same u, which does not depend on
    /// v, so it can share the pass over the data with ∇_v L_γ (Gauss–Seidel PBGD with one inner
    /// step). The default returns None and writes nothing: the caller then evaluates separately.
    #[allow(clippy::too_many_arguments)]
    fn penalty_eval_inner(
        &self,
        _u: &[f64],
        _v: &[f64],
        _w: &[f64],
        _gamma: f64,
        _du: Option<&mut [f64]>,
        _dv: Option<&mut [f64]>,
        _gw: &mut [f64],
    ) -> Option<[f64; 3]> {
        None
    }

    /// A gradient step on the penalty fused with its evaluation, for problems that can apply
    /// the step inside their products (for example u ← u − α_u ∇_u L_γ accumulated straight
    /// into u, with no gradient written and read back) or share work between the inner step
    /// and the evaluation. Does, in order: the inner step on w when `step.inner_beta` is given;
    /// then, with ∇_u L_γ and ∇_v L_γ both taken at the incoming (u, v) and the (new) w, the
    /// steps on u and v that `step` asks for. Returns [f(u, v), g(u, v), g(u, w)] at the
    /// evaluation point (the incoming u and v, the new w). The default returns None and changes
    /// nothing: the caller then evaluates and steps itself ([`crate::penalty::Penalty::step`]).
    fn penalty_step(
        &self,
        _u: &mut [f64],
        _v: &mut [f64],
        _w: &mut [f64],
        _gamma: f64,
        _step: PenaltyStep,
    ) -> Option<[f64; 3]> {
        None
    }

    /// Writes an exact lower-level minimizer w*(u) into `w` and returns true, or returns false
    /// when the problem has no closed form.
    fn ll_solution(&self, _u: &[f64], _w: &mut [f64]) -> bool {
        false
    }

    /// True when [`Problem::ll_solution`] is available.
    fn has_ll_solution(&self) -> bool {
        false
    }

    /// Writes the exact minimizer over v of L_γ(u, ·) = f(u, ·) + γ g(u, ·) (the v block of
    /// the penalty problem; g*(u) does not depend on v) into `v` and returns true, or returns
    /// false when the problem has no closed form. Unlocks the exact v-block of Gauss–Seidel
    /// PBGD.
    fn penalty_v_solution(&self, _u: &[f64], _gamma: f64, _v: &mut [f64]) -> bool {
        false
    }

    /// True when [`Problem::penalty_v_solution`] is available.
    fn has_penalty_v_solution(&self) -> bool {
        false
    }

    /// Projects u onto the upper-level feasible set (identity when unconstrained).
    fn project_u(&self, _u: &mut [f64]) {}

    /// True when u is constrained (then stopping uses the projected-gradient mapping).
    fn is_constrained(&self) -> bool {
        false
    }

    /// Global smoothness constants, where the problem knows them. Otherwise the solvers
    /// estimate them by power iteration at the start point.
    fn smoothness(&self) -> Option<Smoothness> {
        None
    }

    /// The bilevel optimum f*, where it is certified (closed form, exhaustive search).
    fn bilevel_optimum(&self) -> Option<f64> {
        None
    }

    /// The global minimum of L_γ (and its minimizer when unique), where it is known.
    fn penalty_optimum(&self, _gamma: f64) -> Option<PenaltyOptimum> {
        None
    }

    /// Relative distance from (u, v) to the penalty optimum, in whatever measure suits the
    /// problem (for example on the product of two layers). The default uses the unique
    /// minimizer when [`Problem::penalty_optimum`] gives one.
    fn penalty_optimum_distance(&self, u: &[f64], v: &[f64], gamma: f64) -> Option<f64> {
        let (us, vs) = self.penalty_optimum(gamma)?.point?;
        let num: f64 = u
            .iter()
            .zip(&us)
            .chain(v.iter().zip(&vs))
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let den: f64 = us.iter().chain(&vs).map(|a| a * a).sum();
        Some(num.sqrt() / den.sqrt().max(1e-300))
    }

    /// A recommended start point for seed `seed` (for example a full-rank backbone), where the
    /// problem has one; runs without an explicit start use it.
    fn initial_point(&self, _seed: u64) -> Option<(Vec<f64>, Vec<f64>)> {
        None
    }

    /// Named arrays of the solution (u, v) in the problem's own terms, written beside u and v
    /// by `bilevel run` and offered as attributes in Python: for example the sample weights, the
    /// flagged samples and the model of hyper-cleaning. The default has none.
    fn solution_views(&self, _u: &[f64], _v: &[f64]) -> Vec<crate::solution::View> {
        Vec::new()
    }

    /// An assessment of the solution (u, v) against the problem's references, for the report of
    /// `bilevel run` and the Python result; None (the default) when the problem has none.
    fn assess(&self, _u: &[f64], _v: &[f64]) -> Result<Option<crate::solution::Assessment>> {
        Ok(None)
    }

    /// Names of problem-specific metrics recorded in every trace row (accuracy, F1, ...).
    fn metric_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Values of the metrics named by [`Problem::metric_names`], in the same order.
    fn metrics(&self, _u: &[f64], _v: &[f64]) -> Vec<f64> {
        Vec::new()
    }

    /// Hessian-vector product of f or g at (u, v) in the direction (du, dv), written into
    /// (hu, hv). The default takes a central difference of gradients; problems with cheap
    /// exact products override it.
    #[allow(clippy::too_many_arguments)]
    fn hvp(
        &self,
        level: Level,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        hvp_by_differences(self, level, u, v, du, dv, hu, hv)
    }
}

/// Evaluates f or g with gradients.
pub fn eval_level<P: Problem + ?Sized>(
    p: &P,
    level: Level,
    u: &[f64],
    v: &[f64],
    gu: Option<&mut [f64]>,
    gv: Option<&mut [f64]>,
) -> f64 {
    match level {
        Level::Upper => p.f(u, v, gu, gv),
        Level::Lower => p.g(u, v, gu, gv),
    }
}

/// Evaluates g with gradients: the full objective, or its mini-batch estimate
/// ([`Problem::g_batch`]) when a batch is given.
pub fn eval_g<P: Problem + ?Sized>(
    p: &P,
    u: &[f64],
    v: &[f64],
    batch: Option<&[usize]>,
    gu: Option<&mut [f64]>,
    gv: Option<&mut [f64]>,
) -> f64 {
    match batch {
        Some(b) => p.g_batch(u, v, b, gu, gv),
        None => p.g(u, v, gu, gv),
    }
}

/// Hessian-vector product by a central difference of gradients, with a step scaled to the
/// point and direction.
#[allow(clippy::too_many_arguments)]
pub fn hvp_by_differences<P: Problem + ?Sized>(
    p: &P,
    level: Level,
    u: &[f64],
    v: &[f64],
    du: &[f64],
    dv: &[f64],
    hu: &mut [f64],
    hv: &mut [f64],
) {
    let zn = crate::linalg::norm(u).hypot(crate::linalg::norm(v));
    let dn = crate::linalg::norm(du).hypot(crate::linalg::norm(dv));
    if dn == 0.0 {
        hu.fill(0.0);
        hv.fill(0.0);
        return;
    }
    let h = 1e-5 * (1.0 + zn) / dn;
    let up: Vec<f64> = u.iter().zip(du).map(|(a, b)| a + h * b).collect();
    let vp: Vec<f64> = v.iter().zip(dv).map(|(a, b)| a + h * b).collect();
    let um: Vec<f64> = u.iter().zip(du).map(|(a, b)| a - h * b).collect();
    let vm: Vec<f64> = v.iter().zip(dv).map(|(a, b)| a - h * b).collect();
    let mut gu2 = vec![0.0; u.len()];
    let mut gv2 = vec![0.0; v.len()];
    eval_level(p, level, &up, &vp, Some(hu), Some(hv));
    eval_level(p, level, &um, &vm, Some(&mut gu2), Some(&mut gv2));
    for (a, b) in hu.iter_mut().zip(&gu2) {
        *a = (*a - b) / (2.0 * h);
    }
    for (a, b) in hv.iter_mut().zip(&gv2) {
        *a = (*a - b) / (2.0 * h);
    }
}

/// Checks that (u, v) have the problem's sizes and finite entries.
pub fn check_point<P: Problem + ?Sized>(p: &P, u: &[f64], v: &[f64]) -> Result<()> {
    if u.len() != p.dim_u() {
        return Err(Error::dim(
            format!("upper-level variable u of problem {}", p.name()),
            p.dim_u(),
            u.len(),
        ));
    }
    if v.len() != p.dim_v() {
        return Err(Error::dim(
            format!("lower-level variable v of problem {}", p.name()),
            p.dim_v(),
            v.len(),
        ));
    }
    crate::error::check_finite("start point u", u)?;
    crate::error::check_finite("start point v", v)?;
    Ok(())
}

/// Largest squared Frobenius norm accepted for a data matrix (features, targets, the matrices
/// of a quadratic). The problems form Gram matrices, squared residuals and smoothness constants
/// of the order of ‖X‖², then multiply them by γ and by iterates: below 1e150 that keeps more
/// than 1e150 of headroom under the largest f64 (1.8e308). Entries up to about 1e75 pass.
pub const MAX_DATA_SQ_NORM: f64 = 1e150;

/// Checks that the squares of a data matrix cannot overflow the problem's arithmetic: its
/// squared Frobenius norm must be finite and at most [`MAX_DATA_SQ_NORM`]. The error names
/// `what` (the file or split), the row and column (0-based) of the largest entry, and the fix.
pub fn check_data_scale(what: &str, x: faer::MatRef<'_, f64>) -> Result<()> {
    let mut sq = 0.0f64;
    let mut big = (0.0f64, 0usize, 0usize);
    for j in 0..x.ncols() {
        for i in 0..x.nrows() {
            let a = x[(i, j)].abs();
            sq += a * a;
            // A NaN names its own place.
            if a > big.0 || (a.is_nan() && !big.0.is_nan()) {
                big = (a, i, j);
            }
        }
    }
    if sq <= MAX_DATA_SQ_NORM {
        return Ok(());
    }
    let (v, i, j) = big;
    let norm = if sq.is_finite() {
        format!("{sq:.1e}")
    } else {
        "beyond the largest number (it overflows)".to_string()
    };
    Err(Error::data(
        what,
        format!(
            "the value {:e} at row {i}, column {j} (0-based) is too large: the squared norm of this data is {norm}, and products with it overflow (the limit is {MAX_DATA_SQ_NORM:e}, entries up to about 1e75); rescale the data, for example standardize each feature column",
            x[(i, j)].signum() * v
        ),
    ))
}
