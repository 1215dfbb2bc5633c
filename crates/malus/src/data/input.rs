//! Reading the files a run is given, with errors that say what is wrong with a path (missing,
//! a directory, unreadable), and the files built into the binary: the default corpus and its
//! tokenizer, so `malus train` works from any directory and after `cargo install`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Result, bail};

/// Paths of the form `builtin:NAME` name a file shipped inside the binary.
pub const BUILTIN: &str = "builtin:";

/// The shipped corpus (Jane Austen's novels, public domain; `data/README.md`).
pub const CORPUS: &str = "builtin:austen.txt";
/// The tokenizer malus trained on it.
pub const TOKENIZER: &str = "builtin:tokenizer.json";

const FILES: [(&str, &[u8]); 2] = [
    ("austen.txt", include_bytes!("../../../../data/austen.txt")),
    (
        "tokenizer.json",
        include_bytes!("../../../../data/tokenizer.json"),
    ),
];

/// The built-in file a `builtin:NAME` path names (an error for an unknown name); `None` for
/// ordinary paths.
fn builtin(path: &Path) -> Option<Result<&'static [u8]>> {
    let name = path.to_str()?.strip_prefix(BUILTIN)?;
    Some(match FILES.iter().find(|(n, _)| *n == name) {
        Some((_, bytes)) => Ok(bytes),
        None => Err(anyhow::anyhow!(
            "there is no built-in file `{name}` (built in: {})",
            FILES.map(|(n, _)| format!("{BUILTIN}{n}")).join(", ")
        )),
    })
}

/// Checks `path` names a readable file (or a built-in one); `what` names it in errors, e.g.
/// "training data".
pub fn check_file(path: &Path, what: &str) -> Result<()> {
    if let Some(b) = builtin(path) {
        return b.map(|_| ());
    }
    let p = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{what} {p} does not exist"),
        Err(e) => bail!("{what} {p} cannot be read: {e}"),
        Ok(m) if m.is_dir() => bail!("{what} {p} is a directory, not a file"),
        Ok(_) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) => bail!("{what} {p} cannot be read: {e}"),
        },
    }
}

/// The bytes of a file (or of a built-in one).
pub fn read(path: &Path, what: &str) -> Result<Cow<'static, [u8]>> {
    if let Some(b) = builtin(path) {
        return b.map(Cow::Borrowed);
    }
    check_file(path, what)?;
    match std::fs::read(path) {
        Ok(b) => Ok(Cow::Owned(b)),
        Err(e) => bail!("{what} {} cannot be read: {e}", path.display()),
    }
}

/// A text file (or a built-in one) as UTF-8.
pub fn read_text(path: &Path, what: &str) -> Result<Cow<'static, str>> {
    match read(path, what)? {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => bail!("{what} {} is not UTF-8 text: {e}", path.display()),
        },
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(s) => Ok(Cow::Owned(s)),
            Err(e) => bail!("{what} {} is not UTF-8 text: {}", path.display(), e.utf8_error()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_say_what_is_wrong() {
        let d = std::env::temp_dir().join(format!("malus-input-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let err = |p: &Path| check_file(p, "training data").unwrap_err().to_string();
        assert!(err(&d).ends_with("is a directory, not a file"), "{}", err(&d));
        assert!(err(&d.join("nope.txt")).ends_with("does not exist"));
        std::fs::write(d.join("bad.txt"), [0xff, 0xfe]).unwrap();
        let e = read_text(&d.join("bad.txt"), "training data")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not UTF-8 text"), "{e}");
        assert!(read_text(Path::new(CORPUS), "c").unwrap().contains("Elizabeth"));
        assert!(read(Path::new(TOKENIZER), "t").unwrap().starts_with(b"{"));
        let e = check_file(Path::new("builtin:nope"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("builtin:austen.txt"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
