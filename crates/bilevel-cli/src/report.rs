//! Markdown reports and JSON summaries.

use bilevel::experiments::{Claim, Report, Table};
use serde::Serialize;
use std::fmt::Write as _;

/// Escapes text for a Markdown table cell (pipes, line breaks, and `*` as in "f*", which would
/// otherwise start emphasis).
pub fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

/// Escapes running text: `*` is literal (f*, g*), line breaks become spaces.
pub fn text(s: &str) -> String {
    s.replace('*', "\\*").replace(['\n', '\r'], " ")
}

/// A Markdown table.
pub fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let h: Vec<String> = header.iter().map(|c| cell(c)).collect();
    let _ = writeln!(s, "| {} |", h.join(" | "));
    let _ = writeln!(s, "|{}", " --- |".repeat(header.len().max(1)));
    for r in rows {
        let mut r: Vec<String> = r.iter().map(|c| cell(c)).collect();
        r.resize(header.len().max(r.len()), String::new());
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// Files written for one figure, relative to the output directory.
#[derive(Debug, Clone, Serialize)]
pub struct FigureFiles {
    /// Figure name.
    pub name: String,
    /// Caption.
    pub caption: String,
    /// PNG path.
    pub png: String,
    /// SVG path.
    pub svg: String,
}

/// What `reproduce` knows about one experiment.
pub struct Outcome {
    /// Experiment name.
    pub name: String,
    /// Title.
    pub title: String,
    /// The report, or the error that stopped the experiment.
    pub result: Result<Report, String>,
    /// Figures written.
    pub figures: Vec<FigureFiles>,
    /// Trace files written (relative paths).
    pub traces: Vec<String>,
    /// JSON summary path (relative), if written.
    pub summary_json: Option<String>,
    /// Wall time including writing outputs, seconds.
    pub wall_time_s: f64,
    /// Outputs that could not be written (each counts as a failure).
    pub output_errors: Vec<String>,
}

/// Claim counts of one experiment or of a whole report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Claims that pass.
    pub pass: usize,
    /// Claims that fail, experiments that stopped with an error, outputs not written.
    pub fail: usize,
    /// Claims of an interrupted experiment: measured on partial data, so neither PASS nor FAIL.
    pub not_run: usize,
    /// Parts of experiments that could not run (a data set not installed).
    pub skipped: usize,
}

impl Outcome {
    /// Claim counts; an error counts as one failure, and every claim of an interrupted
    /// experiment as not run.
    pub fn counts(&self) -> Counts {
        match &self.result {
            Ok(r) if r.partial => Counts {
                pass: 0,
                fail: self.output_errors.len(),
                not_run: r.claims.len(),
                skipped: r.skipped.len(),
            },
            Ok(r) => {
                let p = r.claims.iter().filter(|c| c.pass).count();
                Counts {
                    pass: p,
                    fail: r.claims.len() - p + self.output_errors.len(),
                    not_run: 0,
                    skipped: r.skipped.len(),
                }
            }
            Err(_) => Counts {
                fail: 1,
                ..Counts::default()
            },
        }
    }
}

/// Counts summed over experiments.
pub fn total_counts(outcomes: &[Outcome]) -> Counts {
    outcomes
        .iter()
        .map(Outcome::counts)
        .fold(Counts::default(), |a, b| Counts {
            pass: a.pass + b.pass,
            fail: a.fail + b.fail,
            not_run: a.not_run + b.not_run,
            skipped: a.skipped + b.skipped,
        })
}

/// The JSON summary of one experiment: everything but the figures' data.
#[derive(Serialize)]
pub struct Summary<'a> {
    /// Experiment name.
    pub name: &'a str,
    /// Title.
    pub title: &'a str,
    /// True when every claim passes.
    pub passed: bool,
    /// True when interrupted.
    pub partial: bool,
    /// Experiment wall time, seconds.
    pub wall_time_s: f64,
    /// Settings and seeds.
    pub settings: &'a serde_json::Value,
    /// Claims.
    pub claims: &'a [Claim],
    /// Tables.
    pub tables: &'a [Table],
    /// Measured numbers.
    pub summary: &'a serde_json::Value,
    /// Notes.
    pub notes: &'a [String],
    /// Figure files.
    pub figures: &'a [FigureFiles],
    /// Trace files.
    pub traces: &'a [String],
}

/// What the report header states about the whole run.
pub struct Header {
    /// The command as typed.
    pub command: String,
    /// Quick mode.
    pub quick: bool,
    /// Total wall time, seconds.
    pub wall_time_s: f64,
    /// Experiments selected but not run (interrupted before them).
    pub not_run: Vec<String>,
    /// Ctrl-C was pressed.
    pub interrupted: bool,
}

