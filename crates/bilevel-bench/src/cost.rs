//! Cost models and roofline floors: the useful flops and the bytes that must be moved by one
//! benchmarked kernel or whole run, over the data as given or over the R of its QR
//! ([`Passes`]), the floor that sets on the measured machine rates, and the roofline table.

use crate::rates::MachineRates;
use bilevel::solvers::Update;

/// The roofline floor of a kernel, seconds: max(useful flops / GEMM rate, bytes that must be
/// read / bandwidth).
pub fn floor_seconds(flops: f64, bytes: f64, rates: &MachineRates) -> f64 {
    (flops / (rates.gemm_gflops * 1e9)).max(bytes / (rates.read_gbs * 1e9))
}

/// Useful flops and bytes that must be moved by one kernel.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Floating-point operations of the best multiplication order.
    pub flops: f64,
    /// Bytes that must cross the memory bus (see [`replearn_iteration_cost`]).
    pub bytes: f64,
}

impl Cost {
    /// The roofline floor of this cost on `rates`, seconds.
    pub fn floor(&self, rates: &MachineRates) -> f64 {
        floor_seconds(self.flops, self.bytes, rates)
    }

    /// Which roof sets the floor: "GEMM" or "memory".
    pub fn bound(&self, rates: &MachineRates) -> &'static str {
        if self.flops / (rates.gemm_gflops * 1e9) >= self.bytes / (rates.read_gbs * 1e9) {
            "GEMM"
        } else {
            "memory"
        }
    }
}

/// What the passes of a least-squares loss ½‖X Z − Y‖² read: X as given (N × m), or the R of
/// its QR when N ≥ m (`kernels::LsData`), a triangle of m(m + 1)/2 entries, which is what our
/// iterations do. The floors are those of the data as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passes {
    /// The floor of the data as given: N m entries per pass.
    OverX,
    /// The floor of the work we do: the R of a QR when N ≥ m.
    OverR,
}

impl Passes {
    /// Entries of the matrix one pass reads, for `rows` samples of `m` features.
    pub fn entries(self, rows: usize, m: usize) -> f64 {
        let over_r = self == Passes::OverR && bilevel::linalg::ls_passes_read_r(rows, m);
        let (r, m) = (rows as f64, m as f64);
        if over_r { m * (m + 1.0) / 2.0 } else { r * m }
    }
}

/// Cost of one benchmarked PBGD iteration on representation learning with N = `nt`,
/// N' = `nv`, features m, width h, outputs n: the least work the iteration needs, whatever the
/// implementation, with the passes over the data as `passes` says.
///
/// Flops, best order (Z = W1·[W2, w] first, then the data, right-hand sides stacked), with
/// Nm and N'm the entries of the training and validation matrices a pass reads:
/// * Jacobi: inner step W1w, X_trn(·), X_trnᵀ(·), W1ᵀG (4mhn + 4Nmn); penalty gradient at
///   (W1, W2, w): W1[W2, w], X_trn and X_trnᵀ on 2n columns, X_val and X_valᵀ on n, W1ᵀ(·) and
///   the rank-2n ∇W1 (10mhn + 8Nmn + 4N'mn).
/// * Gauss–Seidel: v step stacked with the inner step at the same W1 (8mhn + 8Nmn + 4N'mn),
///   u step at (W2⁺, w⁺) (8mhn + 8Nmn + 4N'mn).
///
/// Bytes: the passes over the data that the dependencies force (a transposed product needs the
/// whole residual, but each row block can be reused from cache, so a fused pass reads a matrix
/// once): Jacobi reads X_trn twice (inner step, then the penalty at the new w) and X_val once;
/// Gauss–Seidel reads both twice (at W2 and at W2⁺). Plus W1 read once and written once.
pub fn replearn_iteration_cost(
    (nt, nv, m, h, n): (usize, usize, usize, usize, usize),
    update: Update,
    passes: Passes,
) -> Cost {
    let (et, ev) = (passes.entries(nt, m), passes.entries(nv, m));
    let (m, h, n) = (m as f64, h as f64, n as f64);
    let (mhn, tmn, vmn) = (m * h * n, et * n, ev * n);
    let (flops, xt_reads, xv_reads) = match update {
        Update::Jacobi => (14.0 * mhn + 12.0 * tmn + 4.0 * vmn, 2.0, 1.0),
        Update::GaussSeidel => (16.0 * mhn + 16.0 * tmn + 8.0 * vmn, 2.0, 2.0),
    };
    Cost {
        flops,
        bytes: 8.0 * (xt_reads * et + xv_reads * ev) + 2.0 * 8.0 * m * h,
    }
}

