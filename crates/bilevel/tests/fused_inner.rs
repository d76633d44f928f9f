//! Gauss–Seidel PBGD with one warm inner step takes ∇_v g(u, w) from the v step's evaluation
//! where the problem fuses them (`Problem::penalty_eval_inner`); the iterates must match the
//! unfused path (separate inner step).

use bilevel::penalty::Penalty;
use bilevel::perf::bench_solver;
use bilevel::problems::Quadratic;
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes};
use bilevel::seeds::{Stream, rng};
use bilevel::solvers::{InnerLoop, State, Update};
use bilevel::{Pbgd, Problem, Smoothness, Solver};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Delegates to the wrapped problem; `FUSE` selects whether `penalty_eval_inner` is offered:
/// from the problem itself, or (`SEPARATE`) from separate calls, or not at all.
struct Wrap<'a, const MODE: u8> {
    p: &'a dyn Problem,
    g_calls: AtomicUsize,
    inner_calls: AtomicUsize,
}

const NONE: u8 = 0;
const OWN: u8 = 1;
const SEPARATE: u8 = 2;

impl<'a, const MODE: u8> Wrap<'a, MODE> {
    fn new(p: &'a dyn Problem) -> Self {
        Wrap {
            p,
            g_calls: AtomicUsize::new(0),
            inner_calls: AtomicUsize::new(0),
        }
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

fn solvers() -> Vec<Pbgd> {
    vec![
        bench_solver(Update::GaussSeidel),
        bench_solver(Update::GaussSeidel).with_v_steps(3),
    ]
}

#[test]
fn fused_gauss_seidel_matches_the_unfused_path_on_replearn() {
    // The second instance is large enough for the parallel passes.
    for (regime, sizes) in [
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
                n: 4,
                ..RepSizes::default_for(Regime::General)
            },
        ),
    ] {
        let p = RepLearning::generate(regime, &sizes, 5).expect("instance");
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
