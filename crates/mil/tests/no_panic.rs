//! Robustness: arbitrary text, random mutations of the real fixtures and of printed random
//! programs go through `parse` and then `validate` (and `print` → `parse` when they parse) without a
//! panic; arbitrary bytes go through the blob reader; deeply nested input is refused without
//! overflowing the stack; large inputs stay linear.

mod common;

use std::path::PathBuf;

use malus_mil::blob::read_blob;
use malus_mil::{Weights, parse, print, print_with, validate};
use proptest::prelude::*;

fn fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mil-real");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mil"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

/// Whatever the text, every stage answers: parse, validate, and for programs that parse, printing
/// in both spellings gives text that parses again.
fn exercise(src: &str) {
    let Ok(p) = parse(src) else { return };
    let d = validate(&p);
    for sp in [
        malus_mil::Spelling::BareScalars,
        malus_mil::Spelling::Rank0Tensors,
    ] {
        let text = print_with(&p, sp);
        let q = parse(&text).unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
        assert_eq!(print_with(&q, sp), text);
        assert_eq!(validate(&q).len(), d.len());
    }
}

/// Replacement tokens that reach the corners of inference.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "-1",
    "?",
    "2147483647",
    "-2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "170141183460469231731687303715884105727",
    "0x1p+1023",
    "-0x1p-1074",
    "inf",
    "-inf",
    "nan",
    "1e400",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "<",
    ">",
    ",",
    ";",
    "=",
    "->",
    "\"",
    "\\",
    "tensor<int64, [3]>([9223372036854775807, 1, -9223372036854775808])",
    "tensor<int64, [1]>([-9223372036854775808])",
    "int64(9223372036854775807)",
    "fp16",
    "int8",
    "bool(true)",
    "string(\"same\")",
    "string(\"custom\")",
    "BLOBFILE",
    "func",
    "program",
    "tuple<",
    "dict<",
    "list<",
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipByte(usize, u8),
    Truncate(usize),
    Duplicate(usize, usize, usize),
    Delete(usize, usize),
    /// Replace a number (the k-th digit run) with a token.
    ReplaceNumber(usize, usize),
    Insert(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::FlipByte(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0usize..200, any::<usize>()).prop_map(|(a, n, b)| Mutation::Duplicate(a, n, b)),
        (any::<usize>(), 0usize..50).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(k, t)| Mutation::ReplaceNumber(k, t)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Mutation::Insert(a, t)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut b = src.as_bytes().to_vec();
    for m in muts {
        let n = b.len().max(1);
        match *m {
            Mutation::FlipByte(a, v) => {
                if !b.is_empty() {
                    b[a % n] ^= v;
                }
            }
            Mutation::Truncate(a) => b.truncate(a % n),
            Mutation::Duplicate(a, len, at) => {
                let s = a % n;
                let e = (s + len).min(b.len());
                let span = b.get(s..e).unwrap_or_default().to_vec();
                let at = at % n;
                b.splice(at.min(b.len())..at.min(b.len()), span);
            }
            Mutation::Delete(a, len) => {
                let s = (a % n).min(b.len());
                let e = (s + len).min(b.len());
                b.drain(s..e);
            }
            Mutation::ReplaceNumber(k, t) => {
                let runs: Vec<(usize, usize)> = {
                    let mut v = Vec::new();
                    let mut i = 0;
                    while i < b.len() {
                        if b[i].is_ascii_digit() {
                            let s = i;
                            while i < b.len() && b[i].is_ascii_digit() {
                                i += 1;
                            }
                            v.push((s, i));
                        } else {
                            i += 1;
                        }
                    }
                    v
                };
                if let Some(&(s, e)) = runs.get(k % runs.len().max(1)) {
                    b.splice(s..e, TOKENS[t].bytes());
                }
            }
            Mutation::Insert(a, t) => {
                let at = (a % n).min(b.len());
                b.splice(at..at, TOKENS[t].bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn arbitrary_mil_like_text(parts in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..80)) {
        exercise(&parts.join(" "));
        exercise(&format!("program(1.3) {{ func main<ios18>() {{ {} }} -> (); }}", parts.join(" ")));
    }

    #[test]
    fn mutated_fixtures(k in 0usize..4, muts in prop::collection::vec(mutation(), 1..5)) {
        let src = &fixtures()[k];
        exercise(&apply(src, &muts));
    }

    /// Numbers of the fixtures replaced one by one with extreme values: a type error at worst.
    #[test]
    fn extreme_numbers_in_fixtures(k in 0usize..4, which in any::<usize>(), t in 0..TOKENS.len()) {
        let src = &fixtures()[k];
        exercise(&apply(src, &[Mutation::ReplaceNumber(which, t)]));
    }

    #[test]
    fn mutated_random_programs(r in common::recipe(), muts in prop::collection::vec(mutation(), 1..5)) {
        let text = print(&common::build_program(&r));
        exercise(&apply(&text, &muts));
    }

    #[test]
    fn arbitrary_blob_files(f in prop::collection::vec(any::<u8>(), 0..512), offset in any::<u64>()) {
        let _ = read_blob(&f, offset);
        let _ = read_blob(&f, offset % 512);
        let mut w = Weights::new();
        w.insert_file("k", f);
        let _ = w.read("k", offset);
        let _ = w.add_f16("k", &[1.0]);
    }
}

/// Deep nesting of every recursive construct is refused with an error, even on a small stack.
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const N: usize = 100_000;
    let wrap = |open: &str, close: &str, inner: &str| format!("{}{inner}{}", open.repeat(N), close.repeat(N));
    let op = |val: &str| {
        format!("program(1.3) {{ func main<ios18>() {{ fp16 c = const()[val = {val}]; }} -> (c); }}")
    };
    let cases: Vec<(&str, String)> = vec![
        ("brackets alone", "[".repeat(N)),
        (
            "list literal",
            op(&format!("tensor<fp16, [1]>({})", wrap("[", "]", "1"))),
        ),
        (
            "unclosed list literal",
            op(&format!("tensor<fp16, [1]>({}", "[".repeat(N))),
        ),
        ("tuple literal", op(&format!("fp16({})", wrap("(", ")", "1")))),
        ("dict literal", op(&format!("fp16({})", "{{".repeat(N)))),
        ("value tuple", op(&wrap("(", ")", "x"))),
        (
            "tuple type",
            op(&format!("{}fp16{}(1)", "tuple<".repeat(N), ">".repeat(N))),
        ),
        (
            "list type",
            op(&format!("{}fp16{}(1)", "list<".repeat(N), ", ?>".repeat(N))),
        ),
        ("dict type", op(&format!("{}fp16, fp16>(1)", "dict<".repeat(N)))),
        (
            "param type",
            format!(
                "program(1.3) {{ func main<ios18>({}fp16{} x) {{ }} -> (x); }}",
                "tuple<".repeat(N),
                ">".repeat(N)
            ),
        ),
        (
            "nested BLOBFILE",
            op(&format!(
                "{}string(\"p\"), offset = uint64(64)){}",
                "tensor<fp16, [1]>(BLOBFILE(path = ".repeat(N),
                "), offset = uint64(64)))".repeat(N)
            )),
        ),
        (
            "program attr",
            format!("program(1.3) [a = {}] {{}}", wrap("(", ")", "x")),
        ),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            for (what, src) in cases {
                let r = parse(&src);
                assert!(r.is_err(), "{what}: nesting {N} deep was accepted");
                let e = r.unwrap_err();
                if what != "brackets alone" {
                    assert!(e.msg.contains("nested too deeply"), "{what}: {e}");
                }
            }
        })
        .unwrap();
    handle
        .join()
        .expect("the parser overflowed its stack or panicked");
}

/// Nesting up to the limit is accepted and survives printing.
#[test]
fn moderate_nesting_round_trips() {
    let n = 30;
    let lit = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let shape = vec!["1"; n].join(", ");
    let src = format!(
        "program(1.3) {{ func main<ios18>() {{ tensor<fp16, [{shape}]> c = const()[val = tensor<fp16, [{shape}]>({lit})]; }} -> (c); }}"
    );
    let p = parse(&src).unwrap();
    assert!(validate(&p).is_empty());
    assert_eq!(parse(&print(&p)).unwrap(), p);
    let ty = format!("{}fp16{}", "tuple<".repeat(n), ">".repeat(n));
    let src = format!("program(1.3) {{ func main<ios18>({ty} x) {{ }} -> (x); }}");
    let p = parse(&src).unwrap();
    assert_eq!(parse(&print(&p)).unwrap(), p);
}

/// Large inputs are handled in time linear in their size (these took minutes when some checks were
/// quadratic).
#[test]
fn large_inputs_stay_linear() {
    let n = 200_000;
    // An op with many arguments.
    let args: Vec<String> = (0..n).map(|i| format!("a{i} = x")).collect();
    let src = format!(
        "program(1.3) {{ func main<ios18>(fp16 x) {{ fp16 y = relu({}); }} -> (y); }}",
        args.join(", ")
    );
    let p = parse(&src).unwrap();
    assert_eq!(validate(&p).len(), 1);
    // Many functions.
    let funcs: String = (0..n / 4)
        .map(|i| format!("func f{i}<ios18>() {{ }} -> ();\n"))
        .collect();
    let p = parse(&format!("program(1.3) {{ {funcs} }}")).unwrap();
    assert!(validate(&p).is_empty());
    // Many axes: expand_dims of a long axis list, and a reduction over a high rank.
    let axes: Vec<String> = (0..n / 4).map(|i| i.to_string()).collect();
    let src = format!(
        "program(1.3) {{ func main<ios18>(fp16 x) {{ tensor<int32, [{k}]> a = const()[val = tensor<int32, [{k}]>([{}])]; tensor<fp16, [{}]> y = expand_dims(axes = a, x = x); }} -> (y); }}",
        axes.join(", "),
        vec!["1"; n / 4].join(", "),
        k = n / 4
    );
    let p = parse(&src).unwrap();
    assert_eq!(validate(&p), vec![]);
    let dims = vec!["1"; n / 4].join(", ");
    let src = format!(
        "program(1.3) {{ func main<ios18>(tensor<fp16, [{dims}]> x) {{ tensor<int32, [{k}]> a = const()[val = tensor<int32, [{k}]>([{}])]; fp16 y = reduce_sum(axes = a, x = x); fp16 z = squeeze(x = x); }} -> (y); }}",
        axes.join(", "),
        k = n / 4
    );
    let p = parse(&src).unwrap();
    assert_eq!(validate(&p), vec![]);
}

/// Every fixture with every single line deleted: parse and validate answer.
#[test]
fn fixtures_without_any_one_line() {
    for src in fixtures() {
        let lines: Vec<&str> = src.lines().collect();
        for i in 0..lines.len() {
            let mut l = lines.clone();
            l.remove(i);
            exercise(&l.join("\n"));
        }
    }
}
