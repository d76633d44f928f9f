//! The run loop shared by every solver: iteration and time limits, stopping tolerances,
//! divergence detection, records, observers and interruption.

use crate::error::{Divergence, Error, Result};
use crate::linalg::{all_finite, norm};
use crate::penalty::Penalty;
use crate::problem::{Problem, check_point};
use crate::solvers::{InnerLoop, Solver, State, Steps, ValueFunction};
use crate::trace::{Observer, Record, Snapshot, Status, Trace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Limits, tolerances and recording settings of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// Iteration budget.
    pub max_iter: usize,
    /// Record (and check stopping rules) every this many iterations.
    pub record_every: usize,
    /// Stop when ‖∇L_γ‖ ≤ grad_tol.
    pub grad_tol: Option<f64>,
    /// Stop when |ΔL_γ| / max(|L_γ|, 1e-300) between two records ≤ rel_tol.
    pub rel_tol: Option<f64>,
    /// Stop when L_γ ≤ target.
    pub target: Option<f64>,
    /// Stop when the relative distance to the penalty optimum ≤ dist_tol (problems that know it).
    pub dist_tol: Option<f64>,
    /// Stop when the record's `grad_u` ≤ grad_u_rel_tol × `grad_u` of the first record (a
    /// relative stationarity of the u block; 0 stops only at an exactly stationary point).
    pub grad_u_rel_tol: Option<f64>,
    /// Declare divergence when L_γ exceeds this factor times max(|L_γ at start|, 1).
    pub divergence_factor: f64,
    /// Wall-time budget in seconds.
    pub max_time_s: Option<f64>,
    /// Seed of the run's random stream.
    pub seed: u64,
    /// Gradient steps the monitor spends per record refining its g* estimate (problems
    /// without an exact lower-level solution).
    pub monitor_inner_steps: usize,
    /// Keep every record (false: only the first and last, for large studies).
    pub keep_records: bool,
    /// Set to true from another thread (Ctrl-C) to stop after the current iteration.
    #[serde(skip)]
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_iter: 1000,
            record_every: 1,
            grad_tol: None,
            rel_tol: None,
            target: None,
            dist_tol: None,
            grad_u_rel_tol: None,
            divergence_factor: 1e8,
            max_time_s: None,
            seed: 0,
            monitor_inner_steps: 100,
            keep_records: true,
            interrupt: None,
        }
    }
}

impl RunOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.record_every == 0 {
            return Err(Error::setting("record_every", 0, "must be at least 1"));
        }
        for (name, v) in [
            ("grad_tol", self.grad_tol),
            ("rel_tol", self.rel_tol),
            ("dist_tol", self.dist_tol),
            ("max_time_s", self.max_time_s),
        ] {
            if let Some(x) = v {
                crate::error::check_positive(name, x)?;
            }
        }
        if let Some(t) = self.grad_u_rel_tol
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::setting(
                "grad_u_rel_tol",
                t,
                "must be finite and >= 0",
            ));
        }
        if let Some(t) = self.target
            && !t.is_finite()
        {
            return Err(Error::setting("target", t, "must be a finite number"));
        }
        if !(self.divergence_factor.is_finite() && self.divergence_factor > 1.0) {
            return Err(Error::setting(
                "divergence_factor",
                self.divergence_factor,
                "must be finite and > 1",
            ));
        }
        Ok(())
    }
}

/// The result of a run that did not diverge.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Final upper-level variable.
    pub u: Vec<f64>,
    /// Final lower-level variable.
    pub v: Vec<f64>,
    /// Records and status.
    pub trace: Trace,
    /// How the run ended.
    pub status: Status,
    /// Iterations taken.
    pub iterations: usize,
    /// Step sizes in force at the end.
    pub steps: Steps,
}

impl RunOutput {
    /// The final record.
    pub fn last(&self) -> &Record {
        self.trace
            .records
            .last()
            .expect("a run always records its end point")
    }
}

/// A point (u, v) and the iteration it was recorded at.
pub type FinitePoint = (Vec<f64>, Vec<f64>, usize);

