//! Roofline report: measures the GEMM rate (faer) and the read bandwidth in this process, then
//! times each kernel (median) and prints achieved time / floor. Threads: `BILEVEL_THREADS`
//! (default: all cores). `cargo bench --bench roofline`.

use bilevel::perf::{print_roofline, replearn_rows, set_threads_from_env};

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let threads = set_threads_from_env();
    let rates = bilevel::perf::measure();
    let rows = replearn_rows(&bilevel::perf::RepSize::ALL, 0).expect("benchmark instances");
    print_roofline(threads, &rates, &rows);
}
