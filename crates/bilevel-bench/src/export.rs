//! What the benchmark cases write for the NumPy/JAX peers (bench/peers): the case.json of a
//! timed kernel and the names the peers read.

use crate::cost::Cost;
use crate::rates::MachineRates;
use bilevel::Result;
use bilevel::solvers::Update;

/// One benchmarked case written for the peers (see [`crate::export_replearn_case`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportedCase {
    /// Directory name under the export root, e.g. `large-jacobi`.
    pub name: String,
    /// "replearn" (one PBGD iteration) or "cleaning" (one penalty-gradient evaluation).
    pub kind: String,
    /// "jacobi" or "gauss-seidel" (replearn), "penalty-gradient" (cleaning).
    pub update: String,
    /// Outer step α (both blocks).
    pub alpha: f64,
    /// Inner step β.
    pub beta: f64,
    /// Penalty constant γ.
    pub gamma: f64,
    /// Iterations from the start point to the exported end point (the agreement check).
    pub check_iters: usize,
    /// Our median time per iteration, seconds.
    pub seconds: f64,
    /// Repetitions behind the median.
    pub reps: usize,
    /// Cost of the iteration on the data as given.
    pub cost: Cost,
    /// Roofline floor of that on the machine rates of this run, seconds.
    pub floor: f64,
    /// Cost of the work our iteration does (see [`crate::Passes`]).
    pub work: Cost,
    /// Roofline floor of that, seconds.
    pub work_floor: f64,
    /// The machine rates measured just before the timing, which the floors use.
    pub rates: MachineRates,
}

/// "jacobi" or "gauss-seidel", as the exported cases name the updates.
pub fn update_label(update: Update) -> &'static str {
    match update {
        Update::Jacobi => "jacobi",
        Update::GaussSeidel => "gauss-seidel",
    }
}

/// A case's name: its directory's.
pub(crate) fn case_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `case` as `dir`/case.json.
pub(crate) fn write_case(dir: &std::path::Path, case: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(case).unwrap_or_default();
    std::fs::write(dir.join("case.json"), json).map_err(|e| bilevel::error::Error::Write {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })
}
