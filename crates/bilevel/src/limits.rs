//! A memory budget for everything whose size comes from the input (file headers, row counts,
//! config keys), and checked size arithmetic, so that a hostile or mistaken input gives a clear
//! error instead of a wrapped size, an allocator abort or a machine brought to a crawl.
//!
//! Readers and constructors estimate the bytes they are about to allocate and call
//! [`MemoryLimit::check`] first. The limit in force is [`MemoryLimit::global`]: the machine's
//! available memory unless the program set another one with [`MemoryLimit::set_global`] (the
//! CLI's `--max-memory` flag or `max_memory` key).

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Used when /proc/meminfo cannot be read (not Linux, or a sandbox hides it).
const FALLBACK_BYTES: u64 = 4 << 30;

/// 0 = not set: use the machine's available memory.
static GLOBAL: AtomicU64 = AtomicU64::new(0);

/// A limit on the bytes one input may make the program allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit in bytes.
    pub bytes: u64,
}

impl MemoryLimit {
    /// A limit of `bytes`.
    pub fn new(bytes: u64) -> Self {
        MemoryLimit { bytes }
    }

    /// The machine's available memory: `MemAvailable` of /proc/meminfo, lowered to the cgroup's
    /// `memory.max` when one is set; 4 GiB when neither can be read; and at most the process's
    /// address-space limit (`ulimit -v`) when one is set.
    pub fn machine() -> Self {
        let avail = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| meminfo_available(&s));
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let bytes = match (avail, cgroup) {
            (Some(a), Some(c)) => a.min(c),
            (Some(a), None) => a,
            (None, Some(c)) => c,
            (None, None) => FALLBACK_BYTES,
        };
        // Under `ulimit -v` an allocation past the address-space limit aborts the process, so
        // that limit bounds what may be allocated too.
        let bytes = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| address_space_limit(&s))
            .map_or(bytes, |l| bytes.min(l));
        MemoryLimit { bytes }
    }

    /// The limit in force: the one given to [`MemoryLimit::set_global`], else
    /// [`MemoryLimit::machine`].
    pub fn global() -> Self {
        match GLOBAL.load(Ordering::Relaxed) {
            0 => Self::machine(),
            b => MemoryLimit { bytes: b },
        }
    }

    /// Sets the limit returned by [`MemoryLimit::global`] (`None`: back to the machine's).
    pub fn set_global(limit: Option<MemoryLimit>) {
        GLOBAL.store(limit.map_or(0, |l| l.bytes.max(1)), Ordering::Relaxed);
    }

    /// True when a limit was set with [`MemoryLimit::set_global`] (so that a later, weaker
    /// source — a config key after a command-line flag — can leave it alone).
    pub fn global_is_set() -> bool {
        GLOBAL.load(Ordering::Relaxed) != 0
    }

    /// Ok when `bytes` fit in the limit; else [`Error::TooLarge`] naming `what` needs them and
    /// the file or key (`driver`) that sets the size.
    pub fn check(&self, what: &str, bytes: u64, driver: &str) -> Result<()> {
        if bytes <= self.bytes {
            Ok(())
        } else {
            Err(Error::TooLarge {
                what: what.to_string(),
                bytes,
                limit: self.bytes,
                driver: driver.to_string(),
            })
        }
    }

    /// Checks `count` values of `size` bytes each (the product is checked, never wrapped).
    pub fn check_values(&self, what: &str, count: u64, size: u64, driver: &str) -> Result<()> {
        let bytes = checked_product(what, &[count, size], driver)?;
        self.check(what, bytes, driver)
    }
}

impl std::str::FromStr for MemoryLimit {
    type Err = Error;

    /// Parses `"8G"`, `"512MB"`, `"2GiB"`, `"1e9"` (bytes) and the like: decimal units k, M, G, T
    /// (optionally followed by B), binary units KiB, MiB, GiB, TiB.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::setting(
                "max_memory",
                s,
                "a positive size such as 8G, 512MB, 2GiB or a number of bytes",
            )
        };
        let t = s.trim();
        let split = t
            .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let x: f64 = num.trim().parse().map_err(|_| bad())?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let b = x * mult;
        if !(1.0..1.8e19).contains(&b) {
            return Err(bad());
        }
        Ok(MemoryLimit { bytes: b as u64 })
    }
}

/// The soft "Max address space" of /proc/self/limits in bytes (None when unlimited).
fn address_space_limit(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("Max address space"))?;
    line.trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn meminfo_available(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The product of `sizes`, or [`Error::SizeOverflow`] when it does not fit in a u64.
pub fn checked_product(what: &str, sizes: &[u64], driver: &str) -> Result<u64> {
    sizes
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::SizeOverflow {
            what: what.to_string(),
            sizes: sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" × "),
            driver: driver.to_string(),
        })
}

/// An estimate of the memory a problem will need, built from its sizes before anything is
/// allocated: a sum of terms, each a product of sizes times the bytes of one value, named by the
/// settings that drive it. Every product and the sum are checked, never wrapped.
#[derive(Debug, Clone)]
pub struct Footprint {
    what: String,
    terms: Vec<(String, u64)>,
    overflow: Option<(String, String)>,
}

impl Footprint {
    /// An empty estimate of `what` (for example "the cleaning problem").
    pub fn new(what: impl Into<String>) -> Self {
        Footprint {
            what: what.into(),
            terms: Vec::new(),
            overflow: None,
        }
    }

