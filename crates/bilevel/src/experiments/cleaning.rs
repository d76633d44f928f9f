//! Data hyper-cleaning (method.md section 7): Figure 4 of the paper (the certified regime)
//! and the realistic cleaning study (Gaussian clusters with label flips, Fashion-MNIST).

use super::{Claim, Context, CurveGroup, Experiment, Figure, Panel, Report, Table, quantiles};
use crate::data::{FASHION_MNIST_DIR, FashionMnistConfig, load_fashion_mnist};
use crate::error::Result;
use crate::problem::Problem;
use crate::problems::cleaning::{Cleaning, CleaningData, CleaningSettings, ClusterConfig};
use crate::run::{RunOptions, RunOutput, run};
use crate::solvers::{Bome, F2sa, Pbgd, Solver, StepRule};
use crate::trace::{Observer, Snapshot, Trace};
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

/// Keeps the smallest-curvature bound of the v block at each record (paper's regime): with
/// mutually orthogonal samples, L_γ(u, ·) is a quadratic whose Hessian has the non-zero
/// eigenvalues ‖x_j‖² (validation) and γ ψ_i ‖x_i‖² (training), so its PL constant is
/// μ = min(min_j ‖x_j‖², γ min_i ψ_i ‖x_i‖²).
struct PlBound<'a> {
    p: &'a Cleaning,
    val_min: f64,
    trn_sq: Vec<f64>,
    out: Vec<(usize, f64)>,
}

impl<'a> PlBound<'a> {
    fn new(p: &'a Cleaning) -> Self {
        let d = p.data();
        let sq = |x: &faer::Mat<f64>, i: usize| {
            (0..x.ncols()).map(|j| x[(i, j)] * x[(i, j)]).sum::<f64>()
        };
        let val_min = (0..d.val.len())
            .map(|i| sq(&d.val.x, i))
            .fold(f64::INFINITY, f64::min);
        let trn_sq = (0..d.train.len()).map(|i| sq(&d.train.x, i)).collect();
        PlBound {
            p,
            val_min,
            trn_sq,
            out: Vec::new(),
        }
    }
}

impl Observer for PlBound<'_> {
    fn observe(&mut self, snap: &Snapshot<'_>) {
        let psi = self.p.weights(snap.u);
        let trn = psi
            .iter()
            .zip(&self.trn_sq)
            .map(|(a, b)| a * b)
            .fold(f64::INFINITY, f64::min);
        self.out
            .push((snap.record.iter, self.val_min.min(snap.record.gamma * trn)));
    }
}

/// What one paper-regime run measured.
struct Fig4Run {
    trace: Trace,
    iters_to_target: Option<usize>,
    worst_window: f64,
    rate: f64,
    min_pl_v: f64,
    min_pl_u: f64,
    pl_bound_ok: bool,
    min_mu: f64,
    last_l: f64,
    last_f: f64,
    last_gap: f64,
}

