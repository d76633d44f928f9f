//! Section 4 of Figure 3: the penalty bias in the intermediate regime. Over γ, f approaches
//! f*_full from below like 1/γ and the lower-level gap falls like 1/γ², from the closed-form
//! penalty optimum and from the solver's final points (table and the bias figure).

use super::Parts;
use super::runs::{Inner, Runs};
use crate::error::Result;
use crate::experiments::{Claim, CurveGroup, Figure, Panel, Table};
use crate::problems::replearn::Regime;
use crate::solvers::Update;
use serde_json::json;

/// What the report takes from this section after the others: the bias figure (drawn after
/// the convergence figures) and the summary's slopes and count of flagged instances.
pub(super) struct Bias {
    pub(super) figure: Figure,
    pub(super) slopes: serde_json::Value,
    pub(super) flagged: usize,
}

/// Claim 4 (and its solver confirmation) and the per-instance slope table.
pub(super) fn penalty_bias(runs: &Runs<'_>, parts: &mut Parts) -> Result<Bias> {
    let s = runs.s;
    let Parts { claims, tables, .. } = parts;
    // 4. Penalty bias in the intermediate regime.
    let mut slope_rows = Vec::new();
    let (mut sf_all, mut sl_all) = (Vec::new(), Vec::new());
    let (mut sf_solver, mut sl_solver) = (Vec::new(), Vec::new());
    let mut agree = 0.0f64;
    let solver_gammas: Vec<f64> = s.gammas.iter().copied().filter(|&g| g >= 100.0).collect();
    let mut bias_groups_f = Vec::new();
    let mut bias_groups_l = Vec::new();
    let mut runs_f = Vec::new();
    let mut runs_l = Vec::new();
    let mut n_flag_int = 0;
    for i in 0..s.seeds {
        let p = runs.inst(Regime::Intermediate, i);
        if p.flagged() {
            n_flag_int += 1;
            slope_rows.push(vec![
                format!("{i}"),
                "flagged: excluded".into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        let mut pf = Vec::new();
        let mut pl = Vec::new();
        for &g in &s.slope_gammas {
            let ps = p.penalty_solution(g)?;
            pf.push((g, p.f_star_full() - ps.f));
            pl.push((g, ps.ll_gap));
        }
        let curve_gs: Vec<f64> = (0..=8).map(|k| 10f64.powf(1.0 + 0.5 * k as f64)).collect();
        let mut cf = Vec::new();
        let mut cl = Vec::new();
        for &g in &curve_gs {
            let ps = p.penalty_solution(g)?;
            cf.push((g.log10(), p.f_star_full() - ps.f));
            cl.push((g.log10(), ps.ll_gap));
        }
        runs_f.push(cf);
        runs_l.push(cl);
        let (a, b) = (loglog_slope(&pf), loglog_slope(&pl));
        sf_all.push(a);
        sl_all.push(b);
        // The solver's final points at γ ≥ 100.
        let mut qf = Vec::new();
        let mut ql = Vec::new();
        for &g in &solver_gammas {
            if let Some(o) = runs
                .sel(Regime::Intermediate, Update::Jacobi, Inner::Exact, g)
                .into_iter()
                .find(|o| o.job.inst == i)
                && let Some(l) = &o.last
            {
                let ps = p.penalty_solution(g)?;
                agree = agree.max((l.f - ps.f).abs() / (p.f_star_full() - ps.f).abs().max(1e-300));
                qf.push((g, p.f_star_full() - l.f));
                ql.push((g, l.ll_gap));
            }
        }
        let (c, d) = if qf.len() >= 2 {
            (loglog_slope(&qf), loglog_slope(&ql))
        } else {
            (f64::NAN, f64::NAN)
        };
        sf_solver.push(c);
        sl_solver.push(d);
        slope_rows.push(vec![
            format!("{i}"),
            format!("{:.4}", p.f_star_full()),
            format!("{a:.3} / {b:.3}"),
            format!("{c:.3} / {d:.3}"),
            format!("{:.3e}", p.f_at_zero_backbone()),
        ]);
    }
    bias_groups_f.push(CurveGroup {
        label: "f*_full − f(Z_γ)".into(),
        runs: runs_f,
    });
    bias_groups_l.push(CurveGroup {
        label: "LL gap at Z_γ".into(),
        runs: runs_l,
    });
    let within = |v: &[f64], t: f64| !v.is_empty() && v.iter().all(|x| (x - t).abs() <= 0.25);
    let rng = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("[{lo:.3}, {hi:.3}]")
    };
    let gl = |v: &[f64]| {
        v.iter()
            .map(|g| format!("{g:e}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    claims.push(Claim::new(
        format!("Intermediate regime, unflagged instances: f approaches f*_full from below like 1/γ and the lower-level gap falls like 1/γ² (log-log slopes of the closed-form penalty optimum over γ ∈ {{{}}})", gl(&s.slope_gammas)),
        format!("{} instances; slopes of f*_full − f: {}; of the LL gap: {}", sf_all.len(), rng(&sf_all), rng(&sl_all)),
        "every slope within ±0.25 of −1 and −2",
        within(&sf_all, -1.0) && within(&sl_all, -2.0),
    ));
    if solver_gammas.len() >= 2 {
        claims.push(Claim::new(
            format!("…confirmed by the solver's final points (Jacobi PBGD at γ ∈ {{{}}})", gl(&solver_gammas)),
            format!("slopes of f*_full − f: {}; of the LL gap: {}; largest |f_solver − f(Z_γ)| / |f*_full − f(Z_γ)| = {agree:.1e}", rng(&sf_solver), rng(&sl_solver)),
            "every slope within ±0.25 of −1 and −2",
            within(&sf_solver, -1.0) && within(&sl_solver, -2.0),
        ));
    }
    tables.push(Table {
        title: format!("Intermediate regime: penalty bias slopes per instance (closed form over γ ∈ {{{}}} / solver over γ ∈ {{{}}}), f*_full, and f at the degenerate feasible point W1 = 0", gl(&s.slope_gammas), gl(&solver_gammas)),
        header: vec!["instance".into(), "f*_full".into(), "closed-form slopes f / LL".into(), "solver slopes f / LL".into(), "f(W1 = 0)".into()],
        rows: slope_rows,
    });
    let figure = Figure {
        name: "fig3-bias".into(),
        caption: "Intermediate regime, closed-form penalty optimum Z_γ for each unflagged instance: f*_full − f(Z_γ) (slope −1) and the lower-level gap (slope −2) against log10 γ.".into(),
        panels: vec![
            Panel::Curves { title: "penalty bias f*_full − f(Z_γ)".into(), x_label: "log10 γ".into(), y_label: "f*_full − f".into(), log_y: true, groups: bias_groups_f, markers: vec![] },
            Panel::Curves { title: "lower-level gap at Z_γ".into(), x_label: "log10 γ".into(), y_label: "g − g*".into(), log_y: true, groups: bias_groups_l, markers: vec![] },
        ],
    };
    Ok(Bias {
        figure,
        slopes: json!({"f": sf_all, "ll": sl_all, "solver_f": sf_solver, "solver_ll": sl_solver}),
        flagged: n_flag_int,
    })
}

/// Least-squares slope of log10 y against log10 x.
fn loglog_slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts
        .iter()
        .map(|&(x, y)| (x.log10(), y.abs().log10()))
        .unzip();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}