    /// Adds `count` f64 arrays of `dims` (the product of the sizes), driven by `driver` (the
    /// settings, e.g. "`n_trn` = 1000 × `m` = 20").
    pub fn f64s(mut self, driver: impl Into<String>, count: u64, dims: &[usize]) -> Self {
        let driver = driver.into();
        let sizes: Vec<u64> = std::iter::once(count)
            .chain(dims.iter().map(|&d| d as u64))
            .chain([8])
            .collect();
        match sizes.iter().try_fold(1u64, |a, &d| a.checked_mul(d)) {
            Some(b) => self.terms.push((driver, b)),
            None if self.overflow.is_none() => {
                let shown = sizes
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" × ");
                self.overflow = Some((shown, driver));
            }
            None => {}
        }
        self
    }

    /// The estimate in bytes (saturating; see [`Footprint::check`] for the checked form).
    pub fn bytes(&self) -> u64 {
        if self.overflow.is_some() {
            return u64::MAX;
        }
        self.terms.iter().fold(0u64, |a, t| a.saturating_add(t.1))
    }

    /// Ok when the estimate fits in `limit`; else [`Error::TooLarge`] (or
    /// [`Error::SizeOverflow`]) naming the term that weighs most.
    pub fn check(&self, limit: &MemoryLimit) -> Result<()> {
        if let Some((sizes, driver)) = &self.overflow {
            return Err(Error::SizeOverflow {
                what: self.what.clone(),
                sizes: sizes.clone(),
                driver: driver.clone(),
            });
        }
        let total = self
            .terms
            .iter()
            .try_fold(0u64, |a, t| a.checked_add(t.1))
            .ok_or_else(|| Error::SizeOverflow {
                what: self.what.clone(),
                sizes: "the sum of its parts".into(),
                driver: self.largest(),
            })?;
        limit.check(&self.what, total, &self.largest())
    }

    /// [`Footprint::check`] against [`MemoryLimit::global`].
    pub fn check_global(&self) -> Result<()> {
        self.check(&MemoryLimit::global())
    }

    fn largest(&self) -> String {
        self.terms
            .iter()
            .max_by_key(|t| t.1)
            .map_or_else(|| "its sizes".to_string(), |t| t.0.clone())
    }
}

/// A byte count for people: "812 bytes", "3.4 kB", "56.0 MB", "1.20 GB", "3.7e6 TB".
pub fn human_bytes(b: u64) -> String {
    let x = b as f64;
    if b < 1000 {
        format!("{b} bytes")
    } else if x < 1e6 {
        format!("{:.1} kB", x / 1e3)
    } else if x < 1e9 {
        format!("{:.1} MB", x / 1e6)
    } else if x < 1e12 {
        format!("{:.2} GB", x / 1e9)
    } else if x < 1e15 {
        format!("{:.2} TB", x / 1e12)
    } else {
        format!("{:.1e} TB", x / 1e12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_units() {
        let s = "MemTotal:       24000000 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(meminfo_available(s), Some(2000 * 1024));
        assert_eq!(meminfo_available("nothing"), None);
        assert_eq!("8G".parse::<MemoryLimit>().unwrap().bytes, 8_000_000_000);
        assert_eq!("2GiB".parse::<MemoryLimit>().unwrap().bytes, 2 << 30);
        assert_eq!("1e6".parse::<MemoryLimit>().unwrap().bytes, 1_000_000);
        assert!("-1G".parse::<MemoryLimit>().is_err());
        assert!("lots".parse::<MemoryLimit>().is_err());
        assert!(MemoryLimit::machine().bytes > 0);
        let lim = "Limit  Soft Limit  Hard Limit  Units\nMax address space         4096000000           unlimited            bytes\n";
        assert_eq!(address_space_limit(lim), Some(4_096_000_000));
        let unl = "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unl), None);
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(8_000_000_000), "8.00 GB");
    }

    #[test]
    fn checks_name_the_driver_and_never_wrap() {
        let l = MemoryLimit::new(1 << 20);
        assert!(l.check("x", 1 << 20, "k").is_ok());
        let e = l.check("the matrix", 8 << 30, "key `m`").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("8.59 GB") && s.contains("key `m`") && s.contains("--max-memory"));
        let e = l
            .check_values("the array", 1 << 62, 8, "a.npy")
            .unwrap_err();
        assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    }

    #[test]
    fn footprints_name_their_largest_term_and_never_wrap() {
        let f = Footprint::new("the problem")
            .f64s("`m` = 1000", 1, &[1000])
            .f64s("`n_trn` = 10^6 × `m` = 1000", 2, &[1_000_000, 1000]);
        assert_eq!(f.bytes(), 8 * 1000 + 16_000_000_000);
        let e = f.check(&MemoryLimit::new(1 << 30)).unwrap_err().to_string();
        assert!(
            e.contains("the problem") && e.contains("`n_trn` = 10^6"),
            "{e}"
        );
        assert!(f.check(&MemoryLimit::new(u64::MAX)).is_ok());
        let f = Footprint::new("x").f64s("`du`", 1, &[usize::MAX, usize::MAX]);
        assert_eq!(f.bytes(), u64::MAX);
        assert!(matches!(
            f.check(&MemoryLimit::new(u64::MAX)),
            Err(Error::SizeOverflow { .. })
        ));
    }
}
