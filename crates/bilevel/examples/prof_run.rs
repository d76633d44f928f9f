use bilevel::perf::{RepSize, bench_solver, set_threads_from_env};
use bilevel::problems::replearn::RepLearning;
use bilevel::solvers::Update;
use bilevel::{Problem, RunOptions};
fn main() {
    set_threads_from_env();
    let want = std::env::args().nth(1);
    for size in RepSize::ALL
        .into_iter()
        .filter(|s| want.as_deref().is_none_or(|w| w == s.label()))
    {
        let (regime, sizes) = size.sizes();
        let p = RepLearning::generate(regime, &sizes, 0).unwrap();
        for update in [Update::Jacobi, Update::GaussSeidel] {
            let (u, v) = p.initial_point(0).unwrap();
            let mut solver = bench_solver(update);
            let opts = RunOptions {
                max_iter: 20000,
                record_every: 10,
                dist_tol: Some(1e-6),
                keep_records: false,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let out = bilevel::run(&p, &mut solver, &u, &v, &opts, &mut []);
            match out {
                Ok(o) => println!(
                    "{} {update:?}: {} iters, {:?}, {:.3}s dist {:?}",
                    size.label(),
                    o.iterations,
                    o.status,
                    t.elapsed().as_secs_f64(),
                    o.last().dist_opt
                ),
                Err(e) => println!("{e}"),
            }
        }
    }
}
