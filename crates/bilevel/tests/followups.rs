//! Issue 20: ALT-PBGD, PBGD-Free and the flatness diagnostic.

use bilevel::diagnostics::{FlatnessObserver, fit_flatness};
use bilevel::penalty::Penalty;
use bilevel::problems::{Counterexample, Quadratic};
use bilevel::solvers::{AltPbgd, InnerRule, PbgdFree, ReducedStep, VBlock};
use bilevel::{InnerLoop, Pbgd, Problem, RunOptions, Smoothness, StepRule, run};

fn opts(max_iter: usize) -> RunOptions {
    RunOptions {
        max_iter,
        record_every: 10,
        ..RunOptions::default()
    }
}

/// F_γ(u) = L_γ(u, v_γ*(u)) with g* = g(u, w*(u)).
fn reduced(p: &dyn Problem, u: &[f64], gamma: f64) -> f64 {
    let mut v = vec![0.0; p.dim_v()];
    let mut w = vec![0.0; p.dim_v()];
    assert!(p.penalty_v_solution(u, gamma, &mut v));
    assert!(p.ll_solution(u, &mut w));
    p.f(u, &v, None, None) + gamma * (p.g(u, &v, None, None) - p.g(u, &w, None, None))
}

#[test]
fn reduced_gradient_with_exact_responses_matches_central_differences() {
    let mut worst: f64 = 0.0;
    for seed in 0..4 {
        let q = Quadratic::generate(seed, 3, 5).unwrap();
        for gamma in [1.0, 10.0, 100.0] {
            let u: Vec<f64> = (0..3).map(|i| 0.4 * i as f64 - 0.7).collect();
            let mut v = vec![0.0; 5];
            let mut w = vec![0.0; 5];
            q.penalty_v_solution(&u, gamma, &mut v);
            q.ll_solution(&u, &mut w);
            let mut pen = Penalty::new(3, 5);
            pen.eval(&q, &u, &v, &w, gamma, true, true);
            // Danskin: ∇_v L_γ vanishes at v_γ*, and ∇_u L_γ there is ∇F_γ.
            assert!(bilevel::linalg::norm(&pen.dv) <= 1e-9 * (1.0 + gamma));
            let h = 1e-5;
            let fd: Vec<f64> = (0..3)
                .map(|i| {
                    let (mut up, mut um) = (u.clone(), u.clone());
                    up[i] += h;
                    um[i] -= h;
                    (reduced(&q, &up, gamma) - reduced(&q, &um, gamma)) / (2.0 * h)
                })
                .collect();
            let err = bilevel::linalg::dist(&fd, &pen.du) / bilevel::linalg::norm(&pen.du);
            worst = worst.max(err);
        }
    }
    assert!(worst <= 1e-6, "worst relative error {worst:e}");
}

#[test]
fn alt_pbgd_with_exact_responses_is_gauss_seidel_pbgd_with_the_exact_v_block() {
    let q = Quadratic::generate(3, 4, 6).unwrap();
    type Case = (Box<dyn Problem>, Vec<f64>, Vec<f64>);
    let problems: Vec<Case> = vec![
        (Box::new(q), vec![0.3, -0.2, 1.1, 0.5], vec![0.1; 6]),
        (Box::new(Counterexample), vec![1.2], vec![-3.0]),
    ];
    for (p, u0, v0) in &problems {
        for (gamma, eta) in [(10.0, 0.05), (1000.0, 0.2)] {
            let mut alt = AltPbgd::new(gamma)
                .with_blocks(VBlock::Exact, VBlock::Exact)
                .with_inner(InnerRule::Fixed { steps: 1 })
                .with_u_step(ReducedStep::Fixed(eta));
            let mut gs = Pbgd::gauss_seidel(gamma)
                .with_exact_v(StepRule::Fixed(eta))
                .with_inner(InnerLoop::Exact);
            let a = run(p.as_ref(), &mut alt, u0, v0, &opts(300), &mut []).unwrap();
            let b = run(p.as_ref(), &mut gs, u0, v0, &opts(300), &mut []).unwrap();
            assert_eq!(a.u, b.u, "{} gamma {gamma}: u differs", p.name());
            assert_eq!(a.v, b.v, "{} gamma {gamma}: v differs", p.name());
            assert!(
                a.trace.same_numbers(&b.trace),
                "{}: traces differ",
                p.name()
            );
        }
    }
}

/// f = ½‖u − a‖² (no v), g = ½‖v − B u‖², u in a box.
struct NoVInUpper;

const A: [f64; 3] = [0.7, -2.5, 1.9];

