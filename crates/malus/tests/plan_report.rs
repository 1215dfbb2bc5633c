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