/// A run that failed: the error, and beside it the trace recorded up to a divergence. It
/// displays as its error and converts into it (dropping the trace), so `?` passes it on as an
/// [`Error`].
#[derive(Debug)]
pub struct RunError {
    /// What went wrong ([`Error::Diverged`] when the run diverged).
    pub error: Error,
    /// The records up to the divergence, the last one where it was detected, with status
    /// `Diverged`; `None` when the run failed otherwise (bad settings, a failing step).
    pub trace: Option<Box<Trace>>,
    /// On divergence, the last recorded point that passed the checks (finite, L_γ below the
    /// divergence bound) and its iteration: what a caller can save of a diverged run.
    pub last_finite: Option<Box<FinitePoint>>,
}

impl From<Error> for RunError {
    fn from(error: Error) -> Self {
        RunError {
            error,
            trace: None,
            last_finite: None,
        }
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        e.error
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Evaluates records at iterates: f, g, g*, L_γ, gradient norms and gaps.
pub struct Monitor {
    pen: Penalty,
    exact: bool,
    vf: Option<ValueFunction>,
    steps: usize,
    opt_cache: Option<(f64, Option<f64>)>,
}

impl Monitor {
    /// A monitor for `problem`. Without an exact lower-level solution, g* is estimated by
    /// gradient descent (step β) warm-started from the previous estimate.
    pub fn new(problem: &dyn Problem, beta: f64, steps: usize) -> Result<Self> {
        let exact = problem.has_ll_solution();
        let vf = if exact {
            ValueFunction::new(problem, InnerLoop::Exact, 1.0)?
        } else {
            ValueFunction::new(
                problem,
                InnerLoop::Gd {
                    steps: steps.max(1),
                    warm: true,
                    beta: Some(beta),
                },
                1.0,
            )?
        };
        Ok(Monitor {
            pen: Penalty::new(problem.dim_u(), problem.dim_v()),
            exact,
            vf: Some(vf),
            steps,
            opt_cache: None,
        })
    }

    /// "exact" or "estimate".
    pub fn g_star_source(&self) -> &'static str {
        if self.exact { "exact" } else { "estimate" }
    }

    /// The record at (u, v) for penalty γ. `alpha` scales the projected-gradient mapping of
    /// constrained problems; `hint` is a lower-level point to try as a g* candidate.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        problem: &dyn Problem,
        iter: usize,
        time_s: f64,
        u: &[f64],
        v: &[f64],
        gamma: f64,
        alpha: f64,
        hint: Option<&[f64]>,
    ) -> Record {
        let vf = self.vf.as_mut().expect("monitor has a value function");
        if self.exact {
            vf.update(problem, u);
        } else {
            if iter == 0 {
                vf.set(hint.unwrap_or(v));
            }
            vf.update_with(problem, u, Some(self.steps));
            // g* ≤ g(u, w) for every w: the lowest candidate is the tightest estimate.
            let mut best = problem.g(u, &vf.w, None, None);
            if let Some(w) = hint {
                let gh = problem.g(u, w, None, None);
                if gh < best {
                    best = gh;
                    vf.set(w);
                }
            }
            if problem.g(u, v, None, None) < best {
                vf.set(v);
            }
        }
        let pv = self.pen.eval(problem, u, v, &vf.w, gamma, true, true);
        let (f, g, g_star, l_gamma) = (pv.f, pv.g, pv.g_star, pv.l);
        let ll_gap = g - g_star;
        let grad_u = if problem.is_constrained() && alpha > 0.0 && alpha.is_finite() {
            let mut p: Vec<f64> = u
                .iter()
                .zip(&self.pen.du)
                .map(|(a, d)| a - alpha * d)
                .collect();
            problem.project_u(&mut p);
            crate::linalg::dist(u, &p) / alpha
        } else {
            norm(&self.pen.du)
        };
        let grad_v = norm(&self.pen.dv);
        let f_gap = problem.bilevel_optimum().map_or(f64::NAN, |fs| f - fs);
        let l_star = match self.opt_cache {
            Some((g0, val)) if g0 == gamma => val,
            _ => {
                let val = problem.penalty_optimum(gamma).map(|p| p.value);
                self.opt_cache = Some((gamma, val));
                val
            }
        };
        let l_gap = l_star.map_or(f64::NAN, |ls| l_gamma - ls);
        let dist_opt = problem
            .penalty_optimum_distance(u, v, gamma)
            .unwrap_or(f64::NAN);
        Record {
            iter,
            time_s,
            f,
            g,
            g_star,
            ll_gap,
            gamma,
            l_gamma,
            grad_u,
            grad_v,
            f_gap,
            l_gap,
            dist_opt,
            metrics: problem.metrics(u, v),
            extra: Vec::new(),
        }
    }
}