/// Per-iteration contraction of L_γ fitted over the records above `floor`, and the worst
/// contraction factor over windows of a tenth of those iterations (1 = no progress).
fn linear_rate(trace: &Trace, floor: f64) -> (f64, f64, Option<usize>) {
    let pts: Vec<(f64, f64)> = trace
        .records
        .iter()
        .take_while(|r| r.l_gamma > floor)
        .map(|r| (r.iter as f64, r.l_gamma.log10()))
        .collect();
    let reached = trace
        .records
        .iter()
        .find(|r| r.l_gamma <= floor)
        .map(|r| r.iter);
    if pts.len() < 3 {
        return (f64::NAN, f64::NAN, reached);
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let rate = 10f64.powf(sxy / sxx);
    let span = pts.last().map_or(0.0, |p| p.0);
    let w = (span / 10.0).max(1.0);
    let mut worst: f64 = 0.0;
    for (i, a) in pts.iter().enumerate() {
        if let Some(b) = pts[i..].iter().find(|b| b.0 >= a.0 + w) {
            worst = worst.max(10f64.powf(b.1 - a.1));
        }
    }
    (rate, worst, reached)
}

fn fig4_run(p: &Cleaning, solver: &mut dyn Solver, opts: &RunOptions) -> Result<Fig4Run> {
    let mut obs = PlBound::new(p);
    let out: RunOutput = run(
        p,
        solver,
        &vec![0.0; p.dim_u()],
        &vec![0.0; p.dim_v()],
        opts,
        &mut [&mut obs],
    )?;
    let (rate, worst_window, iters_to_target) = linear_rate(&out.trace, 1e-10);
    // min L_γ = 0 here (certified), so ½‖∇_v L_γ‖²/L_γ is the v-block PL ratio itself.
    let ratios = crate::diagnostics::pl_ratios(&out.trace, 0.0, 1e-14);
    let mut pl_bound_ok = true;
    let mut min_mu = f64::INFINITY;
    for r in &ratios {
        if let Some(&(_, mu)) = obs.out.iter().find(|(it, _)| *it == r.iter) {
            min_mu = min_mu.min(mu);
            pl_bound_ok &= r.v >= mu * (1.0 - 1e-6);
        }
    }
    let last = out.last();
    Ok(Fig4Run {
        iters_to_target,
        worst_window,
        rate,
        min_pl_v: ratios.iter().map(|r| r.v).fold(f64::INFINITY, f64::min),
        min_pl_u: ratios.iter().map(|r| r.u).fold(f64::INFINITY, f64::min),
        pl_bound_ok,
        min_mu,
        last_l: last.l_gamma,
        last_f: last.f,
        last_gap: last.ll_gap,
        trace: out.trace,
    })
}

const FIG4_SEED: u64 = 4;

type MakeSolver = Box<dyn Fn() -> Box<dyn Solver> + Sync>;

/// Figure 4: hyper-cleaning in the paper's regime (mutually orthogonal samples, λ = 0).
pub struct Fig4;

impl Experiment for Fig4 {
    fn name(&self) -> &'static str {
        "fig4"
    }
    fn title(&self) -> &'static str {
        "Hyper-cleaning, paper's regime: Gauss–Seidel PBGD, F²SA and BOME reach the global optimum at a linear rate"
    }
    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let (n_trn, n_val, m, classes) = if ctx.quick {
            (20, 10, 40, 4)
        } else {
            (40, 20, 80, 5)
        };
        let seeds: Vec<u64> = (0..if ctx.quick { 3 } else { 8 })
            .map(|k| FIG4_SEED + k)
            .collect();
        let p_noise = 0.5;
        let gamma = 10.0;
        let max_iter = 20_000;
        let opts = RunOptions {
            max_iter,
            record_every: 10,
            target: Some(1e-13),
            ..RunOptions::default()
        };
        let solvers: Vec<(&str, MakeSolver)> = vec![
            (
                "Gauss–Seidel PBGD (γ = 10, exact g*)",
                Box::new(move || Box::new(Pbgd::gauss_seidel(gamma)) as Box<dyn Solver>),
            ),
            (
                "Gauss–Seidel PBGD (γ = 100, exact g*)",
                Box::new(|| Box::new(Pbgd::gauss_seidel(100.0)) as Box<dyn Solver>),
            ),
            (
                "F²SA (λ 1→10 over 500 it., 1 z-step)",
                Box::new(move || Box::new(F2sa::new(1.0, gamma, 500)) as Box<dyn Solver>),
            ),
            (
                "BOME (η = 0.5, T = 10)",
                Box::new(move || Box::new(Bome::new(0.5, 10, gamma)) as Box<dyn Solver>),
            ),
        ];
        ctx.progress.add_total((solvers.len() * seeds.len()) as u64);
        let problems: Vec<Cleaning> = seeds
            .iter()
            .map(|&s| {
                let d = CleaningData::paper_regime(s, n_trn, n_val, m, classes, p_noise)?;
                Cleaning::new(d, CleaningSettings::default())
            })
            .collect::<Result<_>>()?;
        let worst_offdiag = problems
            .iter()
            .map(|p| p.gram_offdiag())
            .fold(0.0, f64::max);
        let mut claims = vec![Claim::new(
            "The generated instances are in the paper's regime: stacked train + validation Gram diagonal, λ = 0 (so f* = 0 and min L_γ = 0 are certified)",
            format!(
                "largest relative off-diagonal Gram entry {worst_offdiag:.1e} over {} instances",
                problems.len()
            ),
            "≤ 1e-10",
            problems.iter().all(|p| p.certified()),
        )];
        let mut rows = Vec::new();
        let mut groups_l = Vec::new();
        let mut groups_f = Vec::new();
        let mut groups_gap = Vec::new();
        let mut groups_pl = Vec::new();
        let mut traces = Vec::new();
        let mut summary = serde_json::Map::new();
        for (label, make) in &solvers {
            ctx.progress.message(&format!("fig4: {label}"));
            let res: Vec<Result<Fig4Run>> = problems
                .par_iter()
                .zip(&seeds)
                .map(|(p, &seed)| {
                    let mut s = make();
                    let o = RunOptions {
                        seed,
                        ..opts.clone()
                    };
                    let r = fig4_run(p, s.as_mut(), &o);
                    ctx.progress.inc(1);
                    r
                })
                .collect();
            let res: Vec<Fig4Run> = res.into_iter().collect::<Result<_>>()?;
            let worst_l = res.iter().map(|r| r.last_l).fold(0.0, f64::max);
            let worst_f = res.iter().map(|r| r.last_f).fold(0.0, f64::max);
            let worst_gap = res.iter().map(|r| r.last_gap.abs()).fold(0.0, f64::max);
            claims.push(Claim::new(
                format!("{label} reaches the global optimum: L_γ and f within 1e-8 of 0 on every seed"),
                format!("worst final L_γ = {worst_l:.2e}, f = {worst_f:.2e}, |g − g*| = {worst_gap:.2e} over {} seeds", res.len()),
                "L_γ ≤ 1e-8 and f ≤ 1e-8",
                worst_l <= 1e-8 && worst_f <= 1e-8,
            ));
            let windows: Vec<f64> = res.iter().map(|r| r.worst_window).collect();
            let worst_win = windows.iter().copied().fold(0.0, f64::max);
            claims.push(Claim::new(
                format!("{label} converges linearly: every tenth of the run (until L_γ ≤ 1e-10) shrinks L_γ by at least 2×"),
                format!("worst contraction over windows {worst_win:.3} (max over seeds)"),
                "≤ 0.5",
                worst_win <= 0.5,
            ));
            let min_pl = res.iter().map(|r| r.min_pl_v).fold(f64::INFINITY, f64::min);
            let min_mu = res.iter().map(|r| r.min_mu).fold(f64::INFINITY, f64::min);
            claims.push(Claim::new(
                format!("{label}: the v-block PL ratio ½‖∇_v L_γ‖²/(L_γ − 0) stays above the closed-form bound μ_k = min(‖x_val‖², γ min ψ_i‖x_i‖²) > 0 along every trajectory"),
                format!("smallest measured ratio {min_pl:.3e}; smallest bound μ_k {min_mu:.3e}"),
                "ratio ≥ μ_k at every record, μ_k > 0",
                res.iter().all(|r| r.pl_bound_ok) && min_mu > 0.0,
            ));
            let its: Vec<f64> = res
                .iter()
                .map(|r| r.iters_to_target.map_or(f64::NAN, |k| k as f64))
                .collect();
            let (it_med, it_lo, it_hi) = quantiles(&its).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            let rates: Vec<f64> = res.iter().map(|r| r.rate).collect();
            let (rate_med, _, _) = quantiles(&rates).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            let min_pl_u = res.iter().map(|r| r.min_pl_u).fold(f64::INFINITY, f64::min);
            rows.push(vec![
                label.to_string(),
                format!("{it_med:.0} [{it_lo:.0}, {it_hi:.0}]"),
                format!("{rate_med:.5}"),
                format!("{worst_win:.3}"),
                format!("{worst_l:.1e}"),
                format!("{worst_f:.1e}"),
                format!("{min_pl:.3e}"),
                format!("{min_mu:.3e}"),
                format!("{min_pl_u:.1e}"),
            ]);
            summary.insert(
                label.to_string(),
                json!({"iters_to_1e-10": its, "rate_per_iter": rates, "worst_window": windows,
                       "final_l_gamma": res.iter().map(|r| r.last_l).collect::<Vec<_>>(),
                       "final_f": res.iter().map(|r| r.last_f).collect::<Vec<_>>(),
                       "min_pl_v": min_pl, "min_mu_bound": min_mu, "min_pl_u": min_pl_u}),
            );
            let series = |name: &str| -> Vec<Vec<(f64, f64)>> {
                res.iter().filter_map(|r| r.trace.series(name)).collect()
            };
            groups_l.push(CurveGroup {
                label: label.to_string(),
                runs: series("l_gamma"),
            });
            groups_f.push(CurveGroup {
                label: label.to_string(),
                runs: series("f"),
            });
            groups_gap.push(CurveGroup {
                label: label.to_string(),
                runs: series("ll_gap"),
            });
            groups_pl.push(CurveGroup {
                label: label.to_string(),
                runs: res
                    .iter()
                    .map(|r| {
                        crate::diagnostics::pl_ratios(&r.trace, 0.0, 1e-14)
                            .iter()
                            .map(|x| (x.iter as f64, x.v))
                            .collect()
                    })
                    .collect(),
            });
            let stem = label
                .split_whitespace()
                .next()
                .unwrap_or("run")
                .replace(['²', '–'], "");
            if let Some(r) = res.first() {
                traces.push((
                    format!("fig4-{}-{}", stem.to_lowercase(), traces.len()),
                    r.trace.clone(),
                ));
            }
            if ctx.interrupted() {
                break;
            }
        }
        let curves = |title: &str, y: &str, groups: Vec<CurveGroup>| Panel::Curves {
            title: title.into(),
            x_label: "iteration".into(),
            y_label: y.into(),
            log_y: true,
            groups,
            markers: vec![],
        };
        Ok(Report {
            name: self.name().into(),
            title: self.title().into(),
            settings: json!({
                "regime": "paper (Theorem 3): mutually orthogonal train + validation samples, norms uniform in [0.5, 1.5], one-hot labels, lambda = 0",
                "n_trn": n_trn, "n_val": n_val, "features": m, "classes": classes,
                "label_noise": p_noise, "seeds": seeds, "box_bound": 10.0, "start": "u = 0, W = 0",
                "max_iter": max_iter, "record_every": 10, "target_l_gamma": 1e-13,
                "steps": "alpha = 0.5/(l_f + gamma l_g) (smoothness estimated by power iteration at the start); F2SA: same rule at lambda_k, xi = alpha; BOME: 0.5/(l_f + lambda_k l_g), L_gamma reported at gamma = 10",
            }),
            claims,
            tables: vec![Table {
                title: format!("Paper's regime, {} seeds: iterations to L_γ ≤ 1e-10 (median [10%, 90%]), fitted contraction per iteration, worst window contraction, worst final L_γ and f, smallest v-block PL ratio and its closed-form bound, smallest u-block ratio (measured, not asserted)", seeds.len()),
                header: ["solver", "iterations", "rate/iter", "worst window", "final L_γ", "final f", "min PL_v", "min μ bound", "min PL_u"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                rows,
            }],
            figures: vec![Figure {
                name: "fig4".into(),
                caption: "Hyper-cleaning in the paper's regime: L_γ, the validation loss f (f* = 0), the lower-level gap g − g* and the v-block PL ratio along the iterations (median and 10–90% band over seeds). All three methods converge linearly to the global optimum; the PL ratio stays bounded away from 0.".into(),
                panels: vec![
                    curves("penalty objective L_γ", "L_γ", groups_l),
                    curves("upper level f (f* = 0)", "f", groups_f),
                    curves("lower-level gap", "g − g*", groups_gap),
                    curves("v-block PL ratio", "½‖∇_v L_γ‖² / L_γ", groups_pl),
                ],
            }],
            traces,
            summary: serde_json::Value::Object(summary),
            notes: vec![
                "In this regime f* = 0 is attained for any positive weights (Theorem 3 certifies global convergence, not cleaning): cleaning precision/recall are recorded in the traces but mean nothing here.".into(),
                "The u-block condition of blockwise PL is trivial here: at v = argmin_v L_γ(u, v) the value is 0 for every u. The u-block ratio ½‖∇_u L_γ‖²/L_γ goes to 0 with L_γ (∇_u L_γ = γ ψ'(u) ½‖r_i‖² is quadratic in the residuals) and is reported, not asserted.".into(),
                "The lower level has many minimizers (λ = 0, m > N); the exact g* uses the minimum-norm solution (eigenvalue pseudo-inverse, relative tolerance 1e-10); g* = 0 for every u.".into(),
            ],
            wall_time_s: t0.elapsed().as_secs_f64(),
            partial: ctx.interrupted(),
        })
    }
}

