//! Experiments: compositions of problems and solvers that check a claim of the paper and
//! return data — claims with PASS/FAIL, tables, figure data and traces. Drawing and writing
//! files is the command-line tool's job; everything here is plain data.

mod cleaning;
mod cleaning_benchopt;
pub use cleaning::{FM_C, FM_GAMMA, FM_ITERS, FM_LAMBDA};
pub use cleaning_benchopt::{
    BENCHOPT_BUDGET_S, BENCHOPT_C, BENCHOPT_GAMMA, BENCHOPT_ITERS, CleaningBenchopt,
    benchopt_solver, stationarity,
};
mod example1;
mod followups;
mod replearn;
mod study;
mod study_apps;

pub use cleaning::{CleaningStudy, Fig4};
pub use example1::{Fig1, Fig2};
pub use followups::Followups;
pub use replearn::{Fig3, Fig3Settings};
pub use study::{StudyExample1, StudyToy};
pub use study_apps::{StudyCleaning, StudyReplearn};

use crate::error::Result;
use crate::trace::Trace;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Progress reporting for long experiments (a progress bar in the command-line tool).
/// Implementations must be cheap and thread-safe: runs call it from rayon workers.
pub trait Progress: Send + Sync {
    /// Adds `n` units of work to the total.
    fn add_total(&self, n: u64);
    /// Marks `n` units done.
    fn inc(&self, n: u64);
    /// Shows what is running now.
    fn message(&self, _msg: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_total(&self, _n: u64) {}
    fn inc(&self, _n: u64) {}
}

/// What an experiment run may use.
pub struct Context<'a> {
    /// Smaller sizes and fewer seeds, for smoke tests (the whole `--quick` suite runs in under
    /// a minute).
    pub quick: bool,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Set from another thread (Ctrl-C) to stop early; experiments return what they have.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl Context<'_> {
    /// True once the user asked to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

impl Default for Context<'static> {
    fn default() -> Self {
        Context {
            quick: false,
            progress: &NoProgress,
            interrupt: None,
        }
    }
}

/// A checked statement: what is claimed, what was measured, the threshold, the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    /// The claim, in words a reader of the paper recognizes.
    pub text: String,
    /// The measured figure.
    pub measured: String,
    /// The threshold it is compared with.
    pub threshold: String,
    /// Whether the measurement meets the threshold.
    pub pass: bool,
}

impl Claim {
    /// A claim with its verdict.
    pub fn new(
        text: impl Into<String>,
        measured: impl Into<String>,
        threshold: impl Into<String>,
        pass: bool,
    ) -> Self {
        Claim {
            text: text.into(),
            measured: measured.into(),
            threshold: threshold.into(),
            pass,
        }
    }
}

/// A table for the report (Markdown) and the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of formatted cells.
    pub rows: Vec<Vec<String>>,
}

/// A set of runs drawn as one line (median) with a 10–90% band when there are several.
#[derive(Debug, Clone, Serialize)]
pub struct CurveGroup {
    /// Legend entry.
    pub label: String,
    /// One series (x, y) per run (seed or start).
    pub runs: Vec<Vec<(f64, f64)>>,
}

/// A path drawn over a heat map (a trajectory), with optional start and end markers.
#[derive(Debug, Clone, Serialize)]
pub struct PathSeries {
    /// Legend entry (empty: no legend entry).
    pub label: String,
    /// Points (x, y) in order.
    pub points: Vec<(f64, f64)>,
}

/// Points marked on a heat map or curve panel.
#[derive(Debug, Clone, Serialize)]
pub struct Markers {
    /// Legend entry.
    pub label: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// One panel of a figure.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Panel {
    /// Line plots: each group's median with its 10–90% band.
    Curves {
        /// Panel title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Logarithmic y axis (non-positive values are dropped from the plot, not the data).
        log_y: bool,
        /// The groups.
        groups: Vec<CurveGroup>,
        /// Marked points (for example stationary points).
        markers: Vec<Markers>,
    },
    /// A heat map of z over a regular grid, with contour lines, paths and markers.
    Heatmap {
        /// Panel title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Range of x covered by the grid.
        x_range: (f64, f64),
        /// Range of y covered by the grid.
        y_range: (f64, f64),
        /// z[i][j] at x = x_range.0 + j·dx, y = y_range.0 + i·dy (row i is one y value).
        z: Vec<Vec<f64>>,
        /// Colour by log10(z) (z must be ≥ 0; zeros are clamped).
        log_color: bool,
        /// Contour levels (in z units).
        contours: Vec<f64>,
        /// Trajectories drawn on top.
        paths: Vec<PathSeries>,
        /// Marked points.
        markers: Vec<Markers>,
    },
    /// A bar chart (success rates per solver, for example).
    Bars {
        /// Panel title.
        title: String,
        /// y-axis label.
        y_label: String,
        /// (bar label, value).
        bars: Vec<(String, f64)>,
    },
}

/// A figure: panels side by side, written as NAME.png and NAME.svg.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// File stem.
    pub name: String,
    /// Caption, used in the report.
    pub caption: String,
    /// Panels, left to right.
    pub panels: Vec<Panel>,
}

/// A part of an experiment that could not run (a data set that is not installed), with the
/// command that makes it runnable. Reports count it as SKIPPED, never as PASS.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Which part.
    pub part: String,
    /// Why it did not run.
    pub reason: String,
    /// The command that installs what is missing.
    pub fix: String,
}

/// Everything an experiment returns.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Experiment name (command-line name).
    pub name: String,
    /// One-line title.
    pub title: String,
    /// Settings and seeds, as shown in the report and the JSON summary.
    pub settings: serde_json::Value,
    /// Claims with their verdicts.
    pub claims: Vec<Claim>,
    /// Tables.
    pub tables: Vec<Table>,
    /// Figures (data only).
    pub figures: Vec<Figure>,
    /// Per-run traces worth keeping, by file stem.
    #[serde(skip)]
    pub traces: Vec<(String, Trace)>,
    /// Free-form measured numbers for the JSON summary.
    pub summary: serde_json::Value,
    /// Remarks for the report (what the numbers mean, what was not asserted).
    pub notes: Vec<String>,
    /// Wall time of the experiment, seconds.
    pub wall_time_s: f64,
    /// True when the run was interrupted and the results are partial.
    pub partial: bool,
    /// Parts that could not run.
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// True when every claim passes.
    pub fn passed(&self) -> bool {
        self.claims.iter().all(|c| c.pass)
    }
}

/// An experiment of the paper (or a later study), runnable by name.
pub trait Experiment: Send + Sync {
    /// Command-line name (fig1, fig2, ...).
    fn name(&self) -> &'static str;
    /// One-line description for `bilevel list`.
    fn title(&self) -> &'static str;
    /// Runs it.
    fn run(&self, ctx: &Context<'_>) -> Result<Report>;
}

/// Every shipped experiment, in report order.
pub fn all() -> Vec<Box<dyn Experiment>> {
    vec![
        Box::new(Fig1),
        Box::new(Fig2),
        Box::new(Fig3::default()),
        Box::new(Fig4),
        Box::new(StudyExample1),
        Box::new(StudyToy),
        Box::new(StudyReplearn),
        Box::new(StudyCleaning),
        Box::new(CleaningStudy),
        Box::new(CleaningBenchopt),
        Box::new(Followups),
    ]
}

/// The experiment called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Experiment>> {
    all().into_iter().find(|e| e.name() == name)
}

/// Median and the 10% and 90% quantiles of finite values (linear interpolation), or None when
/// there are none.
pub fn quantiles(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some((q(0.5), q(0.1), q(0.9)))
}
