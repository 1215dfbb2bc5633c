//! Bad input, as a careless user or script gives it, through the `malus` command: one table,
//! each row the arguments (after files it damages or writes) and the error it must print.
//! Every row exits with status 1 and its message, none panics, none allocates past a bound
//! (each runs under a 4 GiB address-space limit, so an allocation for an absurd size fails the
//! row), and a run refused before it starts leaves no run directory behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use malus::data::Tok;
use malus::data::shards::write_tokens;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `malus ARGS` under `ulimit -v` (KiB); returns the exit code and stderr.
fn malus(args: &[String]) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 4194304; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_malus"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small token shard of the shipped corpus and a first checkpoint to damage.
struct World {
    dir: PathBuf,
    shard: PathBuf,
    ckpt: PathBuf,
}

fn train_args(w: &World, out: &Path) -> Vec<String> {
    [
        "train",
        "--model",
        "tiny",
        "--vocab",
        "4096",
        "--steps",
        "1",
        "--sample-tokens",
        "0",
        "--device",
        "cpu",
        "--data",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        w.shard.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ])
    .collect()
}

fn world() -> World {
    let dir = std::env::temp_dir().join(format!("malus-bad-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tok = Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(repo().join("data/austen.txt")).unwrap();
    let shard = dir.join("austen-head.bin");
    write_tokens(&shard, &tok.encode(&text[..30_000]).unwrap()).unwrap();
    let mut w = World {
        dir: dir.clone(),
        shard,
        ckpt: PathBuf::new(),
    };
    let run = dir.join("good");
    let (code, err) = malus(&train_args(&w, &run));
    assert_eq!(code, Some(0), "{err}");
    w.ckpt = run.join("ckpt-00000001.safetensors");
    w
}

/// A copy of the tiny Hugging Face fixture with `key` set to `value` in its config.json.
fn hf_with(w: &World, name: &str, key: &str, value: u64) -> PathBuf {
    let src = repo().join("crates/malus/tests/fixtures/hf/tiny-llama");
    let dst = w.dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    cfg[key] = value.into();
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    dst
}

/// A copy of the good checkpoint damaged by `f`, alone in a run directory of its own.
fn damaged(w: &World, name: &str, f: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let d = w.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut bytes = std::fs::read(&w.ckpt).unwrap();
    f(&mut bytes);
    std::fs::write(d.join("ckpt-00000001.safetensors"), bytes).unwrap();
    d
}

#[test]
fn every_bad_input_is_a_named_error() {
    let w = world();
    let s = |v: &str| v.to_string();
    let file = |name: &str, bytes: &[u8]| {
        let p = w.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let train = |extra: &[String]| -> Vec<String> {
        let mut a = train_args(&w, &w.dir.join("refused"));
        a.extend(extra.iter().cloned());
        a
    };
    // The base arguments with `flag`'s value replaced.
    let set = |flag: &str, v: String| {
        let mut a = train_args(&w, &w.dir.join("refused"));
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = v;
        a
    };
    let with_data = |d: String| set("--data", d);
    let resume = |dir: PathBuf| {
        let mut a = train_args(&w, &dir);
        a.push(s("--resume"));
        a
    };
    let generate = |ck: PathBuf| vec![s("generate"), s("--checkpoint"), ck.display().to_string()];
    let overwritten = damaged(&w, "overwritten", |b| {
        let n = b.len();
        b[n - 3000..n - 1000].fill(0x7f) // a few KB of tensor bytes
    });
    let truncated = damaged(&w, "truncated", |b| b.truncate(b.len() / 2));
    let huge_header = damaged(&w, "huge-header", |b| {
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes())
    });
    let init = |dir: PathBuf| {
        vec![
            s("train"),
            s("--init"),
            dir.display().to_string(),
            s("--data"),
            w.shard.display().to_string(),
            s("--tokenizer"),
            s("builtin:tokenizer.json"),
            s("--out"),
            w.dir.join("refused").display().to_string(),
            s("--steps"),
            s("1"),
            s("--sample-tokens"),
            s("0"),
            s("--device"),
            s("cpu"),
        ]
    };
    let odd = {
        let p = file("odd.bin", &[1, 0, 2]);
        with_data(p)
    };
    let big_ids = {
        let p = w.dir.join("big.bin");
        write_tokens(&p, &vec![5000u32; 1000]).unwrap();
        with_data(p.display().to_string())
    };
    // (what, arguments, the error's text, a run directory may exist afterwards)
    #[rustfmt::skip]
    let rows: Vec<(&str, Vec<String>, Vec<&str>, bool)> = vec![
        ("--lr nan", train(&[s("--lr"), s("nan")]), vec!["--lr must be a finite number > 0 (got NaN)"], false),
        ("--lr inf", train(&[s("--lr"), s("inf")]), vec!["--lr must be a finite number > 0 (got inf)"], false),
        ("--lr 0", train(&[s("--lr"), s("0")]), vec!["--lr must be a finite number > 0 (got 0)"], false),
        ("--clip -1", train(&[s("--clip=-1")]), vec!["--clip must be"], false),
        ("--steps 0", set("--steps", s("0")), vec!["--steps must be positive"], false),
        ("--accum 0", train(&[s("--accum"), s("0")]), vec!["--accum must be positive"], false),
        ("--seq 0", train(&[s("--seq"), s("0")]), vec!["seq must be positive"], false),
        ("a vocabulary of billions", set("--vocab", s("3000000000")), vec!["vocab = 3000000000 exceeds"], false),
        ("a vocabulary that cannot fit", set("--vocab", s("200000000")), vec!["needs at least", "are available"], false),
        ("--data naming a directory", with_data(w.dir.display().to_string()), vec!["is a directory, not a file"], false),
        ("--data missing", with_data(w.dir.join("missing.txt").display().to_string()), vec!["missing.txt does not exist"], false),
        ("empty text", with_data(file("empty.txt", b"")), vec!["empty.txt is empty"], false),
        ("non-UTF-8 text", with_data(file("latin1.txt", b"caf\xe9 au lait")), vec!["latin1.txt is not UTF-8 text"], false),
        ("a shard of odd size", odd, vec!["odd.bin has an odd size"], false),
        ("token ids past the vocabulary", big_ids, vec!["big.bin", "token 5000"], true),
        ("--tokenizer missing", train(&[s("--tokenizer"), w.dir.join("tok.json").display().to_string()]), vec!["tokenizer", "tok.json does not exist"], false),
        ("an intermediate_size beyond int32", init(hf_with(&w, "hf-wide", "intermediate_size", 3_000_000_000)), vec!["config.json: intermediate_size = 3000000000 exceeds"], false),
        ("an absurd layer count", init(hf_with(&w, "hf-deep", "num_hidden_layers", 100_000_000)), vec!["needs at least", "are available"], false),
        ("--resume with nothing to resume", resume(w.dir.join("empty-run")), vec!["no checkpoint in"], true),
        ("--resume, tensor bytes overwritten", resume(overwritten.clone()), vec!["no intact checkpoint", "is corrupt (CRC-32"], true),
        ("--resume, checkpoint truncated", resume(truncated.clone()), vec!["no intact checkpoint", "ckpt-00000001"], true),
        ("generate from overwritten tensor bytes", generate(overwritten), vec!["is corrupt (CRC-32"], true),
        ("generate from a truncated checkpoint", generate(truncated), vec!["ckpt-00000001", "safetensors"], true),
        ("a checkpoint header of 2^64 bytes", generate(huge_header), vec!["not a safetensors file"], true),
    ];
    let mut failures = Vec::new();
    for (what, args, want, dir_ok) in rows {
        let _ = std::fs::remove_dir_all(w.dir.join("refused"));
        let (code, err) = malus(&args);
        let ok = code == Some(1)
            && want.iter().all(|t| err.contains(t))
            && !err.contains("panicked")
            && (dir_ok || !w.dir.join("refused").exists());
        if !ok {
            failures.push(format!(
                "{what}: exit {code:?}, run dir left: {}\n{err}",
                w.dir.join("refused").exists()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// Two runs started on one run directory: exactly one trains, the other exits at once naming
/// the holder, and the metrics log has each step once.
#[test]
fn two_runs_never_share_a_run_directory() {
    let w = world();
    let out = w.dir.join("shared");
    let mut args = train_args(&w, &out);
    let i = args.iter().position(|x| x == "--steps").unwrap();
    args[i + 1] = "30".into();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_malus"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(1)), "{codes:?}");
    let loser = if a.status.success() { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("is in use by another malus process (pid "), "{err}");
    let steps: Vec<u64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<malus::Metrics>(l).unwrap().step)
        .collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// The main job needs no file of the repository: from an empty directory it trains on the
/// corpus built into the binary.
#[test]
fn the_default_corpus_is_built_in() {
    let d = std::env::temp_dir().join(format!("malus-anywhere-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_malus"))
        .current_dir(&d)
        .args([
            "train",
            "--model",
            "tiny",
            "--vocab",
            "4096",
            "--steps",
            "1",
            "--eval-every",
            "1",
        ])
        .args(["--sample-tokens", "0", "--device", "cpu", "--out", "run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("data builtin:austen.txt"), "{text}");
    assert!(d.join("run/ckpt-00000001.safetensors").is_file());
    std::fs::remove_dir_all(&d).unwrap();
}