/// λ of the Fashion-MNIST runs.
pub const FM_LAMBDA: f64 = 10.0;
/// γ of the Fashion-MNIST runs.
pub const FM_GAMMA: f64 = 100.0;
/// Iterations of the Fashion-MNIST runs.
pub const FM_ITERS: usize = 100;
/// u step of the Fashion-MNIST runs times γ (the step is FM_C / FM_GAMMA in logit units).
pub const FM_C: f64 = 30.0;

/// Test accuracy of the iterate and cleaning F1 along the Fashion-MNIST runs, with the
/// unweighted and oracle references.
fn fmnist_figure(res: &[CleanRun], un: &[f64], or: &[f64]) -> Figure {
    let series = |name: &str| -> Vec<Vec<(f64, f64)>> {
        res.iter()
            .filter_map(|r| r.trace.as_ref())
            .map(|t| {
                let k = t.metric_names.iter().position(|m| m == name);
                // The start (W = 0, nothing flagged) would flatten the axis.
                t.records
                    .iter()
                    .filter(|rec| rec.iter > 0)
                    .map(|rec| (rec.iter as f64, k.map_or(f64::NAN, |k| rec.metrics[k])))
                    .collect()
            })
            .collect()
    };
    let last = res
        .iter()
        .filter_map(|r| r.trace.as_ref()?.records.last().map(|x| x.iter as f64))
        .fold(1.0, f64::max);
    let flat = |label: &str, xs: &[f64]| CurveGroup {
        label: label.into(),
        runs: xs.iter().map(|&y| vec![(0.0, y), (last, y)]).collect(),
    };
    let panel = |title: &str, y: &str, groups: Vec<CurveGroup>| Panel::Curves {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: y.into(),
        log_y: false,
        groups,
        markers: vec![],
    };
    Figure {
        name: "cleaning-fashion-mnist".into(),
        caption: "Hyper-cleaning on Fashion-MNIST (p = 0.5, linear least-squares model): test accuracy of the iterate W against unweighted and oracle training at the same λ, and cleaning F1 of the weights (median and 10–90% band over seeds), Gauss–Seidel PBGD with the exact v block.".into(),
        panels: vec![
            panel(
                "test accuracy",
                "accuracy",
                vec![
                    CurveGroup {
                        label: "GS-PBGD (exact v), iterate".into(),
                        runs: series("test_acc"),
                    },
                    flat("unweighted", un),
                    flat("oracle", or),
                ],
            ),
            panel(
                "cleaning F1 (flagged = ψ < ½)",
                "F1",
                vec![CurveGroup {
                    label: "GS-PBGD (exact v)".into(),
                    runs: series("f1"),
                }],
            ),
        ],
    }
}

