//! `cleaning-benchopt`: the data-cleaning problem of benchopt's bilevel benchmark (softmax
//! cross-entropy, mean losses, ridge 0.2‖W‖², Fashion-MNIST, p = 0.5; see
//! [`crate::problems::cleaning::load_benchopt_cleaning`]) solved by Gauss–Seidel PBGD with the
//! exact (Newton-CG) v block: validation loss, test accuracy and cleaning F1 against wall time,
//! against unweighted and oracle training at the same regularization.

use crate::error::Result;
use crate::experiments::{
    Claim, Context, CurveGroup, Experiment, Figure, Panel, Report, Skipped, Table,
};
use crate::problem::Problem;
use crate::problems::cleaning::{
    BenchoptConfig, Cleaning, benchopt_settings, load_benchopt_cleaning,
};
use crate::solvers::{Pbgd, Solver, State, StepRule};
use serde_json::json;
use std::time::Instant;

/// γ of the benchmark runs (mean losses: f and g are both O(1)).
pub const BENCHOPT_GAMMA: f64 = 10.0;
/// The u step moves the logits by this much in RMS at the first iteration
/// ([`benchopt_solver`]).
pub const BENCHOPT_C: f64 = 1.0;
/// Iteration budget of the full run.
pub const BENCHOPT_ITERS: usize = 80;
/// Wall-time budget of our run in the experiment, seconds (the run stops earlier at the
/// iteration budget).
pub const BENCHOPT_BUDGET_S: f64 = 60.0;

/// Gauss–Seidel PBGD with the exact v block at γ = [`BENCHOPT_GAMMA`] and the fixed u step
/// α = [`BENCHOPT_C`] / rms(∇_u L_γ) at the start u0 (exact v block and g* there): the first
/// step moves the logits by BENCHOPT_C in RMS, whatever the scale of the losses. Returns the
/// solver and α.
pub fn benchopt_solver(p: &Cleaning, u0: &[f64]) -> Result<(Pbgd, f64)> {
    let (mut v, mut w) = (vec![0.0; p.dim_v()], vec![0.0; p.dim_v()]);
    let bad =
        |what: &str| crate::error::Error::Unsupported(format!("the {what} failed at the start"));
    if !p.penalty_v_solution(u0, BENCHOPT_GAMMA, &mut v) {
        return Err(bad("exact v block"));
    }
    if !p.ll_solution(u0, &mut w) {
        return Err(bad("lower-level solve"));
    }
    let mut du = vec![0.0; p.dim_u()];
    p.penalty_eval(u0, &v, &w, BENCHOPT_GAMMA, Some(&mut du), None);
    let rms = (du.iter().map(|a| a * a).sum::<f64>() / du.len().max(1) as f64).sqrt();
    let alpha = BENCHOPT_C / rms.max(1e-300);
    Ok((
        Pbgd::gauss_seidel(BENCHOPT_GAMMA).with_exact_v(StepRule::Fixed(alpha)),
        alpha,
    ))
}

