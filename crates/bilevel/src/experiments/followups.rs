//! The PBGD follow-ups (method.md, section 4b): PBGD-Free's stall on the authors'
//! counterexample, detected by the flatness diagnostic, and ALT-PBGD's iteration count that does
//! not grow with γ where joint (Jacobi) PBGD's grows about linearly.

use super::{Claim, Context, CurveGroup, Experiment, Figure, Panel, Report, Table};
use crate::diagnostics::{
    FlatnessObserver, FlatnessRow, LeastNormResponses, reduced_gradient_norm,
};
use crate::error::Result;
use crate::problem::Problem;
use crate::problems::cleaning::{Cleaning, CleaningData, CleaningSettings};
use crate::problems::replearn::{Regime, RepLearning, RepSizes};
use crate::problems::{Counterexample, Quadratic};
use crate::run::{RunOptions, run};
use crate::solvers::{AltPbgd, InnerRule, Pbgd, PbgdFree, Solver, VBlock};
use crate::trace::Trace;
use rand::RngExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const SEED: u64 = 2025;
/// γ of the counterexample (the authors' runs used γ ∈ {10, 15, 16, 20}).
const CE_GAMMA: f64 = 10.0;
const CE_ITERS: usize = 3000;
const CE_RECORD: usize = 30;
/// γ values and tolerance of the reduced-smoothness study.
const GAMMAS: [f64; 3] = [10.0, 100.0, 1000.0];
const EPS: f64 = 1e-6;
/// Quick mode's tolerance (fewer Jacobi iterations; the slopes do not depend on it).
const EPS_QUICK: f64 = 1e-4;
const QUAD_DU: usize = 5;
const QUAD_DV: usize = 10;
const QUAD_MAX_ITER: usize = 300_000;

/// The `followups` experiment.
pub struct Followups;

type MakeSolver = fn(f64) -> Box<dyn Solver>;

/// A solver of the reduced-smoothness study with the record spacing its iteration counts
/// are read at (Jacobi PBGD needs 10³–10⁵ iterations: a count to within 10 is plenty).
type Timed = (&'static str, MakeSolver, usize);

fn ce_solvers() -> Vec<(&'static str, MakeSolver)> {
    vec![
        ("PBGD-Free (K = 1)", |g| Box::new(PbgdFree::new(g))),
        ("ALT-PBGD (gradient blocks, accuracy rule)", |g| {
            Box::new(AltPbgd::new(g).with_blocks(VBlock::Gradient, VBlock::Gradient))
        }),
        ("ALT-PBGD (exact responses)", |g| Box::new(AltPbgd::new(g))),
        ("PBGD Jacobi", |g| Box::new(Pbgd::jacobi(g))),
    ]
}

fn quad_solvers() -> Vec<Timed> {
    vec![
        (
            "ALT-PBGD (exact responses)",
            |g| Box::new(AltPbgd::new(g)),
            1,
        ),
        (
            "ALT-PBGD (gradient blocks, accuracy rule)",
            |g| {
                Box::new(
                    AltPbgd::new(g)
                        .with_blocks(VBlock::Gradient, VBlock::Gradient)
                        .with_inner(InnerRule::Accuracy {
                            rho: 0.1,
                            max_steps: 1000,
                        }),
                )
            },
            1,
        ),
        ("PBGD Jacobi", |g| Box::new(Pbgd::jacobi(g)), 10),
    ]
}

/// Median, min and max of finite values (NaN when none).
fn spread(x: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = x.iter().copied().filter(|a| a.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    (med, v[0], v[n - 1])
}

fn fmt_spread(x: &[f64], prec: usize) -> String {
    let (m, lo, hi) = spread(x);
    format!("{m:.prec$e} [{lo:.prec$e}, {hi:.prec$e}]")
}

/// Least-squares slope of ln y against ln x.
fn log_slope(x: &[f64], y: &[f64]) -> f64 {
    let lx: Vec<f64> = x.iter().map(|a| a.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|a| a.ln()).collect();
    let n = lx.len() as f64;
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx) * (a - mx)).sum();
    sxy / sxx
}

/// One counterexample run: end u, last flatness row, and the trace (with the observer's
/// columns).
struct CeRun {
    u_end: f64,
    last: FlatnessRow,
    trace: Trace,
}

fn ce_run(make: MakeSolver, u0: f64, v0: f64, ctx: &Context<'_>) -> Result<CeRun> {
    let p = Counterexample;
    let mut obs = FlatnessObserver::new(&p);
    let opts = RunOptions {
        max_iter: CE_ITERS,
        record_every: CE_RECORD,
        seed: SEED,
        interrupt: ctx.interrupt.clone(),
        ..RunOptions::default()
    };
    let mut s = make(CE_GAMMA);
    let out = run(&p, s.as_mut(), &[u0], &[v0], &opts, &mut [&mut obs])?;
    let last = *obs.last().expect("a run records its end point");
    Ok(CeRun {
        u_end: out.u[0],
        last,
        trace: out.trace,
    })
}

