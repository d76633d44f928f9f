//! Wall-clock comparison of the PBGD family (issue 20, item 4): time to a fixed
//! ‖∇F_γ(u)‖ on representation learning (medium) and on Fashion-MNIST hyper-cleaning, for PBGD
//! (Jacobi and Gauss–Seidel), ALT-PBGD and PBGD-Free. One run per solver, same machine.
//!
//! The clock covers the solver's `init` and its steps only; ‖∇F_γ(u)‖ (the gradient mapping
//! on a box) is measured with closed-form responses every `check_every` iterations with the
//! clock paused. A run that does not reach ε within its time budget is reported with its last
//! ‖∇F_γ‖.

use crate::replearn::RepSize;
use bilevel::Problem;
use bilevel::diagnostics::{LeastNormResponses, reduced_gradient_norm};
use bilevel::error::Result;
use bilevel::problems::RepLearning;
use bilevel::solvers::{AltPbgd, Pbgd, PbgdFree, Solver, State, StepRule, VBlock};
use std::time::Instant;

/// One timed run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FollowupsRow {
    /// Problem name.
    pub problem: String,
    /// Solver name.
    pub solver: String,
    /// γ.
    pub gamma: f64,
    /// ‖∇F_γ(u0)‖.
    pub grad0: f64,
    /// The target: ε = `eps_rel` · ‖∇F_γ(u0)‖.
    pub eps: f64,
    /// Whether ε was reached.
    pub reached: bool,
    /// Iterations taken (to ε, or to the budget).
    pub iterations: usize,
    /// ‖∇F_γ‖ at the last check.
    pub grad_end: f64,
    /// Solver time (init and steps), seconds.
    pub seconds: f64,
    /// Of which the solver's init, seconds.
    pub init_seconds: f64,
}

/// Runs `solver` from (u0, v0) until ‖∇F_γ‖ (measured on `obs`) ≤ `eps`, checking every
/// `check_every` iterations, or until `budget_s` seconds of solver time.
#[allow(clippy::too_many_arguments)]
fn time_to_eps(
    p: &dyn Problem,
    obs: &dyn Problem,
    solver: &mut dyn Solver,
    gamma: f64,
    u0: &[f64],
    v0: &[f64],
    eps_rel: f64,
    check_every: usize,
    budget_s: f64,
) -> Result<FollowupsRow> {
    let grad0 = reduced_gradient_norm(obs, u0, gamma);
    let eps = eps_rel * grad0;
    let mut state = State {
        u: u0.to_vec(),
        v: v0.to_vec(),
        iter: 0,
        rng: bilevel::seeds::rng(0, bilevel::seeds::Stream::Run),
    };
    let t = Instant::now();
    solver.init(p, &mut state)?;
    let init_seconds = t.elapsed().as_secs_f64();
    let mut seconds = init_seconds;
    let mut grad_end;
    loop {
        if state.iter.is_multiple_of(check_every) {
            grad_end = reduced_gradient_norm(obs, &state.u, gamma);
            if grad_end <= eps || !grad_end.is_finite() || seconds >= budget_s {
                break;
            }
        }
        let t = Instant::now();
        solver.step(p, &mut state)?;
        seconds += t.elapsed().as_secs_f64();
        state.iter += 1;
    }
    Ok(FollowupsRow {
        problem: p.name(),
        solver: solver.name(),
        gamma,
        grad0,
        eps,
        reached: grad_end <= eps,
        iterations: state.iter,
        grad_end,
        seconds,
        init_seconds,
    })
}

/// Relative target of the comparison: ‖∇F_γ(u)‖ ≤ FOLLOWUPS_EPS · ‖∇F_γ(u0)‖.
pub const FOLLOWUPS_EPS: f64 = 1e-3;

/// Representation learning at `size` (the benchmark instance, seed `seed`, its start point),
/// γ = [`crate::BENCH_GAMMA`]: Jacobi and Gauss–Seidel PBGD, ALT-PBGD (gradient blocks, the
/// accuracy rule) and PBGD-Free, each to [`FOLLOWUPS_EPS`] or `budget_s` seconds. ‖∇F_γ‖ uses
/// the least-norm responses ([`LeastNormResponses`]).
pub fn followups_replearn(
    size: RepSize,
    seed: u64,
    budget_s: f64,
    check_every: usize,
) -> Result<Vec<FollowupsRow>> {
    let (regime, sizes) = size.sizes();
    let p = RepLearning::generate(regime, &sizes, seed)?;
    let obs = LeastNormResponses(&p);
    let gamma = crate::BENCH_GAMMA;
    let (u0, v0) = p.init(seed);
    let solvers: Vec<Box<dyn Solver>> = vec![
        Box::new(Pbgd::jacobi(gamma)),
        Box::new(Pbgd::gauss_seidel(gamma)),
        Box::new(AltPbgd::new(gamma).with_blocks(VBlock::Gradient, VBlock::Gradient)),
        Box::new(PbgdFree::new(gamma)),
    ];
    let mut rows = Vec::new();
    for mut s in solvers {
        let r = time_to_eps(
            &p,
            &obs,
            s.as_mut(),
            gamma,
            &u0,
            &v0,
            FOLLOWUPS_EPS,
            check_every,
            budget_s,
        )?;
        print_row(&r);
        rows.push(r);
    }
    Ok(rows)
}

/// Fashion-MNIST hyper-cleaning as in the `cleaning` experiment (seed `seed`, its data,
/// settings and start; γ = FM_GAMMA): Gauss–Seidel PBGD with the exact v block (the
/// experiment's solver), Jacobi PBGD, ALT-PBGD (exact responses) and PBGD-Free, each to
/// [`FOLLOWUPS_EPS`] or `budget_s` seconds. Needs Fashion-MNIST installed.
pub fn followups_cleaning(
    seed: u64,
    budget_s: f64,
    check_every: usize,
) -> Result<Vec<FollowupsRow>> {
    use bilevel::experiments::{FM_C, FM_GAMMA};
    let data = crate::cleaning_run_data(seed)?;
    let (p, _, state) = crate::cleaning_run_start(data, seed)?;
    let gamma = FM_GAMMA;
    let solvers: Vec<Box<dyn Solver>> = vec![
        Box::new(Pbgd::gauss_seidel(gamma).with_exact_v(StepRule::Fixed(FM_C / gamma))),
        Box::new(Pbgd::jacobi(gamma)),
        Box::new(AltPbgd::new(gamma)),
        Box::new(PbgdFree::new(gamma)),
    ];
    let mut rows = Vec::new();
    for mut s in solvers {
        let r = time_to_eps(
            &p,
            &p,
            s.as_mut(),
            gamma,
            &state.u,
            &state.v,
            FOLLOWUPS_EPS,
            check_every,
            budget_s,
        )?;
        print_row(&r);
        rows.push(r);
    }
    Ok(rows)
}

fn print_row(r: &FollowupsRow) {
    println!(
        "{} | {} | {} | {} iterations | {:.3} s (init {:.3} s) | ‖∇F_γ‖ {:.3e} → {:.3e} (ε = {:.3e})",
        r.problem,
        r.solver,
        if r.reached {
            "reached ε"
        } else {
            "NOT reached"
        },
        r.iterations,
        r.seconds,
        r.init_seconds,
        r.grad0,
        r.grad_end,
        r.eps
    );
}
