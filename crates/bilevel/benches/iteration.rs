//! Criterion benchmarks of one PBGD iteration (inner step included) on representation
//! learning at the three sizes of issue 7, and of one hyper-cleaning penalty-gradient
//! evaluation at Fashion-MNIST size. Threads: `BILEVEL_THREADS` (default: all cores).
//! The roofline comparison (achieved time / floor) is the `roofline` bench.

use bilevel::Problem;
use bilevel::penalty::Penalty;
use bilevel::perf::{
    BENCH_GAMMA, CleaningCase, RepSize, cleaning_case, replearn_case, set_threads_from_env,
};
use bilevel::solvers::{Solver, Update};
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

criterion_group!(benches, iteration, cleaning);
criterion_main!(benches);
