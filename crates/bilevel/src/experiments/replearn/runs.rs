//! The runs behind Figure 3: one job per (regime, instance, γ, update, inner loop), run in
//! parallel over the seeded instances, and what each run leaves (trace, final record, PL
//! ratios); the selection and number-formatting helpers every section of the report uses.

use super::Fig3Settings;
use crate::diagnostics::pl_ratios;
use crate::error::{Error, Result};
use crate::experiments::{Context, quantiles};
use crate::problem::Problem;
use crate::problems::replearn::{Regime, RepLearning};
use crate::run::{RunOptions, run};
use crate::solvers::{InnerLoop, Pbgd, StepRule, Update};
use crate::trace::{Record, Trace};
use rayon::prelude::*;
use std::time::Instant;

/// The three regimes, in the order of the jobs and tables.
pub(super) const REGIMES: [Regime; 3] = [
    Regime::CertifiedGlobal,
    Regime::Intermediate,
    Regime::General,
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Inner {
    Exact,
    Cold,
    Warm,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    pub(super) regime: Regime,
    pub(super) inst: usize,
    pub(super) gamma: f64,
    pub(super) update: Update,
    pub(super) inner: Inner,
}

pub(super) struct Out {
    pub(super) job: Job,
    pub(super) trace: Trace,
    pub(super) iterations: usize,
    pub(super) status: String,
    pub(super) diverged: bool,
    pub(super) last: Option<Record>,
    pub(super) l_star: f64,
    /// (iteration, empirical PL ratio, μ_k).
    pub(super) pl: Vec<(f64, f64, f64)>,
    pub(super) wall_s: f64,
}

fn record_every(gamma: f64) -> usize {
    ((gamma / 5.0).round() as usize).max(10)
}

fn run_job(p: &RepLearning, job: Job, s: &Fig3Settings) -> Out {
    let t0 = Instant::now();
    let seed = s.seed + job.inst as u64;
    let (u0, v0) = p.init(seed);
    let inner = match job.inner {
        Inner::Exact => InnerLoop::Exact,
        Inner::Cold | Inner::Warm => InnerLoop::Gd {
            steps: s.cold_steps,
            warm: job.inner == Inner::Warm,
            beta: None,
        },
    };
    let mut solver = Pbgd::new(job.update, job.gamma)
        .with_step(StepRule::Smoothness { c: s.step_c })
        .with_inner(inner);
    let opts = RunOptions {
        max_iter: if job.inner == Inner::Exact {
            s.max_iter
        } else {
            s.cold_max_iter
        },
        record_every: record_every(job.gamma),
        dist_tol: Some(s.dist_tol),
        seed,
        ..RunOptions::default()
    };
    let (trace, iterations, status, diverged) = match run(p, &mut solver, &u0, &v0, &opts, &mut [])
    {
        Ok(o) => (o.trace, o.iterations, format!("{:?}", o.status), false),
        Err(crate::run::RunError {
            error: Error::Diverged(d),
            trace: Some(t),
            ..
        }) => (*t, d.iter, d.reason.clone(), true),
        Err(e) => (Trace::default(), 0, e.to_string(), true),
    };
    let l_star = p.penalty_optimum(job.gamma).map_or(f64::NAN, |o| o.value);
    let sx = p.sigma_min_plus(job.gamma).unwrap_or(f64::NAN);
    let l0 = trace
        .records
        .first()
        .map_or(1.0, |r| r.l_gamma.abs().max(1.0));
    let ratios = pl_ratios(&trace, l_star, 1e-11 * l0);
    let pl = ratios
        .iter()
        .filter_map(|q| {
            let r = trace.records.iter().find(|r| r.iter == q.iter)?;
            let (a, b) = (r.metrics[1], r.metrics[2]);
            Some((q.iter as f64, q.joint, (a * a + b * b) * sx * sx))
        })
        .collect();
    Out {
        job,
        last: trace.records.last().cloned(),
        trace,
        iterations,
        status,
        diverged,
        l_star,
        pl,
        wall_s: t0.elapsed().as_secs_f64(),
    }
}

/// The instances, one per (regime, seed), and every run on them, in job order.
pub(super) struct Runs<'a> {
    pub(super) s: &'a Fig3Settings,
    insts: Vec<Vec<RepLearning>>,
    pub(super) outs: Vec<Out>,
}

