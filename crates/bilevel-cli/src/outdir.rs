//! The output folder of a command (`--out DIR`): one run's files and nothing else.
//!
//! - A folder that exists and is not empty is refused unless `--force`, which deletes what an
//!   earlier run of this tool wrote there (listed in its manifest, `.bilevel-files`) and only
//!   that.
//! - A lock file (`.bilevel.lock`, holding the process id) stops a second concurrent writer; a
//!   lock whose process is gone is taken over.
//! - Every file is written under a temporary name in the same folder and renamed into place, so
//!   a reader never sees a half-written file, and the report and the traces always come from the
//!   same run.

use anyhow::{Context as _, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock file's name.
pub const LOCK: &str = ".bilevel.lock";
/// The manifest's name: the files a run wrote, one path relative to the folder per line.
pub const MANIFEST: &str = ".bilevel-files";
/// Staging folder for writers that choose their own file names (figures).
const STAGING: &str = ".bilevel-staging";

/// An output folder held by this process.
pub struct OutDir {
    root: PathBuf,
    written: Mutex<BTreeSet<String>>,
}

fn pid_alive(pid: u32) -> bool {
    // Linux: /proc/PID exists while the process does (zombies included, which is harmless).
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Names of the entries of `dir` other than the lock, for messages.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != LOCK {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn take_lock(root: &Path) -> Result<()> {
    let lock = root.join(LOCK);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(mut f) => {
                use std::io::Write as _;
                writeln!(f, "{}", std::process::id())
                    .with_context(|| format!("cannot write {}", lock.display()))?;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&lock).unwrap_or_default();
                match text.trim().parse::<u32>() {
                    Ok(pid) if pid_alive(pid) => bail!(
                        "{} is in use by another bilevel process (pid {pid}, lock file {}); wait for it to finish or choose another --out",
                        root.display(),
                        lock.display()
                    ),
                    _ => {
                        eprintln!(
                            "note: removing the stale lock {} (its process is gone)",
                            lock.display()
                        );
                        let _ = std::fs::remove_file(&lock);
                    }
                }
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", lock.display()));
            }
        }
    }
    bail!(
        "cannot take the lock {}: another process keeps recreating it",
        lock.display()
    )
}

/// Deletes the files an earlier run listed in its manifest (and their temporary names), then
/// folders left empty. Returns how many files were deleted.
fn clear_earlier_run(root: &Path) -> Result<usize> {
    let manifest = root.join(MANIFEST);
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(0);
    };
    let mut removed = 0;
    let mut dirs = BTreeSet::new();
    for rel in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // Only plain relative paths inside the folder: a manifest edited to point elsewhere
        // must not make --force delete outside it.
        let p = Path::new(rel);
        if p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let full = root.join(p);
        if std::fs::remove_file(&full).is_ok() {
            removed += 1;
        }
        let _ = std::fs::remove_file(tmp_name(&full));
        let mut parent = p.parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            parent = d.parent();
        }
    }
    // Deepest first; a folder that still holds someone else's files stays.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(root.join(d));
    }
    let _ = std::fs::remove_dir_all(root.join(STAGING));
    std::fs::remove_file(&manifest)
        .with_context(|| format!("cannot remove {}", manifest.display()))?;
    Ok(removed)
}

fn tmp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    p.with_file_name(format!(".{name}.partial"))
}

impl OutDir {
    /// Creates or takes over `root` for one run: takes the lock, then refuses a non-empty
    /// folder unless `force`, which clears what an earlier run of the tool wrote there.
    pub fn open(root: &Path, force: bool) -> Result<OutDir> {
        if root.exists() && !root.is_dir() {
            bail!(
                "--out {}: exists and is not a folder; choose another path",
                root.display()
            );
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create directory {}", root.display()))?;
        take_lock(root)?;
        let out = OutDir {
            root: root.to_path_buf(),
            written: Mutex::new(BTreeSet::new()),
        };
        // From here on, dropping `out` releases the lock.
        let names = entries(root)?;
        if !names.is_empty() {
            if !force {
                let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
                bail!(
                    "--out {} is not empty (it holds {}{}); pass --force to replace what an earlier bilevel run wrote there, or choose an empty or new folder",
                    root.display(),
                    shown.join(", "),
                    if names.len() > 5 {
                        format!(" and {} more", names.len() - 5)
                    } else {
                        String::new()
                    }
                );
            }
            let had_manifest = root.join(MANIFEST).exists();
            let removed = clear_earlier_run(root)?;
            let left = entries(root)?;
            if !had_manifest {
                eprintln!(
                    "note: --force: {} holds no record of an earlier bilevel run ({MANIFEST}); nothing was deleted, files of the same name will be replaced",
                    root.display()
                );
            } else if !left.is_empty() {
                eprintln!(
                    "note: --force deleted {removed} file(s) of an earlier run; left {} entr{} bilevel did not write: {}",
                    left.len(),
                    if left.len() == 1 { "y" } else { "ies" },
                    left.join(", ")
                );
            }
        }
        out.save_manifest()?;
        Ok(out)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn relative(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    }

    fn save_manifest(&self) -> Result<()> {
        let list = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        for f in list.iter() {
            text.push_str(f);
            text.push('\n');
        }
        drop(list);
        let m = self.root.join(MANIFEST);
        let tmp = tmp_name(&m);
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &m).with_context(|| format!("cannot write {}", m.display()))
    }

    /// Records `path` (inside the folder) in the manifest before it is written, so that a run
    /// stopped half-way can still be cleared by `--force`.
    fn claim(&self, path: &Path) -> Result<()> {
        let rel = self.relative(path);
        let new = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rel);
        if new { self.save_manifest() } else { Ok(()) }
    }

