//! Fused evaluations against separate ones. Gauss–Seidel PBGD with one warm inner step takes
//! ∇_v g(u, w) from the v step's evaluation where the problem fuses them
//! (`Problem::penalty_eval_inner`), and PBGD steps through `Problem::penalty_step` where the
//! problem has it (the u step accumulated into u, Jacobi's inner step folded in); the iterates
//! must match the unfused paths (separate inner step, evaluation and vector updates).

use bilevel::penalty::Penalty;
use bilevel::problems::Quadratic;
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes};
use bilevel::seeds::{Stream, rng};
use bilevel::solvers::{InnerLoop, State, Update};
use bilevel::{Pbgd, PenaltyStep, Problem, Smoothness, Solver};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Delegates to the wrapped problem; `MODE` selects whether `penalty_eval_inner` is offered:
/// from the problem itself, or (`SEPARATE`) from separate calls, or not at all. The fused
/// `penalty_step` is offered only when `step` is set.
struct Wrap<'a, const MODE: u8> {
    p: &'a dyn Problem,
    step: bool,
    g_calls: AtomicUsize,
    inner_calls: AtomicUsize,
    step_calls: AtomicUsize,
}

const NONE: u8 = 0;
const OWN: u8 = 1;
const SEPARATE: u8 = 2;

impl<'a, const MODE: u8> Wrap<'a, MODE> {
    fn new(p: &'a dyn Problem) -> Self {
        Wrap {
            p,
            step: false,
            g_calls: AtomicUsize::new(0),
            inner_calls: AtomicUsize::new(0),
            step_calls: AtomicUsize::new(0),
        }
    }

    fn with_step(mut self) -> Self {
        self.step = true;
        self
    }
}

impl<const MODE: u8> Problem for Wrap<'_, MODE> {
    fn name(&self) -> String {
        self.p.name()
    }
    fn dim_u(&self) -> usize {
        self.p.dim_u()
    }
    fn dim_v(&self) -> usize {
        self.p.dim_v()
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.p.f(u, v, gu, gv)
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.g_calls.fetch_add(1, Ordering::Relaxed);
        self.p.g(u, v, gu, gv)
    }
    fn penalty_eval(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> Option<[f64; 3]> {
        self.p.penalty_eval(u, v, w, gamma, du, dv)
    }
    fn penalty_eval_inner(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
        gw: &mut [f64],
    ) -> Option<[f64; 3]> {
        self.inner_calls.fetch_add(1, Ordering::Relaxed);
        match MODE {
            OWN => self.p.penalty_eval_inner(u, v, w, gamma, du, dv, gw),
            SEPARATE => {
                let mut pen = Penalty::new(self.dim_u(), self.dim_v());
                let val = pen.eval(self.p, u, v, w, gamma, du.is_some(), dv.is_some());
                if let Some(du) = du {
                    du.copy_from_slice(&pen.du);
                }
                if let Some(dv) = dv {
                    dv.copy_from_slice(&pen.dv);
                }
                self.p.g(u, w, None, Some(gw));
                Some([val.f, val.g, val.g_star])
            }
            _ => None,
        }
    }
    fn penalty_step(
        &self,
        u: &mut [f64],
        v: &mut [f64],
        w: &mut [f64],
        gamma: f64,
        step: PenaltyStep,
    ) -> Option<[f64; 3]> {
        if !self.step {
            return None;
        }
        self.step_calls.fetch_add(1, Ordering::Relaxed);
        self.p.penalty_step(u, v, w, gamma, step)
    }
    fn smoothness(&self) -> Option<Smoothness> {
        self.p.smoothness()
    }
}

/// (u, v, w) after `iters` iterations of `solver` from (u0, v0).
fn iterate(
    p: &dyn Problem,
    mut solver: Pbgd,
    u0: &[f64],
    v0: &[f64],
    iters: usize,
) -> [Vec<f64>; 3] {
    let mut state = State {
        u: u0.to_vec(),
        v: v0.to_vec(),
        iter: 0,
        rng: rng(7, Stream::Run),
    };
    solver.init(p, &mut state).expect("init");
    for _ in 0..iters {
        solver.step(p, &mut state).expect("step");
        state.iter += 1;
    }
    let w = solver.ll_estimate().expect("PBGD keeps w").to_vec();
    [state.u, state.v, w]
}

fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    d.sqrt() / n.sqrt().max(1e-300)
}