/// Machine facts for reports: cores, threads, OS, CPU model where readable.
pub fn machine_info() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cores} logical cores available, {} rayon threads; {cpu}; {}-{}",
        rayon::current_num_threads(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The reproduction report.
pub fn reproduce_markdown(outcomes: &[Outcome], h: &Header) -> String {
    let c = total_counts(outcomes);
    let (pass, fail) = (c.pass, c.fail);
    let mut s = String::new();
    let _ = writeln!(s, "# bilevel: reproduction report\n");
    if h.interrupted {
        let mut not_run = Vec::new();
        if c.not_run > 0 {
            not_run.push(format!(
                "{} claim(s) of the interrupted experiment not run",
                c.not_run
            ));
        }
        if !h.not_run.is_empty() {
            not_run.push(format!("experiments not run: {}", h.not_run.join(", ")));
        }
        let _ = writeln!(
            s,
            "**Interrupted (Ctrl-C): this report is partial.**{}\n",
            if not_run.is_empty() {
                String::new()
            } else {
                format!(" {}.", not_run.join("; "))
            }
        );
    }
    let skipped: Vec<(&str, &bilevel::experiments::Skipped)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|r| (o.name.as_str(), r)))
        .flat_map(|(name, r)| r.skipped.iter().map(move |k| (name, k)))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            s,
            "**{} part(s) SKIPPED** (not run, so neither PASS nor FAIL):\n",
            skipped.len()
        );
        for (name, k) in &skipped {
            let _ = writeln!(
                s,
                "- {name}: {} — {}; to run it: `{}`",
                text(&k.part),
                text(&k.reason),
                k.fix
            );
        }
        s.push('\n');
    }
    // A passing report must not contain the word FAIL anywhere (CI greps for it).
    let verdict = if fail == 0 {
        format!("**All {pass} claims PASS**")
    } else {
        format!("**{fail} of {} claims FAIL**", pass + fail)
    };
    let _ = writeln!(
        s,
        "{verdict}{}{} · total wall time {:.1} s{}\n",
        if c.not_run > 0 {
            format!(" · {} not run", c.not_run)
        } else {
            String::new()
        },
        if c.skipped > 0 {
            format!(" · {} part(s) SKIPPED", c.skipped)
        } else {
            String::new()
        },
        h.wall_time_s,
        if h.quick {
            " · quick mode (smaller sizes and fewer seeds)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "- Command: `{}`", h.command);
    let _ = writeln!(s, "- Machine: {}", machine_info());
    let _ = writeln!(s, "- bilevel {}\n", env!("CARGO_PKG_VERSION"));
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let c = o.counts();
            let status = match &o.result {
                Err(_) => "ERROR".to_string(),
                Ok(_) if c.fail > 0 => "FAIL".to_string(),
                Ok(r) if r.partial => "not run (interrupted)".to_string(),
                Ok(r) if !r.skipped.is_empty() => {
                    format!("PASS, {} part(s) SKIPPED", r.skipped.len())
                }
                Ok(_) => "PASS".to_string(),
            };
            vec![
                format!("[{}](#{})", o.name, o.name),
                o.title.clone(),
                format!("{} / {}", c.pass, c.pass + c.fail + c.not_run),
                status,
                format!("{:.1} s", o.wall_time_s),
            ]
        })
        .collect();
    s.push_str(&md_table(
        &[
            "experiment".into(),
            "title".into(),
            "claims passed".into(),
            "result".into(),
            "wall time".into(),
        ],
        &rows,
    ));
    for o in outcomes {
        s.push('\n');
        experiment_section(&mut s, o);
    }
    s
}