/// Outcome of one realistic cleaning run.
#[derive(Debug, Clone)]
struct CleanRun {
    precision: f64,
    recall: f64,
    f1: f64,
    acc_iterate: f64,
    acc_soft: f64,
    acc_hard: f64,
    wall_s: f64,
    /// Wall time of the first record whose iterate test accuracy is within 0.5 points of the
    /// final one.
    t_final_acc_s: f64,
    status: String,
    trace: Option<Trace>,
}

/// Runs `solver` from u = 0, W = 0 (a record every `every` iterations) and scores the result
/// three ways: the iterate W (which has seen the validation set through f), the lower-level
/// solution retrained with the final soft weights ψ(u), and the one retrained on the kept
/// samples only (ψ_i ≥ ½, weight 1; the others 0), all at the problem's λ.
fn clean_run(
    p: &Cleaning,
    solver: &mut dyn Solver,
    iters: usize,
    every: usize,
    seed: u64,
) -> CleanRun {
    let t = Instant::now();
    let opts = RunOptions {
        max_iter: iters,
        record_every: every.max(1),
        seed,
        monitor_inner_steps: 20,
        ..RunOptions::default()
    };
    let (u0, v0) = p.default_start();
    let (u, v, status, trace) = match run(p, solver, &u0, &v0, &opts, &mut []) {
        Ok(o) => (o.u, o.v, format!("{:?}", o.status), o.trace),
        Err(e) => {
            let nan = f64::NAN;
            return CleanRun {
                precision: nan,
                recall: nan,
                f1: nan,
                acc_iterate: nan,
                acc_soft: nan,
                acc_hard: nan,
                wall_s: t.elapsed().as_secs_f64(),
                t_final_acc_s: nan,
                status: e.to_string(),
                trace: None,
            };
        }
    };
    let wall_s = t.elapsed().as_secs_f64();
    let (precision, recall, f1) = p.cleaning_scores(&u);
    let psi = p.weights(&u);
    let hard: Vec<f64> = psi.iter().map(|&w| f64::from(w >= 0.5)).collect();
    let acc = |w: crate::error::Result<Vec<f64>>| w.map_or(f64::NAN, |w| p.evaluate(&w).test_acc);
    let acc_iterate = p.evaluate(&v).test_acc;
    let k = trace.metric_names.iter().position(|m| m == "test_acc");
    let t_final_acc_s = k
        .and_then(|k| {
            trace
                .records
                .iter()
                .find(|r| r.metrics[k] >= acc_iterate - 0.005)
                .map(|r| r.time_s)
        })
        .unwrap_or(f64::NAN);
    CleanRun {
        precision,
        recall,
        f1,
        acc_iterate,
        acc_soft: acc(p.fit(&psi)),
        acc_hard: acc(p.fit(&hard)),
        wall_s,
        t_final_acc_s,
        status,
        trace: Some(trace),
    }
}

