//! Progress bars (indicatif; hidden by indicatif itself when stderr is not a terminal) and the
//! Ctrl-C flag.

use bilevel::experiments::Progress;
use bilevel::trace::{Observer, Snapshot, Status};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bar for one experiment: work units are added as the experiment discovers them.
pub struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    /// A bar labelled `prefix` with no work yet.
    pub fn new(prefix: &str) -> Self {
        let bar = ProgressBar::new(0).with_style(style());
        bar.set_prefix(prefix.to_string());
        BarProgress { bar }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for BarProgress {
    fn add_total(&self, n: u64) {
        self.bar.inc_length(n);
    }
    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
    fn message(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }
}

/// An observer that moves a bar to the current iteration of a run.
pub struct RunBar {
    bar: ProgressBar,
    hidden: bool,
    seen: u64,
}

impl RunBar {
    /// A bar for a run of at most `max_iter` iterations.
    pub fn new(prefix: &str, max_iter: usize) -> Self {
        let bar = ProgressBar::new(max_iter as u64).with_style(style());
        bar.set_prefix(prefix.to_string());
        RunBar {
            hidden: bar.is_hidden(),
            bar,
            seen: 0,
        }
    }
}

impl Observer for RunBar {
    fn observe(&mut self, snap: &Snapshot<'_>) {
        // Records can come every iteration of a cheap problem: stay out of the way.
        if self.hidden {
            return;
        }
        self.bar.set_position(snap.record.iter as u64);
        if self.seen.is_multiple_of(256) {
            self.bar
                .set_message(format!("L_gamma = {:.3e}", snap.record.l_gamma));
        }
        self.seen += 1;
    }
    fn finish(&mut self, _status: &Status) {
        self.bar.finish_and_clear();
    }
}

impl Drop for RunBar {
    fn drop(&mut self) {
        // A diverged run never calls `finish`.
        self.bar.finish_and_clear();
    }
}

/// Installs the Ctrl-C handler: the first Ctrl-C sets the returned flag (runs stop after their
/// current iteration and what exists is written); a second one exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let res = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without writing");
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: stopping after the current iteration and writing what was computed (Ctrl-C again to exit at once)"
        );
    });
    if let Err(e) = res {
        eprintln!(
            "warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will end the program without writing"
        );
    }
    flag
}
