//! Criterion benchmarks (issue 7): one PBGD iteration (inner step included) on representation
//! learning at the three sizes; one hyper-cleaning penalty-gradient evaluation and one
//! iteration of the `cleaning` experiment's solver (Gauss–Seidel PBGD with the exact v block)
//! at Fashion-MNIST size; and whole runs: representation learning to a relative distance of
//! `bilevel_bench::RUN_TOL` from the penalty optimum (checked after every iteration), and the
//! experiment's 100-iteration Fashion-MNIST run. Threads: `BILEVEL_THREADS` (default: all
//! cores). The roofline comparison (achieved time / floor) is the `roofline` bench; the
//! side-by-side one with NumPy and JAX is `bench/peers/run.sh`.

use bilevel::Problem;
use bilevel::penalty::Penalty;
use bilevel::problems::replearn::RepLearning;
use bilevel::solvers::{Solver, Update};
use bilevel_bench::{
    BENCH_GAMMA, CleaningCase, RUN_TOL, RepSize, cleaning_case, cleaning_run_data,
    cleaning_run_start, replearn_case, replearn_run_to_tol, set_threads_from_env,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn iteration(c: &mut Criterion) {
    set_threads_from_env();
    let mut group = c.benchmark_group("replearn_iteration");
    for size in RepSize::ALL {
        if size == RepSize::Large {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(4));
        } else {
            group
                .sample_size(50)
                .measurement_time(Duration::from_secs(3));
        }
        for update in [Update::Jacobi, Update::GaussSeidel] {
            let (p, mut solver, mut state) =
                replearn_case(size, update, 0, 3).expect("benchmark instance");
            let id = BenchmarkId::new(format!("{update:?}"), size.label());
            group.bench_function(id, |b| {
                b.iter(|| {
                    solver.step(&p, &mut state).expect("PBGD step");
                    state.iter += 1;
                })
            });
        }
    }
    group.finish();
}

/// One penalty-gradient evaluation of hyper-cleaning at Fashion-MNIST size (f and g with
/// gradients at (u, W), g with its u-gradient at (u, w)).
fn cleaning(c: &mut Criterion) {
    set_threads_from_env();
    let CleaningCase {
        problem: p,
        u,
        v,
        w,
        ..
    } = cleaning_case(0).expect("hyper-cleaning instance");
    let mut pen = Penalty::new(p.dim_u(), p.dim_v());
    let mut group = c.benchmark_group("cleaning_penalty_gradient");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    group.bench_function("fmnist", |b| {
        b.iter(|| pen.eval(&p, &u, &v, &w, BENCH_GAMMA, true, true))
    });
    group.finish();
}

/// The `cleaning` experiment's Fashion-MNIST run: one iteration after the first ten (the exact
/// v block by warm-started CG, then the u step), and the whole 100-iteration run (init
/// included). Skipped with a message when Fashion-MNIST is not installed.
fn cleaning_run(c: &mut Criterion) {
    set_threads_from_env();
    let data = match cleaning_run_data(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cleaning_run skipped: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group("cleaning_run");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    let (p, mut solver, mut state) = cleaning_run_start(data.clone(), 0).expect("instance");
    solver.init(&p, &mut state).expect("init");
    for _ in 0..10 {
        solver.step(&p, &mut state).expect("step");
        state.iter += 1;
    }
    group.bench_function("fmnist_iteration", |b| {
        b.iter(|| {
            solver.step(&p, &mut state).expect("step");
            state.iter += 1;
        })
    });
    group.bench_function("fmnist_100_iterations", |b| {
        b.iter(|| {
            let (p, mut solver, mut state) = cleaning_run_start(data.clone(), 0).expect("instance");
            solver.init(&p, &mut state).expect("init");
            for _ in 0..bilevel::experiments::FM_ITERS {
                solver.step(&p, &mut state).expect("step");
                state.iter += 1;
            }
            state.u
        })
    });
    group.finish();
}

/// Representation learning, Jacobi PBGD from the start point to a relative distance of
/// `RUN_TOL` from the penalty optimum (the optimum computed once, outside the timing).
fn replearn_run(c: &mut Criterion) {
    set_threads_from_env();
    let mut group = c.benchmark_group("replearn_run_to_tolerance");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for size in RepSize::ALL {
        let (regime, sizes) = size.sizes();
        let p = RepLearning::generate(regime, &sizes, 0).expect("instance");
        p.penalty_solution(BENCH_GAMMA).expect("penalty optimum");
        group.bench_function(size.label(), |b| {
            b.iter(|| {
                replearn_run_to_tol(&p, Update::Jacobi, 0, RUN_TOL)
                    .expect("run")
                    .0
            })
        });
    }
    group.finish();
}

criterion_group!(benches, iteration, cleaning, cleaning_run, replearn_run);
criterion_main!(benches);