/// Test accuracy of unweighted and oracle training per problem, as pairs and as two columns.
#[allow(clippy::type_complexity)]
fn reference_accuracies(problems: &[Cleaning]) -> (Vec<(f64, f64)>, Vec<f64>, Vec<f64>) {
    let refs: Vec<(f64, f64)> = problems
        .par_iter()
        .map(|p| {
            let un = p
                .reference_unweighted()
                .map_or(f64::NAN, |r| r.eval.test_acc);
            let or = p.reference_oracle().map_or(f64::NAN, |r| r.eval.test_acc);
            (un, or)
        })
        .collect();
    let un = refs.iter().map(|r| r.0).collect();
    let or = refs.iter().map(|r| r.1).collect();
    (refs, un, or)
}

fn med(xs: &[f64]) -> (f64, f64, f64) {
    quantiles(xs).unwrap_or((f64::NAN, f64::NAN, f64::NAN))
}

fn cell(xs: &[f64], digits: usize) -> String {
    let (m, lo, hi) = med(xs);
    format!("{m:.digits$} [{lo:.digits$}, {hi:.digits$}]")
}

/// Settings of the realistic runs (shared by the synthetic and the Fashion-MNIST parts).
#[derive(Debug, Clone, Copy)]
struct CleanSetup {
    lambda: f64,
    u_scale: f64,
    gamma: f64,
    iters: usize,
    /// u step of Gauss–Seidel PBGD with the exact v block, times γ s² (the u gradient is
    /// γ s ψ(1 − ψ)(ℓ_i(W_γ) − ℓ_i(W*)), so this keeps the step in logit units).
    exact_v_c: f64,
}

impl CleanSetup {
    fn settings(&self) -> CleaningSettings {
        CleaningSettings {
            lambda: self.lambda,
            u_scale: self.u_scale,
            // Logits within ±10.
            bound: 10.0 / self.u_scale,
            ..CleaningSettings::default()
        }
    }

    /// Gauss–Seidel PBGD with the exact v block.
    fn exact_v(&self) -> (&'static str, MakeSolver) {
        let (g, r, c) = (self.gamma, self.u_scale * self.u_scale, self.exact_v_c);
        (
            "GS-PBGD (exact v)",
            Box::new(move || {
                Box::new(Pbgd::gauss_seidel(g).with_exact_v(StepRule::Fixed(c / (g * r))))
                    as Box<dyn Solver>
            }),
        )
    }

