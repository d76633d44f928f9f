//! # bilevel-bench
//!
//! The benchmarks of `bilevel`, kept out of the core library: the machine rates that roofline
//! floors are computed from ([`measure`]), the cost models of the benchmarked kernels and runs
//! ([`Cost`], [`Passes`]), the benchmark cases of representation learning ([`RepSize`]) and
//! hyper-cleaning, and their export for the NumPy/JAX peers in bench/peers (the `bilevel bench`
//! command). The criterion benches (`iteration`, `roofline`) live in this crate's benches/.
//!
//! - `rates`: GEMM rate, read bandwidth, the cores' round trip, the thread setting;
//! - `timing`: medians, rounds and whole-run repetitions;
//! - `cost`: flops and bytes of each kernel, roofline floors, the roofline table;
//! - `export`: what the exported cases hold (case.json);
//! - `replearn`, `cleaning`: the cases of each application;
//! - `followups`: time to a fixed ‖∇F_γ‖ for PBGD, ALT-PBGD and PBGD-Free.
//! - `softmax`: benchopt's data-cleaning problem with softmax cross-entropy.

mod cleaning;
mod cost;
mod export;
mod followups;
mod rates;
mod replearn;
mod softmax;
mod timing;

pub use cleaning::{
    CleaningCase, CleaningRun, cleaning_case, cleaning_rows, cleaning_run_data, cleaning_run_start,
    export_cleaning_case, export_cleaning_run,
};
pub use cost::{
    Cost, Passes, RooflineRow, cleaning_eval_cost, cleaning_run_cost, floor_seconds,
    print_roofline, replearn_iteration_cost,
};
pub use export::{ExportedCase, update_label};
pub use followups::{FOLLOWUPS_EPS, FollowupsRow, followups_cleaning, followups_replearn};
pub use rates::{
    MachineRates, core_round_trip_ns, gemm_gflops, measure, read_gbs, set_threads_from_env,
};
pub use replearn::{
    RUN_MAX_ITER, RUN_TOL, RepSize, ReplearnRun, export_replearn_case, export_replearn_run,
    replearn_case, replearn_rows, replearn_run_to_tol,
};
pub use softmax::{
    SOFTMAX_TIMED, SOFTMAX_WARM, SoftmaxCase, export_softmax_case, newton_cost, softmax_problem,
};
pub use timing::{RUN_REPS, TIMING_ROUNDS, median_seconds, time_budget};

use bilevel::solvers::{InnerLoop, Pbgd, Update};

/// The iteration that the benchmarks time: PBGD with γ = [`BENCH_GAMMA`] and one warm
/// gradient step of the value-function estimate per iteration (β = 1/ℓ_{g,vv}).
pub const BENCH_GAMMA: f64 = 10.0;

/// A PBGD solver for the benchmarked iteration (`update`), see [`BENCH_GAMMA`].
pub fn bench_solver(update: Update) -> Pbgd {
    Pbgd::new(update, BENCH_GAMMA).with_inner(InnerLoop::Gd {
        steps: 1,
        warm: true,
        beta: None,
    })
}
