//! Machine rates for roofline floors: dense GEMM throughput (faer) and streaming read
//! bandwidth, measured in the same process as the kernels they bound.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rayon::prelude::*;
use std::time::Instant;

/// Measured rates of this machine.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MachineRates {
    /// f64 GEMM throughput, GFLOP/s (best of the repetitions).
    pub gemm_gflops: f64,
    /// Read bandwidth of a buffer larger than the caches, GB/s (best of the repetitions).
    pub read_gbs: f64,
}

/// Best f64 GEMM rate over `reps` products of n×n matrices, with parallelism `par`.
pub fn gemm_gflops(n: usize, reps: usize, par: Par) -> f64 {
    let a = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 13) as f64 / 13.0);
    let b = Mat::<f64>::from_fn(n, n, |i, j| ((i * 5 + j * 11) % 17) as f64 / 17.0);
    let mut c = Mat::<f64>::zeros(n, n);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, par);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// Best read bandwidth over `reps` sums of a buffer of `bytes` bytes, split over the rayon
/// pool (both cores stream, as the kernels do).
pub fn read_gbs(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let buf: Vec<f64> = (0..n).map(|i| (i % 97) as f64).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0.0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let s: f64 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                // Four accumulators so the sum is bound by loads, not by the add latency.
                let mut acc = [0.0f64; 4];
                for q in c.chunks_exact(4) {
                    acc[0] += q[0];
                    acc[1] += q[1];
                    acc[2] += q[2];
                    acc[3] += q[3];
                }
                acc.iter().sum::<f64>()
            })
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        sink += s;
    }
    std::hint::black_box(sink);
    (n * 8) as f64 / best / 1e9
}

/// GEMM rate (n = 1024) and read bandwidth (256 MiB) with the global parallelism.
pub fn measure() -> MachineRates {
    let par = faer::get_global_parallelism();
    MachineRates {
        gemm_gflops: gemm_gflops(1024, 5, par),
        read_gbs: read_gbs(256 << 20, 5),
    }
}

/// The roofline floor of a kernel, seconds: max(useful flops / GEMM rate, bytes that must be
/// read / bandwidth).
pub fn floor_seconds(flops: f64, bytes: f64, rates: &MachineRates) -> f64 {
    (flops / (rates.gemm_gflops * 1e9)).max(bytes / (rates.read_gbs * 1e9))
}