/// Upper-level variables longer than this are checked for finiteness every [`FINITE_EVERY`]
/// iterations (and at every record) instead of every iteration.
const FINITE_EVERY_ABOVE: usize = 1 << 16;
const FINITE_EVERY: usize = 16;

/// Runs `solver` on `problem` from (u0, v0).
///
/// Returns the final point and trace, or a [`RunError`]: [`Error::Diverged`] with the partial
/// trace beside it when the iterates become non-finite or L_γ grows past the divergence factor.
pub fn run(
    problem: &dyn Problem,
    solver: &mut dyn Solver,
    u0: &[f64],
    v0: &[f64],
    opts: &RunOptions,
    observers: &mut [&mut dyn Observer],
) -> Result<RunOutput, RunError> {
    opts.validate()?;
    check_point(problem, u0, v0)?;
    let mut state = State {
        u: u0.to_vec(),
        v: v0.to_vec(),
        iter: 0,
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
    };
    problem.project_u(&mut state.u);
    // The largest γ of the run: a ramp's end, where it has one.
    let gamma_max = solver.gamma(0).max(solver.gamma(opts.max_iter));
    check_start(problem, &state.u, &state.v, gamma_max)?;
    solver.init(problem, &mut state)?;
    let beta = solver
        .steps()
        .beta
        .or_else(|| solver.smoothness().map(|s| 1.0 / s.lg_vv))
        .unwrap_or(1.0);
    let mut monitor = Monitor::new(problem, beta, opts.monitor_inner_steps)?;
    let mut trace = Trace {
        problem: problem.name(),
        solver: solver.name(),
        seed: opts.seed,
        g_star_source: monitor.g_star_source().to_string(),
        metric_names: problem.metric_names(),
        extra_names: observers.iter().flat_map(|o| o.columns()).collect(),
        records: Vec::new(),
        status: None,
    };
    let start = Instant::now();
    let take = |state: &State, solver: &dyn Solver, monitor: &mut Monitor| {
        monitor.record(
            problem,
            state.iter,
            start.elapsed().as_secs_f64(),
            &state.u,
            &state.v,
            solver.gamma(state.iter),
            solver.steps().alpha,
            solver.ll_estimate(),
        )
    };
    let mut first = take(&state, solver, &mut monitor);
    check_first_record(&first)?;
    let scale = first.l_gamma.abs().max(1.0);
    let mut prev_l = first.l_gamma;
    notify(observers, &mut first, &state, opts.max_iter);
    let mut last_recorded = 0usize;
    let grad_u0 = first.grad_u;
    let mut status = stop_check(opts, &first, None, grad_u0);
    trace.records.push(first);
    // The last recorded point that passed the checks, kept for a diverged run's caller.
    let mut last_finite = (state.u.clone(), state.v.clone(), state.iter);

    let diverged = |state: &State,
                    reason: String,
                    solver: &dyn Solver,
                    mut trace: Trace,
                    last_finite: (Vec<f64>, Vec<f64>, usize)| {
        let steps = solver.steps();
        trace.status = Some(Status::Diverged(reason.clone()));
        RunError {
            error: Error::Diverged(Box::new(Divergence {
                iter: state.iter,
                reason,
                alpha: steps.alpha,
                beta: steps.beta,
            })),
            trace: Some(Box::new(trace)),
            last_finite: Some(Box::new(last_finite)),
        }
    };

    while status.is_none() {
        if state.iter >= opts.max_iter {
            status = Some(Status::MaxIterations);
            break;
        }
        if let Some(flag) = &opts.interrupt
            && flag.load(Ordering::Relaxed)
        {
            status = Some(Status::Interrupted);
            break;
        }
        if let Some(t) = opts.max_time_s
            && start.elapsed().as_secs_f64() > t
        {
            status = Some(Status::TimeLimit);
            break;
        }
        solver.step(problem, &mut state)?;
        state.iter += 1;
        // Each iteration checks v, and u where it is small; a large u is checked every
        // FINITE_EVERY iterations and at every record (whose L_γ check also catches it).
        // Reading a large u on this thread pulls in the cache lines that the other threads of a
        // team kernel own and write next (a medium replearn W1: 0.27 ms per iteration, 60 % of
        // the step), and on a coupled problem a non-finite u makes v non-finite one step later.
        let recording = state.iter.is_multiple_of(opts.record_every) || state.iter == opts.max_iter;
        let check_u = state.u.len() <= FINITE_EVERY_ABOVE
            || state.iter.is_multiple_of(FINITE_EVERY)
            || recording;
        if !(all_finite(&state.v) && (!check_u || all_finite(&state.u))) {
            let rec = take(&state, solver, &mut monitor);
            trace.records.push(rec);
            return Err(diverged(
                &state,
                "the iterate became non-finite (NaN or Inf)".into(),
                solver,
                trace,
                last_finite,
            ));
        }
        if recording {
            let mut rec = take(&state, solver, &mut monitor);
            last_recorded = state.iter;
            notify(observers, &mut rec, &state, opts.max_iter);
            if !rec.l_gamma.is_finite() || rec.l_gamma > opts.divergence_factor * scale {
                let reason = format!(
                    "L_gamma grew from {:.3e} at the start to {:.3e}",
                    trace.records[0].l_gamma, rec.l_gamma
                );
                trace.records.push(rec);
                return Err(diverged(&state, reason, solver, trace, last_finite));
            }
            last_finite.0.copy_from_slice(&state.u);
            last_finite.1.copy_from_slice(&state.v);
            last_finite.2 = state.iter;
            status = stop_check(opts, &rec, Some(prev_l), grad_u0);
            prev_l = rec.l_gamma;
            push(&mut trace, rec, opts.keep_records);
        }
    }
    if last_recorded != state.iter {
        let mut rec = take(&state, solver, &mut monitor);
        notify(observers, &mut rec, &state, opts.max_iter);
        push(&mut trace, rec, opts.keep_records);
    }
    let status = status.unwrap_or(Status::MaxIterations);
    for o in observers.iter_mut() {
        o.finish(&status);
    }
    trace.status = Some(status.clone());
    Ok(RunOutput {
        u: state.u,
        v: state.v,
        trace,
        status,
        iterations: state.iter,
        steps: solver.steps(),
    })
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |a, b| a.max(b.abs()))
}

