//! Section 6 of Figure 3: the PL diagnostic. Along the Jacobi trajectories the empirical ratio
//! ½‖∇L_γ‖²/(L_γ − L_γ*) stays above μ_k = (σ²_min(W1) + σ²_min(W2)) · σ⁺_min(X_γ)².

use super::Parts;
use super::runs::{Inner, Runs};
use crate::error::Result;
use crate::experiments::{Claim, CurveGroup, Figure, Panel, Table};
use crate::problems::replearn::Regime;
use crate::solvers::Update;

/// The PL claim and table; returns the PL figure (drawn after the convergence figures).
pub(super) fn diagnostic(runs: &Runs<'_>, parts: &mut Parts) -> Result<Figure> {
    let s = runs.s;
    let Parts { claims, tables, .. } = parts;
    // 6. PL diagnostic: the empirical ratio stays above μ_k.
    let mut pl_rows = Vec::new();
    let mut pl_ok = true;
    let mut pl_min_margin = f64::INFINITY;
    let mut pl_panels = Vec::new();
    for r in [Regime::CertifiedGlobal, Regime::Intermediate] {
        let mut groups = Vec::new();
        for &g in &s.gammas {
            let os = runs.sel(r, Update::Jacobi, Inner::Exact, g);
            let mut ratio_runs = Vec::new();
            let mut mu_runs = Vec::new();
            let (mut rmin, mut mmin) = (f64::INFINITY, f64::INFINITY);
            for o in &os {
                for &(_, ratio, mu) in &o.pl {
                    if ratio < mu * (1.0 - 1e-6) {
                        pl_ok = false;
                    }
                    pl_min_margin = pl_min_margin.min(ratio / mu);
                    rmin = rmin.min(ratio);
                    mmin = mmin.min(mu);
                }
                ratio_runs.push(o.pl.iter().map(|&(k, q, _)| (k, q)).collect());
                mu_runs.push(o.pl.iter().map(|&(k, _, m)| (k, m)).collect());
            }
            pl_rows.push(vec![
                r.label().into(),
                format!("{g}"),
                format!("{rmin:.3e}"),
                format!("{mmin:.3e}"),
                format!("{:.3e}", runs.inst(r, 0).sigma_min_plus(g)?.powi(2)),
            ]);
            groups.push(CurveGroup {
                label: format!("½‖∇L‖²/(L−L*), γ = {g}"),
                runs: ratio_runs,
            });
            groups.push(CurveGroup {
                label: format!("μ_k, γ = {g}"),
                runs: mu_runs,
            });
        }
        pl_panels.push(Panel::Curves {
            title: format!("PL diagnostic, {} regime", r.label()),
            x_label: "iteration".into(),
            y_label: "empirical ratio and μ_k".into(),
            log_y: true,
            groups,
            markers: vec![],
        });
    }
    claims.push(Claim::new(
        "PL along the trajectory: the empirical ratio ½‖∇L_γ‖²/(L_γ − L_γ*) is at least μ_k = (σ²_min(W1) + σ²_min(W2)) · σ⁺_min(X_γ)² at every record (Jacobi, both regimes, records with L_γ − L_γ* above 1e-11 · L_γ(0))",
        format!("smallest ratio / μ_k = {pl_min_margin:.3}"),
        "≥ 1 (to 1e-6)",
        pl_ok && pl_min_margin.is_finite(),
    ));
    tables.push(Table {
        title: "PL diagnostic along the Jacobi trajectories: smallest empirical ratio and smallest μ_k over all records and seeds".into(),
        header: vec!["regime".into(), "γ".into(), "min ½‖∇L‖²/(L−L*)".into(), "min μ_k".into(), "σ⁺_min(X_γ)² (seed 0)".into()],
        rows: pl_rows,
    });
    Ok(Figure {
        name: "fig3-pl".into(),
        caption: "PL diagnostic along the Jacobi trajectories: empirical ratio ½‖∇L_γ‖²/(L_γ − L_γ*) beside μ_k = (σ²_min(W1) + σ²_min(W2)) · σ⁺_min(X_γ)² (median and 10–90% band over seeds).".into(),
        panels: pl_panels,
    })
}