/// The benchmarked iteration's solver (bilevel-bench's `bench_solver`): PBGD at γ = 10 with one
/// warm gradient step of the value-function estimate per iteration.
fn bench_solver(update: Update) -> Pbgd {
    Pbgd::new(update, 10.0).with_inner(InnerLoop::Gd {
        steps: 1,
        warm: true,
        beta: None,
    })
}

fn solvers() -> Vec<Pbgd> {
    vec![
        bench_solver(Update::GaussSeidel),
        bench_solver(Update::GaussSeidel).with_v_steps(3),
    ]
}

#[test]
fn fused_gauss_seidel_matches_the_unfused_path_on_replearn() {
    for p in replearn_instances() {
        let regime = p.regime();
        let (u0, v0) = p.init(5);
        for solver in solvers() {
            let iters = 30;
            let fused = Wrap::<OWN>::new(&p);
            let a = iterate(&fused, solver.clone(), &u0, &v0, iters);
            // Every inner step came from the fused evaluation, none from g.
            assert_eq!(fused.inner_calls.load(Ordering::Relaxed), iters);
            assert_eq!(fused.g_calls.load(Ordering::Relaxed), 0);
            let plain = Wrap::<NONE>::new(&p);
            let b = iterate(&plain, solver, &u0, &v0, iters);
            assert_eq!(plain.g_calls.load(Ordering::Relaxed), iters);
            for (x, y) in a.iter().zip(&b) {
                let d = rel_diff(x, y);
                assert!(d <= 1e-12, "{regime:?}: relative difference {d:e}");
            }
            assert_ne!(b[0], u0, "the run moved");
        }
    }
}

#[test]
fn fused_gauss_seidel_is_bit_identical_on_the_quadratic() {
    let q = Quadratic::generate(3, 6, 5).expect("instance");
    let (u0, v0) = (vec![0.3; 6], vec![-0.2; 5]);
    for solver in solvers() {
        let fused = Wrap::<SEPARATE>::new(&q);
        let a = iterate(&fused, solver.clone(), &u0, &v0, 40);
        assert_eq!(fused.inner_calls.load(Ordering::Relaxed), 40);
        let b = iterate(&q, solver, &u0, &v0, 40);
        assert_eq!(a, b);
    }
}

#[test]
fn other_inner_loops_and_jacobi_keep_the_separate_inner_step() {
    let q = Quadratic::generate(4, 3, 4).expect("instance");
    let (u0, v0) = (vec![0.1; 3], vec![0.2; 4]);
    let cold = InnerLoop::Gd {
        steps: 1,
        warm: false,
        beta: None,
    };
    let two = InnerLoop::Gd {
        steps: 2,
        warm: true,
        beta: None,
    };
    for solver in [
        bench_solver(Update::Jacobi),
        Pbgd::gauss_seidel(10.0).with_inner(cold),
        Pbgd::gauss_seidel(10.0).with_inner(two),
    ] {
        let fused = Wrap::<SEPARATE>::new(&q);
        let a = iterate(&fused, solver.clone(), &u0, &v0, 10);
        assert_eq!(fused.inner_calls.load(Ordering::Relaxed), 0);
        assert_eq!(a, iterate(&q, solver, &u0, &v0, 10));
    }
}

/// The two replearn instances of these tests: one sequential, one large enough for the
/// parallel passes and the threaded W1 products (2mhn ≥ 2²⁰ multiply-adds).
fn replearn_instances() -> Vec<RepLearning> {
    [
        (
            Regime::CertifiedGlobal,
            RepSizes::quick_for(Regime::CertifiedGlobal),
        ),
        (
            Regime::General,
            RepSizes {
                n_trn: 700,
                n_val: 600,
                m: 200,
                h: 220,
                n: 12,
                ..RepSizes::default_for(Regime::General)
            },
        ),
    ]
    .into_iter()
    .map(|(regime, sizes)| RepLearning::generate(regime, &sizes, 5).expect("instance"))
    .collect()
}