    fn solvers(&self, with_pbgd: bool) -> Vec<(&'static str, MakeSolver)> {
        let (g, r, it) = (self.gamma, self.u_scale * self.u_scale, self.iters);
        let mut v: Vec<(&'static str, MakeSolver)> = Vec::new();
        if with_pbgd {
            v.push((
                "GS-PBGD",
                Box::new(move || Box::new(Pbgd::gauss_seidel(g)) as Box<dyn Solver>),
            ));
            v.push(self.exact_v());
        }
        v.push((
            "F²SA",
            Box::new(move || {
                Box::new(F2sa::new(g / 10.0, g, it / 5).with_u_step_ratio(r)) as Box<dyn Solver>
            }),
        ));
        v.push((
            "BOME",
            Box::new(move || {
                Box::new(Bome::new(0.5, 5, g).with_u_step_ratio(r)) as Box<dyn Solver>
            }),
        ));
        v
    }
}

/// The realistic cleaning study: Gaussian clusters with label flips (p = 0.2, 0.5, 0.8) and
/// Fashion-MNIST (p = 0.5) when installed.
pub struct CleaningStudy;

impl Experiment for CleaningStudy {
    fn name(&self) -> &'static str {
        "cleaning"
    }
    fn title(&self) -> &'static str {
        "Hyper-cleaning that works on data: Gaussian clusters with label flips and Fashion-MNIST, against unweighted and oracle training"
    }
    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let mut claims = Vec::new();
        let mut tables = Vec::new();
        let mut notes = Vec::new();
        let mut figures = Vec::new();
        let mut traces = Vec::new();
        let mut summary = serde_json::Map::new();
        let rates = [0.2, 0.5, 0.8];
        let n_seeds = if ctx.quick { 2 } else { 10 };
        let syn = CleanSetup {
            lambda: 1.0,
            u_scale: 30.0,
            gamma: 10.0,
            iters: if ctx.quick { 300 } else { 2000 },
            exact_v_c: 30.0,
        };
        let base = ClusterConfig::default();
        let mut rows = Vec::new();
        for &p_noise in &rates {
            ctx.progress
                .message(&format!("cleaning: synthetic p = {p_noise}"));
            let problems: Vec<Cleaning> = (0..n_seeds)
                .map(|s| {
                    let d = CleaningData::gaussian_clusters(&ClusterConfig {
                        p: p_noise,
                        seed: s,
                        ..base
                    })?;
                    Cleaning::new(d, syn.settings())
                })
                .collect::<Result<_>>()?;
            let (refs, un, or) = reference_accuracies(&problems);
            rows.push(vec![
                format!("{p_noise}"),
                "unweighted (all samples)".into(),
                "–".into(),
                "–".into(),
                cell(&un, 3),
                "–".into(),
                "–".into(),
            ]);
            rows.push(vec![
                format!("{p_noise}"),
                "oracle (clean samples only)".into(),
                "1".into(),
                "–".into(),
                cell(&or, 3),
                "–".into(),
                "–".into(),
            ]);
            for (label, make) in syn.solvers(true) {
                ctx.progress.add_total(problems.len() as u64);
                let res: Vec<CleanRun> = problems
                    .par_iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let mut s = make();
                        let r = clean_run(p, s.as_mut(), syn.iters, syn.iters, k as u64);
                        ctx.progress.inc(1);
                        r
                    })
                    .collect();
                let col = |f: fn(&CleanRun) -> f64| res.iter().map(f).collect::<Vec<f64>>();
                let closed: Vec<f64> = res
                    .iter()
                    .zip(&refs)
                    .map(|(r, (u, o))| (r.acc_hard - u) / (o - u))
                    .collect();
                if p_noise >= 0.5 {
                    let (gc, q10, _) = med(&closed);
                    claims.push(Claim::new(
                        format!("Gaussian clusters, p = {p_noise}: the model retrained on the samples {label} keeps closes at least half of the test-accuracy gap from unweighted to oracle training"),
                        format!("median gap closed {:.0}% (10% quantile {:.0}%) over {n_seeds} seeds", 100.0 * gc, 100.0 * q10),
                        "median ≥ 50%",
                        gc >= 0.5,
                    ));
                }
                rows.push(vec![
                    format!("{p_noise}"),
                    label.into(),
                    cell(&col(|r| r.f1), 3),
                    cell(&col(|r| r.acc_iterate), 3),
                    cell(&col(|r| r.acc_hard), 3),
                    cell(&closed, 2),
                    format!("{:.2}", med(&col(|r| r.wall_s)).0),
                ]);
                summary.insert(
                    format!("synthetic_p{p_noise}_{label}"),
                    json!({"f1": col(|r| r.f1), "precision": col(|r| r.precision), "recall": col(|r| r.recall),
                           "acc_iterate": col(|r| r.acc_iterate), "acc_soft_retrained": col(|r| r.acc_soft),
                           "acc_kept_retrained": col(|r| r.acc_hard), "gap_closed": closed,
                           "unweighted": un, "oracle": or, "wall_s": col(|r| r.wall_s),
                           "status": res.iter().map(|r| r.status.clone()).collect::<Vec<_>>()}),
                );
                if ctx.interrupted() {
                    break;
                }
            }
        }
        tables.push(Table {
            title: format!(
                "Gaussian clusters ({} train / {} val / {} test, m = {}, {} classes, separation {}), λ = {}, γ = {}, {} iterations, {n_seeds} seeds: cleaning F1, test accuracy of the iterate W and of the model retrained on the kept samples (ψ ≥ ½), fraction of the unweighted→oracle gap closed by the latter, wall time per run (median [10%, 90%]; asserted only as the claims above, for p ≥ 0.5)",
                base.n_trn, base.n_val, base.n_test, base.m, base.classes, base.separation, syn.lambda, syn.gamma, syn.iters
            ),
            header: ["p", "method", "F1", "test acc (iterate)", "test acc (kept, retrained)", "gap closed", "wall s"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
        });

        // Fashion-MNIST, when installed.
        let dir = std::path::PathBuf::from(FASHION_MNIST_DIR);
        let have = ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
            .iter()
            .any(|f| dir.join(f).exists());
        if !have {
            notes.push(format!("Fashion-MNIST part skipped: not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)."));
        } else if !ctx.interrupted() {
            let fm = CleanSetup {
                lambda: FM_LAMBDA,
                u_scale: 1.0,
                gamma: FM_GAMMA,
                iters: if ctx.quick { 20 } else { FM_ITERS },
                exact_v_c: FM_C,
            };
            let every = 5;
            let (n_trn, n_val, n_test, seeds) = if ctx.quick {
                (1000, 1000, 2000, 1)
            } else {
                (5000, 5000, 10_000, 5)
            };
            ctx.progress.message("cleaning: Fashion-MNIST");
            let problems: Vec<Cleaning> = (0..seeds)
                .map(|s| {
                    let d = load_fashion_mnist(&FashionMnistConfig {
                        n_trn,
                        n_val,
                        n_test,
                        p: 0.5,
                        seed: s,
                        ..Default::default()
                    })?;
                    Cleaning::new(d, fm.settings())
                })
                .collect::<Result<_>>()?;
            let (refs, un, or) = reference_accuracies(&problems);
            let mut rows = vec![
                vec![
                    "unweighted (all samples)".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    cell(&un, 3),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
                vec![
                    "oracle (clean samples only)".into(),
                    "1".into(),
                    "–".into(),
                    "–".into(),
                    cell(&or, 3),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
            ];
            let (label, make) = fm.exact_v();
            ctx.progress.add_total(problems.len() as u64);
            // One run at a time: the weighted Gram of each iteration uses every core.
            let mut res: Vec<CleanRun> = Vec::new();
            for (k, p) in problems.iter().enumerate() {
                let mut s = make();
                res.push(clean_run(p, s.as_mut(), fm.iters, every, k as u64));
                ctx.progress.inc(1);
                if ctx.interrupted() {
                    break;
                }
            }
            let col = |f: fn(&CleanRun) -> f64| res.iter().map(f).collect::<Vec<f64>>();
            let gap = |f: fn(&CleanRun) -> f64| -> Vec<f64> {
                res.iter()
                    .zip(&refs)
                    .map(|(r, (u, o))| (f(r) - u) / (o - u))
                    .collect()
            };
            let closed = gap(|r| r.acc_hard);
            let closed_soft = gap(|r| r.acc_soft);
            let (gc, gc10, _) = med(&closed);
            let (gs, _, _) = med(&closed_soft);
            let (f1m, f1lo, _) = med(&col(|r| r.f1));
            let n_done = res.len() as u64;
            // The targets are about the full split; the quick subset only reports numbers.
            if !ctx.quick {
                claims.push(Claim::new(
                    format!("Fashion-MNIST (p = 0.5, linear least-squares model, λ = {}): {label} closes at least 80% of the test-accuracy gap from unweighted to oracle training (model retrained on the kept samples ψ ≥ ½)", fm.lambda),
                    format!("median gap closed {:.1}% (10% quantile {:.1}%) over {n_done} seeds ({} iterations); with the soft weights ψ(u): {:.1}%", 100.0 * gc, 100.0 * gc10, fm.iters, 100.0 * gs),
                    "median ≥ 80%",
                    gc >= 0.8 && n_done == seeds,
                ));
                claims.push(Claim::new(
                    format!("Fashion-MNIST: {label} cleaning F1 ≥ 0.85"),
                    format!("median F1 {f1m:.3} (10% quantile {f1lo:.3}) over {n_done} seeds"),
                    "median ≥ 0.85",
                    f1m >= 0.85 && n_done == seeds,
                ));
            }
            rows.push(vec![
                label.into(),
                cell(&col(|r| r.f1), 3),
                cell(&col(|r| r.acc_iterate), 3),
                cell(&col(|r| r.acc_soft), 3),
                cell(&col(|r| r.acc_hard), 3),
                cell(&closed, 2),
                format!("{:.1}", med(&col(|r| r.t_final_acc_s)).0),
                format!("{:.1}", med(&col(|r| r.wall_s)).0),
            ]);
            summary.insert(
                format!("fashion_mnist_{label}"),
                json!({"f1": col(|r| r.f1), "precision": col(|r| r.precision), "recall": col(|r| r.recall),
                       "acc_iterate": col(|r| r.acc_iterate), "acc_soft_retrained": col(|r| r.acc_soft),
                       "acc_kept_retrained": col(|r| r.acc_hard), "gap_closed": closed, "gap_closed_soft": closed_soft,
                       "unweighted": un, "oracle": or, "wall_s": col(|r| r.wall_s),
                       "time_to_final_accuracy_s": col(|r| r.t_final_acc_s),
                       "status": res.iter().map(|r| r.status.clone()).collect::<Vec<_>>()}),
            );
            tables.push(Table {
                title: format!("Fashion-MNIST ({n_trn} train / {n_val} val / {n_test} test, p = 0.5, features in [0, 1]), linear least-squares model, λ = {}, γ = {}, u step {} (fixed), {} iterations, {n_done} seeds (median [10%, 90%]); 'to final acc' is the wall time until the iterate's test accuracy is within 0.5 points of its final value", fm.lambda, fm.gamma, fm.exact_v_c / fm.gamma, fm.iters),
                header: ["method", "F1", "test acc (iterate)", "test acc (soft weights, retrained)", "test acc (kept, retrained)", "gap closed (kept)", "to final acc s", "wall s"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                rows,
            });
            figures.push(fmnist_figure(&res, &un, &or));
            if let Some(t) = res.first().and_then(|r| r.trace.clone()) {
                traces.push(("fashion-mnist-gs-pbgd-exact-v-seed0".to_string(), t));
            }
            if ctx.quick {
                notes.push("Quick mode runs a 1,000/1,000/2,000 subset for 20 iterations and reports it without claims: the ≥ 80% and F1 ≥ 0.85 targets are checked in the full run only.".into());
            }
            notes.push(format!("Fashion-MNIST uses Gauss–Seidel PBGD with the exact v block: each iteration sets W to argmin_W L_γ(u, W) (one m × m ridge solve that shares the weighted Gram XᵀΨX with the exact g*, N m² ≈ 3 GFLOP for N = 5,000, m = 784), then takes a projected gradient step on u, which is gradient descent on φ(u) = min_W L_γ(u, W). Gradient steps on W are hopeless here: the W block is badly conditioned on raw [0, 1] pixels (κ ≈ 1e5). The u step is {}/γ in logit units (ψ = sigmoid(u), |u| ≤ 10), chosen on seed 0 by a short sweep of λ ∈ {{1, 10}}, γ ∈ {{10, 30, 100}}, step ∈ {{0.1, 0.3, 1}}; cleaning F1 peaks after a few dozen iterations and then declines slowly as the weights keep fitting the validation loss, so the iteration budget ({FM_ITERS}) is part of the method's settings.", fm.exact_v_c));
        }
        notes.push("On the clusters, weights are sigmoid(s·u) with s = u_scale = 30 and the box |s·u| ≤ 10: scaling u multiplies the u block's effective step by s² relative to W (Gauss–Seidel PBGD with gradient v steps has one step size for both blocks); F²SA and BOME take ξ_u/ξ_v = s² for the same reason, and the exact-v-block PBGD takes the u step 30/(γ s²). Chosen by a short manual sweep on seed 1 (p = 0.5), not tuned per p or per seed. Fashion-MNIST uses s = 1.".into());
        notes.push("Three test accuracies differ in what the model saw: the iterate W minimizes f + γ g approximately, so it has fitted the clean validation set too; the retrained models (weighted ridge at the same λ on the training set only) measure the cleaning itself. 'Gap closed' = (acc − unweighted)/(oracle − unweighted) for the model retrained on the kept samples (ψ ≥ ½). Cleaning precision/recall/F1 treat the flagged (ψ < ½) samples as positives against the corruption mask.".into());
        notes.push("All runs here use full gradients. Mini-batch (stochastic) gradients of g are available as an option (solver setting batch_size for PBGD, F2SA and BOME; see docs/cleaning.md): GS-PBGD with batches of 50 closes 72% of the gap on the p = 0.5 clusters in the test suite.".into());
        Ok(Report {
            name: self.name().into(),
            title: self.title().into(),
            settings: json!({
                "synthetic": {"clusters": base, "rates": rates, "seeds": n_seeds, "lambda": syn.lambda, "u_scale": syn.u_scale,
                               "gamma": syn.gamma, "iterations": syn.iters,
                               "solvers": "GS-PBGD (exact g*, alpha = 0.5/(l_f + gamma l_g)); F2SA (lambda gamma/10 -> gamma over iters/5, xi/alpha = u_scale^2, 1 z-step); BOME (eta = 0.5, T = 5, u-step ratio u_scale^2)"},
                "fashion_mnist": {"dir": FASHION_MNIST_DIR, "p": 0.5, "lambda": FM_LAMBDA, "u_scale": 1.0, "gamma": FM_GAMMA,
                                  "iterations": FM_ITERS, "u_step": FM_C / FM_GAMMA, "seeds": "0-4",
                                  "solver": "Gauss-Seidel PBGD, exact v block (W = argmin L_gamma(u, .)), exact g*, fixed u step"},
            }),
            claims,
            tables,
            figures,
            traces,
            summary: serde_json::Value::Object(summary),
            notes,
            wall_time_s: t0.elapsed().as_secs_f64(),
            partial: ctx.interrupted(),
        })
    }
}
