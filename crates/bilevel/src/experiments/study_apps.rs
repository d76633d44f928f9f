//! Many-start studies on the two applications (issue 6): representation learning in the
//! certified-global regime (f* = 0) and synthetic hyper-cleaning (Gaussian clusters, λ > 0,
//! classified against the best value found and the oracle). Every solver of the project runs
//! from the same K seeded starts; per solver the success rate, the final-gap quantiles and the
//! wall time are reported.

use super::study::Factory;
use super::{Claim, Context, Experiment, Figure, Panel, Report, Table, quantiles};
use crate::error::Result;
use crate::problem::{Level, Problem, hvp_by_differences};
use crate::problems::cleaning::{Cleaning, CleaningData, CleaningSettings, ClusterConfig};
use crate::problems::replearn::{Regime, RepLearning, RepSizes};
use crate::run::RunOptions;
use crate::solvers::{
    Aid, AltPbgd, Bome, F2sa, Itd, LinearSolve, Pbgd, PbgdFree, Solver, StepRule, Update,
};
use crate::study::{Start, StartResult, many_starts, uniform_starts};
use crate::trace::Status;
use serde_json::json;
use std::time::Instant;

/// Master seed of the representation-learning study (instance and starts).
const SEED_REP: u64 = 6100;
/// Master seed of the cleaning study (data and starts).
const SEED_CLEAN: u64 = 6200;

/// One solver's outcome over all starts.
struct SolverStudy {
    label: String,
    results: Vec<StartResult>,
    /// Relative final gap per start (NaN when the run diverged).
    gaps: Vec<f64>,
    /// Reached the global optimum within the stated tolerance.
    success: Vec<bool>,
    /// Wall time of the whole batch (starts run in parallel).
    wall_s: f64,
}

impl SolverStudy {
    fn rate(&self) -> f64 {
        self.success.iter().filter(|&&s| s).count() as f64 / self.success.len().max(1) as f64
    }
    fn diverged(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.status, Status::Diverged(_)))
            .count()
    }
}

/// Runs every solver from every start; `classify` maps a result to (relative gap, success).
fn run_all(
    ctx: &Context<'_>,
    name: &str,
    problem: &dyn Problem,
    factories: &[Factory],
    starts: &[Start],
    opts: &RunOptions,
    classify: &dyn Fn(&StartResult) -> (f64, bool),
) -> Vec<SolverStudy> {
    let mut out = Vec::new();
    for (label, make) in factories {
        ctx.progress.message(&format!("{name}: {label}"));
        let t = Instant::now();
        let results = many_starts(problem, make.as_ref(), starts, opts, ctx.progress);
        let wall_s = t.elapsed().as_secs_f64();
        let (gaps, success) = results.iter().map(classify).unzip();
        out.push(SolverStudy {
            label: label.clone(),
            results,
            gaps,
            success,
            wall_s,
        });
        if ctx.interrupted() {
            break;
        }
    }
    out
}

/// The nine solvers of the application studies. `u_ratio` is the u-block step ratio of F²SA
/// and BOME (ξ_u/ξ_v), `hyper` the fixed step of AID and ITD (None: α = 0.5/ℓ_f).
fn factories(gamma: f64, ramp: usize, u_ratio: f64, hyper: Option<f64>) -> Vec<Factory> {
    let hstep = move || hyper.map_or(StepRule::default(), StepRule::Fixed);
    vec![
        (
            format!("PBGD-Jacobi γ={gamma}"),
            Box::new(move || Box::new(Pbgd::new(Update::Jacobi, gamma)) as Box<dyn Solver>),
        ),
        (
            format!("PBGD-GS γ={gamma}"),
            Box::new(move || Box::new(Pbgd::new(Update::GaussSeidel, gamma)) as Box<dyn Solver>),
        ),
        (
            format!("V-PBGD γ 1→{gamma}"),
            Box::new(move || Box::new(Pbgd::v_pbgd(1.0, gamma, ramp, None)) as Box<dyn Solver>),
        ),
        (
            format!("F²SA λ {}→{gamma}", gamma / 10.0),
            Box::new(move || {
                Box::new(F2sa::new(gamma / 10.0, gamma, ramp).with_u_step_ratio(u_ratio))
                    as Box<dyn Solver>
            }),
        ),
        (
            "BOME η=0.5 T=5".into(),
            Box::new(move || {
                Box::new(Bome::new(0.5, 5, gamma).with_u_step_ratio(u_ratio)) as Box<dyn Solver>
            }),
        ),
        (
            "AID-CG T=3 K=5".into(),
            Box::new(move || {
                Box::new(
                    Aid::new(
                        3,
                        LinearSolve::Cg {
                            iters: 5,
                            tol: 1e-10,
                        },
                    )
                    .with_step(hstep()),
                ) as Box<dyn Solver>
            }),
        ),
        (
            "ITD T=5".into(),
            Box::new(move || Box::new(Itd::new(5).with_step(hstep())) as Box<dyn Solver>),
        ),
        // The follow-ups with their defaults (exact responses where the problem has them).
        (
            format!("ALT-PBGD γ={gamma}"),
            Box::new(move || Box::new(AltPbgd::new(gamma)) as Box<dyn Solver>),
        ),
        (
            format!("PBGD-Free K=1 γ={gamma}"),
            Box::new(move || Box::new(PbgdFree::new(gamma)) as Box<dyn Solver>),
        ),
    ]
}