/// Evaluates f and g with their gradients at the start point, and γ times ∇g, before the solver
/// spends time there (smoothness estimates, inner loops). A start where they overflow is an
/// error naming the start point, and a γ that overflows them one naming `gamma`: neither is
/// reported later as a divergence (with a step size to try) or as a bad smoothness constant.
/// [`run()`] calls it (with the largest γ of the solver's schedule); callers can call it first
/// to refuse a start before they spend anything on it.
pub fn check_start(problem: &dyn Problem, u: &[f64], v: &[f64], gamma: f64) -> Result<()> {
    let (mut gu, mut gv) = (vec![0.0; u.len()], vec![0.0; v.len()]);
    let f = problem.f(u, v, Some(&mut gu), Some(&mut gv));
    let nf = norm(&gu).hypot(norm(&gv));
    let g = problem.g(u, v, Some(&mut gu), Some(&mut gv));
    let ng = norm(&gu).hypot(norm(&gv));
    if !(f.is_finite() && g.is_finite() && nf.is_finite() && ng.is_finite()) {
        return Err(start_error(
            u,
            v,
            format!(
                "the objectives overflow there (f = {f:.3e}, g = {g:.3e}, |grad f| = {nf:.3e}, |grad g| = {ng:.3e})"
            ),
        ));
    }
    // The records square the gradient's entries (‖∇L_γ‖), so γ‖∇g‖ must stay below √MAX.
    let (gg, gn) = (gamma * g.abs(), gamma * ng);
    if gamma > 0.0 && !(gg.is_finite() && (gn * gn).is_finite()) {
        return Err(Error::setting(
            "gamma",
            format!("{gamma:e}"),
            format!(
                "at the start point gamma * g = {gg:.3e} and gamma * |grad g| = {gn:.3e} (g = {g:.3e}, |grad g| = {ng:.3e}): the penalty and its gradient norm overflow; use a smaller gamma (typical values: 1 to 1e4) or rescale the data"
            ),
        ));
    }
    Ok(())
}