/// Iterations to ‖∇F_γ(u)‖ ≤ eps (NaN when not reached) and the ‖∇F_γ(u)‖ curve.
fn iterations_to_eps(
    p: &dyn Problem,
    make: MakeSolver,
    gamma: f64,
    u0: &[f64],
    v0: &[f64],
    record_every: usize,
    eps: f64,
) -> Result<(f64, Vec<(f64, f64)>)> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut obs = FlatnessObserver::new(p).stop_below(eps, flag.clone());
    obs.samples = 0;
    let mut s = make(gamma);
    let opts = RunOptions {
        max_iter: QUAD_MAX_ITER,
        record_every,
        seed: SEED,
        interrupt: Some(flag),
        keep_records: false,
        ..RunOptions::default()
    };
    run(p, s.as_mut(), u0, v0, &opts, &mut [&mut obs])?;
    // Curves thinned to at most ~200 points for the figure.
    let every = (obs.rows.len() / 200).max(1);
    let curve = obs
        .rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(_, r)| (r.iter as f64, r.grad_reduced))
        .collect();
    Ok((obs.reached.map_or(f64::NAN, |k| k as f64), curve))
}

impl Experiment for Followups {
    fn name(&self) -> &'static str {
        "followups"
    }
    fn title(&self) -> &'static str {
        "PBGD follow-ups: PBGD-Free stalls on the counterexample (flatness detects it); ALT-PBGD's iterations do not grow with γ"
    }
    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let mut claims = Vec::new();
        let mut tables = Vec::new();
        let mut figures = Vec::new();
        let mut traces = Vec::new();
        let mut notes = Vec::new();

        // --- Counterexample -------------------------------------------------------------
        let n_starts = if ctx.quick { 6 } else { 32 };
        let mut rng = crate::seeds::rng(SEED, crate::seeds::Stream::Init);
        let starts: Vec<(f64, f64)> = (0..n_starts)
            .map(|_| (rng.random_range(-6.5..=1.5), rng.random_range(-8.0..=1.5)))
            .collect();
        let solvers = ce_solvers();
        ctx.progress.add_total((solvers.len() * n_starts) as u64);
        ctx.progress.message("followups: counterexample");
        let mut ce: Vec<Vec<CeRun>> = Vec::new();
        for (name, make) in &solvers {
            let mut runs = Vec::new();
            for &(u0, v0) in &starts {
                if ctx.interrupted() {
                    break;
                }
                runs.push(ce_run(*make, u0, v0, ctx)?);
                ctx.progress.inc(1);
            }
            if let Some(r) = runs.first() {
                let stem = format!(
                    "followups-counterexample-{}",
                    name.split(' ').next().unwrap_or("solver").to_lowercase()
                );
                if !traces.iter().any(|(s, _): &(String, Trace)| *s == stem) {
                    traces.push((stem, r.trace.clone()));
                }
            }
            ce.push(runs);
        }
        let col = |runs: &[CeRun], f: &dyn Fn(&CeRun) -> f64| -> Vec<f64> {
            runs.iter().map(f).collect()
        };
        let mut rows = Vec::new();
        for ((name, _), runs) in solvers.iter().zip(&ce) {
            rows.push(vec![
                (*name).to_string(),
                fmt_spread(&col(runs, &|r| r.u_end), 3),
                fmt_spread(&col(runs, &|r| r.last.grad_reduced), 2),
                fmt_spread(&col(runs, &|r| r.last.dropped), 2),
                fmt_spread(&col(runs, &|r| r.last.alpha), 3),
                fmt_spread(&col(runs, &|r| r.last.delta), 2),
                fmt_spread(&col(runs, &|r| r.last.floor), 2),
            ]);
        }
        tables.push(Table {
            title: format!(
                "Counterexample f = 10v + u², g = (v − u + 1)², u ∈ [−8, 1.5], γ = {CE_GAMMA}: end points from {n_starts} starts (u0 ∈ [−6.5, 1.5], v0 ∈ [−8, 1.5]), {CE_ITERS} iterations; median [min, max]"
            ),
            header: vec![
                "solver".into(),
                "u at the end".into(),
                "‖∇F_γ(u)‖ (exact responses)".into(),
                "dropped term γ‖∇_u g(u,v_γ*) − ∇_u g(u,w*)‖".into(),
                "flatness α".into(),
                "flatness δ".into(),
                "floor (δ/max gap)^{2(α−1)/α}".into(),
            ],
            rows,
        });
        let free = &ce[0];
        let free_u = col(free, &|r| r.u_end);
        let free_g = col(free, &|r| r.last.grad_reduced);
        let free_floor = col(free, &|r| r.last.floor);
        let max_abs_u = free_u.iter().map(|u| u.abs()).fold(0.0, f64::max);
        let min_g = free_g.iter().copied().fold(f64::INFINITY, f64::min);
        let (floor_med, floor_lo, _) = spread(&free_floor);
        claims.push(Claim::new(
            format!(
                "PBGD-Free ends at u ≈ 0, a non-stationary point of F_γ (γ = {CE_GAMMA}), from every start; the flatness diagnostic reports it (seed {SEED}, {n_starts} starts)"
            ),
            format!(
                "max |u_end| = {max_abs_u:.1e}; min ‖∇F_γ(u_end)‖ = {min_g:.3}; flatness floor median {floor_med:.3} (min {floor_lo:.3})"
            ),
            "max |u_end| ≤ 1e-3, min ‖∇F_γ‖ ≥ 5 (exact value 10), floor ≥ 0.5 at every end point",
            free.len() == n_starts && max_abs_u <= 1e-3 && min_g >= 5.0 && floor_lo >= 0.5,
        ));
        for ((name, _), runs) in solvers.iter().zip(&ce).skip(1) {
            let us = col(runs, &|r| r.u_end);
            let gs = col(runs, &|r| r.last.grad_reduced);
            let worst_u = us.iter().map(|u| (u + 5.0).abs()).fold(0.0, f64::max);
            let worst_g = gs.iter().copied().fold(0.0, f64::max);
            claims.push(Claim::new(
                format!(
                    "{name} reaches the bilevel solution u = −5 of the counterexample from every start (seed {SEED}, {n_starts} starts)"
                ),
                format!("max |u_end + 5| = {worst_u:.1e}; max ‖∇F_γ(u_end)‖ = {worst_g:.1e}"),
                "max |u_end + 5| ≤ 1e-3 and max ‖∇F_γ‖ ≤ 1e-3 (the penalty bias moves F_γ's value, −25/γ, not its minimizer)",
                runs.len() == n_starts && worst_u <= 1e-3 && worst_g <= 1e-3,
            ));
        }
        // Drawn from the traces' observer columns.
        let groups = |column: &str| -> Vec<CurveGroup> {
            solvers
                .iter()
                .zip(&ce)
                .map(|((name, _), runs)| CurveGroup {
                    label: (*name).into(),
                    runs: runs.iter().filter_map(|r| r.trace.series(column)).collect(),
                })
                .collect()
        };
        figures.push(Figure {
            name: "followups-counterexample".into(),
            caption: format!(
                "Counterexample, γ = {CE_GAMMA}, {n_starts} starts: ‖∇F_γ(u)‖ with exact responses (left) and the flatness floor (δ/max gap)^{{2(α−1)/α}} of the fit between w*(u) and v, v_γ*(u) (right). PBGD-Free's ‖∇F_γ‖ settles at 10 (u = 0) with a floor near 1; ALT-PBGD and PBGD go to 0 (u = −5)."
            ),
            panels: vec![
                Panel::Curves {
                    title: "‖∇F_γ(u)‖, exact responses".into(),
                    x_label: "iteration".into(),
                    y_label: "‖∇F_γ(u)‖".into(),
                    log_y: true,
                    groups: groups("grad_reduced"),
                    markers: vec![],
                },
                Panel::Curves {
                    title: "flatness floor".into(),
                    x_label: "iteration".into(),
                    y_label: "(δ/max gap)^{2(α−1)/α}".into(),
                    log_y: false,
                    groups: groups("flatness_floor"),
                    markers: vec![],
                },
            ],
        });

        // --- Reduced smoothness on the quadratic family ---------------------------------
        let seeds: Vec<u64> = if ctx.quick {
            vec![1]
        } else {
            vec![1, 2, 3, 4, 5]
        };
        let eps = if ctx.quick { EPS_QUICK } else { EPS };
        let qsolvers = quad_solvers();
        ctx.progress.message("followups: reduced smoothness");
        ctx.progress
            .add_total((qsolvers.len() * seeds.len() * GAMMAS.len()) as u64);
        // iters[solver][seed][gamma]
        let mut iters = vec![vec![vec![f64::NAN; GAMMAS.len()]; seeds.len()]; qsolvers.len()];
        let mut curves: Vec<Vec<Vec<(f64, f64)>>> = vec![vec![]; qsolvers.len() * GAMMAS.len()];
        for (si, &seed) in seeds.iter().enumerate() {
            let q = Quadratic::generate(seed, QUAD_DU, QUAD_DV)?;
            let u0 = vec![0.0; QUAD_DU];
            let v0 = vec![0.0; QUAD_DV];
            for (k, (_, make, every)) in qsolvers.iter().enumerate() {
                for (gi, &gamma) in GAMMAS.iter().enumerate() {
                    if ctx.interrupted() {
                        break;
                    }
                    let (n, curve) = iterations_to_eps(&q, *make, gamma, &u0, &v0, *every, eps)?;
                    iters[k][si][gi] = n;
                    if si == 0 {
                        curves[k * GAMMAS.len() + gi].push(curve);
                    }
                    ctx.progress.inc(1);
                }
            }
        }
        let slopes: Vec<Vec<f64>> = iters
            .iter()
            .map(|per_seed| {
                per_seed
                    .iter()
                    .map(|it| {
                        if it.iter().all(|x| x.is_finite() && *x > 0.0) {
                            log_slope(&GAMMAS, it)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
            .collect();
        let mut rows = Vec::new();
        for (k, (name, _, _)) in qsolvers.iter().enumerate() {
            let mut row = vec![(*name).to_string()];
            for gi in 0..GAMMAS.len() {
                let col: Vec<f64> = iters[k].iter().map(|s| s[gi]).collect();
                let (m, lo, hi) = spread(&col);
                row.push(format!("{m:.0} [{lo:.0}, {hi:.0}]"));
            }
            let (m, lo, hi) = spread(&slopes[k]);
            row.push(format!("{m:.3} [{lo:.3}, {hi:.3}]"));
            rows.push(row);
        }
        let mut header = vec!["solver".to_string()];
        header.extend(GAMMAS.iter().map(|g| format!("iterations, γ = {g}")));
        header.push("slope of ln(iterations) vs ln(γ)".into());
        tables.push(Table {
            title: format!(
                "Quadratic family (du = {QUAD_DU}, dv = {QUAD_DV}), seeds {seeds:?}, start (0, 0): outer iterations to ‖∇F_γ(u)‖ ≤ {eps:e} (exact responses, checked every iteration for ALT-PBGD, every 10 for Jacobi PBGD); median [min, max] over seeds"
            ),
            header,
            rows,
        });
        let alt = spread(&slopes[0]);
        let alt_grad = spread(&slopes[1]);
        let pbgd = spread(&slopes[2]);
        let all_reached = iters.iter().flatten().flatten().all(|x| x.is_finite());
        claims.push(Claim::new(
            format!(
                "ALT-PBGD's outer iterations to ‖∇F_γ‖ ≤ {eps:e} grow far more slowly with γ ∈ {{10, 100, 1000}} than Jacobi PBGD's (quadratic family, seeds {seeds:?})"
            ),
            format!(
                "slope of ln(iterations) vs ln(γ), median [min, max]: ALT-PBGD exact {:.3} [{:.3}, {:.3}], ALT-PBGD gradient blocks {:.3} [{:.3}, {:.3}], Jacobi PBGD {:.3} [{:.3}, {:.3}]",
                alt.0, alt.1, alt.2, alt_grad.0, alt_grad.1, alt_grad.2, pbgd.0, pbgd.1, pbgd.2
            ),
            "every run reaches ε; both ALT-PBGD slopes ≤ 0.25 on every seed, Jacobi PBGD's ≥ 0.75 on every seed",
            all_reached && alt.2 <= 0.25 && alt_grad.2 <= 0.25 && pbgd.1 >= 0.75,
        ));
        let mut groups = Vec::new();
        for (k, (name, _, _)) in qsolvers.iter().enumerate() {
            groups.push(CurveGroup {
                label: (*name).into(),
                runs: iters[k]
                    .iter()
                    .map(|it| {
                        GAMMAS
                            .iter()
                            .zip(it)
                            .map(|(g, n)| (g.log10(), *n))
                            .collect()
                    })
                    .collect(),
            });
        }
        let mut conv = Vec::new();
        for (k, (name, _, _)) in qsolvers.iter().enumerate() {
            for (gi, g) in GAMMAS.iter().enumerate() {
                conv.push(CurveGroup {
                    label: format!("{name}, γ = {g}"),
                    runs: curves[k * GAMMAS.len() + gi].clone(),
                });
            }
        }
        figures.push(Figure {
            name: "followups-reduced-smoothness".into(),
            caption: format!(
                "Quadratic family: outer iterations to ‖∇F_γ(u)‖ ≤ {eps:e} against γ (left; one line per seed, median and band), and ‖∇F_γ(u)‖ along the runs of seed {} (right).",
                seeds[0]
            ),
            panels: vec![
                Panel::Curves {
                    title: "iterations to ε against γ".into(),
                    x_label: "log10 γ".into(),
                    y_label: "iterations".into(),
                    log_y: true,
                    groups,
                    markers: vec![],
                },
                Panel::Curves {
                    title: format!("‖∇F_γ(u)‖ along the runs (seed {})", seeds[0]),
                    x_label: "iteration".into(),
                    y_label: "‖∇F_γ(u)‖".into(),
                    log_y: true,
                    groups: conv,
                    markers: vec![],
                },
            ],
        });

        notes.push("The counterexample takes v ∈ R (the library's lower-level steps are unprojected); the authors' box on v is inactive for u ∈ [−7 + 5/γ, 1.5], which holds the starts and both end points (problems::counterexample).".into());
        notes.push("‖∇F_γ(u)‖ is measured with the exact responses w*(u) and v_γ*(u) by the flatness observer, independently of the solver; on the counterexample it is the gradient mapping ‖u − Proj(u − ∇F_γ)‖ (u stays inside the box, so it equals |2u + 10|).".into());
        notes.push("Flatness fit: least mean slack envelope c r^α + δ over samples on the segments from w*(u) to v and to v_γ*(u) (16 points each), α ∈ (1, 1.5]; the floor (δ/max gap)^{2(α−1)/α} is the PBGD-Free theorem's stationarity term made unit-free. A gap that grows linearly (f = 10v) forces α → 1 and a floor near 1: the bound guarantees nothing.".into());
        // --- The applications --------------------------------------------------------
        let mut extra_summary = serde_json::Map::new();
        let mut extra_settings = serde_json::Map::new();
        let part = applications_many_starts(ctx)?;
        claims.extend(part.claims);
        tables.extend(part.tables);
        figures.extend(part.figures);
        notes.extend(part.notes);
        extra_summary.extend(part.summary);
        extra_settings.extend(part.settings);

        let mut summary = json!({
            "counterexample": solvers.iter().zip(&ce).map(|((name, _), runs)| json!({
                "solver": name,
                "u_end": col(runs, &|r| r.u_end),
                "grad_reduced_end": col(runs, &|r| r.last.grad_reduced),
                "dropped_end": col(runs, &|r| r.last.dropped),
                "flatness_alpha_end": col(runs, &|r| r.last.alpha),
                "flatness_delta_end": col(runs, &|r| r.last.delta),
                "flatness_floor_end": col(runs, &|r| r.last.floor),
            })).collect::<Vec<_>>(),
            "reduced_smoothness": qsolvers.iter().enumerate().map(|(k, (name, _, _))| json!({
                "solver": name,
                "iterations_per_seed_per_gamma": iters[k],
                "slopes": slopes[k],
            })).collect::<Vec<_>>(),
        });
        if let Some(m) = summary.as_object_mut() {
            m.extend(extra_summary);
        }
        let mut settings = json!({
                "counterexample": {"gamma": CE_GAMMA, "starts": n_starts, "seed": SEED,
                    "u0_range": [-6.5, 1.5], "v0_range": [-8.0, 1.5], "max_iter": CE_ITERS,
                    "record_every": CE_RECORD},
                "reduced_smoothness": {"problem": format!("quadratic(du={QUAD_DU}, dv={QUAD_DV})"),
                    "seeds": seeds, "gammas": GAMMAS, "eps": eps, "start": "u = 0, v = 0",
                    "max_iter": QUAD_MAX_ITER},
                "solvers": {
                    "PBGD-Free": "K = 1, beta = 1/(l_f/gamma + l_g,vv), eta = 0.5/l_f",
                    "ALT-PBGD": "eta = 0.5/l_F (power-iteration estimate of F_gamma's smoothness at the start; floored at l_f with gradient blocks); gradient blocks: beta_v = 1/(l_f/gamma + l_g,vv), beta_w = 1/l_g,vv, accuracy rule rho = 0.1",
                    "PBGD Jacobi": "alpha = 0.5/(l_f + gamma l_g), exact w",
                },
        });
        if let Some(m) = settings.as_object_mut() {
            m.extend(extra_settings);
        }
        Ok(Report {
            name: self.name().into(),
            title: self.title().into(),
            settings,
            claims,
            tables,
            figures,
            traces,
            summary,
            notes,
            wall_time_s: t0.elapsed().as_secs_f64(),
            partial: ctx.interrupted(),
            skipped: Vec::new(),
        })
    }
}

// --- The applications (representation learning, hyper-cleaning) ------------------------------

/// Data seed of the representation-learning instance: the `study-replearn` instance.
const REP_SEED: u64 = 6100;
/// Data seed of the paper-regime hyper-cleaning instance.
const CLEAN_SEED: u64 = 2026;

/// The study-replearn instance: certified-global regime, N = N' = 4, m = 10, h = 32, n = 3.
fn rep_instance() -> Result<RepLearning> {
    let sizes = RepSizes {
        n_trn: 4,
        n_val: 4,
        m: 10,
        h: 32,
        n: 3,
        ..RepSizes::quick_for(Regime::CertifiedGlobal)
    };
    RepLearning::generate(Regime::CertifiedGlobal, &sizes, REP_SEED)
}

/// What one part of the experiment adds to the report.
#[derive(Default)]
struct Part {
    claims: Vec<Claim>,
    tables: Vec<Table>,
    figures: Vec<Figure>,
    notes: Vec<String>,
    summary: serde_json::Map<String, serde_json::Value>,
    settings: serde_json::Map<String, serde_json::Value>,
}

/// One solver's many-start outcome on an application, with the flatness fit at the end point.
struct StartsOutcome {
    label: String,
    success: Vec<bool>,
    /// Success measure per start (relative gap or distance).
    measure: Vec<f64>,
    grad_reduced: Vec<f64>,
    alpha: Vec<f64>,
    delta: Vec<f64>,
    floor: Vec<f64>,
    iterations: Vec<f64>,
    /// The first failed run's error, if any.
    error: Option<String>,
}

/// Maps an end point (u, v) and its last record to (measure, success).
type Judge<'a> = dyn Fn(&[f64], &[f64], &crate::trace::Record) -> (f64, bool) + 'a;

/// Runs `make` from every start on `p` with the flatness observer on `obs_p`; `judge` maps the
/// end point and its last record to (measure, success).
#[allow(clippy::too_many_arguments)]
fn many_starts_with_flatness(
    ctx: &Context<'_>,
    label: &str,
    p: &dyn Problem,
    obs_p: &dyn Problem,
    make: &dyn Fn() -> Box<dyn Solver>,
    starts: &[(Vec<f64>, Vec<f64>)],
    opts: &RunOptions,
    judge: &Judge<'_>,
) -> Result<StartsOutcome> {
    let mut o = StartsOutcome {
        label: label.into(),
        success: vec![],
        measure: vec![],
        grad_reduced: vec![],
        alpha: vec![],
        delta: vec![],
        floor: vec![],
        iterations: vec![],
        error: None,
    };
    for (u0, v0) in starts {
        if ctx.interrupted() {
            break;
        }
        let mut obs = FlatnessObserver::new(obs_p);
        let mut s = make();
        let res = run(p, s.as_mut(), u0, v0, opts, &mut [&mut obs]);
        ctx.progress.inc(1);
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                o.error.get_or_insert_with(|| e.to_string());
                for x in [
                    &mut o.measure,
                    &mut o.grad_reduced,
                    &mut o.alpha,
                    &mut o.delta,
                    &mut o.floor,
                    &mut o.iterations,
                ] {
                    x.push(f64::NAN);
                }
                o.success.push(false);
                continue;
            }
        };
        let (m, ok) = judge(&out.u, &out.v, out.last());
        let last = *obs.last().expect("a run records its end point");
        o.measure.push(m);
        o.success.push(ok);
        o.grad_reduced.push(last.grad_reduced);
        o.alpha.push(last.alpha);
        o.delta.push(last.delta);
        o.floor.push(last.floor);
        o.iterations.push(out.iterations as f64);
    }
    Ok(o)
}

fn starts_rows(outs: &[StartsOutcome]) -> Vec<Vec<String>> {
    outs.iter()
        .map(|o| {
            let n = o.success.len();
            let k = o.success.iter().filter(|&&s| s).count();
            vec![
                o.label.clone(),
                format!("{k}/{n}"),
                fmt_spread(&o.measure, 1),
                fmt_spread(&o.grad_reduced, 1),
                fmt_spread(&o.alpha, 3),
                fmt_spread(&o.delta, 1),
                fmt_spread(&o.floor, 2),
                fmt_spread(&o.iterations, 2),
            ]
        })
        .collect()
}

fn starts_header(measure: &str) -> Vec<String> {
    [
        "solver",
        "reached the certified optimum",
        measure,
        "‖∇F_γ(u_end)‖",
        "flatness α",
        "flatness δ",
        "floor (δ/max gap)^{2(α−1)/α}",
        "iterations",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn starts_summary(outs: &[StartsOutcome]) -> serde_json::Value {
    json!(outs.iter().map(|o| json!({
        "solver": o.label, "success": o.success, "measure": o.measure,
        "grad_reduced_end": o.grad_reduced, "flatness_alpha_end": o.alpha,
        "flatness_delta_end": o.delta, "flatness_floor_end": o.floor, "iterations": o.iterations,
    })).collect::<Vec<_>>())
}

/// Global optimality from many starts, with the fitted flatness constants at the end point:
/// representation learning (certified-global regime, the study-replearn instance and starts)
/// and hyper-cleaning in the paper's regime (certified f* = 0).
fn applications_many_starts(ctx: &Context<'_>) -> Result<Part> {
    let mut part = Part::default();
    let k = if ctx.quick { 3 } else { 8 };
    let gamma = 10.0;

    // Representation learning.
    let p = rep_instance()?;
    let obs_p = LeastNormResponses(&p);
    let starts: Vec<(Vec<f64>, Vec<f64>)> = (0..k)
        .map(|i| super::study_apps::gaussian_backbone(&p, REP_SEED + 1 + i as u64))
        .collect::<Result<_>>()?;
    // F_γ(u) = min over products Z = W1 W2 of L_γ whenever W1 has full row rank (h ≥ m): the
    // reduced penalty is constant on full-rank backbones, so ∇F_γ = 0 at every start.
    let flat_f: f64 = starts
        .iter()
        .map(|(u0, _)| {
            // Scale: the upper level's own u gradient at the lower-level solution (the starts'
            // heads are 0, where ∇_u L_γ(u0, v0) vanishes too).
            let mut w = vec![0.0; p.dim_v()];
            let mut gu = vec![0.0; p.dim_u()];
            p.ll_solution(u0, &mut w);
            p.f(u0, &w, Some(&mut gu), None);
            reduced_gradient_norm(&obs_p, u0, gamma) / crate::linalg::norm(&gu).max(1e-300)
        })
        .fold(0.0, f64::max);
    part.notes.push(format!("Reduced smoothness on representation learning is not measured: with h ≥ m every full-rank backbone W1 reaches every product Z = W1 W2, so F_γ(u) = min_v L_γ(u, v) is constant on full-rank W1 and ∇F_γ = 0 there (at the {k} starts of the many-start study, ‖∇F_γ(u0)‖ with least-norm responses is at most {flat_f:.1e} times ‖∇_u f(u0, w*(u0))‖). Iterations to ‖∇F_γ‖ ≤ ε are then 0 for every solver and γ, and ALT-PBGD's power-iteration estimate of ℓ_F is near 0 (a probe found c/estimate from 2e-4 to 5e3 across γ, which diverged): with gradient blocks its step η = c/max(estimate, ℓ_f) is then c/ℓ_f, the floor. The γ-independence of ALT-PBGD cannot show on this problem; its progress is all in the v block."));
    part.summary.insert(
        "replearn_reduced_gradient_at_starts_relative".into(),
        json!(flat_f),
    );
    let (f_scale, _) = p.target_scales();
    let max_iter = 10_000;
    let opts = RunOptions {
        max_iter,
        record_every: 500,
        dist_tol: Some(1e-9),
        target: Some(1e-20 * f_scale),
        seed: REP_SEED,
        monitor_inner_steps: 0,
        interrupt: ctx.interrupt.clone(),
        ..RunOptions::default()
    };
    let tol = 1e-6;
    let judge = |u: &[f64], v: &[f64], _: &crate::trace::Record| {
        let d = p.penalty_optimum_distance(u, v, gamma).unwrap_or(f64::NAN);
        (d, d <= tol)
    };
    type Make = (&'static str, Box<dyn Fn() -> Box<dyn Solver>>);
    let rep_solvers: Vec<Make> = vec![
        (
            "ALT-PBGD (gradient blocks, accuracy rule)",
            Box::new(move || {
                Box::new(AltPbgd::new(gamma).with_blocks(VBlock::Gradient, VBlock::Gradient))
            }),
        ),
        (
            "PBGD-Free (K = 1)",
            Box::new(move || Box::new(PbgdFree::new(gamma))),
        ),
        (
            "PBGD Jacobi (reference)",
            Box::new(move || Box::new(Pbgd::jacobi(gamma))),
        ),
    ];
    ctx.progress
        .message("followups: many starts on representation learning");
    ctx.progress.add_total((rep_solvers.len() * k) as u64);
    let mut rep = Vec::new();
    for (label, make) in &rep_solvers {
        rep.push(many_starts_with_flatness(
            ctx,
            label,
            &p,
            &obs_p,
            make.as_ref(),
            &starts,
            &opts,
            &judge,
        )?);
    }
    part.tables.push(Table {
        title: format!(
            "Representation learning ({}), certified-global regime, γ = {gamma}: {k} Gaussian-backbone starts (the study-replearn starts, seeds {}..{}), at most {max_iter} iterations; success: relative distance of the product to the penalty optimum ≤ {tol:e}; flatness fit at the end point (least-norm responses); median [min, max]",
            p.name(),
            REP_SEED + 1,
            REP_SEED + k as u64
        ),
        header: starts_header("relative distance to the optimum"),
        rows: starts_rows(&rep),
    });
    for o in &rep {
        let n = o.success.iter().filter(|&&s| s).count();
        if !o.label.ends_with("(reference)") {
            part.claims.push(Claim::new(
                format!("{} reaches the certified global optimum of representation learning from every one of {k} starts (γ = {gamma})", o.label),
                format!("{n}/{}", o.success.len()),
                format!("{k}/{k}"),
                n == k,
            ));
        }
        if let Some(e) = &o.error {
            let failed = o.measure.iter().filter(|x| !x.is_finite()).count();
            part.notes.push(format!(
                "Representation learning, {}: {failed} of {k} runs failed; the first with: {e}",
                o.label
            ));
        }
    }
    part.summary
        .insert("replearn_many_starts".into(), starts_summary(&rep));

    // Hyper-cleaning, paper's regime.
    let (n_trn, n_val, m, classes) = if ctx.quick {
        (20, 10, 40, 4)
    } else {
        (40, 20, 80, 5)
    };
    let data = CleaningData::paper_regime(CLEAN_SEED, n_trn, n_val, m, classes, 0.5)?;
    let c = Cleaning::new(data, CleaningSettings::default())?;
    let starts: Vec<(Vec<f64>, Vec<f64>)> =
        crate::study::uniform_starts(CLEAN_SEED, k, c.dim_u(), 0, -2.0, 2.0)
            .into_iter()
            .map(|(u, _)| (u, vec![0.0; c.dim_v()]))
            .collect();
    let f0 = c.f(&starts[0].0, &starts[0].1, None, None).max(1e-300);
    let g0 = c.g(&starts[0].0, &starts[0].1, None, None).max(1e-300);
    let max_iter = 5000;
    let opts = RunOptions {
        max_iter,
        record_every: 500,
        // Stop well inside the success tolerance: the accuracy rule of the gradient blocks
        // tightens with ‖∇F_γ‖, so running on to rounding level costs most of the time.
        target: Some(1e-11 * f0),
        seed: CLEAN_SEED,
        interrupt: ctx.interrupt.clone(),
        ..RunOptions::default()
    };
    let ctol = 1e-8;
    let judge = |_: &[f64], _: &[f64], r: &crate::trace::Record| {
        let gap = r.f.max(0.0) / f0 + r.ll_gap.max(0.0) / g0;
        (gap, gap <= ctol)
    };
    let clean_solvers: Vec<Make> = vec![
        (
            "ALT-PBGD (exact responses)",
            Box::new(move || Box::new(AltPbgd::new(gamma))),
        ),
        (
            "ALT-PBGD (gradient blocks, accuracy rule)",
            Box::new(move || {
                Box::new(AltPbgd::new(gamma).with_blocks(VBlock::Gradient, VBlock::Gradient))
            }),
        ),
        (
            "PBGD-Free (K = 1)",
            Box::new(move || Box::new(PbgdFree::new(gamma))),
        ),
        (
            "PBGD Gauss–Seidel (reference)",
            Box::new(move || Box::new(Pbgd::gauss_seidel(gamma))),
        ),
    ];
    ctx.progress
        .message("followups: many starts on hyper-cleaning");
    ctx.progress.add_total((clean_solvers.len() * k) as u64);
    let mut clean = Vec::new();
    for (label, make) in &clean_solvers {
        clean.push(many_starts_with_flatness(
            ctx,
            label,
            &c,
            &c,
            make.as_ref(),
            &starts,
            &opts,
            &judge,
        )?);
    }
    part.tables.push(Table {
        title: format!(
            "Hyper-cleaning, paper's regime (N = {n_trn}, N' = {n_val}, m = {m}, {classes} classes, half the labels corrupted, λ = 0, data seed {CLEAN_SEED}), γ = {gamma}: {k} starts u uniform in [−2, 2], W = 0, at most {max_iter} iterations; success: f/f(start) + (g − g*)/g(start) ≤ {ctol:e} (f* = 0 certified); flatness fit at the end point; median [min, max]"
        ),
        header: starts_header("f/f0 + (g − g*)/g0 at the end"),
        rows: starts_rows(&clean),
    });
    for o in &clean {
        let n = o.success.iter().filter(|&&s| s).count();
        if o.label.starts_with("ALT") {
            part.claims.push(Claim::new(
                format!("{} reaches the certified global optimum of hyper-cleaning (paper's regime) from every one of {k} starts (γ = {gamma})", o.label),
                format!("{n}/{}", o.success.len()),
                format!("{k}/{k}"),
                n == k,
            ));
        }
    }
    part.summary
        .insert("cleaning_many_starts".into(), starts_summary(&clean));
    part.settings.insert(
        "many_starts".into(),
        json!({"starts": k, "gamma": gamma,
               "replearn": {"problem": p.name(), "data_seed": REP_SEED, "start_seeds": format!("{}..{}", REP_SEED + 1, REP_SEED + k as u64), "max_iter": 10_000, "success_tolerance": tol},
               "cleaning": {"problem": c.name(), "data_seed": CLEAN_SEED, "start": "u uniform in [-2, 2] (Init stream of the data seed), W = 0", "max_iter": max_iter, "success_tolerance": ctol}}),
    );
    part.notes.push("PBGD-Free on hyper-cleaning: the upper level f(u, W) is the validation loss of the model W alone, so ∇_u f = 0 and PBGD-Free never moves the sample weights u; in the paper's regime every positive weighting is optimal (f* = 0 for all u), so its success there is by the regime, not by the method.".into());
    Ok(part)
}
