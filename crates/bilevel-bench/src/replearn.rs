//! Representation-learning benchmark cases: the three sizes, a seeded instance with the
//! benchmark solver, the timed iteration (roofline rows and export for the peers), and whole
//! runs to a fixed distance from the penalty optimum.

use crate::cost::{Cost, Passes, RooflineRow, replearn_iteration_cost};
use crate::export::{ExportedCase, case_name, update_label, write_case};
use crate::rates::{MachineRates, measure};
use crate::timing::{RUN_REPS, time_budget};
use crate::{BENCH_GAMMA, bench_solver};
use bilevel::Result;
use bilevel::problem::Problem;
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes};
use bilevel::solvers::{Pbgd, Solver, State, Update};
use std::time::Instant;

/// The benchmark sizes of representation learning (issue 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepSize {
    /// N = N' = 50, m = 100, h = 120, n = 5 (certified-global regime).
    Small,
    /// N = N' = 500, m = 500, h = 600, n = 10 (intermediate regime).
    Medium,
    /// N = N' = 2,000, m = 1,000, h = 1,000, n = 10 (general regime, N > m).
    Large,
}

impl RepSize {
    /// All three, smallest first.
    pub const ALL: [RepSize; 3] = [RepSize::Small, RepSize::Medium, RepSize::Large];

    /// Lower-case name.
    pub fn label(&self) -> &'static str {
        match self {
            RepSize::Small => "small",
            RepSize::Medium => "medium",
            RepSize::Large => "large",
        }
    }

    /// The regime these sizes fall in and the generator's sizes.
    pub fn sizes(&self) -> (Regime, RepSizes) {
        let (regime, n_trn, m, h, n) = match self {
            RepSize::Small => (Regime::CertifiedGlobal, 50, 100, 120, 5),
            RepSize::Medium => (Regime::Intermediate, 500, 500, 600, 10),
            RepSize::Large => (Regime::General, 2000, 1000, 1000, 10),
        };
        let mut s = RepSizes::default_for(regime);
        (s.n_trn, s.n_val, s.m, s.h, s.n) = (n_trn, n_trn, m, h, n);
        (regime, s)
    }
}

/// The benchmark solver ([`bench_solver`]) and its state at the problem's start point for
/// `seed`, before the solver's init.
fn bench_start(p: &RepLearning, update: Update, seed: u64) -> (Pbgd, State) {
    let (u, v) = p.init(seed);
    let state = State {
        u,
        v,
        iter: 0,
        rng: bilevel::seeds::rng(seed, bilevel::seeds::Stream::Run),
    };
    (bench_solver(update), state)
}

/// A seeded representation-learning instance of `size`, a benchmark solver initialized at the
/// problem's start point, and the state after `warm` iterations (so W2 ≠ 0).
pub fn replearn_case(
    size: RepSize,
    update: Update,
    seed: u64,
    warm: usize,
) -> Result<(RepLearning, Pbgd, State)> {
    let (regime, sizes) = size.sizes();
    let p = RepLearning::generate(regime, &sizes, seed)?;
    let (mut solver, mut state) = bench_start(&p, update, seed);
    solver.init(&p, &mut state)?;
    for _ in 0..warm {
        solver.step(&p, &mut state)?;
        state.iter += 1;
    }
    Ok((p, solver, state))
}

/// Times one Jacobi and one Gauss–Seidel iteration of representation learning at each size
/// (median over repetitions sized to about a second per kernel).
pub fn replearn_rows(sizes: &[RepSize], seed: u64) -> Result<Vec<RooflineRow>> {
    let mut rows = Vec::new();
    for &size in sizes {
        let (_, s) = size.sizes();
        for update in [Update::Jacobi, Update::GaussSeidel] {
            let (p, mut solver, mut state) = replearn_case(size, update, seed, 3)?;
            let rates = measure();
            let (seconds, _) = time_budget(1.0, || {
                solver.step(&p, &mut state).expect("PBGD step");
                state.iter += 1;
            });
            rows.push(RooflineRow {
                kernel: format!("replearn {} {update:?}", size.label()),
                shape: format!("N=N'={}, m={}, h={}, n={}", s.n_trn, s.m, s.h, s.n),
                seconds,
                cost: replearn_iteration_cost(s.shape(), update, Passes::OverX),
                work: replearn_iteration_cost(s.shape(), update, Passes::OverR),
                rates,
            });
        }
    }
    Ok(rows)
}