    /// Creates a folder inside the output folder.
    pub fn mkdir(&self, p: &Path) -> Result<()> {
        std::fs::create_dir_all(p)
            .with_context(|| format!("cannot create directory {}", p.display()))
    }

    /// Writes `path` through `write`, which receives a temporary path in the same folder; the
    /// file appears under its name only once complete.
    pub fn write_with(&self, path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        if let Some(parent) = path.parent() {
            self.mkdir(parent)?;
        }
        self.claim(path)?;
        let tmp = tmp_name(path);
        let res = write(&tmp);
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return res;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Writes a text file atomically.
    pub fn write(&self, path: &Path, text: &str) -> Result<()> {
        self.write_with(path, |tmp| {
            std::fs::write(tmp, text).with_context(|| format!("cannot write {}", path.display()))
        })
    }

    /// Runs a writer that names its own files inside a staging folder (figures), then moves
    /// each file it returns to `dest` under the same name. Returns the final paths.
    pub fn write_staged<const N: usize>(
        &self,
        dest: &Path,
        write: impl FnOnce(&Path) -> Result<[PathBuf; N]>,
    ) -> Result<[PathBuf; N]> {
        let stage = self.root.join(STAGING);
        self.mkdir(&stage)?;
        self.mkdir(dest)?;
        let staged = write(&stage)?;
        let mut out = staged.clone();
        for (s, o) in staged.iter().zip(out.iter_mut()) {
            let name = s.file_name().context("a staged file without a name")?;
            let target = dest.join(name);
            self.claim(&target)?;
            std::fs::rename(s, &target)
                .with_context(|| format!("cannot write {}", target.display()))?;
            *o = target;
        }
        Ok(out)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.root.join(STAGING));
        let _ = std::fs::remove_file(self.root.join(LOCK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bilevel-outdir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn refuses_non_empty_and_force_clears_only_its_own_files() {
        let d = tmp("force");
        {
            let o = OutDir::open(&d, false).unwrap();
            o.write(&d.join("traces/seed5.csv"), "old").unwrap();
            o.write(&d.join("report.md"), "old").unwrap();
        }
        assert!(!d.join(LOCK).exists(), "lock released on drop");
        std::fs::write(d.join("mine.txt"), "user file").unwrap();
        let e = OutDir::open(&d, false).err().unwrap().to_string();
        assert!(e.contains("not empty") && e.contains("--force"), "{e}");
        {
            let o = OutDir::open(&d, true).unwrap();
            assert!(!d.join("traces/seed5.csv").exists());
            assert!(!d.join("traces").exists());
            assert!(d.join("mine.txt").exists());
            o.write(&d.join("report.md"), "new").unwrap();
        }
        assert_eq!(std::fs::read_to_string(d.join("report.md")).unwrap(), "new");
        let m = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
        assert_eq!(m, "report.md\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_live_lock_is_refused_with_its_pid_and_a_stale_one_taken_over() {
        let d = tmp("lock");
        std::fs::create_dir_all(&d).unwrap();
        // Our own pid is alive.
        std::fs::write(d.join(LOCK), format!("{}\n", std::process::id())).unwrap();
        let e = OutDir::open(&d, true).err().unwrap().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        // A pid that cannot exist (above the kernel's pid_max of 2^22).
        std::fs::write(d.join(LOCK), "99999999\n").unwrap();
        let o = OutDir::open(&d, false).unwrap();
        drop(o);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_manifest_cannot_point_outside_the_folder() {
        let d = tmp("escape");
        std::fs::create_dir_all(&d).unwrap();
        let outside = tmp("escape-victim");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep.txt"), "x").unwrap();
        std::fs::write(
            d.join(MANIFEST),
            format!(
                "../{}/keep.txt\n{}\n",
                outside.file_name().unwrap().to_string_lossy(),
                outside.join("keep.txt").display()
            ),
        )
        .unwrap();
        drop(OutDir::open(&d, true).unwrap());
        assert!(outside.join("keep.txt").exists());
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
