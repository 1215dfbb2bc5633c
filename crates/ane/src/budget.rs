//! The per-process compile budget. The ANE compiler is reported to leak and to fail (silently,
//! per one report) after about 119 compiles in one process (docs/ane-runtime.md §9); the known
//! workaround is to checkpoint and re-exec the process. We stop earlier, with a clear error.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

/// Default budget: maderix/ANE's `MAX_COMPILES`, leaving margin under the reported ~119.
pub const DEFAULT_COMPILE_BUDGET: usize = 100;

/// The limit reported by maderix/ANE and Orion (not measured by us).
pub const REPORTED_COMPILE_LIMIT: usize = 119;

/// Counts calls to `compileWithQoS:options:error:` (successful or not: a failed compile may leak
/// the same way). One process-wide instance ([`CompileCounter::global`]) is shared by every
/// [`crate::Ane`]; tests make their own.
#[derive(Debug, Default)]
pub struct CompileCounter {
    used: AtomicUsize,
}

impl CompileCounter {
    /// A fresh counter at zero.
    pub fn new() -> Arc<CompileCounter> {
        Arc::new(CompileCounter::default())
    }

    /// The counter for this process.
    pub fn global() -> Arc<CompileCounter> {
        static GLOBAL: OnceLock<Arc<CompileCounter>> = OnceLock::new();
        GLOBAL.get_or_init(CompileCounter::new).clone()
    }

    /// Compiles started so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Errors if no compile is left under `budget` (does not count one).
    pub fn check(&self, budget: usize) -> Result<()> {
        let used = self.used();
        if used >= budget {
            return Err(Error::CompileBudgetExhausted { used, budget });
        }
        Ok(())
    }

    /// Counts one compile if the budget allows, atomically (two threads cannot both take the
    /// last one). Returns the new count.
    pub fn reserve(&self, budget: usize) -> Result<usize> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u < budget).then_some(u + 1)
            })
            .map(|u| u + 1)
            .map_err(|used| Error::CompileBudgetExhausted { used, budget })
    }
}

/// The arguments for re-executing this program: the original arguments (without `argv[0]`)
/// followed by each of `extra` that is not already among them, so repeated restarts do not pile
/// up `--resume --resume ...`.
pub fn reexec_args<I, S>(original: I, extra: &[&OsStr]) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args: Vec<OsString> = original.into_iter().skip(1).map(Into::into).collect();
    for e in extra {
        if !args.iter().any(|a| a == e) {
            args.push(e.to_os_string());
        }
    }
    args
}

/// Replaces this process with a fresh copy of itself (same executable, same arguments, plus
/// `extra_args` such as `--resume`), which resets the compile budget. Only returns on failure.
/// Checkpoint first: nothing of this process survives.
pub fn reexec_self(extra_args: &[&str]) -> std::io::Error {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let extra: Vec<&OsStr> = extra_args.iter().map(OsStr::new).collect();
    let args = reexec_args(std::env::args_os(), &extra);
    exec(&exe, &args)
}

#[cfg(unix)]
fn exec(exe: &std::path::Path, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe).args(args).exec()
}

#[cfg(not(unix))]
fn exec(_exe: &std::path::Path, _args: &[OsString]) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "re-exec needs a Unix system")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_counts_up_to_the_budget_then_refuses() {
        let c = CompileCounter::new();
        assert_eq!(c.reserve(2).unwrap(), 1);
        assert!(c.check(2).is_ok());
        assert_eq!(c.reserve(2).unwrap(), 2);
        let e = c.reserve(2).unwrap_err();
        assert!(matches!(e, Error::CompileBudgetExhausted { used: 2, budget: 2 }));
        assert!(c.check(2).is_err());
        assert_eq!(c.used(), 2, "a refused reservation does not count");
        assert!(c.reserve(3).is_ok(), "a larger budget allows more");
    }

    #[test]
    fn reserve_is_atomic_across_threads() {
        let c = CompileCounter::new();
        let ok: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..50).filter(|_| c.reserve(100).is_ok()).count()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(ok, 100);
        assert_eq!(c.used(), 100);
    }

    #[test]
    fn global_counter_is_shared() {
        assert!(Arc::ptr_eq(&CompileCounter::global(), &CompileCounter::global()));
    }

    #[test]
    fn reexec_args_drop_argv0_and_add_missing_extras() {
        let orig = ["/bin/malus", "train", "--steps", "10"];
        let a = reexec_args(orig, &[OsStr::new("--resume")]);
        assert_eq!(a, ["train", "--steps", "10", "--resume"]);
        let again = reexec_args(
            std::iter::once(OsString::from("malus")).chain(a),
            &[OsStr::new("--resume")],
        );
        assert_eq!(again, ["train", "--steps", "10", "--resume"]);
        assert!(reexec_args(Vec::<OsString>::new(), &[]).is_empty());
    }

    #[test]
    fn default_budget_leaves_margin() {
        const { assert!(DEFAULT_COMPILE_BUDGET < REPORTED_COMPILE_LIMIT) };
    }
}