/// Writes one benchmarked case into `dir`: the seeded data (x_trn.npy, y_trn.npy, x_val.npy,
/// y_val.npy, as [`RepLearning::save_npy`]), the start point (w1_0.npy, w2_0.npy, w_0.npy),
/// our iterates after `check_iters` iterations (w1_k.npy, w2_k.npy, w_k.npy), then times the
/// iteration (median) and writes everything else into case.json.
pub fn export_replearn_case(
    size: RepSize,
    update: Update,
    seed: u64,
    check_iters: usize,
    dir: &std::path::Path,
) -> Result<ExportedCase> {
    let (p, mut solver, mut state) = replearn_case(size, update, seed, 0)?;
    p.save_npy(dir)?;
    let (m, h, n) = p.shape();
    let save = |name: &str, x: &[f64], r: usize, c: usize| {
        let a = faer::MatRef::from_column_major_slice(x, r, c).to_owned();
        bilevel::npy::write_matrix(&dir.join(format!("{name}.npy")), &a)
    };
    let w_of = |s: &Pbgd| s.ll_estimate().expect("PBGD keeps w").to_vec();
    save("w1_0", &state.u, m, h)?;
    save("w2_0", &state.v, h, n)?;
    save("w_0", &w_of(&solver), h, n)?;
    for _ in 0..check_iters {
        solver.step(&p, &mut state)?;
        state.iter += 1;
    }
    save("w1_k", &state.u, m, h)?;
    save("w2_k", &state.v, h, n)?;
    save("w_k", &w_of(&solver), h, n)?;
    let steps = solver.steps();
    let rates = &measure();
    let (seconds, reps) = time_budget(2.0, || {
        solver.step(&p, &mut state).expect("PBGD step");
        state.iter += 1;
    });
    let (_, s) = size.sizes();
    let cost = replearn_iteration_cost(s.shape(), update, Passes::OverX);
    let work = replearn_iteration_cost(s.shape(), update, Passes::OverR);
    let case = ExportedCase {
        name: case_name(dir),
        kind: "replearn".into(),
        update: update_label(update).into(),
        alpha: steps.alpha,
        beta: steps.beta.unwrap_or(f64::NAN),
        gamma: BENCH_GAMMA,
        check_iters,
        seconds,
        reps,
        cost,
        floor: cost.floor(rates),
        work,
        work_floor: work.floor(rates),
        rates: *rates,
    };
    write_case(dir, &case)?;
    Ok(case)
}

/// The tolerance of the whole representation-learning runs: relative distance to the penalty
/// optimum ([`Problem::penalty_optimum_distance`], on the product W1 W2).
pub const RUN_TOL: f64 = 1e-6;

/// Iteration budget of a whole run; a run that has not reached its tolerance by then is an
/// error, not a timing.
pub const RUN_MAX_ITER: usize = 20_000;

/// Runs the benchmark solver ([`bench_solver`]) on `p` from its start point (seed `seed`)
/// until the relative distance to the penalty optimum at γ = [`BENCH_GAMMA`] is at most `tol`,
/// checked after every iteration (the cost of a stopping rule); returns the iterations taken
/// and the solver and state at the end. Fails when [`RUN_MAX_ITER`] iterations do not reach
/// `tol`.
pub fn replearn_run_to_tol(
    p: &RepLearning,
    update: Update,
    seed: u64,
    tol: f64,
) -> Result<(usize, Pbgd, State)> {
    let (mut solver, mut state) = bench_start(p, update, seed);
    solver.init(p, &mut state)?;
    let dist = |s: &State| {
        p.penalty_optimum_distance(&s.u, &s.v, BENCH_GAMMA)
            .unwrap_or(f64::NAN)
    };
    loop {
        let d = dist(&state);
        if d <= tol {
            break;
        }
        if !d.is_finite() || state.iter >= RUN_MAX_ITER {
            return Err(bilevel::error::Error::Unsupported(format!(
                "{} did not reach a distance of {tol:e} to the penalty optimum (at {d:e} after {} iterations)",
                p.name(),
                state.iter
            )));
        }
        solver.step(p, &mut state)?;
        state.iter += 1;
    }
    Ok((state.iter, solver, state))
}

/// A whole representation-learning run to a fixed tolerance, written for the peers (see
/// [`export_replearn_run`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplearnRun {
    /// Directory name under the export root, e.g. `medium-jacobi-run`.
    pub name: String,
    /// Always "replearn-run".
    pub kind: String,
    /// "jacobi" or "gauss-seidel".
    pub update: String,
    /// Outer step α.
    pub alpha: f64,
    /// Inner step β.
    pub beta: f64,
    /// Penalty constant γ.
    pub gamma: f64,
    /// Tolerance on the relative distance to the penalty optimum.
    pub tol: f64,
    /// Iterations our run took to reach it (the peers run as many).
    pub iters: usize,
    /// Our distance at the end.
    pub final_dist: f64,
    /// Our wall time of the whole run without stopping checks (init and `iters` steps, the
    /// fastest of [`RUN_REPS`] on fresh solvers), seconds: what the peers' runs do.
    pub seconds: f64,
    /// Our wall time of the same run checking the distance after every iteration (the
    /// optimum made beforehand), seconds.
    pub seconds_checked: f64,
    /// Work of the run: `iters` times one iteration ([`replearn_iteration_cost`]).
    pub cost: Cost,
    /// Roofline floor of that, seconds.
    pub floor: f64,
    /// The same for the work our iterations do (see [`Passes`]).
    pub work: Cost,
    /// Roofline floor of that, seconds.
    pub work_floor: f64,
    /// The machine rates measured just before the timing, which the floors use.
    pub rates: MachineRates,
}

