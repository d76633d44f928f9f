//! A first run: Jacobi PBGD on a seeded quadratic bilevel problem, compared with the
//! closed-form penalty and bilevel optima.
//!
//! cargo run --release -p bilevel --example quadratic

use bilevel::problems::Quadratic;
use bilevel::{Pbgd, Problem, RunOptions, run};

fn main() -> bilevel::Result<()> {
    let problem = Quadratic::generate(1, 3, 5)?;
    let gamma = 100.0;
    let mut solver = Pbgd::jacobi(gamma);
    let opts = RunOptions {
        max_iter: 200_000,
        record_every: 100,
        dist_tol: Some(1e-10),
        ..RunOptions::default()
    };
    let u0 = vec![0.0; problem.dim_u()];
    let v0 = vec![0.0; problem.dim_v()];
    let out = run(&problem, &mut solver, &u0, &v0, &opts, &mut [])?;
    let last = out.last();
    println!("solver     {}", out.trace.solver);
    println!(
        "status     {:?} after {} iterations",
        out.status, out.iterations
    );
    println!(
        "L_gamma    {:.12e} (gap to the closed-form minimum {:.2e})",
        last.l_gamma, last.l_gap
    );
    println!(
        "distance   {:.2e} (relative, to the penalty optimum)",
        last.dist_opt
    );
    println!(
        "f - f*     {:+.3e} (penalty bias at gamma = {gamma})",
        last.f_gap
    );
    println!("g - g*     {:.3e}", last.ll_gap);
    Ok(())
}