/// "10⁻⁶" for a decade exponent.
fn decade(e: i32) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits: String = e
        .unsigned_abs()
        .to_string()
        .chars()
        .map(|c| SUP[c.to_digit(10).unwrap_or(0) as usize])
        .collect();
    format!("10{}{digits}", if e < 0 { "⁻" } else { "" })
}

/// Histogram bins of log10(gap) shared by all solvers: edges every `step` decades from `lo`
/// to `hi`, with an underflow bin (gaps below 10^lo, including 0) and a bin for diverged runs
/// when there are any.
fn histogram(gaps: &[f64], lo: i32, hi: i32, step: i32, with_diverged: bool) -> Vec<(String, f64)> {
    let mut bins: Vec<(String, f64)> = vec![(format!("< {}", decade(lo)), 0.0)];
    let mut e = lo;
    while e < hi {
        bins.push((format!("{} – {}", decade(e), decade(e + step)), 0.0));
        e += step;
    }
    bins.push((format!("≥ {}", decade(hi)), 0.0));
    let nb = bins.len();
    if with_diverged {
        bins.push(("diverged".into(), 0.0));
    }
    for &g in gaps {
        let k = if !g.is_finite() {
            if with_diverged { nb } else { nb - 1 }
        } else if g < 10f64.powi(lo) {
            0
        } else if g >= 10f64.powi(hi) {
            nb - 1
        } else {
            1 + ((g.log10() - lo as f64) / step as f64).floor() as usize
        };
        let last = bins.len() - 1;
        bins[k.min(last)].1 += 1.0;
    }
    bins
}

/// Table rows, figures and summary shared by both studies.
struct Parts {
    /// One note per solver with diverged runs (count and the first reason).
    notes: Vec<String>,
    table: Table,
    figures: Vec<Figure>,
    summary: serde_json::Map<String, serde_json::Value>,
}