fn experiment_section(s: &mut String, o: &Outcome) {
    let _ = writeln!(
        s,
        "<a id=\"{}\"></a>\n## {}: {}\n",
        o.name,
        o.name,
        text(&o.title)
    );
    let r = match &o.result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(s, "**ERROR**: the experiment stopped: {}\n", text(e));
            return;
        }
    };
    if r.partial {
        let _ = writeln!(
            s,
            "**Interrupted before the end: its claims are not run (the measurements below come from partial data).**\n"
        );
    }
    for k in &r.skipped {
        let _ = writeln!(
            s,
            "**SKIPPED: {}** — {}; to run it: `{}`\n",
            text(&k.part),
            text(&k.reason),
            k.fix
        );
    }
    for e in &o.output_errors {
        let _ = writeln!(s, "**ERROR** writing outputs (counted as a failure): {e}\n");
    }
    let _ = writeln!(s, "### Claims\n");
    let rows: Vec<Vec<String>> = r
        .claims
        .iter()
        .map(|c| {
            vec![
                c.text.clone(),
                c.measured.clone(),
                c.threshold.clone(),
                if r.partial {
                    "not run".into()
                } else if c.pass {
                    "PASS".into()
                } else {
                    "FAIL".into()
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        let _ = writeln!(s, "(no claims)\n");
    } else {
        s.push_str(&md_table(
            &[
                "claim".into(),
                "measured".into(),
                "threshold".into(),
                "result".into(),
            ],
            &rows,
        ));
        s.push('\n');
    }
    for t in &r.tables {
        let _ = writeln!(s, "**{}**\n", cell(&t.title));
        s.push_str(&md_table(&t.header, &t.rows));
        s.push('\n');
    }
    for f in &o.figures {
        let _ = writeln!(
            s,
            "![{}]({})\n\n*{}* ([SVG]({}))\n",
            cell(&f.name),
            f.png,
            text(&f.caption),
            f.svg
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "### Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {}", text(n));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "### Settings and seeds\n");
    let settings = serde_json::to_string_pretty(&r.settings).unwrap_or_else(|_| "{}".into());
    let _ = writeln!(s, "```json\n{settings}\n```\n");
    let _ = writeln!(
        s,
        "Wall time: {:.2} s (experiment), {:.2} s including figures and files.\n",
        r.wall_time_s, o.wall_time_s
    );
    if let Some(j) = &o.summary_json {
        let _ = write!(s, "Data: [JSON summary]({j})");
        if !o.traces.is_empty() {
            let dir = o.traces[0].rsplit_once('/').map_or(".", |p| p.0);
            let _ = write!(s, ", {} trace CSV files in `{dir}/`", o.traces.len());
        }
        let _ = writeln!(s, ".\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(pass: bool) -> Outcome {
        Outcome {
            name: "x".into(),
            title: "a | b".into(),
            result: Ok(Report {
                name: "x".into(),
                title: "a | b".into(),
                settings: serde_json::json!({"seed": 1}),
                claims: vec![Claim::new("c", "m", "t", pass)],
                tables: vec![],
                figures: vec![],
                traces: vec![],
                summary: serde_json::Value::Null,
                notes: vec![],
                wall_time_s: 0.5,
                partial: false,
                skipped: vec![],
            }),
            figures: vec![],
            traces: vec![],
            summary_json: None,
            wall_time_s: 0.6,
            output_errors: vec![],
        }
    }

    fn header() -> Header {
        Header {
            command: "bilevel reproduce".into(),
            quick: true,
            wall_time_s: 1.0,
            not_run: vec![],
            interrupted: false,
        }
    }

    #[test]
    fn fail_appears_only_when_a_claim_fails() {
        let ok = reproduce_markdown(&[outcome(true)], &header());
        assert!(!ok.contains("FAIL"), "{ok}");
        assert!(ok.contains("All 1 claims PASS"));
        let bad = reproduce_markdown(&[outcome(true), outcome(false)], &header());
        assert!(bad.contains("1 of 2 claims FAIL"), "{bad}");
        let counts = |pass, fail, not_run| Counts {
            pass,
            fail,
            not_run,
            skipped: 0,
        };
        assert_eq!(outcome(false).counts(), counts(0, 1, 0));
        let mut o = outcome(true);
        o.output_errors.push("disk full".into());
        assert_eq!(o.counts(), counts(1, 1, 0));
    }

    #[test]
    fn claims_of_an_interrupted_experiment_are_not_run_never_fail() {
        let mut o = outcome(false);
        if let Ok(r) = &mut o.result {
            r.partial = true;
        }
        assert_eq!(
            o.counts(),
            Counts {
                pass: 0,
                fail: 0,
                not_run: 1,
                skipped: 0
            }
        );
        let mut h = header();
        h.interrupted = true;
        h.not_run = vec!["fig4".into()];
        let md = reproduce_markdown(&[o], &h);
        assert!(!md.contains("FAIL"), "{md}");
        assert!(
            md.starts_with("# bilevel: reproduction report\n\n**Interrupted (Ctrl-C)"),
            "{md}"
        );
        assert!(md.contains("experiments not run: fig4"), "{md}");
        assert!(md.contains("| not run |"), "{md}");
    }

    #[test]
    fn table_cells_are_escaped() {
        let t = md_table(&["a|b".into()], &[vec!["x\ny".into()]]);
        assert!(t.contains("a\\|b") && t.contains("x y"), "{t}");
    }
}
