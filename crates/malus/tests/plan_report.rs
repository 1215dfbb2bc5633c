//! `malus plan` prints what it printed before the kernel table (fixtures/plan/README.md): the
//! refactor moved code, not numbers.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn plan_reports_are_unchanged() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
    let cases: [(&str, &[&str]); 8] = [
        ("plan-tiny.txt", &["--model", "tiny"]),
        ("plan-stories15m.txt", &["--model", "stories15m"]),
        ("plan-stories110m.txt", &["--model", "stories110m"]),
        ("plan-qwen3-0.6b.txt", &["--model", "qwen3-0.6b"]),
        (
            "plan-stories110m-host.txt",
            &["--model", "stories110m", "--dw", "host"],
        ),
        (
            "plan-stories110m-m4.txt",
            &["--model", "stories110m", "--chip", "m4"],
        ),
        (
            "plan-qwen3-m1.txt",
            &["--model", "qwen3-0.6b", "--chip", "m1", "--seq", "256"],
        ),
        (
            "plan-stories15m-host-m5-warn.txt",
            &[
                "--model",
                "stories15m",
                "--dw",
                "host",
                "--chip",
                "m5",
                "--warnings",
            ],
        ),
    ];
    for (file, args) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_malus"))
            .arg("plan")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read_to_string(dir.join(file)).unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        if got != want {
            let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
            panic!("{file}: the report changed (first different line {line:?}):\n{got}");
        }
    }
}

/// `malus plan --model llama2-7b --lora` (rank 8, every target): the counts worked out by hand
/// from Llama-2-7B's shape (dim 4096, FFN 11008, 32 layers, vocabulary 32000, untied).
#[test]
fn a_lora_plan_counts_adapters_and_a_frozen_base() {
    let out = Command::new(env!("CARGO_BIN_EXE_malus"))
        .args(["plan", "--model", "llama2-7b", "--lora", "--chip", "m4"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Per layer: q, k, v, o 8·(4096 + 4096) each, gate, up, down 8·(4096 + 11008) each.
    let adapters = 32 * (4 * 8 * 8192 + 3 * 8 * 15104);
    assert_eq!(adapters, 19_988_480);
    assert!(
        text.contains("6738.42M frozen parameters, 19.988M adapter parameters"),
        "{text}"
    );
    // Only the adapters are updated and re-staged.
    assert!(text.contains("20.0 M weight elements re-staged"), "{text}");
    assert!(text.contains("LoRA adapter gradients"), "{text}");
    assert!(!text.contains("accumulate dW"), "{text}");
    // Host weights: adapters and RMSNorm weights (32·2·4096 + 4096) in f32, the embedding in
    // bf16 — no f32 base: 4·(19,988,480 + 266,240) + 2·32000·4096 = 343,162,880 bytes.
    assert_eq!(4 * (adapters + 266_240) + 2 * 32000 * 4096, 343_162_880);
    let ane = text.lines().find(|l| l.contains("on the Neural Engine")).unwrap();
    assert!(
        ane.contains("weights 343.2 MB") && ane.contains("CPU executor 0.0 MB"),
        "{ane}"
    );
    assert!(
        text.contains("predicted on M4") && text.contains("not a measurement"),
        "{text}"
    );
    // The lint and the kernels are those of the LoRA variants: no dW kernels.
    assert!(!text.contains("attn_dw") && !text.contains("ffn_dw"), "{text}");
}