/// Builds the table (one row per solver; `extra` adds columns), the success-rate bar figure
/// (with `extra_bars` as a second panel) and the final-gap histogram figure.
#[allow(clippy::too_many_arguments)]
fn parts(
    name: &str,
    bar_title: &str,
    outs: &[SolverStudy],
    k: usize,
    success_def: &str,
    gap_def: &str,
    extra: &[(String, Vec<String>)],
    extra_bars: Option<Panel>,
) -> Parts {
    let mut header: Vec<String> = [
        "solver",
        "success",
        "final gap: median [10%, 90%]",
        "diverged",
        "median iterations",
        "wall s per run (median)",
        "wall s, all starts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(extra.iter().map(|e| e.0.clone()));
    let mut rows = Vec::new();
    let mut summary = serde_json::Map::new();
    for (i, o) in outs.iter().enumerate() {
        let (med, q10, q90) = quantiles(&o.gaps).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        let iters: Vec<f64> = o.results.iter().map(|r| r.iterations as f64).collect();
        let times: Vec<f64> = o.results.iter().map(|r| r.last.time_s).collect();
        let it_med = quantiles(&iters).map_or(f64::NAN, |q| q.0);
        let t_med = quantiles(&times).map_or(f64::NAN, |q| q.0);
        let mut row = vec![
            o.label.clone(),
            format!("{:.0}%", 100.0 * o.rate()),
            format!("{med:.1e} [{q10:.1e}, {q90:.1e}]"),
            format!("{}", o.diverged()),
            format!("{it_med:.0}"),
            format!("{t_med:.3}"),
            format!("{:.2}", o.wall_s),
        ];
        row.extend(
            extra
                .iter()
                .map(|e| e.1.get(i).cloned().unwrap_or_default()),
        );
        rows.push(row);
        summary.insert(
            o.label.clone(),
            json!({"success": o.rate(), "gap_median": med, "gap_q10": q10, "gap_q90": q90,
                   "diverged": o.diverged(), "iters_median": it_med, "run_wall_s_median": t_med,
                   "batch_wall_s": o.wall_s, "gaps": o.gaps}),
        );
    }
    // Shared histogram range: whole decades around the finite gaps, at most ~8 bins.
    let logs: Vec<f64> = outs
        .iter()
        .flat_map(|o| o.gaps.iter())
        .filter(|g| g.is_finite() && **g > 0.0)
        .map(|g| g.log10())
        .collect();
    let lo = logs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (
            lo.floor() as i32,
            (hi.floor() as i32 + 1).max(lo.floor() as i32 + 1),
        )
    } else {
        (-12, 0)
    };
    let step = ((hi - lo) as f64 / 7.0).ceil().max(1.0) as i32;
    let hi = lo + step * ((hi - lo + step - 1) / step);
    let any_div = outs.iter().any(|o| o.gaps.iter().any(|g| !g.is_finite()));
    let mut bar_panels = vec![Panel::Bars {
        title: bar_title.into(),
        y_label: format!("fraction of {k} starts"),
        bars: outs.iter().map(|o| (o.label.clone(), o.rate())).collect(),
    }];
    bar_panels.extend(extra_bars);
    let figures = vec![
        Figure {
            name: name.into(),
            caption: format!(
                "Fraction of {k} seeded starts from which each solver reaches the global optimum ({success_def})."
            ),
            panels: bar_panels,
        },
        Figure {
            name: format!("{name}-gaps"),
            caption: format!(
                "Histogram of the final gap over the {k} starts, one panel per solver (same bins in every panel; {gap_def}). Bars further down mean larger gaps."
            ),
            panels: outs
                .iter()
                .map(|o| Panel::Bars {
                    title: format!("{}: final gap", o.label),
                    y_label: "number of starts".into(),
                    bars: histogram(&o.gaps, lo, hi, step, any_div),
                })
                .collect(),
        },
    ];
    let notes = outs
        .iter()
        .filter_map(|o| {
            let d = o.results.iter().find_map(|r| match &r.status {
                Status::Diverged(why) => Some((r.iterations, why.clone())),
                _ => None,
            })?;
            Some(format!(
                "{}: {} of {k} runs diverged; the first at iteration {}: {}.",
                o.label,
                o.diverged(),
                d.0,
                d.1
            ))
        })
        .collect();
    Parts {
        notes,
        table: Table {
            title: format!(
                "{k} starts per solver: success ({success_def}), final gap ({gap_def}), diverged runs, iterations, wall time (starts run in parallel on the machine's cores; measured, asserted only as the claims above)"
            ),
            header,
            rows,
        },
        figures,
        summary,
    }
}

/// The claim that the problem's exact Hessian-vector products (`what`) agree with central
/// differences of gradients: largest relative error over both levels, the first three starts
/// and random directions from `seed`.
fn hvp_claim(p: &dyn Problem, what: &str, starts: &[Start], seed: u64) -> Claim {
    let err = hvp_error(p, &starts[..3.min(starts.len())], seed);
    Claim::new(
        format!(
            "The exact Hessian-vector products of f and g ({what}) agree with central differences of the gradients at the study's starts"
        ),
        format!("largest relative difference {err:.1e}"),
        "≤ 1e-6",
        err <= 1e-6,
    )
}

