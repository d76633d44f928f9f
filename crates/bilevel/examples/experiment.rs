//! Runs one shipped experiment by name and prints its claims and tables (the `bilevel`
//! command does the same and also draws the figures).
//!
//! cargo run --release -p bilevel --example experiment -- fig2 [--quick]

use bilevel::experiments::{Context, NoProgress, by_name};

fn main() -> bilevel::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("fig2", |s| s.as_str());
    let Some(exp) = by_name(name) else {
        eprintln!("unknown experiment {name}");
        std::process::exit(2);
    };
    let ctx = Context {
        quick,
        progress: &NoProgress,
        interrupt: None,
    };
    let rep = exp.run(&ctx)?;
    println!("# {} — {} ({:.1} s)", rep.name, rep.title, rep.wall_time_s);
    for c in &rep.claims {
        let verdict = if c.pass { "PASS" } else { "FAIL" };
        println!(
            "[{verdict}] {}\n       measured: {}  threshold: {}",
            c.text, c.measured, c.threshold
        );
    }
    for t in &rep.tables {
        println!("\n{}\n{}", t.title, t.header.join(" | "));
        for r in &t.rows {
            println!("{}", r.join(" | "));
        }
    }
    Ok(())
}
