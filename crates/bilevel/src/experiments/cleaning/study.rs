//! The realistic cleaning study: Gaussian clusters with label flips (p = 0.2, 0.5, 0.8) and
//! Fashion-MNIST (p = 0.5), each run scored by cleaning F1 and by test accuracy against
//! unweighted and oracle training; the settings of the Fashion-MNIST runs.

use super::MakeSolver;
use crate::data::{FASHION_MNIST_DIR, FashionMnistConfig, load_fashion_mnist};
use crate::error::Result;
use crate::experiments::{
    Claim, Context, CurveGroup, Experiment, Figure, Panel, Report, Table, quantiles,
};
use crate::problems::cleaning::defaults::{Defaults, Overrides};
use crate::problems::cleaning::{Cleaning, CleaningData, CleaningSettings, ClusterConfig};
use crate::run::{RunOptions, run};
use crate::solvers::{Bome, F2sa, Pbgd, Solver, StepRule};
use crate::trace::Trace;
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

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
    /// Iterations run.
    iters: f64,
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
    let opts = RunOptions {
        max_iter: iters,
        record_every: every.max(1),
        seed,
        monitor_inner_steps: 20,
        ..RunOptions::default()
    };
    clean_run_from(p, solver, &p.default_start(), &opts)
}

/// [`clean_run`] from a given start with given options (the defaults rule's).
fn clean_run_from(
    p: &Cleaning,
    solver: &mut dyn Solver,
    (u0, v0): &(Vec<f64>, Vec<f64>),
    opts: &RunOptions,
) -> CleanRun {
    let t = Instant::now();
    let (u, v, status, trace, iters) = match run(p, solver, u0, v0, opts, &mut []) {
        Ok(o) => (
            o.u,
            o.v,
            format!("{:?}", o.status),
            o.trace,
            o.iterations as f64,
        ),
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
                iters: nan,
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
        iters,
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
        let dir = fashion_mnist_dir();
        let have = ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
            .iter()
            .any(|f| dir.join(f).exists());
        let mut skipped = Vec::new();
        if !have {
            skipped.push(super::super::Skipped {
                part: "Fashion-MNIST (real data)".into(),
                reason: format!("the data set is not installed in {}", dir.display()),
                fix: "apt-get install dataset-fashion-mnist".into(),
            });
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
            let datasets: Vec<CleaningData> = (0..seeds)
                .map(|s| {
                    load_fashion_mnist(&FashionMnistConfig {
                        n_trn,
                        n_val,
                        n_test,
                        p: 0.5,
                        seed: s,
                        dir: dir.clone(),
                    })
                })
                .collect::<Result<_>>()?;
            let problems: Vec<Cleaning> = datasets
                .iter()
                .map(|d| Cleaning::new(d.clone(), fm.settings()))
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
                format!("{:.0}", med(&col(|r| r.iters)).0),
                format!("{:.1}", med(&col(|r| r.t_final_acc_s)).0),
                format!("{:.1}", med(&col(|r| r.wall_s)).0),
            ]);
            // The same data under the defaults rule (its own λ, so its own references).
            let rule_label = "GS-PBGD (exact v, defaults rule)";
            ctx.progress
                .message("cleaning: Fashion-MNIST, defaults rule");
            ctx.progress.add_total(datasets.len() as u64);
            let mut rule_res: Vec<(CleanRun, f64, f64)> = Vec::new();
            let mut rule_setup = Vec::new();
            for (k, d) in datasets.into_iter().enumerate() {
                if ctx.interrupted() {
                    break;
                }
                let (p, rule) = Defaults::build(d, &Overrides::default())?;
                let un = p.reference_unweighted()?.eval.test_acc;
                let or = p.reference_oracle()?.eval.test_acc;
                let mut s = rule.solver();
                let r = clean_run_from(&p, &mut s, &rule.start, &rule.run_options(k as u64));
                rule_setup.push(json!({"lambda": rule.settings.lambda, "gamma": rule.gamma, "u_step": rule.u_step}));
                rule_res.push((r, un, or));
                ctx.progress.inc(1);
            }
            let rcol =
                |f: fn(&CleanRun) -> f64| rule_res.iter().map(|x| f(&x.0)).collect::<Vec<f64>>();
            let rule_closed: Vec<f64> = rule_res
                .iter()
                .map(|(r, u, o)| (r.acc_hard - u) / (o - u))
                .collect();
            let (rgc, rgc10, _) = med(&rule_closed);
            let (rf1, rf1lo, _) = med(&rcol(|r| r.f1));
            let rule_done = rule_res.len() as u64;
            if !ctx.quick {
                claims.push(Claim::new(
                    format!("Fashion-MNIST (p = 0.5, linear least-squares model): {rule_label}, with every setting from the training and validation data, closes at least 80% of the unweighted-to-oracle test-accuracy gap (model retrained on the kept samples, references at the rule's λ) with cleaning F1 ≥ 0.85"),
                    format!("median gap closed {:.1}% (10% quantile {:.1}%), median F1 {rf1:.3} (10% quantile {rf1lo:.3}) over {rule_done} seeds, median {:.0} iterations", 100.0 * rgc, 100.0 * rgc10, med(&rcol(|r| r.iters)).0),
                    "median gap ≥ 80% and median F1 ≥ 0.85",
                    rgc >= 0.8 && rf1 >= 0.85 && rule_done == seeds,
                ));
            }
            rows.push(vec![
                rule_label.into(),
                cell(&rcol(|r| r.f1), 3),
                cell(&rcol(|r| r.acc_iterate), 3),
                cell(&rcol(|r| r.acc_soft), 3),
                cell(&rcol(|r| r.acc_hard), 3),
                cell(&rule_closed, 2),
                format!("{:.0}", med(&rcol(|r| r.iters)).0),
                format!("{:.1}", med(&rcol(|r| r.t_final_acc_s)).0),
                format!("{:.1}", med(&rcol(|r| r.wall_s)).0),
            ]);
            summary.insert(
                "fashion_mnist_defaults_rule".into(),
                json!({"f1": rcol(|r| r.f1), "precision": rcol(|r| r.precision), "recall": rcol(|r| r.recall),
                       "acc_iterate": rcol(|r| r.acc_iterate), "acc_kept_retrained": rcol(|r| r.acc_hard),
                       "gap_closed": rule_closed, "iterations": rcol(|r| r.iters), "wall_s": rcol(|r| r.wall_s),
                       "unweighted": rule_res.iter().map(|x| x.1).collect::<Vec<_>>(),
                       "oracle": rule_res.iter().map(|x| x.2).collect::<Vec<_>>(),
                       "settings": rule_setup,
                       "status": rule_res.iter().map(|x| x.0.status.clone()).collect::<Vec<_>>()}),
            );
            notes.push(format!("The row '{rule_label}' runs the defaults rule of a config without [solver] (docs/cleaning.md, 'Defaults and how each is chosen'): features divided by their training standard deviation, λ = 0.1 N on them ({} for N = {n_trn}), γ = 100 N'/N, u step 0.1 / rms of the first u gradient, stop when the records' grad_u falls to ½ of its first value. Its λ differs from the recipe's, so its gap closed is measured against unweighted and oracle training at its own λ (unweighted {:.3}, oracle {:.3}, median test accuracy); the rows above it are at λ = {}. Fashion-MNIST is one of the data sets the rule was partly tuned on (with digits and Gaussian clusters; wine, breast cancer and iris were held out), so this row is not a held-out test of it.", 0.1 * n_trn as f64, med(&rule_res.iter().map(|x| x.1).collect::<Vec<_>>()).0, med(&rule_res.iter().map(|x| x.2).collect::<Vec<_>>()).0, fm.lambda));
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
                header: ["method", "F1", "test acc (iterate)", "test acc (soft weights, retrained)", "test acc (kept, retrained)", "gap closed (kept)", "iterations", "to final acc s", "wall s"]
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
            skipped,
        })
    }
}

/// Where the experiment looks for Fashion-MNIST: `$BILEVEL_FASHION_MNIST_DIR` when set (tests
/// use it to hide the data set), else [`FASHION_MNIST_DIR`], where Debian's package puts it.
pub fn fashion_mnist_dir() -> std::path::PathBuf {
    std::env::var_os("BILEVEL_FASHION_MNIST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(FASHION_MNIST_DIR))
}