/// Largest relative error of the problem's Hessian-vector product against central
/// differences of gradients, over both levels and a few starts and random directions.
fn hvp_error(p: &dyn Problem, starts: &[Start], seed: u64) -> f64 {
    let mut worst = 0.0f64;
    for (i, (u, v)) in starts.iter().enumerate() {
        let d = uniform_starts(seed + i as u64, 1, u.len(), v.len(), -1.0, 1.0);
        let (du, dv) = &d[0];
        for level in [Level::Upper, Level::Lower] {
            let (mut hu, mut hv) = (vec![0.0; u.len()], vec![0.0; v.len()]);
            let (mut fu, mut fv) = (vec![0.0; u.len()], vec![0.0; v.len()]);
            p.hvp(level, u, v, du, dv, &mut hu, &mut hv);
            hvp_by_differences(p, level, u, v, du, dv, &mut fu, &mut fv);
            let n = crate::linalg::norm(&fu)
                .hypot(crate::linalg::norm(&fv))
                .max(1e-300);
            let e = crate::linalg::dist(&hu, &fu).hypot(crate::linalg::dist(&hv, &fv)) / n;
            worst = worst.max(e);
        }
    }
    worst
}

/// The claim that the study is reproducible: the first few starts of the first solver, run
/// again, give bit-identical final points.
fn reproducible_claim(
    problem: &dyn Problem,
    facs: &[Factory],
    starts: &[Start],
    opts: &RunOptions,
    outs: &[SolverStudy],
) -> Option<Claim> {
    let (f, first) = (facs.first()?, outs.first()?);
    let (same, n) = reproducible(problem, f, starts, opts, &first.results);
    Some(Claim::new(
        format!(
            "The study is reproducible: re-running the first {n} starts of {} gives bit-identical final points",
            first.label
        ),
        if same { "identical" } else { "different" },
        "identical",
        same,
    ))
}

/// Re-runs the first few starts of one solver and checks the final points bit for bit.
fn reproducible(
    problem: &dyn Problem,
    f: &Factory,
    starts: &[Start],
    opts: &RunOptions,
    first: &[StartResult],
) -> (bool, usize) {
    let n = starts.len().min(5);
    let again = many_starts(
        problem,
        f.1.as_ref(),
        &starts[..n],
        opts,
        &super::NoProgress,
    );
    let same = again.iter().zip(first).all(|(a, b)| {
        let bits = |x: &[f64]| x.iter().map(|y| y.to_bits()).collect::<Vec<_>>();
        bits(&a.end.0) == bits(&b.end.0) && bits(&a.end.1) == bits(&b.end.1)
    });
    (same, n)
}

/// A random start for representation learning: W1 with independent standard Gaussian entries
/// (from the seed's Init stream), rescaled so that its largest singular value is the problem's
/// init scale s (the scale of the recommended start), and W2 = 0.
///
/// Not the recommended start itself: backbones with orthonormal rows are all equivalent under
/// the symmetry (W1, W2) → (W1 R, Rᵀ W2) of every solver here (R orthogonal), so from W2 = 0
/// they give the same product W1 W2 along the whole run; Gaussian backbones differ in their
/// singular values, so the starts differ in substance.
pub(super) fn gaussian_backbone(p: &RepLearning, seed: u64) -> Result<Start> {
    use rand_distr::Distribution;
    let (m, h, n) = p.shape();
    let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Init);
    let g = faer::Mat::<f64>::from_fn(m, h, |_, _| rand_distr::StandardNormal.sample(&mut rng));
    let smax = g
        .singular_values()
        .map_err(|e| crate::Error::data("Gaussian backbone", format!("{e:?}")))?
        .into_iter()
        .fold(0.0f64, f64::max);
    let s = p.init_scale() / smax;
    let mut w1 = vec![0.0; m * h];
    for j in 0..h {
        for i in 0..m {
            w1[i + j * m] = s * g[(i, j)];
        }
    }
    Ok((w1, vec![0.0; h * n]))
}

/// Representation learning, certified-global regime: many starts per solver against f* = 0.
pub struct StudyReplearn;

