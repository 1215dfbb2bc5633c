//! The training loop end to end on a tiny model: loss falls, an interrupted and resumed run logs
//! exactly the same losses as an uninterrupted one, and bad input gives named errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use malus::data::shards::write_tokens;
use malus::{CompiledModel, Config, DeviceChoice, Dw, Metrics, Params, Settings, Trainer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("malus-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny model on a token shard cut from the shipped corpus.
fn settings(out: &Path) -> Settings {
    let mut s = Settings::default_run();
    s.model = Config {
        vocab: 4096,
        seq: 64,
        ..Config::preset("tiny").unwrap()
    };
    let tok = malus::data::Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(repo().join("data/austen.txt")).unwrap();
    let ids = tok.encode(&text[..60_000]).unwrap();
    let shard = out.join("austen-head.bin");
    write_tokens(&shard, &ids).unwrap();
    s.data = shard;
    s.tokenizer = repo().join("data/tokenizer.json");
    s.out = out.to_path_buf();
    s.device = DeviceChoice::Cpu;
    s.steps = 8;
    s.accum = 2;
    s.warmup = 2;
    s.lr = 3e-3;
    s.eval_every = 4;
    s.eval_batches = 2;
    s.ckpt_every = 100;
    s
}

fn losses(out: &Path) -> Vec<(u64, f64, Option<f64>)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let m: Metrics = serde_json::from_str(l).unwrap();
            (m.step, m.train_loss, m.val_loss)
        })
        .collect()
}

#[test]
fn resumed_run_logs_the_same_losses_as_an_uninterrupted_one() {
    let a = dir("full");
    let mut t = Trainer::new(settings(&a), false).unwrap();
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    let full = losses(&a);
    assert_eq!(full.len(), 8);
    assert!(
        full[7].2.unwrap() < full[3].2.unwrap(),
        "validation loss should fall: {full:?}"
    );

    let b = dir("split");
    let mut t = Trainer::new(settings(&b), false).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    t.run(stop, |m| {
        if m.step == 3 {
            flag.store(true, Ordering::SeqCst); // as Ctrl-C does: finish the step, checkpoint, stop
        }
    })
    .unwrap();
    assert_eq!(t.step_no(), 3);
    drop(t);
    let mut t = Trainer::new(settings(&b), true).unwrap();
    assert_eq!(t.step_no(), 3);
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert_eq!(
        losses(&b),
        full,
        "the resumed run must log exactly the same losses"
    );
}

#[test]
fn bad_inputs_are_named() {
    let d = dir("bad");
    let mut s = settings(&d);
    s.data = d.join("missing.txt");
    let err = format!("{:#}", Trainer::new(s, false).err().unwrap());
    assert!(err.contains("missing.txt"), "{err}");

    let mut s = settings(&d);
    write_tokens(&d.join("big.bin"), &vec![5000u32; 1000]).unwrap();
    s.data = d.join("big.bin");
    let err = format!("{:#}", Trainer::new(s, false).err().unwrap());
    assert!(err.contains("big.bin") && err.contains("token 5000"), "{err}");

    let s = settings(&d);
    let err = format!("{:#}", Trainer::new(s, true).err().unwrap());
    assert!(err.contains("no checkpoint"), "{err}");

    // A checkpoint of another model config is refused by name.
    let t = Trainer::new(settings(&d), false).unwrap();
    t.save().unwrap();
    drop(t); // release the run directory
    let mut other = settings(&d);
    other.model.hidden = 160;
    let err = format!("{:#}", Trainer::new(other, true).err().unwrap());
    assert!(
        err.contains("ckpt-00000000") && err.contains("model config differs"),
        "{err}"
    );

    // A damaged newest checkpoint is skipped, by name, for the intact one before it; when
    // none is intact, every one is listed with its reason.
    let ck = d.join("ckpt-00000001.safetensors");
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    let t = Trainer::new(settings(&d), true).unwrap();
    assert_eq!(t.step_no(), 0);
    assert!(
        t.resume_notes()[0].contains("skipped") && t.resume_notes()[0].contains("ckpt-00000001"),
        "{:?}",
        t.resume_notes()
    );
    drop(t);
    std::fs::write(d.join("ckpt-00000000.safetensors"), b"truncated").unwrap();
    let err = format!("{:#}", Trainer::new(settings(&d), true).err().unwrap());
    assert!(
        err.contains("no intact checkpoint")
            && err.contains("ckpt-00000000")
            && err.contains("ckpt-00000001"),
        "{err}"
    );
}

