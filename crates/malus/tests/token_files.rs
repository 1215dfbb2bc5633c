//! Token files: headed files in both id widths, with and without a mask; raw uint16 files as
//! other tools write them; every kind of header corruption named.

use std::path::PathBuf;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use malus::data::shards::{Format, write_token_file};
use malus::data::{Dataset, TokenFile};
use malus::{Config, DeviceChoice, Settings, Trainer};

mod common;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("malus-token-files-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn headed_files_round_trip_in_both_widths() {
    let d = tmp("widths");
    let p = d.join("t.bin");
    let n = 300u32;
    // uint32: ids of a Qwen3-sized vocabulary.
    let vocab = 151_669;
    let ids: Vec<u32> = (0..n)
        .map(|i| (i * 997) % vocab as u32 + 65_000)
        .map(|i| i.min(151_668))
        .collect();
    let mask: Vec<bool> = (0..n).map(|i| i % 4 != 0).collect();
    for m in [None, Some(&mask[..])] {
        let f = write_token_file(&p, &ids, m, vocab).unwrap();
        assert_eq!(
            f,
            Format::Headed {
                width: 4,
                mask: m.is_some()
            }
        );
        let size = 24 + 4 * n as u64 + if m.is_some() { n as u64 } else { 0 };
        assert_eq!(std::fs::metadata(&p).unwrap().len(), size);
        let t = TokenFile::open(&p).unwrap();
        assert_eq!((t.len, t.has_mask()), (n as u64, m.is_some()));
        assert_eq!(t.window(0, n as usize, vocab).unwrap(), ids);
        // Ids at or above the vocabulary are still refused.
        let e = t.window(0, 10, 70_000).unwrap_err().to_string();
        assert!(
            e.contains("token 70982 at position 6 is not below the vocabulary size 70000")
                && e.contains("t.bin"),
            "{e}"
        );
        let ds = Dataset::new(t, vocab, 8, 0.1).unwrap();
        let w = ds.window(5, 8).unwrap();
        assert_eq!(w.tokens, ids[5..14]);
        match m {
            // Target i is token 6 + i; tokens 8 and 12 are masked.
            Some(_) => assert_eq!(w.weights, Some(vec![1., 1., 0., 1., 1., 1., 0., 1.])),
            None => assert_eq!(w.weights, None),
        }
    }
    // uint16 under a header: only with a mask.
    let small: Vec<u32> = (0..n).map(|i| i % 50).collect();
    assert_eq!(
        write_token_file(&p, &small, Some(&mask), 50).unwrap(),
        Format::Headed { width: 2, mask: true }
    );
    let t = TokenFile::open(&p).unwrap();
    assert_eq!(t.window(40, 4, 50).unwrap(), vec![40, 41, 42, 43]);
    assert_eq!(t.mask(40, 4).unwrap(), Some(vec![false, true, true, true]));
    assert_eq!(write_token_file(&p, &small, None, 50).unwrap(), Format::Raw);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 2 * n as u64);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn raw_uint16_files_read_as_before() {
    let d = tmp("raw");
    let p = d.join("llm.c.bin");
    // Written by hand, as other tools write them.
    std::fs::write(&p, [5u8, 0, 7, 0, 0x34, 0x12, 0xff, 0xff]).unwrap();
    let t = TokenFile::open(&p).unwrap();
    assert_eq!((t.len, t.format, t.has_mask()), (4, Format::Raw, false));
    assert_eq!(t.window(0, 4, 65536).unwrap(), vec![5, 7, 0x1234, 65535]);
    assert!(
        t.window(0, 4, 4096)
            .unwrap_err()
            .to_string()
            .contains("token 4660 at position 2")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn corrupt_headers_are_named() {
    let d = tmp("corrupt");
    let p = d.join("bad.bin");
    write_token_file(&p, &[1, 2, 3], Some(&[true, false, true]), 10).unwrap();
    let good = std::fs::read(&p).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..12].to_vec(), "bad header: 12 bytes"),
        (
            [&good[..8], &[2, 0], &good[10..]].concat(),
            "bad header: version 2",
        ),
        (
            [&good[..10], &[3], &good[11..]].concat(),
            "bad header: id width 3",
        ),
        (
            [&good[..11], &[0x81], &good[12..]].concat(),
            "bad header: unknown flags 0x81",
        ),
        (
            [&good[..12], &[1], &good[13..]].concat(),
            "bad header: reserved bytes",
        ),
        (
            [&good[..16], &[0xff; 8], &good[24..]].concat(),
            "bad header: a token count",
        ),
        (
            good[..24 + 4].to_vec(),
            "truncated ids: the header says 3 tokens of 2 bytes (6 bytes) but 4",
        ),
        (
            good[..good.len() - 1].to_vec(),
            "mask length: 2 mask bytes follow the ids, the header says 3",
        ),
        ([&good[..], &[1]].concat(), "mask length: 4 mask bytes"),
        (
            [&good[..11], &[0], &good[12..]].concat(),
            "3 bytes follow the ids, but the header flags no mask",
        ),
    ];
    for (bytes, want) in cases {
        std::fs::write(&p, &bytes).unwrap();
        let e = TokenFile::open(&p).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("bad.bin"),
            "want {want:?}, got {e}"
        );
    }
    // A mask byte other than 0 or 1 is refused when read.
    std::fs::write(&p, [&good[..good.len() - 1], &[7]].concat()).unwrap();
    let e = TokenFile::open(&p).unwrap().mask(0, 3).unwrap_err().to_string();
    assert!(e.contains("mask byte 7 at position 2"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// `malus train` on a text file with a vocabulary over 65,536 tokens: the text becomes a
/// uint32 token file in the run directory, and ids above 65535 train.
#[test]
fn text_with_a_large_vocabulary_trains() {
    let d = tmp("large-vocab");
    let vocab = 70_000;
    common::word_tokenizer(&d.join("tok.json"), vocab);
    let words: Vec<String> = (0..3000)
        .map(|i| format!("w{}", 65_000 + (i * 37) % 5000))
        .collect();
    std::fs::write(d.join("text.txt"), words.join(" ")).unwrap();
    let mut s = Settings::default_run();
    s.model = Config::preset("tiny").unwrap();
    (s.model.vocab, s.model.seq) = (vocab, 16);
    (s.tokenizer, s.data, s.out) = (d.join("tok.json"), d.join("text.txt"), d.join("run"));
    s.device = DeviceChoice::Cpu;
    (s.steps, s.accum, s.eval_every, s.eval_batches, s.ckpt_every) = (2, 1, 1, 1, 2);
    let mut t = Trainer::new(s, false).unwrap();
    let mut losses = Vec::new();
    t.run(Arc::new(AtomicBool::new(false)), |m| losses.push(m.train_loss))
        .unwrap();
    assert!(
        losses.len() == 2 && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    let cache = std::fs::read_dir(d.join("run"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("tokens-"))
        .unwrap();
    let f = TokenFile::open(&cache).unwrap();
    assert_eq!(
        f.format,
        Format::Headed {
            width: 4,
            mask: false
        }
    );
    let ids = f.window(0, 4, vocab).unwrap();
    assert_eq!(ids, vec![65_000, 65_037, 65_074, 65_111]);
    std::fs::remove_dir_all(&d).unwrap();
}