impl Experiment for StudyReplearn {
    fn name(&self) -> &'static str {
        "study-replearn"
    }
    fn title(&self) -> &'static str {
        "Representation learning (certified f* = 0): how often each solver reaches the global optimum from many starts"
    }
    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let k = if ctx.quick { 8 } else { 100 };
        let sizes = RepSizes {
            n_trn: 4,
            n_val: 4,
            m: 10,
            h: 32,
            n: 3,
            ..RepSizes::quick_for(Regime::CertifiedGlobal)
        };
        let p = RepLearning::generate(Regime::CertifiedGlobal, &sizes, SEED_REP)?;
        let (f_scale, g_scale) = p.target_scales();
        let gamma = 10.0;
        let starts: Vec<Start> = (0..k)
            .map(|i| gaussian_backbone(&p, SEED_REP + 1 + i as u64))
            .collect::<Result<_>>()?;
        let max_iter = 10_000;
        let facs = factories(gamma, max_iter / 4, 1.0, None);
        let dist_tol = 1e-9;
        let opts = RunOptions {
            max_iter,
            record_every: 100,
            dist_tol: Some(dist_tol),
            target: Some(1e-20 * f_scale),
            seed: SEED_REP,
            monitor_inner_steps: 0,
            interrupt: ctx.interrupt.clone(),
            ..RunOptions::default()
        };
        let tol = 1e-6;
        let classify = |r: &StartResult| {
            let gap = r.last.f_gap / f_scale + r.last.ll_gap.max(0.0) / g_scale;
            let d = if !matches!(r.status, Status::Diverged(_)) {
                p.penalty_optimum_distance(&r.end.0, &r.end.1, gamma)
                    .unwrap_or(f64::NAN)
            } else {
                f64::NAN
            };
            (gap, d <= tol)
        };
        let outs = run_all(ctx, self.name(), &p, &facs, &starts, &opts, &classify);
        let success_def = format!(
            "state tolerance: ‖ΠW1W2 − Z*‖_F ≤ {tol:e}·‖Z*‖_F, Z* the optimal product, Π the projector onto the row space of the data"
        );
        let gap_def = "(f − f*)/½‖Y_val‖² + (g − g*)/½‖Y_trn‖², f* = 0 certified";
        let parts = parts(
            self.name(),
            "reaches the certified global optimum",
            &outs,
            k,
            &success_def,
            gap_def,
            &[],
            None,
        );

        let mut claims = vec![hvp_claim(
            &p,
            "two-layer linear network",
            &starts,
            SEED_REP + 500,
        )];
        for o in &outs {
            if o.label.starts_with("PBGD-Jacobi") || o.label.starts_with("PBGD-GS") {
                claims.push(Claim::new(
                    format!("{}: reaches the certified global optimum from every one of {k} starts ({success_def})", o.label),
                    format!("{:.0}%", 100.0 * o.rate()),
                    "100%",
                    o.rate() == 1.0,
                ));
            }
        }
        claims.extend(reproducible_claim(&p, &facs, &starts, &opts, &outs));
        let (nt, nv) = p.samples();
        let (m, h, n) = p.shape();
        Ok(Report {
            name: self.name().into(),
            title: self.title().into(),
            settings: json!({
                "instance": {"regime": "certified-global", "N": nt, "N_val": nv, "m": m, "h": h, "n": n,
                             "noise": sizes.noise, "cond": sizes.cond, "data_seed": SEED_REP},
                "starts": k, "start_seeds": format!("{}..{}", SEED_REP + 1, SEED_REP + k as u64),
                "start": "W1 Gaussian (seed's Init stream) rescaled to largest singular value s = the problem's init scale, W2 = 0",
                "run_seed": SEED_REP, "max_iter": max_iter, "record_every": 100,
                "stop": format!("relative distance of the product to the penalty optimum ≤ {dist_tol:e}, or L_γ ≤ 1e-20·½‖Y_val‖²"),
                "success_tolerance": tol, "gamma": gamma,
                "solvers": facs.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
                "steps": "PBGD, V-PBGD, F²SA, BOME: α = 0.5/(ℓ_f + γ ℓ_g) with the problem's smoothness bound (γ = λ_k for F²SA and BOME); AID, ITD: α = 0.5/ℓ_f, β = 1/ℓ_g,vv; ALT-PBGD: gradient blocks, accuracy rule, η = 0.5/max(ℓ_F estimated, ℓ_f); PBGD-Free: K = 1, η = 0.5/ℓ_f",
            }),
            claims,
            tables: vec![parts.table],
            figures: parts.figures,
            traces: vec![],
            summary: serde_json::Value::Object(parts.summary),
            notes: [
                "In this regime [X_trn; X_val] has full row rank, so f* = 0 and g* = 0 are certified and the penalty optimum coincides with the bilevel optimum (no penalty bias): the success test is on the state (the product W1 W2), the same for every solver.".into(),
                "AID and ITD move the head only by lower-level gradient steps; here the lower level has many minimizers (h > N), so ∇²_vv g is singular and the implicit hypergradient is not unique.".into(),
            ]
            .into_iter()
            .chain(parts.notes)
            .collect(),
            wall_time_s: t0.elapsed().as_secs_f64(),
            partial: ctx.interrupted(),
            skipped: Vec::new(),
        })
    }
}