/// Resuming after skipping a damaged newest checkpoint trains exactly as resuming from the
/// intact one directly.
#[test]
fn resume_after_a_fallback_equals_resuming_directly() {
    let a = dir("fallback");
    let mut s = settings(&a);
    (s.steps, s.ckpt_every, s.keep) = (6, 2, 3);
    Trainer::new(s.clone(), false)
        .unwrap()
        .run(Arc::new(AtomicBool::new(false)), |_| {})
        .unwrap();
    let b = dir("direct");
    for e in std::fs::read_dir(&a).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), b.join(e.file_name())).unwrap();
    }
    let newest = "ckpt-00000006.safetensors";
    let bytes = std::fs::read(a.join(newest)).unwrap();
    std::fs::write(a.join(newest), &bytes[..bytes.len() / 2]).unwrap(); // truncated
    std::fs::remove_file(b.join(newest)).unwrap();
    let resume = |out: &Path| {
        let mut r = s.clone();
        (r.out, r.steps) = (out.to_path_buf(), 8);
        let mut t = Trainer::new(r, true).unwrap();
        assert_eq!(t.step_no(), 4);
        t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
        losses(out)
    };
    let (la, lb) = (resume(&a), resume(&b));
    assert_eq!(la, lb);
    assert_eq!(
        la.iter().map(|l| l.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
}

/// A checkpoint write that fails (a file-size limit stands in for a full disk: the write gets
/// EFBIG instead of ENOSPC, through the same error path) is an error naming the file, and the
/// good checkpoint before it stays the newest, intact, with no temp file left behind.
#[cfg(unix)]
#[test]
fn a_failed_checkpoint_write_never_replaces_a_good_one() {
    let out = dir("fsize");
    let s = settings(&out);
    let args = |steps: &str| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--model", "tiny", "--vocab", "4096", "--seq", "64"]
            .map(String::from)
            .to_vec();
        for (k, v) in [
            ("--data", s.data.display().to_string()),
            ("--tokenizer", s.tokenizer.display().to_string()),
            ("--out", out.display().to_string()),
            ("--steps", steps.into()),
            ("--ckpt-every", "1".into()),
            ("--eval-every", "100".into()),
            ("--device", "cpu".into()),
            ("--sample-tokens", "0".into()),
        ] {
            a.push(k.into());
            a.push(v);
        }
        a
    };
    let bin = env!("CARGO_BIN_EXE_malus");
    let ok = std::process::Command::new(bin).args(args("2")).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let good = out.join("ckpt-00000002.safetensors");
    let before = std::fs::read(&good).unwrap();

    // Resume with a file-size limit of half a checkpoint; SIGXFSZ ignored so the write fails
    // with an error instead of killing the process.
    let limit_kib = before.len() / 2 / 1024;
    let mut resume = args("4");
    resume.push("--resume".into());
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"");
    let failed = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(bin)
        .args(&resume)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "the write should have failed: {err}");
    assert!(err.contains("ckpt-00000003.safetensors"), "{err}");
    assert!(err.contains("too large"), "{err}");
    assert!(!out.join("ckpt-00000003.safetensors").exists());
    assert_eq!(std::fs::read(&good).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    let newest = malus::checkpoint::latest(&out).unwrap().unwrap();
    assert_eq!(newest, good);
    malus::checkpoint::Checkpoint::load(&newest).unwrap();
}

