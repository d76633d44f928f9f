//! Figure 4 of the paper: hyper-cleaning in the certified regime (mutually orthogonal samples,
//! λ = 0), where Gauss–Seidel PBGD, F²SA and BOME must reach f* = 0 at a linear rate, with
//! the v-block PL ratio checked against its closed-form bound along every trajectory.

use super::MakeSolver;
use crate::error::Result;
use crate::experiments::{
    Claim, Context, CurveGroup, Experiment, Figure, Panel, Report, Table, quantiles,
};
use crate::problem::Problem;
use crate::problems::cleaning::{Cleaning, CleaningData, CleaningSettings};
use crate::run::{RunOptions, RunOutput, run};
use crate::solvers::{Bome, F2sa, Pbgd, Solver};
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
            skipped: Vec::new(),
        })
    }
}