impl<'a> Runs<'a> {
    /// Generates the instances and runs every job (or, once interrupted, marks the rest so).
    pub(super) fn new(s: &'a Fig3Settings, ctx: &Context<'_>) -> Result<Self> {
        // Instances, one per (regime, seed).
        let mut insts: Vec<Vec<RepLearning>> = Vec::new();
        for r in REGIMES {
            let v: Result<Vec<RepLearning>> = (0..s.seeds)
                .map(|i| RepLearning::generate(r, s.sizes(r), s.seed + i as u64))
                .collect();
            insts.push(v?);
        }
        let mut runs = Runs {
            s,
            insts,
            outs: Vec::new(),
        };

        // Jobs, most expensive first for load balance; results come back in job order.
        let mut jobs = Vec::new();
        let mut gs_sorted = s.gammas.clone();
        gs_sorted.sort_by(|a, b| b.total_cmp(a));
        for &gamma in &gs_sorted {
            for r in REGIMES {
                for i in 0..s.seeds {
                    jobs.push(Job {
                        regime: r,
                        inst: i,
                        gamma,
                        update: Update::Jacobi,
                        inner: Inner::Exact,
                    });
                    if s.gauss_seidel && r != Regime::General {
                        jobs.push(Job {
                            regime: r,
                            inst: i,
                            gamma,
                            update: Update::GaussSeidel,
                            inner: Inner::Exact,
                        });
                    }
                }
            }
        }
        for i in 0..s.seeds {
            for inner in [Inner::Cold, Inner::Warm] {
                jobs.push(Job {
                    regime: Regime::CertifiedGlobal,
                    inst: i,
                    gamma: s.cold_gamma,
                    update: Update::Jacobi,
                    inner,
                });
            }
        }
        ctx.progress.add_total(jobs.len() as u64);
        ctx.progress.message("fig3: PBGD runs");
        runs.outs = jobs
            .par_iter()
            .map(|&job| {
                if ctx.interrupted() {
                    return Out {
                        job,
                        trace: Trace::default(),
                        iterations: 0,
                        status: "interrupted".into(),
                        diverged: true,
                        last: None,
                        l_star: f64::NAN,
                        pl: vec![],
                        wall_s: 0.0,
                    };
                }
                let o = run_job(runs.inst(job.regime, job.inst), job, s);
                ctx.progress.inc(1);
                o
            })
            .collect();
        Ok(runs)
    }

    /// Instance i of regime r.
    pub(super) fn inst(&self, r: Regime, i: usize) -> &RepLearning {
        let k = REGIMES.iter().position(|&x| x == r).expect("known regime");
        &self.insts[k][i]
    }

    /// The runs of one regime, update, inner loop and γ, over the seeds.
    pub(super) fn sel(&self, r: Regime, u: Update, inner: Inner, gamma: f64) -> Vec<&Out> {
        self.outs
            .iter()
            .filter(|o| {
                o.job.regime == r
                    && o.job.update == u
                    && o.job.inner == inner
                    && o.job.gamma == gamma
            })
            .collect()
    }
}

pub(super) fn fmt_q(v: &[f64], prec: usize) -> String {
    match quantiles(v) {
        Some((m, lo, hi)) => format!("{m:.prec$} [{lo:.prec$}, {hi:.prec$}]"),
        None => "—".into(),
    }
}

pub(super) fn fmt_qe(v: &[f64]) -> String {
    match quantiles(v) {
        Some((m, lo, hi)) => format!("{m:.2e} [{lo:.2e}, {hi:.2e}]"),
        None => "—".into(),
    }
}

pub(super) fn update_label(u: Update) -> &'static str {
    match u {
        Update::Jacobi => "Jacobi",
        Update::GaussSeidel => "Gauss–Seidel",
    }
}