// `restage` rewrites exactly the blocks whose tensors are flagged as changed: an unflagged
// change stays invisible to the kernels, a flagged one (or a change of the norm weight folded
// into a matrix) gives the same loss as staging everything afresh.
test_device!(restage_writes_only_the_changed_blocks, |device| {
    let c = Config::preset("tiny").unwrap();
    let toks: Vec<u32> = (0..=c.seq as u32).map(|i| (i * 7 + 3) % c.vocab as u32).collect();
    let p0 = Params::init(&c, 1);
    let mut step = common::compiled(&c, &p0, &device, Dw::Device);
    let loss0 = step.forward(&p0, &toks).unwrap();
    let fresh = |p: &Params| {
        common::compiled(&c, p, &device, Dw::Device)
            .forward(p, &toks)
            .unwrap()
    };
    let ids = &p0.layers[1];
    for (what, tensor) in [
        ("wq", ids.wq),
        ("attention norm", ids.attn_norm),
        ("w2", ids.w2),
        ("final norm", p0.final_norm),
    ] {
        let mut p1 = p0.clone();
        p1.tensors[tensor].data.iter_mut().for_each(|v| *v *= 1.5);
        let mut flags = vec![false; p1.tensors.len()];
        step.restage(&p1, &flags).unwrap();
        assert_eq!(step.forward(&p1, &toks).unwrap(), loss0, "{what}: unflagged");
        flags[tensor] = true;
        step.restage(&p1, &flags).unwrap();
        let got = step.forward(&p1, &toks).unwrap();
        assert_ne!(got, loss0, "{what}: flagged change not staged");
        assert_eq!(got, fresh(&p1), "{what}");
        step.stage(&p0).unwrap();
    }
    assert!(step.restage(&p0, &[true]).is_err());
});

/// A Qwen3-style model (GQA, q/k norm) trains end to end: validation loss falls, the norm
/// weights move and are checkpointed, and the checkpoint samples.
#[test]
fn a_qk_norm_model_trains_checkpoints_and_samples() {
    let d = dir("qknorm");
    let mut s = settings(&d);
    s.model.qk_norm = true;
    s.model.kv_heads = 2;
    let mut t = Trainer::new(s, false).unwrap();
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    let l = losses(&d);
    assert!(
        l[7].2.unwrap() < l[3].2.unwrap(),
        "validation loss should fall: {l:?}"
    );
    let path = malus::checkpoint::latest(&d).unwrap().unwrap();
    let ck = malus::checkpoint::Checkpoint::load(&path).unwrap();
    let qn = ck
        .params()
        .unwrap()
        .get("model.layers.0.self_attn.q_norm.weight")
        .unwrap();
    assert!(qn.data.iter().any(|&v| v != 1.0), "q_norm never trained");
    let opts = malus::generate::SampleOptions {
        temperature: 0.8,
        top_p: 0.95,
        max_tokens: 8,
        seed: 1,
        stop: None,
    };
    let text = malus::generate::generate(
        &ck.meta.config,
        ck.params().unwrap(),
        t.tokenizer(),
        "It is",
        &opts,
        |_| {},
    )
    .unwrap();
    assert!(!text.is_empty());
}

/// The gradients `take_grads` hands out are the accumulators converted in place: they have the
/// parameters' shapes, a second take without a backward in between is all zeros, and the next
/// backward starts from clean accumulators (its gradients equal a fresh step's), tied or not.
#[test]
fn lent_gradients_come_back_clean() {
    for tied in [true, false] {
        let mut c = Config::preset("tiny").unwrap();
        c.tied = tied;
        c.kv_heads = 2;
        let p = Params::init(&c, 3);
        let toks =
            |k: u32| -> Vec<u32> { (0..=c.seq as u32).map(|i| (i * k + 1) % c.vocab as u32).collect() };
        let grads = |step: &mut CompiledModel, t: &[u32]| {
            step.forward(&p, t).unwrap();
            step.backward(2.0).unwrap();
            step.take_grads(&p, 2.0).unwrap().clone()
        };
        let mut step = common::f32_step(&c, &p);
        let g1 = grads(&mut step, &toks(7));
        for (g, t) in g1.tensors.iter().zip(&p.tensors) {
            assert_eq!(
                (&g.name, &g.shape, g.data.len()),
                (&t.name, &t.shape, t.data.len())
            );
            assert!(g.data.iter().any(|&v| v != 0.0), "{}: no gradient", g.name);
        }
        let again = step.take_grads(&p, 2.0).unwrap();
        assert!(again.tensors.iter().all(|t| t.data.iter().all(|&v| v == 0.0)));
        let g2 = grads(&mut step, &toks(11));
        assert_eq!(g2, grads(&mut common::f32_step(&c, &p), &toks(11)), "tied {tied}");
        assert_ne!(g1, g2);
    }
}
