//! Roofline report: times each kernel (the smallest of three medians) right after measuring the
//! GEMM rate (faer) and the read bandwidth in this process, and prints achieved time / floor. Threads: `BILEVEL_THREADS`
//! (default: all cores); `BILEVEL_SIZES=small,large,cleaning` picks the kernels. `cargo bench -p bilevel-bench --bench roofline`.

use bilevel_bench::{RepSize, cleaning_rows, print_roofline, replearn_rows, set_threads_from_env};

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let threads = set_threads_from_env();
    let sizes: Vec<RepSize> = RepSize::ALL
        .into_iter()
        .filter(|s| {
            std::env::var("BILEVEL_SIZES").map_or(true, |v| v.split(',').any(|x| x == s.label()))
        })
        .collect();
    let mut rows = replearn_rows(&sizes, 0).expect("benchmark instances");
    if std::env::var("BILEVEL_SIZES").map_or(true, |v| v.split(',').any(|x| x == "cleaning")) {
        rows.extend(cleaning_rows(0).expect("hyper-cleaning instance"));
    }
    print_roofline(threads, &rows);
}
