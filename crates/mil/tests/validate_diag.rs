//! Validation of parsed text: every kind of error yields a diagnostic with its code at the exact
//! source position, and broken variants of the real fixtures (a mutated shape, a deleted
//! definition, a renamed argument, a truncated file) are rejected at the right `line:col`.

mod common;

use common::{fixture, fixtures};
use malus_mil::{Diagnostic, Severity, parse, validate};

/// 1-based line and column (in chars) of the first occurrence of `needle`.
#[track_caller]
fn pos_of(src: &str, needle: &str) -> (u32, u32) {
    let at = src
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the source"));
    pos_at(src, at)
}

/// 1-based line and column of a byte offset.
fn pos_at(src: &str, at: usize) -> (u32, u32) {
    let before = &src[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    (line, col)
}

fn diags(src: &str) -> Vec<Diagnostic> {
    let p = parse(src).unwrap_or_else(|e| panic!("does not parse: {e}\n{src}"));
    validate(&p)
}

/// A one-function program in the 1.3 spelling: its body starts on line 4, at column 13.
fn prog(params: &str, body: &[&str], ret: &str) -> String {
    let mut s = String::from("program(1.3)\n{\n    func main<ios18>(");
    s.push_str(params);
    s.push_str(") {\n");
    for l in body {
        s.push_str("            ");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(&format!("        }} -> ({ret});\n}}\n"));
    s
}

const X: &str = "tensor<fp16, [2, 3]> x";

#[test]
fn programs_without_errors() {
    let body = [
        "tensor<fp16, [2, 3]> y = relu(x = x)[name = string(\"y\")];",
        "tensor<int32, [2]> s = const()[name = string(\"s\"), val = tensor<int32, [2]>([3, 2])];",
        "tensor<fp16, [3, 2]> z = reshape(shape = s, x = y)[name = string(\"z\")];",
    ];
    let clean = [
        prog(X, &body, "z"),
        // `?` is compatible with any extent, in both directions.
        prog(
            "tensor<fp16, [?, 3]> u",
            &["tensor<fp16, [2, ?]> y = relu(x = u);"],
            "y",
        ),
    ];
    for src in clean {
        assert_eq!(diags(&src), vec![], "{src}");
    }
}

/// A program with exactly one diagnostic: an error with this code at this position (line, col),
/// whose message contains each fragment (starts with one marked `^`).
type OneError = (&'static str, (u32, u32), &'static [&'static str], String);

#[test]
fn each_error_is_reported_at_its_position() {
    #[rustfmt::skip]
    let cases: &[OneError] = &[
        // An undefined variable, also inside a tuple argument.
        ("bad-argument", (4, 13), &["undefined variable `z`"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = z)[name = string(\"y\")];"], "y")),
        ("bad-argument", (4, 13), &["`w`"],
            prog(X, &["tensor<fp16, [2, 6]> c = concat(axis = int32(1), interleave = bool(false), values = (x, w));"], "c")),
        // A variable used before its definition is undefined at the use.
        ("bad-argument", (4, 13), &["undefined variable `b`"],
            prog(X, &["tensor<fp16, [2, 3]> a = relu(x = b);", "tensor<fp16, [2, 3]> b = relu(x = x);"], "a")),
        // Ops without an inference rule are still checked for their variables.
        ("bad-argument", (4, 13), &["`nope`"],
            prog(X, &["tensor<fp16, [2, 3]> y = leaky_relu(alpha = fp16(0x1p-3), x = nope);"], "y")),
        // Redefined variables: an op result, a parameter, two parameters (reported at the
        // function), two results of one op.
        ("redefined-var", (5, 13), &["`y`"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x);", "tensor<fp16, [2, 3]> y = sigmoid(x = x);"], "y")),
        ("redefined-var", (4, 13), &["`x`"],
            prog(X, &["tensor<fp16, [2, 3]> x = relu(x = x);"], "x")),
        ("redefined-var", (3, 5), &["`a`"],
            prog("tensor<fp16, [2]> a, tensor<fp16, [2]> a", &[], "a")),
        ("redefined-var", (4, 13), &["`p`"],
            prog(X, &["tensor<fp16, [1, 3]> p, tensor<fp16, [1, 3]> p = split(axis = int32(0), num_splits = int32(2), x = x);"], "p")),
        // Unknown and missing arguments; `const` operands live in the attribute block.
        ("type-error", (4, 13), &["`alpha`", "unknown argument"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x, alpha = fp16(0x1p+0));"], "y")),
        ("type-error", (4, 13), &["`y`", "missing required argument"],
            prog(X, &["tensor<fp16, [2, 3]> y = add(x = x);"], "y")),
        ("type-error", (4, 13), &["`value`"],
            prog(X, &["tensor<int32, []> c = const()[name = string(\"c\"), value = int32(1)];"], "x")),
        // The declared type differs from the inferred one: shape, dtype, rank.
        ("type-mismatch", (4, 13), &["tensor<fp16, [2, 3]>", "`y` is declared tensor<fp16, [3, 2]>"],
            prog(X, &["tensor<fp16, [3, 2]> y = relu(x = x);"], "y")),
        ("type-mismatch", (4, 13), &["fp32"],
            prog(X, &["tensor<fp32, [2, 3]> y = relu(x = x);"], "y")),
        ("type-mismatch", (4, 13), &["`y`"],
            prog(X, &["tensor<fp16, [2, 3, 1]> y = relu(x = x);"], "y")),
        // A scalar declared for a tensor, in the rank-0 spelling of the message.
        ("type-mismatch", (4, 13), &["tensor<fp16, []>", "tensor<fp16, [3]>"],
            prog(X, &["fp16 y = reduce_sum(axes = tensor<int32, [1]>([0]), x = x);"], "y")),
        // The second result of a split.
        ("type-mismatch", (4, 13), &["`q`"],
            prog(X, &["tensor<fp16, [1, 3]> p, tensor<fp16, [2, 3]> q = split(axis = int32(0), num_splits = int32(2), x = x);"], "q")),
        // Too few results declared.
        ("result-count", (4, 13), &["produces 2"],
            prog(X, &["tensor<fp16, [1, 3]> p = split(axis = int32(0), num_splits = int32(2), x = x);"], "p")),
        // Wrong dtypes.
        ("type-error", (4, 13), &["argument `y`", "fp32", "^add"],
            prog(X, &["tensor<fp16, [2, 3]> y = add(x = x, y = fp32(0x1p+0));"], "y")),
        ("type-error", (4, 13), &["argument `x`"],
            prog("tensor<int32, [2, 3]> i", &["tensor<int32, [2, 3]> y = sqrt(x = i);"], "y")),
        ("type-error", (4, 13), &["argument `cond`"],
            prog(X, &["tensor<fp16, [2, 3]> y = select(a = x, b = x, cond = x);"], "y")),
        // The `name` attribute must be a string.
        ("bad-name", (4, 13), &["`name`"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x)[name = int32(3)];"], "y")),
        // A value out of its dtype's range.
        ("bad-argument", (4, 13), &["int8"],
            prog(X, &["tensor<int8, [2]> c = const()[name = string(\"c\"), val = tensor<int8, [2]>([1, 128])];"], "c")),
        // A string in a numeric tensor.
        ("bad-argument", (4, 13), &["fp16"],
            prog(X, &["tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>([\"1\"])];"], "c")),
        // Literals with the wrong number of values: flat, nested (a [2, 2] literal with 5 leaves),
        // an inline argument on a later line, a scalar with two values.
        ("bad-argument", (4, 13), &["has 2 values, expected 3", "argument `val`"],
            prog(X, &["tensor<int32, [3]> c = const()[name = string(\"c\"), val = tensor<int32, [3]>([1, 2])];"], "c")),
        ("bad-argument", (4, 13), &["has 5 values, expected 4"],
            prog(X, &["tensor<fp16, [2, 2]> c = const()[val = tensor<fp16, [2, 2]>([[1, 2], [3, 4, 5]])];"], "c")),
        ("bad-argument", (5, 13), &["has 4 values, expected 3"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x);", "tensor<fp16, [2, 3]> z = mul(x = y, y = tensor<fp16, [3]>([1, 2, 3, 4]));"], "z")),
        ("bad-argument", (4, 13), &["argument `y`"],
            prog(X, &["tensor<fp16, [2, 3]> z = mul(x = x, y = fp16((1, 2)));"], "z")),
        // An undefined return, reported at its function, also the second of a program.
        ("undefined-var", (3, 5), &["`nope`"],
            prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x);"], "y, nope")),
        ("undefined-var", (5, 5), &["`y`"],
            "program(1.3)\n{\n    func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n    func b<ios18>(tensor<fp16, [1]> x) {\n        } -> (y);\n}\n".into()),
        // Two functions with one name.
        ("duplicate-function", (5, 3), &["`a`"],
            "program(1.3)\n{\n    func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n  func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n}\n".into()),
    ];
    for (code, at, what, src) in cases {
        let d = diags(src);
        assert_eq!(d.len(), 1, "{d:#?}\n{src}");
        let d = &d[0];
        assert_eq!(d.code, *code, "{d}\n{src}");
        assert_eq!(d.severity, Severity::Error, "{d}\n{src}");
        assert_eq!((d.span.line, d.span.col), *at, "{d}\n{src}");
        for w in *what {
            let found = match w.strip_prefix('^') {
                Some(w) => d.message.starts_with(w),
                None => d.message.contains(w),
            };
            assert!(found, "{d} does not mention {w:?}\n{src}");
        }
        let head = format!("{}:{}: error[{code}]", at.0, at.1);
        assert!(d.to_string().starts_with(&head), "{d}\n{src}");
    }
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let l1 = "tensor<fp16, [2, 3]> a = relu(x = nope);";
    let l2 = "tensor<fp32, [2, 3]> b = relu(x = x);";
    let l3 = "tensor<fp16, [2, 3]> a = relu(x = x);";
    let src = prog(X, &[l1, l2, l3], "a, gone");
    let d = diags(&src);
    let got: Vec<(&str, u32, u32)> = d.iter().map(|d| (d.code, d.span.line, d.span.col)).collect();
    assert_eq!(
        got,
        vec![
            ("bad-argument", 4, 13),
            ("type-mismatch", 5, 13),
            ("redefined-var", 6, 13),
            ("undefined-var", 3, 5),
        ]
    );
}

#[test]
fn positions_count_characters_not_bytes() {
    // A multi-byte character earlier on the line (in a string) shifts the column by one each.
    let op = "tensor<fp16, [3, 2]> y = relu(x = x);";
    let src = prog(X, &[], "y").replace(
        "        } -> (y);",
        &format!("            tensor<int32, []> é = const()[name = string(\"ééé\"), val = int32(1)]; {op}\n        }} -> (y);"),
    );
    let d = diags(&src);
    assert_eq!(d.len(), 1, "{d:?}");
    let (line, _) = pos_of(&src, op);
    let col = src
        .lines()
        .nth(line as usize - 1)
        .unwrap()
        .split(op)
        .next()
        .unwrap()
        .chars()
        .count() as u32
        + 1;
    assert_eq!((d[0].span.line, d[0].span.col), (line, col));
    // 12 spaces + 69 chars of the const statement before the op; in bytes it would be 86.
    assert_eq!(col, 82);
}

// ---------------------------------------------------------------- parse errors

#[test]
fn syntax_errors_are_positioned() {
    // (source, position, message fragment, text that stands at the position or "")
    #[rustfmt::skip]
    let cases = [
        ("", (1, 1), "`program`", ""),
        ("program(1.3) {\n    func main<ios18>() {\n    } -> ();\n", (4, 1), "end of input", ""),
        ("program(1.3)\n{\n  func main<ios18>(tensor<fp16, [2> x) {} -> (x);\n}\n", (3, 35), "`]`", ""),
        ("program(1.3) { func m<ios18>(tensor<fq16, [2]> x) {} -> (x); }", (1, 37), "unknown dtype `fq16`", ""),
        ("program(1.3) { func m<ios18>(tensor<fp16, [-2]> x) {} -> (x); }", (1, 44), "dimension", "-2"),
        ("program(1.3) { func m<ios18>(tensor<fp16, [2]> x) {} (x); }", (1, 54), "`->`", ""),
        ("program(1.3) {\n func m<ios18>(fp16 x) {\n  fp16 y = add(x = x, x = x);\n } -> (y);\n}", (3, 23), "given twice", ""),
        ("program(1.3) {\n func m<ios18>() {\n  string s = const()[val = string(\"abc)];\n", (3, 35), "unterminated", "\"abc"),
        ("program(1.3) { func m<ios18>() { fp16 c = const()[val = fp16(0x1.zp+1)]; } -> (c); }", (1, 62), "malformed number", "0x1.z"),
        ("program(1.3) { func m<ios18>() { fp16 c = const()[val = fp16(1)] } -> (c); }", (1, 66), "`;`", "} ->"),
        ("program(1.3) § {}", (1, 14), "unexpected character", ""),
        ("program(1.3) {} trailing", (1, 17), "end of input", ""),
        ("program(1.3) { func m<ios18>() { tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>(BLOBFILE(path = string(\"w\")))]; } -> (c); }",
            (1, 115), "BLOBFILE", ""),
    ];
    for (src, at, what, there) in cases {
        let e = parse(src).expect_err(src);
        assert_eq!((e.span.line, e.span.col), at, "{e}\n{src}");
        assert!(e.msg.contains(what), "{e} does not mention {what:?}");
        if !there.is_empty() {
            assert_eq!(pos_of(src, there), at, "{src}");
        }
    }
}

// ---------------------------------------------------------------- broken real fixtures

/// The first diagnostic of `src` must have this code and position; `case` names it on failure.
#[track_caller]
fn first(src: &str, code: &str, at: (u32, u32), case: &str) -> Diagnostic {
    let f = diags(src)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{case}: no diagnostic; expected {code} at {at:?}"));
    assert_eq!(
        (f.code, f.span.line, f.span.col),
        (code, at.0, at.1),
        "{case}: {f}"
    );
    f
}

/// `src` with line `i` (0-based) replaced by `new`, its lines joined by `\n`.
fn with_line(src: &str, i: usize, new: &str) -> String {
    let lines = src.lines().enumerate();
    lines
        .map(|(j, l)| if j == i { new } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hand_broken_fixtures() {
    let (add, pk) = ("apple", "FluidInference_FluidAudio");
    let (vad, multi) = ("FluidInference_mobius", "rebecker");
    let vad_text = fixture(vad);
    let line_of = |needle| vad_text.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;
    let expand = line_of("x_3_cast_fp16 = expand_dims(");
    // The conv of the STFT: 258 output channels (the int8 constexpr's scale vector is [258]).
    let conv = line_of("stft_out_cast_fp16 = conv(");
    // (fixture, text, its replacement (the first occurrence only), first diagnostic)
    #[rustfmt::skip]
    let cases = [
        (add, "tensor<fp16, [1, 10]> var_3", "tensor<fp16, [1, 11]> var_3", "type-mismatch", (5, 13)),
        (add, "tensor<fp16, [1, 10]> var_3", "tensor<fp32, [1, 10]> var_3", "type-mismatch", (5, 13)),
        (add, "y = y)", "z = y)", "type-error", (5, 13)),
        (add, "-> (var_3)", "-> (var_4)", "undefined-var", (4, 5)),
        // [1, 10] · [3, 9] does not broadcast.
        (add, "tensor<fp16, [1, 10]> y", "tensor<fp16, [3, 9]> y", "type-error", (5, 13)),
        // [1, 10] · [2, 10] broadcasts to [2, 10], which is not the declared [1, 10].
        (add, "tensor<fp16, [1, 10]> y", "tensor<fp16, [2, 10]> y", "type-mismatch", (5, 13)),
        // Line 8 is `var_33 = add(x = audio_length, y = var_32)`.
        (pk, "tensor<int32, [1]> var_33", "tensor<int32, [2]> var_33", "type-mismatch", (8, 13)),
        (pk, "y = var_32)", "y = var_99)", "bad-argument", (8, 13)),
        (pk, "add(x = audio_length", "add(input = audio_length", "type-error", (8, 13)),
        // The literal of line 5 gets a second value.
        (pk, "val = tensor<int32, []>(1)]", "val = tensor<int32, []>([1, 2])]", "bad-argument", (5, 13)),
        (vad, "tensor<fp16, [1, 1, 640]> x_3_cast_fp16", "tensor<fp16, [1, 640, 1]> x_3_cast_fp16", "type-mismatch", (expand, 13)),
        (vad, "tensor<fp16, [1, 258, 4]> stft_out_cast_fp16", "tensor<fp16, [1, 258, 5]> stft_out_cast_fp16", "type-mismatch", (conv, 13)),
        // Stride 64 instead of 128: (640 − 256) / 64 + 1 = 7 ≠ 4.
        (vad, "val = tensor<int32, [1]>([128])", "val = tensor<int32, [1]>([64])", "type-mismatch", (conv, 13)),
        (multi, "relu(x = input)", "relu(x = inputs)", "bad-argument", (5, 13)),
    ];
    for (name, from, to, code, at) in cases {
        let src = fixture(name);
        assert!(src.contains(from), "{name}: no {from:?}");
        let case = format!("{name}: {from} → {to}");
        first(&src.replacen(from, to, 1), code, at, &case);
    }
    let pk = fixture(pk);
    let line8 = pk.lines().nth(7).unwrap().trim_start();
    assert!(line8.starts_with("tensor<int32, [1]> var_33 = add("), "{line8}");
    // The stride is written once; stride 100 would still give 4.
    let stride = "val = tensor<int32, [1]>([128])";
    assert_eq!(vad_text.matches(stride).count(), 1);
    assert_eq!(
        diags(&vad_text.replacen(stride, "val = tensor<int32, [1]>([100])", 1)),
        vec![]
    );
    // The second function's copy.
    let multi = fixture(multi);
    let second = multi.rfind("relu(x = input)").unwrap();
    let mut broken = multi.clone();
    broken.replace_range(second..second + "relu(x = input)".len(), "relu(y = input)");
    first(&broken, "type-error", (8, 13), "the second function of rebecker");
}

/// The op statements of a fixture: (line index, text).
fn op_lines(src: &str) -> Vec<(usize, &str)> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.starts_with("func") && !t.starts_with('}') && t.ends_with(';') && t.contains(" = ")
        })
        .collect()
}

/// Identifiers of a line outside string literals, with the next non-space character after each.
fn idents(line: &str) -> Vec<(&str, Option<char>)> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((&line[s..i], line[i..].trim_start().chars().next()));
        } else {
            i += 1;
        }
    }
    out
}

fn is_type_word(w: &str) -> bool {
    malus_mil::DType::from_name(w).is_some() || matches!(w, "tensor" | "tuple" | "dict" | "list")
}

/// The defined names of an op line: the identifiers before ` = ` that are not type words.
fn defined(line: &str) -> Vec<String> {
    let lhs = line.split(" = ").next().unwrap();
    idents(lhs)
        .into_iter()
        .map(|(w, _)| w)
        .filter(|w| !is_type_word(w))
        .map(str::to_string)
        .collect()
}

/// The variables a statement's right-hand side (or return list) refers to: identifiers that are
/// not type words, op names (followed by `(`) or argument names (followed by `=`).
fn uses(rhs: &str) -> Vec<&str> {
    idents(rhs)
        .into_iter()
        .filter(|(w, next)| !is_type_word(w) && !matches!(next, Some('(' | '=')))
        .map(|(w, _)| w)
        .collect()
}

fn col_of_op(line: &str) -> u32 {
    (line.len() - line.trim_start().len()) as u32 + 1
}

/// Deleting any definition that is used later: the first diagnostic is at the first later line
/// that uses it, or (when it is only returned) at its function.
#[test]
fn fixtures_with_a_deleted_definition() {
    let mut checked = 0;
    for (name, src) in fixtures() {
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in op_lines(&src) {
            let names = defined(line);
            assert!(!names.is_empty(), "{name}:{}: {line}", i + 1);
            // First later line of the same function using one of the names.
            let mut expect = None;
            for (j, l) in lines.iter().enumerate().skip(i + 1) {
                let t = l.trim_start();
                if t.starts_with('}') {
                    if t.starts_with("} ->") && uses(t).iter().any(|w| names.iter().any(|n| n == w)) {
                        // Returned only: reported at the function line.
                        let f = lines[..i]
                            .iter()
                            .rposition(|l| l.trim_start().starts_with("func"))
                            .unwrap();
                        expect = Some(("undefined-var", f as u32 + 1, col_of_op(lines[f])));
                    }
                    break;
                }
                let rhs = l.split_once(" = ").map_or("", |(_, r)| r);
                if uses(rhs).iter().any(|w| names.iter().any(|n| n == w)) {
                    expect = Some(("bad-argument", j as u32 + 1, col_of_op(l)));
                    break;
                }
            }
            let Some((code, line_no, col)) = expect else {
                continue; // dead code: deleting it changes nothing
            };
            // Deleting line i shifts later lines up by one.
            let shifted = if code == "bad-argument" {
                line_no - 1
            } else {
                line_no
            };
            let mut broken: Vec<&str> = lines.clone();
            broken.remove(i);
            let text = broken.join("\n");
            let case = format!("{name}: deleting line {}", i + 1);
            first(&text, code, (shifted, col), &case);
            checked += 1;
        }
    }
    assert!(checked >= 230, "only {checked} deletions checked");
}

/// Renaming the first argument of any op that has an inference rule: a type error at that op.
#[test]
fn fixtures_with_a_renamed_argument() {
    let mut checked = 0;
    for (name, src) in fixtures() {
        for (i, line) in op_lines(&src) {
            let (_, rhs) = line.split_once(" = ").unwrap();
            let op = rhs.split('(').next().unwrap().trim();
            if malus_mil::infer::op_spec(op).is_none() {
                continue;
            }
            // The first argument: inside `(…)`, or for const ops the first non-`name` attribute.
            let rhs_at = line.len() - rhs.len();
            let args_at = rhs_at + rhs.find(&format!("{op}(")).unwrap() + op.len() + 1;
            let arg_start = if line[args_at..].starts_with(')') {
                let attrs = args_at + line[args_at..].find('[').unwrap() + 1;
                let first = &line[attrs..];
                if first.starts_with("name = ") {
                    attrs + first.find("), ").unwrap() + 3
                } else {
                    attrs
                }
            } else {
                args_at
            };
            let arg_end = arg_start + line[arg_start..].find(" = ").unwrap();
            let mut broken_line = line.to_string();
            broken_line.replace_range(arg_start..arg_end, "bogus_arg");
            let text = with_line(&src, i, &broken_line);
            let at = (i as u32 + 1, col_of_op(line));
            let f = first(&text, "type-error", at, &format!("{name}:{}: rename", i + 1));
            assert!(f.message.contains("`bogus_arg`"), "{f}");
            checked += 1;
        }
    }
    assert!(checked >= 216, "only {checked} renames checked");
}

/// Making the first declared extent of an op with an inference rule one larger: a type mismatch at
/// that op. Ops reading a variable with a `?` extent are left out (they may infer `?`).
#[test]
fn fixtures_with_a_mutated_shape() {
    let mut checked = 0;
    for (name, src) in fixtures() {
        let prog = parse(&src).unwrap();
        let unknown = |var: &str| {
            prog.functions.iter().any(|f| {
                f.var_type(var)
                    .is_some_and(|t| t.shape().is_some_and(|s| s.contains(&malus_mil::Dim::Unknown)))
            })
        };
        for (i, line) in op_lines(&src) {
            let (lhs, rhs) = line.split_once(" = ").unwrap();
            let op = rhs.split('(').next().unwrap().trim();
            if malus_mil::infer::op_spec(op).is_none()
                || lhs.contains('?')
                || uses(rhs).iter().any(|v| unknown(v))
            {
                continue;
            }
            let Some(open) = lhs.find('[') else { continue };
            let close = open + lhs[open..].find(']').unwrap();
            let first_dim = lhs[open + 1..close].split(',').next().unwrap().trim();
            let Ok(n) = first_dim.parse::<u64>() else { continue };
            let mut broken_line = line.to_string();
            let dim_at = open + 1 + lhs[open + 1..].find(first_dim).unwrap();
            broken_line.replace_range(dim_at..dim_at + first_dim.len(), &(n + 1).to_string());
            let text = with_line(&src, i, &broken_line);
            let at = (i as u32 + 1, col_of_op(line));
            let case = format!("{name}:{}: {broken_line}", i + 1);
            first(&text, "type-mismatch", at, &case);
            checked += 1;
        }
    }
    assert!(checked >= 126, "only {checked} mutations checked");
}

/// Cutting a fixture after any line: a syntax error at the end of the input.
#[test]
fn truncated_fixtures() {
    for (name, src) in fixtures() {
        let ends: Vec<usize> = src.match_indices('\n').map(|(i, _)| i + 1).collect();
        let last_brace = src.rfind('}').unwrap();
        for &cut in ends.iter().filter(|&&c| c <= last_brace) {
            let text = &src[..cut];
            let e = parse(text).expect_err("a truncated program must not parse");
            let lines = text.matches('\n').count() as u32;
            assert_eq!(
                (e.span.line, e.span.col),
                (lines + 1, 1),
                "{name} cut at {cut}: {e}"
            );
            assert!(e.msg.contains("end of input"), "{name}: {e}");
        }
        // Cut inside the first string literal: reported at its opening quote.
        let q = src.find('"').unwrap();
        let e = parse(&src[..q + 3]).unwrap_err();
        assert_eq!((e.span.line, e.span.col), pos_at(&src, q), "{name}: {e}");
        assert!(e.msg.contains("unterminated string"), "{e}");
        // Cut inside `func`: the partial keyword is reported where it starts.
        let f = src.find("func").unwrap();
        let e = parse(&src[..f + 2]).unwrap_err();
        assert_eq!((e.span.line, e.span.col), pos_at(&src, f), "{name}: {e}");
        assert!(e.msg.contains("`fu`"), "{e}");
        // Without the final brace only.
        let e = parse(&src[..last_brace]).unwrap_err();
        assert_eq!((e.span.line, e.span.col), pos_at(&src, last_brace), "{name}: {e}");
    }
}