/// The start point as an [`Error::InvalidSetting`] named `start point`.
fn start_error(u: &[f64], v: &[f64], why: String) -> Error {
    Error::setting(
        "start point",
        format!(
            "(largest |u_i| = {:.3e}, largest |v_i| = {:.3e})",
            max_abs(u),
            max_abs(v)
        ),
        format!(
            "{why}: the start is too far out for this problem's scale; start closer to the origin"
        ),
    )
}

/// The first record must be finite: f and g were checked at the start, so a non-finite L_γ or
/// gradient there comes from γ (or from the estimate of g*), and running on would only report a
/// divergence or an infinite gradient norm.
fn check_first_record(r: &Record) -> Result<()> {
    let gn = r.grad_norm();
    if r.l_gamma.is_finite() && gn.is_finite() {
        return Ok(());
    }
    let what = format!(
        "L_gamma = {:.3e} and |grad L_gamma| = {gn:.3e} at the start point (f = {:.3e}, g = {:.3e}, g* = {:.3e})",
        r.l_gamma, r.f, r.g, r.g_star
    );
    if r.f.is_finite() && r.g.is_finite() && r.g_star.is_finite() {
        Err(Error::setting(
            "gamma",
            format!("{:e}", r.gamma),
            format!(
                "{what}: gamma times the lower-level terms overflows; use a smaller gamma (typical values: 1 to 1e4) or rescale the data"
            ),
        ))
    } else {
        Err(Error::data(
            "the start point",
            format!(
                "{what}: the estimate of g* overflows; start closer to the origin, or give a smaller inner step `inner_beta`"
            ),
        ))
    }
}

/// Shows the record to every observer, then appends their columns to it.
fn notify(observers: &mut [&mut dyn Observer], rec: &mut Record, state: &State, max_iter: usize) {
    let snap = Snapshot {
        record: rec,
        u: &state.u,
        v: &state.v,
        max_iter,
    };
    for o in observers.iter_mut() {
        o.observe(&snap);
    }
    let mut extra = Vec::new();
    for o in observers.iter() {
        o.values(&mut extra);
    }
    rec.extra = extra;
}

fn push(trace: &mut Trace, rec: Record, keep: bool) {
    if !keep && trace.records.len() >= 2 {
        trace.records.pop();
    }
    trace.records.push(rec);
}

fn stop_check(
    opts: &RunOptions,
    rec: &Record,
    prev_l: Option<f64>,
    grad_u0: f64,
) -> Option<Status> {
    if let Some(t) = opts.grad_u_rel_tol
        && rec.grad_u <= t * grad_u0
    {
        return Some(Status::Converged(format!(
            "grad_u <= {t} x its first value"
        )));
    }
    if let Some(t) = opts.target
        && rec.l_gamma <= t
    {
        return Some(Status::Converged(format!("L_gamma <= {t:e}")));
    }
    if let Some(t) = opts.grad_tol
        && rec.grad_norm() <= t
    {
        return Some(Status::Converged(format!("gradient norm <= {t:e}")));
    }
    if let Some(t) = opts.dist_tol
        && rec.dist_opt <= t
    {
        return Some(Status::Converged(format!(
            "distance to the penalty optimum <= {t:e}"
        )));
    }
    if let (Some(t), Some(p)) = (opts.rel_tol, prev_l)
        && (rec.l_gamma - p).abs() / rec.l_gamma.abs().max(1e-300) <= t
    {
        return Some(Status::Converged(format!(
            "relative change of L_gamma <= {t:e}"
        )));
    }
    None
}