/// The projected-gradient mapping ‖(u − P(u − α∇_u L_γ))/α‖ of φ(u) = min_W L_γ(u, W) at u
/// (exact v block and g* at u), and the lower-level gap g(u, W) − g*(u) there with g*(u).
pub fn stationarity(p: &Cleaning, u: &[f64], alpha: f64) -> (f64, f64, f64) {
    let (mut v, mut w) = (vec![0.0; p.dim_v()], vec![0.0; p.dim_v()]);
    if !(p.penalty_v_solution(u, BENCHOPT_GAMMA, &mut v) && p.ll_solution(u, &mut w)) {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut du = vec![0.0; p.dim_u()];
    let [_, g, gs] = p
        .penalty_eval(u, &v, &w, BENCHOPT_GAMMA, Some(&mut du), None)
        .unwrap_or([f64::NAN; 3]);
    let mut q: Vec<f64> = u.iter().zip(&du).map(|(a, d)| a - alpha * d).collect();
    p.project_u(&mut q);
    (crate::linalg::dist(u, &q) / alpha, g - gs, gs)
}

/// Where the experiment looks for Fashion-MNIST: `$BILEVEL_FASHION_MNIST_DIR` when set (tests
/// use it to hide the data set), else where Debian's package puts it (as the `cleaning`
/// experiment).
fn fashion_mnist_dir() -> std::path::PathBuf {
    std::env::var_os("BILEVEL_FASHION_MNIST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(crate::data::FASHION_MNIST_DIR))
}

/// The `cleaning-benchopt` experiment.
pub struct CleaningBenchopt;

struct Row {
    iter: usize,
    time: f64,
    val_loss: f64,
    test_acc: f64,
    f1: f64,
}

impl Experiment for CleaningBenchopt {
    fn name(&self) -> &'static str {
        "cleaning-benchopt"
    }

    fn title(&self) -> &'static str {
        "benchopt's data-cleaning problem (softmax, Fashion-MNIST, p = 0.5): GS-PBGD with the Newton-CG v block against unweighted and oracle training"
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let dir = fashion_mnist_dir();
        let have = ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
            .iter()
            .any(|f| dir.join(f).exists());
        let (n_trn, n_val, iters, budget) = if ctx.quick {
            (3000, 1000, 25, 10.0)
        } else {
            (20_000, 5000, BENCHOPT_ITERS, BENCHOPT_BUDGET_S)
        };
        let mut report = Report {
            name: self.name().into(),
            title: self.title().into(),
            settings: json!({
                "data": "Fashion-MNIST, benchopt's cleaning split (seeded ChaCha draw, seed 32), standardized on the training part",
                "n_trn": n_trn, "n_val": n_val, "n_test": 10_000, "p": 0.5,
                "loss": "softmax cross-entropy", "g": "(1/N) sum sigmoid(u_i) CE_i + 0.2 ||W||_F^2",
                "f": "(1/N') sum CE_j", "start": "u = -2, W = 0",
                "solver": "Gauss-Seidel PBGD, exact v block (Newton-CG), exact g* (Newton-CG)",
                "gamma": BENCHOPT_GAMMA, "u_step": format!("{BENCHOPT_C} / rms(grad_u L at the start)"),
                "iterations": iters, "time_budget_s": budget,
            }),
            claims: Vec::new(),
            tables: Vec::new(),
            figures: Vec::new(),
            traces: Vec::new(),
            summary: json!({}),
            notes: Vec::new(),
            wall_time_s: 0.0,
            partial: false,
            skipped: Vec::new(),
        };
        if !have {
            report.skipped.push(Skipped {
                part: "benchopt data cleaning on Fashion-MNIST (the whole experiment)".into(),
                reason: format!("the data set is not installed in {}", dir.display()),
                fix: "apt-get install dataset-fashion-mnist".into(),
            });
            report.wall_time_s = t0.elapsed().as_secs_f64();
            return Ok(report);
        }
        ctx.progress.message("cleaning-benchopt: loading");
        let data = load_benchopt_cleaning(&BenchoptConfig {
            dir,
            n_trn,
            n_val,
            ..BenchoptConfig::default()
        })?;
        let p = Cleaning::new(data, benchopt_settings())?;
        // References at the same regularization (Newton-CG fits), timed.
        ctx.progress.message("cleaning-benchopt: references");
        let t = Instant::now();
        let un = p.reference_unweighted()?;
        let un_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let or = p.reference_oracle()?;
        let or_s = t.elapsed().as_secs_f64();
        // Our run: init and steps timed, metrics between steps untimed.
        ctx.progress.message("cleaning-benchopt: GS-PBGD (exact v)");
        let (u0, v0) = p.default_start();
        let t = Instant::now();
        let (mut solver, alpha) = benchopt_solver(&p, &u0)?;
        let mut state = State {
            u: u0.clone(),
            v: v0,
            iter: 0,
            rng: crate::seeds::rng(0, crate::seeds::Stream::Run),
        };
        solver.init(&p, &mut state)?;
        let mut total = t.elapsed().as_secs_f64();
        let (stat0, _, _) = stationarity(&p, &u0, alpha);
        let mut rows = Vec::new();
        while state.iter < iters && total < budget && !ctx.interrupted() {
            let t = Instant::now();
            solver.step(&p, &mut state)?;
            total += t.elapsed().as_secs_f64();
            state.iter += 1;
            let e = p.evaluate(&state.v);
            let (_, _, f1) = p.cleaning_scores(&state.u);
            rows.push(Row {
                iter: state.iter,
                time: total,
                val_loss: e.val_loss,
                test_acc: e.test_acc,
                f1,
            });
        }
        report.partial = ctx.interrupted();
        let last = rows.last().map_or((f64::NAN, f64::NAN, f64::NAN), |r| {
            (r.val_loss, r.test_acc, r.f1)
        });
        let target = rows
            .iter()
            .position(|r| (r.val_loss - last.0).abs() <= 1e-3 * last.0.abs())
            .unwrap_or(0);
        let (stat, gap, gstar) = stationarity(&p, &state.u, alpha);
        let counts = p.newton_counts();
        let kept = p.reference(
            p.weights(&state.u)
                .iter()
                .map(|&w| f64::from(w >= 0.5))
                .collect(),
        )?;

        report.claims.push(Claim::new(
            "the final point is stationary for L_γ: the projected u-gradient of φ(u) = min_W L_γ(u, W) is small relative to the start",
            format!("{:.3e} (start {:.3e}, ratio {:.3e})", stat, stat0, stat / stat0),
            "ratio <= 0.05",
            stat / stat0 <= 0.05,
        ));
        report.claims.push(Claim::new(
            "the lower-level gap g(u, W) − g*(u) at the final point is small (relative to g*)",
            format!(
                "{:.3e} (g* = {:.4}, relative {:.2e})",
                gap,
                gstar,
                gap / gstar
            ),
            "relative gap <= 1e-2",
            gap >= -1e-12 && gap / gstar <= 1e-2,
        ));
        report.claims.push(Claim::new(
            "the final iterate reaches the test accuracy of unweighted training at the same regularization, or better",
            format!("{:.4} (unweighted {:.4}, oracle {:.4})", last.1, un.eval.test_acc, or.eval.test_acc),
            ">= unweighted",
            last.1 >= un.eval.test_acc,
        ));
        let f = |x: f64| format!("{x:.4}");
        report.tables.push(Table {
            title: format!(
                "benchopt data cleaning (softmax, Fashion-MNIST {n_trn} / {n_val} / 10,000, p = 0.5, ridge 0.2): validation loss (mean CE), test accuracy and F1 of each method, with the iterations and seconds it took (references: Newton-CG fits of the weighted lower level; ours: init and steps, metrics untimed)"
            ),
            header: ["method", "val loss", "test acc", "F1", "iterations", "seconds"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows: vec![
                vec!["unweighted (all samples)".into(), f(un.eval.val_loss), f(un.eval.test_acc), "–".into(), "–".into(), format!("{un_s:.2}")],
                vec!["oracle (clean samples only)".into(), f(or.eval.val_loss), f(or.eval.test_acc), "1".into(), "–".into(), format!("{or_s:.2}")],
                vec![
                    "GS-PBGD (exact v), final iterate".into(),
                    f(last.0),
                    f(last.1),
                    f(last.2),
                    rows.len().to_string(),
                    format!("{total:.2}"),
                ],
                vec![
                    "… to val loss within 1e-3 of final".into(),
                    rows.get(target).map_or("–".into(), |r| f(r.val_loss)),
                    rows.get(target).map_or("–".into(), |r| f(r.test_acc)),
                    rows.get(target).map_or("–".into(), |r| f(r.f1)),
                    rows.get(target).map_or("–".into(), |r| r.iter.to_string()),
                    rows.get(target).map_or("–".into(), |r| format!("{:.2}", r.time)),
                ],
                vec![
                    "kept samples (ψ ≥ ½), retrained".into(),
                    f(kept.eval.val_loss),
                    f(kept.eval.test_acc),
                    f(last.2),
                    "–".into(),
                    "–".into(),
                ],
            ],
        });
        let series = |sel: &dyn Fn(&Row) -> f64| -> Vec<Vec<(f64, f64)>> {
            vec![rows.iter().map(|r| (r.time, sel(r))).collect()]
        };
        let flat = |label: &str, y: f64| CurveGroup {
            label: label.into(),
            runs: vec![vec![(0.0, y), (total, y)]],
        };
        let panel = |title: &str, y: &str, groups: Vec<CurveGroup>| Panel::Curves {
            title: title.into(),
            x_label: "wall time (s)".into(),
            y_label: y.into(),
            log_y: false,
            groups,
            markers: vec![],
        };
        let ours = |sel: &dyn Fn(&Row) -> f64| CurveGroup {
            label: "GS-PBGD (exact v)".into(),
            runs: series(sel),
        };
        report.figures.push(Figure {
            name: "cleaning-benchopt".into(),
            caption: "benchopt's data-cleaning problem (softmax cross-entropy, Fashion-MNIST, p = 0.5): validation loss, test accuracy and cleaning F1 of Gauss–Seidel PBGD with the Newton-CG v block against wall time, with unweighted and oracle training at the same regularization.".into(),
            panels: vec![
                panel("validation loss (mean CE)", "loss", vec![
                    ours(&|r| r.val_loss),
                    flat("unweighted", un.eval.val_loss),
                    flat("oracle", or.eval.val_loss),
                ]),
                panel("test accuracy", "accuracy", vec![
                    ours(&|r| r.test_acc),
                    flat("unweighted", un.eval.test_acc),
                    flat("oracle", or.eval.test_acc),
                ]),
                panel("cleaning F1 (flagged = ψ < ½)", "F1", vec![ours(&|r| r.f1)]),
            ],
        });
        report.notes.push(format!(
            "The regularization (0.2‖W‖² against a mean loss) is strong enough that label noise costs little: unweighted training reaches {:.4} test accuracy, the oracle {:.4}. This problem measures optimization speed more than cleaning.",
            un.eval.test_acc, or.eval.test_acc
        ));
        report.notes.push(format!(
            "Newton-CG work in the run (references included): {} preconditioner refreshes, {} Newton steps, {} CG iterations, {} passes over X_trn. u step α = {alpha:.4e}.",
            counts.refreshes, counts.newton, counts.cg, counts.trn_passes
        ));
        if ctx.quick {
            report.notes.push("--quick: a 3,000 / 1,000 subset and 25 iterations; the claims are checked on it as on the full run".into());
        }
        report.summary = json!({
            "unweighted": {"val_loss": un.eval.val_loss, "test_acc": un.eval.test_acc, "seconds": un_s},
            "oracle": {"val_loss": or.eval.val_loss, "test_acc": or.eval.test_acc, "seconds": or_s},
            "ours": {"val_loss": last.0, "test_acc": last.1, "f1": last.2, "iterations": rows.len(), "seconds": total,
                     "target_iter": rows.get(target).map(|r| r.iter), "seconds_to_target": rows.get(target).map(|r| r.time),
                     "stationarity": stat, "stationarity_start": stat0, "ll_gap": gap, "g_star": gstar, "alpha": alpha},
            "kept_retrained": {"val_loss": kept.eval.val_loss, "test_acc": kept.eval.test_acc},
            "newton": counts,
            "trace": rows.iter().map(|r| json!([r.iter, r.time, r.val_loss, r.test_acc, r.f1])).collect::<Vec<_>>(),
        });
        report.wall_time_s = t0.elapsed().as_secs_f64();
        Ok(report)
    }
}