impl Problem for NoVInUpper {
    fn name(&self) -> String {
        "f-without-v".into()
    }
    fn dim_u(&self) -> usize {
        3
    }
    fn dim_v(&self) -> usize {
        2
    }
    fn f(&self, u: &[f64], _v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        if let Some(gu) = gu {
            for i in 0..3 {
                gu[i] = u[i] - A[i];
            }
        }
        if let Some(gv) = gv {
            gv.fill(0.0);
        }
        0.5 * (0..3).map(|i| (u[i] - A[i]).powi(2)).sum::<f64>()
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let r = [v[0] - u[0] - u[1], v[1] - 2.0 * u[2]];
        if let Some(gu) = gu {
            gu[0] = -r[0];
            gu[1] = -r[0];
            gu[2] = -2.0 * r[1];
        }
        if let Some(gv) = gv {
            gv[0] = r[0];
            gv[1] = r[1];
        }
        0.5 * (r[0] * r[0] + r[1] * r[1])
    }
    fn project_u(&self, u: &mut [f64]) {
        for x in u.iter_mut() {
            *x = x.clamp(-2.0, 2.0);
        }
    }
    fn is_constrained(&self) -> bool {
        true
    }
}

#[test]
fn pbgd_free_on_an_upper_level_without_v_is_projected_gradient_descent_on_f() {
    let p = NoVInUpper;
    let eta = 0.3;
    for k in [1, 3] {
        let mut s = PbgdFree::new(10.0)
            .with_v_steps(k)
            .with_beta(0.5)
            .with_u_step(ReducedStep::Fixed(eta));
        let u0 = vec![1.5, 0.4, -1.0];
        let out = run(&p, &mut s, &u0, &[0.0, 0.0], &opts(57), &mut []).unwrap();
        let mut u = u0.clone();
        let mut gu = vec![0.0; 3];
        for _ in 0..57 {
            p.f(&u, &[0.0, 0.0], Some(&mut gu), None);
            bilevel::linalg::axpy(-eta, &gu, &mut u);
            p.project_u(&mut u);
        }
        assert_eq!(out.u, u, "K = {k}");
    }
}

fn counterexample_run(solver: &mut dyn bilevel::Solver, u0: f64, v0: f64) -> (f64, f64, f64) {
    let p = Counterexample;
    let mut obs = FlatnessObserver::new(&p);
    let out = run(&p, solver, &[u0], &[v0], &opts(3000), &mut [&mut obs]).unwrap();
    let row = *obs.last().unwrap();
    (out.u[0], row.grad_reduced, row.floor)
}

#[test]
fn counterexample_end_points() {
    let gamma = 10.0;
    for (u0, v0) in [(1.2, -3.0), (-6.0, 1.0), (-2.0, -7.5)] {
        let (u, grad, floor) = counterexample_run(&mut PbgdFree::new(gamma), u0, v0);
        assert!(u.abs() <= 1e-9, "PBGD-Free ends at {u}");
        assert!((grad - 10.0).abs() <= 1e-6, "‖∇F_γ‖ at the stall {grad}");
        assert!(floor >= 0.5, "flatness floor at the stall {floor}");
        for (name, mut s) in [
            (
                "ALT-PBGD (gradient blocks)",
                Box::new(AltPbgd::new(gamma).with_blocks(VBlock::Gradient, VBlock::Gradient))
                    as Box<dyn bilevel::Solver>,
            ),
            ("ALT-PBGD (exact)", Box::new(AltPbgd::new(gamma))),
            ("PBGD Jacobi", Box::new(Pbgd::jacobi(gamma))),
        ] {
            let (u, grad, _) = counterexample_run(s.as_mut(), u0, v0);
            assert!((u + 5.0).abs() <= 1e-6, "{name} ends at {u}");
            assert!(grad <= 1e-5, "{name}: ‖∇F_γ‖ = {grad}");
        }
    }
    // The reduced smoothness the ALT-PBGD estimate finds is F_γ's curvature, 2, for every γ.
    for gamma in [10.0, 1000.0] {
        let mut s = AltPbgd::new(gamma).with_blocks(VBlock::Gradient, VBlock::Gradient);
        run(&Counterexample, &mut s, &[1.0], &[0.0], &opts(1), &mut []).unwrap();
        let l = s.reduced_smoothness_in_use();
        assert!((l - 2.0).abs() <= 1e-4, "gamma {gamma}: estimate {l}");
    }
}

#[test]
fn flatness_fit_recovers_known_constants() {
    let r: Vec<f64> = (0..41).map(|i| 0.05 * i as f64).collect();
    for (c0, a0, d0) in [(3.0, 1.3, 0.05), (0.7, 1.5, 0.0), (12.0, 1.12, 0.4)] {
        let s: Vec<(f64, f64)> = r.iter().map(|&x| (x, c0 * x.powf(a0) + d0)).collect();
        let fit = fit_flatness(&s).unwrap();
        assert!(
            (fit.alpha - a0).abs() <= 1e-4,
            "alpha {} vs {a0}",
            fit.alpha
        );
        assert!((fit.c - c0).abs() <= 1e-3 * c0, "c {} vs {c0}", fit.c);
        assert!(
            (fit.delta - d0).abs() <= 1e-3 * (1.0 + d0),
            "delta {} vs {d0}",
            fit.delta
        );
    }
    // Samples below the bound (an inequality, not an equation) keep a valid envelope.
    let s: Vec<(f64, f64)> = r
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            (
                x,
                (2.0 * x.powf(1.4) + 0.1) * if i % 3 == 0 { 1.0 } else { 0.6 },
            )
        })
        .collect();
    let fit = fit_flatness(&s).unwrap();
    for &(x, y) in &s {
        assert!(fit.c * x.powf(fit.alpha) + fit.delta >= y - 1e-9);
    }
    // A linear gap (not flat) needs α → 1: the unit-free floor is near 1.
    let s: Vec<(f64, f64)> = r.iter().map(|&x| (x, 10.0 * x)).collect();
    assert!(fit_flatness(&s).unwrap().floor >= 0.5);
}

