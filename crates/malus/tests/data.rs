//! The shipped tokenizer and the text → shard path.

use std::path::PathBuf;

use malus::data::{self, Dataset, Tok, TokenFile};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn shipped_tokenizer_round_trips_text() {
    let tok = Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    assert_eq!(tok.vocab_size(), 4096);
    assert_eq!(tok.eot(), Some(0));
    for text in [
        "It is a truth universally acknowledged, that a single man",
        "naïve — “quoted” 123\n\n",
    ] {
        let ids = tok.encode(text).unwrap();
        assert!(ids.len() < text.len(), "BPE should compress {text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn prepare_writes_a_shard_the_dataset_reads() {
    let tok = Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    let dir = std::env::temp_dir().join(format!("malus-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("a.txt");
    std::fs::write(&text, "Emma Woodhouse, handsome, clever, and rich. ".repeat(50)).unwrap();
    let out = dir.join("a.bin");
    let n = data::prepare(&[&text, &text], &tok, &out).unwrap();
    let f = TokenFile::open(&out).unwrap();
    assert_eq!(f.len as usize, n);
    let d = Dataset::new(f, tok.vocab_size(), 32, 0.1).unwrap();
    let w = d.validation(32, 2).unwrap();
    assert_eq!(w.len(), 2);
    assert!(tok.decode(&w[0].tokens).unwrap().contains("clever"));
    // A missing input is named.
    let err = data::prepare(&[&dir.join("nope.txt")], &tok, &out).unwrap_err();
    assert!(format!("{err:#}").contains("nope.txt"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Tokenizer files on which the tokenizers library panics (found by fuzzing) are named errors.
#[test]
fn malformed_tokenizers_are_errors_not_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/tokenizer_load");
    for name in [
        "decoder-bad-byte-found.json",
        "decoder-syntax-error.json",
        "bpe-merge-longer-than-vocab.json",
        "bpe-merge-longer-than-vocab-found.json",
    ] {
        let err = format!("{:#}", Tok::load(&dir.join(name)).err().expect("must not load"));
        assert!(err.contains(name), "{name}: {err}");
    }
}
