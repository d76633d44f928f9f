//! The TOML config parser on arbitrary text. Parsing (with every key's validation) only: the
//! problem constructors do not all check the memory limit yet, so building a fuzzed problem
//! could allocate as much as a config asks for. Set BILEVEL_FUZZ_BUILD=1 to build the problem
//! too, under a 64 MB limit, once they do.
#![no_main]

use bilevel::limits::MemoryLimit;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn build() -> bool {
    static B: OnceLock<bool> = OnceLock::new();
    *B.get_or_init(|| {
        MemoryLimit::set_global(Some(MemoryLimit::new(64 << 20)));
        std::env::var_os("BILEVEL_FUZZ_BUILD").is_some_and(|v| v == "1")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A folder that does not exist: data files named by the config fail to open.
    let base = Path::new("/nonexistent/bilevel-fuzz");
    if let Ok(cfg) = bilevel_cli::config::Config::parse(text, base)
        && build()
    {
        let _ = cfg.problem.build(base);
    }
});