/// `penalty_step` does what its contract says, checked against separate calls of f and g:
/// the inner step on w first, then u and v from one evaluation at the incoming (u, v) and the
/// new w; values at that point. Every combination of the three steps; 1e-12 relative.
#[test]
fn replearn_penalty_step_matches_its_definition() {
    for p in replearn_instances() {
        let (u0, v0) = p.init(3);
        // A point away from the start (W2 ≠ 0) and a w that is not the LL solution.
        let v0: Vec<f64> = v0
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.1 * ((i % 7) as f64 - 3.0))
            .collect();
        let w0: Vec<f64> = v0
            .iter()
            .enumerate()
            .map(|(i, x)| 0.5 * x + 0.01 * (i % 5) as f64)
            .collect();
        let (gamma, beta, au, av) = (10.0, 1e-3, 2e-4, 3e-4);
        for (alpha_u, alpha_v, inner_beta) in [
            (Some(au), Some(av), Some(beta)),
            (Some(au), Some(av), None),
            (Some(au), None, None),
            (None, Some(av), Some(beta)),
            (Some(au), None, Some(beta)),
        ] {
            let step = PenaltyStep {
                alpha_u,
                alpha_v,
                inner_beta,
            };
            let (mut u, mut v, mut w) = (u0.clone(), v0.clone(), w0.clone());
            let got = p
                .penalty_step(&mut u, &mut v, &mut w, gamma, step)
                .expect("fused step");
            // The definition, from separate calls.
            let mut we = w0.clone();
            if let Some(b) = inner_beta {
                let mut gw = vec![0.0; we.len()];
                p.g(&u0, &we, None, Some(&mut gw));
                we.iter_mut().zip(&gw).for_each(|(x, d)| *x -= b * d);
            }
            let (mut fu, mut fv) = (vec![0.0; u0.len()], vec![0.0; v0.len()]);
            let (mut gu, mut gv) = (fu.clone(), fv.clone());
            let mut hu = fu.clone();
            let f = p.f(&u0, &v0, Some(&mut fu), Some(&mut fv));
            let g = p.g(&u0, &v0, Some(&mut gu), Some(&mut gv));
            let gs = p.g(&u0, &we, Some(&mut hu), None);
            let want_u: Vec<f64> = match alpha_u {
                Some(a) => (0..u0.len())
                    .map(|i| u0[i] - a * (fu[i] + gamma * (gu[i] - hu[i])))
                    .collect(),
                None => u0.clone(),
            };
            let want_v: Vec<f64> = match alpha_v {
                Some(a) => (0..v0.len())
                    .map(|i| v0[i] - a * (fv[i] + gamma * gv[i]))
                    .collect(),
                None => v0.clone(),
            };
            let what = format!("{} {step:?}", p.name());
            for (x, y, name) in [(&u, &want_u, "u"), (&v, &want_v, "v"), (&w, &we, "w")] {
                let d = rel_diff(x, y);
                assert!(d <= 1e-12, "{what}: {name} differs by {d:e}");
            }
            // The steps moved what they should (so the comparison above is not vacuous).
            assert_eq!(u != u0, alpha_u.is_some(), "{what}");
            assert_eq!(v != v0, alpha_v.is_some(), "{what}");
            assert_eq!(w != w0, inner_beta.is_some(), "{what}");
            for (a, b, name) in [(got[0], f, "f"), (got[1], g, "g"), (got[2], gs, "g(u, w)")] {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1e-300),
                    "{what}: {name} {a} vs {b}"
                );
            }
        }
    }
}

/// PBGD through the fused steps against the same solver on the separate evaluation path, over
/// 30 iterations: Jacobi with one warm inner step (folded in: no call of g at all), Jacobi
/// with two inner steps (the step alone fused), Gauss–Seidel with one and three v steps.
#[test]
fn fused_steps_match_the_separate_path_on_replearn() {
    let two = InnerLoop::Gd {
        steps: 2,
        warm: true,
        beta: None,
    };
    for p in replearn_instances() {
        let (u0, v0) = p.init(5);
        for (solver, g_calls) in [
            (bench_solver(Update::Jacobi), 0),
            (bench_solver(Update::Jacobi).with_inner(two), 60),
            (bench_solver(Update::GaussSeidel), 0),
            (bench_solver(Update::GaussSeidel).with_v_steps(3), 0),
        ] {
            let iters = 30;
            let fused = Wrap::<OWN>::new(&p).with_step();
            let a = iterate(&fused, solver.clone(), &u0, &v0, iters);
            assert_eq!(
                fused.step_calls.load(Ordering::Relaxed),
                iters,
                "{}",
                solver.name()
            );
            assert_eq!(
                fused.g_calls.load(Ordering::Relaxed),
                g_calls,
                "{}",
                solver.name()
            );
            let plain = Wrap::<OWN>::new(&p);
            let b = iterate(&plain, solver.clone(), &u0, &v0, iters);
            assert_eq!(plain.step_calls.load(Ordering::Relaxed), 0);
            for (x, y) in a.iter().zip(&b) {
                let d = rel_diff(x, y);
                assert!(d <= 1e-12, "{}: relative difference {d:e}", solver.name());
            }
            assert_ne!(b[0], u0, "the run moved");
        }
    }
}