/// Synthetic hyper-cleaning (Gaussian clusters, λ > 0): many starts per solver against the
/// best value found and the oracle.
pub struct StudyCleaning;

impl Experiment for StudyCleaning {
    fn name(&self) -> &'static str {
        "study-cleaning"
    }
    fn title(&self) -> &'static str {
        "Synthetic hyper-cleaning (λ > 0): how often each solver reaches the best value found over all solvers and starts, and the oracle"
    }
    fn run(&self, ctx: &Context<'_>) -> Result<Report> {
        let t0 = Instant::now();
        let k = if ctx.quick { 8 } else { 100 };
        let clusters = ClusterConfig {
            n_trn: 100,
            n_val: 50,
            n_test: 500,
            m: 10,
            classes: 3,
            p: 0.5,
            separation: 4.0,
            seed: SEED_CLEAN,
        };
        let u_scale = 30.0;
        let settings = CleaningSettings {
            lambda: 1.0,
            u_scale,
            bound: 10.0 / u_scale,
            ..CleaningSettings::default()
        };
        let p = Cleaning::new(CleaningData::gaussian_clusters(&clusters)?, settings)?;
        let gamma = 10.0;
        // Starts: logits s·u uniform in [−3, 3] (weights 0.05 to 0.95), model W = 0.
        let logit = 3.0;
        let starts: Vec<Start> = uniform_starts(
            SEED_CLEAN,
            k,
            p.dim_u(),
            0,
            -logit / u_scale,
            logit / u_scale,
        )
        .into_iter()
        .map(|(u, _)| (u, vec![0.0; p.dim_v()]))
        .collect();
        let max_iter = if ctx.quick { 1000 } else { 2000 };
        let mut facs = factories(gamma, max_iter / 5, u_scale * u_scale, Some(1e-4));
        // Gauss–Seidel PBGD with the exact v block (least squares has a closed-form
        // argmin_W L_γ(u, ·)); u step 30/(γ s²) as in the `cleaning` experiment.
        let u_step = 30.0 / (gamma * u_scale * u_scale);
        facs.push((
            "PBGD-GS exact v".into(),
            Box::new(move || {
                Box::new(
                    Pbgd::new(Update::GaussSeidel, gamma).with_exact_v(StepRule::Fixed(u_step)),
                ) as Box<dyn Solver>
            }),
        ));
        let opts = RunOptions {
            max_iter,
            record_every: 500,
            seed: SEED_CLEAN,
            interrupt: ctx.interrupt.clone(),
            ..RunOptions::default()
        };
        // F(u) = f(u, w*(u)) at every final u (exact lower level), so every solver is judged
        // on a feasible point.
        let nested = |u: &[f64]| {
            let mut w = vec![0.0; p.dim_v()];
            if p.ll_solution(u, &mut w) {
                p.f(u, &w, None, None)
            } else {
                f64::NAN
            }
        };
        let raw = run_all(ctx, self.name(), &p, &facs, &starts, &opts, &|_| {
            (f64::NAN, false)
        });
        let fvals: Vec<Vec<f64>> = raw
            .iter()
            .map(|o| {
                o.results
                    .iter()
                    .map(|r| {
                        if !matches!(r.status, Status::Diverged(_)) {
                            nested(&r.end.0)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
            .collect();
        let best = fvals
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::INFINITY, f64::min);
        let oracle = p.reference_oracle()?;
        let unweighted = p.reference_unweighted()?;
        let tol = 1e-2;
        let mut outs = raw;
        for (o, fv) in outs.iter_mut().zip(&fvals) {
            o.gaps = fv.iter().map(|f| (f - best) / best).collect();
            o.success = o.gaps.iter().map(|g| *g <= tol).collect();
        }
        let below_oracle: Vec<f64> = fvals
            .iter()
            .map(|fv| fv.iter().filter(|f| **f <= oracle.f).count() as f64 / k as f64)
            .collect();
        let f1_med: Vec<String> = outs
            .iter()
            .map(|o| {
                let f1: Vec<f64> = o
                    .results
                    .iter()
                    .filter(|r| !matches!(r.status, Status::Diverged(_)))
                    .map(|r| p.cleaning_scores(&r.end.0).2)
                    .collect();
                quantiles(&f1).map_or("—".into(), |q| format!("{:.2}", q.0))
            })
            .collect();
        let success_def = format!(
            "F(u) = f(u, w*(u)) within {tol:e} (relative) of the best value found over all solvers and starts"
        );
        let gap_def = "(F(u) − F_best)/F_best with F(u) = f(u, w*(u)) at the final u";
        let parts = parts(
            self.name(),
            "within 1% of the best F found",
            &outs,
            k,
            &success_def,
            gap_def,
            &[
                (
                    "F ≤ oracle f".into(),
                    below_oracle
                        .iter()
                        .map(|x| format!("{:.0}%", 100.0 * x))
                        .collect(),
                ),
                ("cleaning F1 (median)".into(), f1_med),
            ],
            Some(Panel::Bars {
                title: "at or below the oracle's validation loss".into(),
                y_label: format!("fraction of {k} starts"),
                bars: outs
                    .iter()
                    .zip(&below_oracle)
                    .map(|(o, &b)| (o.label.clone(), b))
                    .collect(),
            }),
        );
        let mut claims = vec![hvp_claim(&p, "least squares", &starts, SEED_CLEAN + 500)];
        claims.push(Claim::new(
            "The best bilevel point found has a validation loss F = f(u, w*(u)) below the oracle's (the model trained on exactly the clean samples): the upper level optimizes f directly",
            format!("F_best = {best:.4}, oracle f = {:.4}, unweighted f = {:.4}", oracle.f, unweighted.f),
            "F_best < oracle f",
            best < oracle.f,
        ));
        if let Some(o) = outs.iter().find(|o| o.label == "PBGD-GS exact v") {
            let rate = o.success.iter().filter(|&&x| x).count() as f64 / o.success.len() as f64;
            claims.push(Claim::new(
                "Gauss–Seidel PBGD with the exact v block reaches the best value found (within 1%) from at least 90% of the starts",
                format!("{:.0}% of {} starts", 100.0 * rate, o.success.len()),
                "≥ 90%",
                rate >= 0.9,
            ));
        }
        claims.extend(reproducible_claim(&p, &facs, &starts, &opts, &outs));
        let mut summary = parts.summary.clone();
        summary.insert(
            "references".into(),
            json!({"best_F": best, "oracle_f": oracle.f, "unweighted_f": unweighted.f,
                   "oracle_test_acc": oracle.eval.test_acc, "unweighted_test_acc": unweighted.eval.test_acc}),
        );
        Ok(Report {
            name: self.name().into(),
            title: self.title().into(),
            settings: json!({
                "clusters": clusters, "lambda": settings.lambda, "u_scale": u_scale, "bound": settings.bound,
                "starts": k, "start_seed": SEED_CLEAN, "start": format!("logits s·u uniform in [−{logit}, {logit}] (seed's Init stream), W = 0"),
                "run_seed": SEED_CLEAN, "max_iter": max_iter, "gamma": gamma, "success_tolerance": tol,
                "solvers": facs.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
                "steps": "PBGD: α = 0.5/(ℓ_f + γ ℓ_g), smoothness estimated at the start, exact g*; F²SA and BOME: same rule at λ_k, u-block step ratio s² = 900; AID, ITD: fixed α = 1e-4, β = 1/ℓ_g,vv; ALT-PBGD: exact responses, η = 0.5/ℓ_F estimated; PBGD-Free: K = 1, η = 0.5/ℓ_f",
            }),
            claims,
            tables: vec![parts.table],
            figures: parts.figures,
            traces: vec![],
            summary: serde_json::Value::Object(summary),
            notes: [
                format!("References on this instance: oracle (weights 1 on the clean samples, 0 on the corrupted ones) f = {:.4}, test accuracy {:.3}; unweighted training f = {:.4}, test accuracy {:.3}. No certified optimum exists (λ > 0, N > m): F_best is the best value found over all {} runs.", oracle.f, oracle.eval.test_acc, unweighted.f, unweighted.eval.test_acc, k * outs.len()),
                "Every final point is judged by F(u) = f(u, w*(u)) with the exact lower-level solution at its u, so a solver whose model W lags behind its weights is not credited with an infeasible f.".into(),
            ]
            .into_iter()
            .chain(parts.notes)
            .collect(),
            wall_time_s: t0.elapsed().as_secs_f64(),
            partial: ctx.interrupted(),
            skipped: Vec::new(),
        })
    }
}
