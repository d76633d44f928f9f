//! Many-start studies: the same solver from many seeded start points, in parallel (rayon),
//! with results in start order so a study is reproducible bit for bit.

use crate::experiments::Progress;
use crate::problem::Problem;
use crate::run::{RunOptions, run};
use crate::solvers::Solver;
use crate::trace::{Record, Status};
use rand::RngExt;
use rayon::prelude::*;

/// A start point (u0, v0).
pub type Start = (Vec<f64>, Vec<f64>);

/// Outcome of one start.
#[derive(Debug, Clone)]
pub struct StartResult {
    /// Start point.
    pub start: Start,
    /// Final point.
    pub end: Start,
    /// Final record (NaN fields on divergence).
    pub last: Record,
    /// Iterations taken.
    pub iterations: usize,
    /// How the run ended (Diverged carries the reason).
    pub status: Status,
}

/// `n` starts with every coordinate uniform in [lo, hi], from the seed's Init stream.
pub fn uniform_starts(seed: u64, n: usize, du: usize, dv: usize, lo: f64, hi: f64) -> Vec<Start> {
    let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Init);
    (0..n)
        .map(|_| {
            let u = (0..du).map(|_| rng.random_range(lo..=hi)).collect();
            let v = (0..dv).map(|_| rng.random_range(lo..=hi)).collect();
            (u, v)
        })
        .collect()
}

/// Runs a fresh solver from every start. Records are not kept (only the last); runs that
/// diverge are reported, not propagated. The run seed of start i is `opts.seed + i`.
pub fn many_starts(
    problem: &dyn Problem,
    make_solver: &(dyn Fn() -> Box<dyn Solver> + Sync),
    starts: &[Start],
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Vec<StartResult> {
    progress.add_total(starts.len() as u64);
    starts
        .par_iter()
        .enumerate()
        .map(|(i, (u0, v0))| {
            let mut o = opts.clone();
            o.keep_records = false;
            o.seed = opts.seed.wrapping_add(i as u64);
            let mut solver = make_solver();
            let res = run(problem, solver.as_mut(), u0, v0, &o, &mut []);
            progress.inc(1);
            match res {
                Ok(out) => StartResult {
                    start: (u0.clone(), v0.clone()),
                    last: out.last().clone(),
                    end: (out.u, out.v),
                    iterations: out.iterations,
                    status: out.status,
                },
                Err(crate::run::RunError {
                    error: crate::Error::Diverged(d),
                    trace,
                    ..
                }) => {
                    let last = trace
                        .and_then(|t| t.records.last().cloned())
                        .unwrap_or_else(nan_record);
                    StartResult {
                        start: (u0.clone(), v0.clone()),
                        end: (vec![f64::NAN; u0.len()], vec![f64::NAN; v0.len()]),
                        last,
                        iterations: d.iter,
                        status: Status::Diverged(d.reason.clone()),
                    }
                }
                Err(e) => StartResult {
                    start: (u0.clone(), v0.clone()),
                    end: (vec![f64::NAN; u0.len()], vec![f64::NAN; v0.len()]),
                    last: nan_record(),
                    iterations: 0,
                    status: Status::Diverged(e.to_string()),
                },
            }
        })
        .collect()
}

fn nan_record() -> Record {
    Record {
        iter: 0,
        time_s: 0.0,
        f: f64::NAN,
        g: f64::NAN,
        g_star: f64::NAN,
        ll_gap: f64::NAN,
        gamma: f64::NAN,
        l_gamma: f64::NAN,
        grad_u: f64::NAN,
        grad_v: f64::NAN,
        f_gap: f64::NAN,
        l_gap: f64::NAN,
        dist_opt: f64::NAN,
        metrics: Vec::new(),
        extra: Vec::new(),
    }
}
