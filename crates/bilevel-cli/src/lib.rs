//! The `bilevel` command-line tool as a library: configuration files, figures, reports and the
//! subcommands, so that tests can call the config loader and the drawing code directly.

pub mod commands;
pub mod config;
pub mod plot;
pub mod progress;
pub mod report;

/// Builds the global rayon pool with `n` threads and points faer at it. Call once, before any
/// parallel work.
pub fn set_threads(n: usize) -> anyhow::Result<()> {
    if n == 0 {
        anyhow::bail!("--threads 0: give at least 1 thread");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot build a pool of {n} threads: {e}"))?;
    faer::set_global_parallelism(faer::Par::rayon(n));
    Ok(())
}