/// Runs PBGD (`update`, the benchmark solver) on the representation-learning instance of
/// `size` to a relative distance [`RUN_TOL`] from the penalty optimum
/// ([`replearn_run_to_tol`]), then times the same run without checks ([`RUN_REPS`] fresh runs,
/// which must agree exactly; the fastest is kept) and writes into `dir`: the data (as
/// [`RepLearning::save_npy`]), the start point (w1_0, w2_0, w_0), our final iterates (w1_k,
/// w2_k, w_k), the penalty optimum's product and the row-space projector the distance is
/// measured with (z_star.npy, row_proj.npy), and case.json.
pub fn export_replearn_run(
    size: RepSize,
    update: Update,
    seed: u64,
    dir: &std::path::Path,
) -> Result<ReplearnRun> {
    let (regime, sizes) = size.sizes();
    let p = RepLearning::generate(regime, &sizes, seed)?;
    // The optimum the distance is measured to is made (and cached) before the clock starts.
    let opt = p.penalty_solution(BENCH_GAMMA)?;
    let t = Instant::now();
    let (iters, solver, state) = replearn_run_to_tol(&p, update, seed, RUN_TOL)?;
    let seconds_checked = t.elapsed().as_secs_f64();
    let rates = &measure();
    let final_dist = p
        .penalty_optimum_distance(&state.u, &state.v, BENCH_GAMMA)
        .unwrap_or(f64::NAN);
    let mut best = f64::INFINITY;
    for _ in 0..RUN_REPS {
        let (mut sol, mut s) = bench_start(&p, update, seed);
        let t = Instant::now();
        sol.init(&p, &mut s)?;
        for _ in 0..iters {
            sol.step(&p, &mut s)?;
            s.iter += 1;
        }
        best = best.min(t.elapsed().as_secs_f64());
        if s.u != state.u || s.v != state.v || sol.ll_estimate() != solver.ll_estimate() {
            return Err(bilevel::error::Error::Unsupported(
                "repeated representation-learning runs gave different iterates (not reproducible)"
                    .into(),
            ));
        }
    }
    p.save_npy(dir)?;
    let (m, h, n) = p.shape();
    let save = |name: &str, x: &[f64], r: usize, c: usize| {
        let a = faer::MatRef::from_column_major_slice(x, r, c).to_owned();
        bilevel::npy::write_matrix(&dir.join(format!("{name}.npy")), &a)
    };
    let (mut start, mut s0) = bench_start(&p, update, seed);
    start.init(&p, &mut s0)?;
    save("w1_0", &s0.u, m, h)?;
    save("w2_0", &s0.v, h, n)?;
    save("w_0", start.ll_estimate().expect("PBGD keeps w"), h, n)?;
    save("w1_k", &state.u, m, h)?;
    save("w2_k", &state.v, h, n)?;
    save("w_k", solver.ll_estimate().expect("PBGD keeps w"), h, n)?;
    bilevel::npy::write_matrix(&dir.join("z_star.npy"), &opt.z)?;
    bilevel::npy::write_matrix(&dir.join("row_proj.npy"), p.row_projector())?;
    let steps = solver.steps();
    let scale = |c: Cost| Cost {
        flops: c.flops * iters as f64,
        bytes: c.bytes * iters as f64,
    };
    let cost = scale(replearn_iteration_cost(
        sizes.shape(),
        update,
        Passes::OverX,
    ));
    let work = scale(replearn_iteration_cost(
        sizes.shape(),
        update,
        Passes::OverR,
    ));
    let run = ReplearnRun {
        name: case_name(dir),
        kind: "replearn-run".into(),
        update: update_label(update).into(),
        alpha: steps.alpha,
        beta: steps.beta.unwrap_or(f64::NAN),
        gamma: BENCH_GAMMA,
        tol: RUN_TOL,
        iters,
        final_dist,
        seconds: best,
        seconds_checked,
        cost,
        floor: cost.floor(rates),
        work,
        work_floor: work.floor(rates),
        rates: *rates,
    };
    write_case(dir, &run)?;
    Ok(run)
}