#[test]
fn new_solvers_run_on_problems_without_closed_forms() {
    // Toy1d has w*(u) but no v_γ*: ALT-PBGD falls back to gradient steps on v.
    let toy = bilevel::problems::Toy1d::default();
    let mut s = AltPbgd::new(10.0).with_smoothness(Smoothness {
        lf: 30.0,
        lg: 10.0,
        lg_vv: 4.0,
    });
    let out = run(&toy, &mut s, &[1.0], &[-1.0], &opts(200), &mut []).unwrap();
    assert!(out.u[0].is_finite() && out.v[0].is_finite());
    let mut s = PbgdFree::new(10.0);
    let out = run(&toy, &mut s, &[1.0], &[-1.0], &opts(200), &mut []).unwrap();
    assert!(out.u[0].is_finite());
    // Exact blocks on a problem without them are refused with a typed error.
    let mut s = AltPbgd::new(10.0).with_blocks(VBlock::Exact, VBlock::Exact);
    assert!(run(&toy, &mut s, &[1.0], &[-1.0], &opts(10), &mut []).is_err());
}

fn run_experiment(quick: bool) -> bilevel::experiments::Report {
    let e = bilevel::experiments::by_name("followups").expect("registered");
    let ctx = bilevel::experiments::Context {
        quick,
        ..Default::default()
    };
    let r = e.run(&ctx).unwrap();
    for c in &r.claims {
        println!("{} | {} | {} | {}", c.pass, c.text, c.measured, c.threshold);
    }
    for t in &r.tables {
        println!("{}\n{:?}", t.title, t.header);
        for row in &t.rows {
            println!("{row:?}");
        }
    }
    println!("wall {:.2} s", r.wall_time_s);
    r
}

#[test]
fn followups_experiment_passes_in_quick_mode() {
    let r = run_experiment(true);
    assert!(r.passed(), "a claim failed");
}

/// The full experiment (about 20 s): `cargo test --release --test followups -- --ignored`.
#[test]
#[ignore]
fn followups_experiment_passes() {
    let r = run_experiment(false);
    assert!(r.passed(), "a claim failed");
}

#[test]
fn observer_columns_reach_the_trace_and_leave_it_unchanged_without_them() {
    let p = Counterexample;
    let mut plain = PbgdFree::new(10.0);
    let base = run(&p, &mut plain, &[1.0], &[-2.0], &opts(50), &mut []).unwrap();
    let mut obs = FlatnessObserver::new(&p);
    let mut s = PbgdFree::new(10.0);
    let with = run(&p, &mut s, &[1.0], &[-2.0], &opts(50), &mut [&mut obs]).unwrap();
    // The observer adds columns; every other number is the same.
    assert!(base.trace.extra_names.is_empty());
    assert!(base.trace.records.iter().all(|r| r.extra.is_empty()));
    assert_eq!(with.trace.extra_names, FlatnessObserver::COLUMNS);
    let mut stripped = with.trace.clone();
    stripped.extra_names.clear();
    stripped.records.iter_mut().for_each(|r| r.extra.clear());
    assert!(stripped.same_numbers(&base.trace));
    // The columns hold the observer's rows.
    for (r, row) in with.trace.records.iter().zip(&obs.rows) {
        assert_eq!(r.iter, row.iter);
        assert_eq!(r.extra.len(), FlatnessObserver::COLUMNS.len());
        assert_eq!(r.extra[0].to_bits(), row.grad_reduced.to_bits());
        assert_eq!(r.extra[9].to_bits(), row.floor.to_bits());
    }
    let floor = with.trace.series("flatness_floor").unwrap();
    assert_eq!(floor.len(), with.trace.records.len());
    // CSV: the base columns, then the observer's; JSON without observers has no extra keys.
    let mut csv = Vec::new();
    with.trace.write_csv(&mut csv).unwrap();
    let header = String::from_utf8(csv).unwrap();
    let header = header.lines().next().unwrap();
    assert!(
        header.ends_with(&FlatnessObserver::COLUMNS.join(",")),
        "{header}"
    );
    let json = serde_json::to_string(&base.trace).unwrap();
    assert!(!json.contains("extra"), "{json}");
    let json = serde_json::to_string(&with.trace).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["extra_names"][9], "flatness_floor");
    assert_eq!(v["records"][0]["extra"].as_array().unwrap().len(), 10);
}