/// One timed kernel of a roofline report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RooflineRow {
    /// Kernel name.
    pub kernel: String,
    /// Shapes, for the table.
    pub shape: String,
    /// Median time per call, seconds.
    pub seconds: f64,
    /// Its cost on the data as given (the floor).
    pub cost: Cost,
    /// The cost of the work it does (passes over R where that is smaller, see [`Passes`]).
    pub work: Cost,
    /// The machine rates measured just before it.
    pub rates: MachineRates,
}

/// Prints the roofline table (Markdown): each row against the machine rates measured just
/// before it.
pub fn print_roofline(threads: usize, rows: &[RooflineRow]) {
    println!(
        "threads {threads}; each row's floor from the rates measured just before it: faer GEMM 1024³ (GFLOP/s, and its speedup over one thread) and a streaming read of 256 MiB; and the cores' cache-line round trip (~110 ns: shared cache, ~400 ns: different core complexes)"
    );
    println!(
        "| kernel | shape | time (ms) | GFLOP | MB | GEMM GFLOP/s | speedup | read GB/s | round trip (ns) | floor (ms) | bound | achieved/floor | floor of our work (ms) | achieved/that |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for r in rows {
        let rates = &r.rates;
        let (floor, work) = (r.cost.floor(rates), r.work.floor(rates));
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2} | {:.1} | {:.0} | {:.3} | {} | {:.2} | {:.3} | {:.2} |",
            r.kernel,
            r.shape,
            r.seconds * 1e3,
            r.cost.flops / 1e9,
            r.cost.bytes / 1e6,
            rates.gemm_gflops,
            rates.speedup(),
            rates.read_gbs,
            rates.round_trip_ns,
            floor * 1e3,
            r.cost.bound(rates),
            r.seconds / floor,
            work * 1e3,
            r.seconds / work,
        );
    }
    println!(
        "(floor: the data as given, as the issue defines it; floor of our work: the passes over R from a QR of X where N >= m)"
    );
}

/// Cost of one penalty-gradient evaluation of hyper-cleaning (least squares): f and g with both
/// gradients at (u, W), and g with its u-gradient at (u, w). Flops: X_trn[W, w] and X_trnᵀ R on
/// n columns (6Nmn), X_val W and X_valᵀ R (4N'mn, N'm the entries the X_val pass reads, see
/// [`Passes`]; X_trn is weighted and always read as given). Bytes: each data matrix read once
/// (a fused pass), plus u.
pub fn cleaning_eval_cost((nt, nv, m, n): (usize, usize, usize, usize), passes: Passes) -> Cost {
    let ev = passes.entries(nv, m);
    let (nt, m, n) = (nt as f64, m as f64, n as f64);
    Cost {
        flops: 6.0 * nt * m * n + 4.0 * ev * n,
        bytes: 8.0 * (m * nt + ev) + 8.0 * nt,
    }
}

/// Work of a whole exact-v hyper-cleaning run (least squares, N = `nt`, N' = `nv`, m features,
/// n classes) that refreshed its factors `refreshes` times and ran `solves` preconditioned CG
/// solves of both systems (2n right-hand sides) with `cg_iters` iterations in all, over
/// `iters` iterations. Flops: per refresh the weighted Gram's lower triangle (N m²), its
/// right-hand side (2Nmn), two Cholesky factorizations (2m³/3) and solves (8m²n); per CG
/// solve one residual and per CG iteration one operator product, each a pass X_trn·P,
/// X_trnᵀ(ψ ⊙ ·) on 2n columns (8Nmn) plus X_valᵀX_val on n (2m²n); per iteration f (a
/// pass over the R of X_val's QR: m(m + 1)n flops, see [`Passes`]), and after a refresh the
/// u gradient's residuals (X_trn[W, w]: 4Nmn; after a CG solve they come with the solve). Bytes: X_trn read once per pass (refresh and its
/// residuals included) and R once per iteration. This is the floor of the algorithm as run,
/// not of a different one.
pub fn cleaning_run_cost(
    (nt, nv, m, n): (usize, usize, usize, usize),
    refreshes: usize,
    solves: usize,
    cg_iters: usize,
    iters: usize,
) -> Cost {
    let ev = Passes::OverR.entries(nv, m);
    let (nt, m, n) = (nt as f64, m as f64, n as f64);
    let (r, passes, it) = (refreshes as f64, (solves + cg_iters) as f64, iters as f64);
    let refresh = nt * m * m + 2.0 * nt * m * n + 2.0 * m * m * m / 3.0 + 8.0 * m * m * n;
    let pass = 8.0 * nt * m * n + 2.0 * m * m * n;
    let (rows, eval) = (4.0 * nt * m * n, 2.0 * ev * n);
    Cost {
        flops: r * (refresh + rows) + passes * pass + it * eval,
        bytes: 8.0 * (m * nt * (2.0 * r + passes) + ev * it),
    }
}
