//! What the malus targets that go through files share: a per-process scratch path, and a panic
//! hook under which a panic malus catches itself stays an error.

use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

/// `malus-fuzz-<name>-<pid><ext>` on tmpfs when there is one (rewriting a file on a loaded ext4
/// disk waits for the disk), else in the temporary directory. One path per process.
pub fn path(name: &str, ext: &str) -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("malus-fuzz-{name}-{}{ext}", std::process::id()))
    })
}

/// libfuzzer-sys installs a panic hook that aborts at once, so even a panic that malus catches
/// (`Tok::load` guards the tokenizers library, which panics on some files) would count as a
/// crash. This replaces it with one that only prints: a panic malus catches becomes the error it
/// returns, and one that escapes still reaches `fuzz_target!`'s own catch, which aborts.
///
/// That abort comes after unwinding, so libFuzzer's stack trace no longer shows where the panic
/// was; the printed message names the file and line. `MALUS_FUZZ_BACKTRACE=1` also prints a
/// backtrace at each panic (for reproducing one input: it is slow, and `RUST_BACKTRACE` is left
/// out of it because it is often set for everything).
#[allow(dead_code)] // only the targets that call into such code use it
pub fn let_malus_catch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let backtrace = std::env::var_os("MALUS_FUZZ_BACKTRACE").is_some_and(|v| v != "0");
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("{info}");
            if backtrace {
                eprintln!("{}", std::backtrace::Backtrace::force_capture());
            }
        }))
    });
}
