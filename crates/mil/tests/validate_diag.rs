//! Validation of parsed text: every kind of error yields a diagnostic with its code at the exact
//! source position, and broken variants of the real fixtures (a mutated shape, a deleted
//! definition, a renamed argument, a truncated file) are rejected at the right `line:col`.

use std::path::PathBuf;

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

/// Exactly one diagnostic, an error with this code at this position whose message mentions `what`.
#[track_caller]
fn one(src: &str, code: &str, at: (u32, u32), what: &str) -> Diagnostic {
    let d = diags(src);
    assert_eq!(d.len(), 1, "{d:#?}\n{src}");
    let d = d.into_iter().next().unwrap();
    assert_eq!(d.code, code, "{d}");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!((d.span.line, d.span.col), at, "{d}");
    assert!(d.message.contains(what), "{d} does not mention {what:?}");
    assert!(
        d.to_string()
            .starts_with(&format!("{}:{}: error[{code}]", at.0, at.1)),
        "{d}"
    );
    d
}

/// A one-function program in the 1.3 spelling.
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
fn valid_program_has_no_diagnostics() {
    let src = prog(
        X,
        &[
            "tensor<fp16, [2, 3]> y = relu(x = x)[name = string(\"y\")];",
            "tensor<int32, [2]> s = const()[name = string(\"s\"), val = tensor<int32, [2]>([3, 2])];",
            "tensor<fp16, [3, 2]> z = reshape(shape = s, x = y)[name = string(\"z\")];",
        ],
        "z",
    );
    assert_eq!(diags(&src), vec![]);
}

#[test]
fn undefined_variable() {
    let op = "tensor<fp16, [2, 3]> y = relu(x = z)[name = string(\"y\")];";
    let src = prog(X, &[op], "y");
    one(&src, "bad-argument", pos_of(&src, op), "undefined variable `z`");
    // Inside a tuple argument too.
    let op = "tensor<fp16, [2, 6]> c = concat(axis = int32(1), interleave = bool(false), values = (x, w));";
    let src = prog(X, &[op], "c");
    one(&src, "bad-argument", pos_of(&src, op), "`w`");
    // A variable used before its definition is undefined at the use.
    let use_ = "tensor<fp16, [2, 3]> a = relu(x = b);";
    let src = prog(X, &[use_, "tensor<fp16, [2, 3]> b = relu(x = x);"], "a");
    one(&src, "bad-argument", pos_of(&src, use_), "undefined variable `b`");
    // Ops without an inference rule are still checked for their variables.
    let op = "tensor<fp16, [2, 3]> y = leaky_relu(alpha = fp16(0x1p-3), x = nope);";
    let src = prog(X, &[op], "y");
    one(&src, "bad-argument", pos_of(&src, op), "`nope`");
}

#[test]
fn redefined_variable() {
    let second = "tensor<fp16, [2, 3]> y = sigmoid(x = x);";
    let src = prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x);", second], "y");
    one(&src, "redefined-var", pos_of(&src, second), "`y`");
    // Redefining a parameter.
    let op = "tensor<fp16, [2, 3]> x = relu(x = x);";
    let src = prog(X, &[op], "x");
    one(&src, "redefined-var", pos_of(&src, op), "`x`");
    // Two parameters with one name: reported at the function.
    let src = prog("tensor<fp16, [2]> a, tensor<fp16, [2]> a", &[], "a");
    one(&src, "redefined-var", pos_of(&src, "func main"), "`a`");
    // Two results of one op with one name.
    let op = "tensor<fp16, [1, 3]> p, tensor<fp16, [1, 3]> p = split(axis = int32(0), num_splits = int32(2), x = x);";
    let src = prog(X, &[op], "p");
    one(&src, "redefined-var", pos_of(&src, op), "`p`");
}

#[test]
fn unknown_and_missing_arguments() {
    let op = "tensor<fp16, [2, 3]> y = relu(x = x, alpha = fp16(0x1p+0));";
    let src = prog(X, &[op], "y");
    let d = one(&src, "type-error", pos_of(&src, op), "`alpha`");
    assert!(d.message.contains("unknown argument"), "{d}");
    let op = "tensor<fp16, [2, 3]> y = add(x = x);";
    let src = prog(X, &[op], "y");
    let d = one(&src, "type-error", pos_of(&src, op), "`y`");
    assert!(d.message.contains("missing required argument"), "{d}");
    // `const` operands live in the attribute block.
    let op = "tensor<int32, []> c = const()[name = string(\"c\"), value = int32(1)];";
    let src = prog(X, &[op], "x");
    one(&src, "type-error", pos_of(&src, op), "`value`");
}

#[test]
fn declared_type_differs_from_inferred() {
    // Shape.
    let op = "tensor<fp16, [3, 2]> y = relu(x = x);";
    let src = prog(X, &[op], "y");
    let d = one(&src, "type-mismatch", pos_of(&src, op), "tensor<fp16, [2, 3]>");
    assert!(d.message.contains("`y` is declared tensor<fp16, [3, 2]>"), "{d}");
    // Dtype.
    let op = "tensor<fp32, [2, 3]> y = relu(x = x);";
    let src = prog(X, &[op], "y");
    one(&src, "type-mismatch", pos_of(&src, op), "fp32");
    // Rank.
    let op = "tensor<fp16, [2, 3, 1]> y = relu(x = x);";
    let src = prog(X, &[op], "y");
    one(&src, "type-mismatch", pos_of(&src, op), "`y`");
    // A scalar declared for a tensor, in the rank-0 spelling of the message.
    let op = "fp16 y = reduce_sum(axes = tensor<int32, [1]>([0]), x = x);";
    let src = prog(X, &[op], "y");
    let d = one(&src, "type-mismatch", pos_of(&src, op), "tensor<fp16, []>");
    assert!(d.message.contains("tensor<fp16, [3]>"), "{d}");
    // The second result of a split.
    let op = "tensor<fp16, [1, 3]> p, tensor<fp16, [2, 3]> q = split(axis = int32(0), num_splits = int32(2), x = x);";
    let src = prog(X, &[op], "q");
    one(&src, "type-mismatch", pos_of(&src, op), "`q`");
    // Too few results declared.
    let op = "tensor<fp16, [1, 3]> p = split(axis = int32(0), num_splits = int32(2), x = x);";
    let src = prog(X, &[op], "p");
    one(&src, "result-count", pos_of(&src, op), "produces 2");
    // `?` is compatible with any extent, in both directions.
    let src = prog(
        "tensor<fp16, [?, 3]> u",
        &["tensor<fp16, [2, ?]> y = relu(x = u);"],
        "y",
    );
    assert_eq!(diags(&src), vec![]);
}

#[test]
fn wrong_dtypes() {
    let op = "tensor<fp16, [2, 3]> y = add(x = x, y = fp32(0x1p+0));";
    let src = prog(X, &[op], "y");
    let d = one(&src, "type-error", pos_of(&src, op), "argument `y`");
    assert!(d.message.contains("fp32") && d.message.starts_with("add"), "{d}");
    let op = "tensor<int32, [2, 3]> y = sqrt(x = i);";
    let src = prog("tensor<int32, [2, 3]> i", &[op], "y");
    one(&src, "type-error", pos_of(&src, op), "argument `x`");
    let op = "tensor<fp16, [2, 3]> y = select(a = x, b = x, cond = x);";
    let src = prog(X, &[op], "y");
    one(&src, "type-error", pos_of(&src, op), "argument `cond`");
    // The `name` attribute must be a string.
    let op = "tensor<fp16, [2, 3]> y = relu(x = x)[name = int32(3)];";
    let src = prog(X, &[op], "y");
    one(&src, "bad-name", pos_of(&src, op), "`name`");
    // A value out of its dtype's range.
    let op = "tensor<int8, [2]> c = const()[name = string(\"c\"), val = tensor<int8, [2]>([1, 128])];";
    let src = prog(X, &[op], "c");
    one(&src, "bad-argument", pos_of(&src, op), "int8");
    // A string in a numeric tensor.
    let op = "tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>([\"1\"])];";
    let src = prog(X, &[op], "c");
    one(&src, "bad-argument", pos_of(&src, op), "fp16");
}

#[test]
fn literal_with_wrong_number_of_values() {
    let op = "tensor<int32, [3]> c = const()[name = string(\"c\"), val = tensor<int32, [3]>([1, 2])];";
    let src = prog(X, &[op], "c");
    let d = one(&src, "bad-argument", pos_of(&src, op), "has 2 values, expected 3");
    assert!(d.message.contains("argument `val`"), "{d}");
    // Nested: a [2, 2] literal with 5 leaves.
    let op = "tensor<fp16, [2, 2]> c = const()[val = tensor<fp16, [2, 2]>([[1, 2], [3, 4, 5]])];";
    let src = prog(X, &[op], "c");
    one(&src, "bad-argument", pos_of(&src, op), "has 5 values, expected 4");
    // An inline literal argument, on a later line.
    let first = "tensor<fp16, [2, 3]> y = relu(x = x);";
    let op = "tensor<fp16, [2, 3]> z = mul(x = y, y = tensor<fp16, [3]>([1, 2, 3, 4]));";
    let src = prog(X, &[first, op], "z");
    one(&src, "bad-argument", pos_of(&src, op), "has 4 values, expected 3");
    // A scalar with two values.
    let op = "tensor<fp16, [2, 3]> z = mul(x = x, y = fp16((1, 2)));";
    let src = prog(X, &[op], "z");
    one(&src, "bad-argument", pos_of(&src, op), "argument `y`");
}

#[test]
fn undefined_return() {
    let src = prog(X, &["tensor<fp16, [2, 3]> y = relu(x = x);"], "y, nope");
    one(&src, "undefined-var", pos_of(&src, "func main"), "`nope`");
    // In the second function of a program: reported at that function.
    let src = "program(1.3)\n{\n    func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n    func b<ios18>(tensor<fp16, [1]> x) {\n        } -> (y);\n}\n";
    one(src, "undefined-var", (5, 5), "`y`");
    // Two functions with one name.
    let src = "program(1.3)\n{\n    func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n  func a<ios18>(tensor<fp16, [1]> x) {\n        } -> (x);\n}\n";
    one(src, "duplicate-function", (5, 3), "`a`");
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

#[track_caller]
fn parse_err(src: &str, at: (u32, u32), what: &str) {
    let e = parse(src).expect_err("should not parse");
    assert_eq!((e.span.line, e.span.col), at, "{e}");
    assert!(e.msg.contains(what), "{e} does not mention {what:?}");
}

#[test]
fn syntax_errors_are_positioned() {
    parse_err("", (1, 1), "`program`");
    parse_err(
        "program(1.3) {\n    func main<ios18>() {\n    } -> ();\n",
        (4, 1),
        "end of input",
    );
    parse_err(
        "program(1.3)\n{\n  func main<ios18>(tensor<fp16, [2> x) {} -> (x);\n}\n",
        (3, 35),
        "`]`",
    );
    parse_err(
        "program(1.3) { func m<ios18>(tensor<fq16, [2]> x) {} -> (x); }",
        (1, 37),
        "unknown dtype `fq16`",
    );
    let src = "program(1.3) { func m<ios18>(tensor<fp16, [-2]> x) {} -> (x); }";
    parse_err(src, pos_of(src, "-2"), "dimension");
    parse_err(
        "program(1.3) { func m<ios18>(tensor<fp16, [2]> x) {} (x); }",
        (1, 54),
        "`->`",
    );
    parse_err(
        "program(1.3) {\n func m<ios18>(fp16 x) {\n  fp16 y = add(x = x, x = x);\n } -> (y);\n}",
        (3, 23),
        "given twice",
    );
    let src = "program(1.3) {\n func m<ios18>() {\n  string s = const()[val = string(\"abc)];\n";
    parse_err(src, (3, 35), "unterminated");
    assert_eq!(pos_of(src, "\"abc"), (3, 35));
    let src = "program(1.3) { func m<ios18>() { fp16 c = const()[val = fp16(0x1.zp+1)]; } -> (c); }";
    parse_err(src, (1, 62), "malformed number");
    assert_eq!(pos_of(src, "0x1.z"), (1, 62));
    let src = "program(1.3) { func m<ios18>() { fp16 c = const()[val = fp16(1)] } -> (c); }";
    parse_err(src, (1, 66), "`;`");
    assert_eq!(pos_of(src, "} ->"), (1, 66));
    parse_err("program(1.3) § {}", (1, 14), "unexpected character");
    parse_err("program(1.3) {} trailing", (1, 17), "end of input");
    parse_err(
        "program(1.3) { func m<ios18>() { tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>(BLOBFILE(path = string(\"w\")))]; } -> (c); }",
        (1, 115),
        "BLOBFILE",
    );
}

// ---------------------------------------------------------------- broken real fixtures

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mil-real");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mil"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 4);
    out
}

fn fixture(prefix: &str) -> String {
    fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap()
        .1
}

/// The first diagnostic must have this code and position.
#[track_caller]
fn first(src: &str, code: &str, at: (u32, u32)) {
    let d = diags(src);
    let f = d
        .first()
        .unwrap_or_else(|| panic!("no diagnostic; expected {code} at {at:?}"));
    assert_eq!((f.code, f.span.line, f.span.col), (code, at.0, at.1), "{f}");
}

#[test]
fn hand_broken_fixtures() {
    let add = fixture("apple");
    first(
        &add.replacen("tensor<fp16, [1, 10]> var_3", "tensor<fp16, [1, 11]> var_3", 1),
        "type-mismatch",
        (5, 13),
    );
    first(
        &add.replacen("tensor<fp16, [1, 10]> var_3", "tensor<fp32, [1, 10]> var_3", 1),
        "type-mismatch",
        (5, 13),
    );
    first(&add.replacen("y = y)", "z = y)", 1), "type-error", (5, 13));
    first(
        &add.replacen("-> (var_3)", "-> (var_4)", 1),
        "undefined-var",
        (4, 5),
    );
    // [1, 10] · [3, 9] does not broadcast.
    first(
        &add.replacen("tensor<fp16, [1, 10]> y", "tensor<fp16, [3, 9]> y", 1),
        "type-error",
        (5, 13),
    );
    // [1, 10] · [2, 10] broadcasts to [2, 10], which is not the declared [1, 10].
    first(
        &add.replacen("tensor<fp16, [1, 10]> y", "tensor<fp16, [2, 10]> y", 1),
        "type-mismatch",
        (5, 13),
    );

    let pk = fixture("FluidInference_FluidAudio");
    // Line 8 is `var_33 = add(x = audio_length, y = var_32)`.
    assert!(
        pk.lines()
            .nth(7)
            .unwrap()
            .trim_start()
            .starts_with("tensor<int32, [1]> var_33 = add(")
    );
    first(
        &pk.replacen("tensor<int32, [1]> var_33", "tensor<int32, [2]> var_33", 1),
        "type-mismatch",
        (8, 13),
    );
    first(
        &pk.replacen("y = var_32)", "y = var_99)", 1),
        "bad-argument",
        (8, 13),
    );
    first(
        &pk.replacen("add(x = audio_length", "add(input = audio_length", 1),
        "type-error",
        (8, 13),
    );
    // The literal of line 5 gets a second value.
    first(
        &pk.replacen(
            "val = tensor<int32, []>(1)]",
            "val = tensor<int32, []>([1, 2])]",
            1,
        ),
        "bad-argument",
        (5, 13),
    );

    let vad = fixture("FluidInference_mobius");
    let line = vad
        .lines()
        .position(|l| l.contains("x_3_cast_fp16 = expand_dims("))
        .unwrap() as u32
        + 1;
    first(
        &vad.replacen(
            "tensor<fp16, [1, 1, 640]> x_3_cast_fp16",
            "tensor<fp16, [1, 640, 1]> x_3_cast_fp16",
            1,
        ),
        "type-mismatch",
        (line, 13),
    );
    // The conv of the STFT: 258 output channels (the int8 constexpr's scale vector is [258]).
    let conv = vad
        .lines()
        .position(|l| l.contains("stft_out_cast_fp16 = conv("))
        .unwrap() as u32
        + 1;
    first(
        &vad.replacen(
            "tensor<fp16, [1, 258, 4]> stft_out_cast_fp16",
            "tensor<fp16, [1, 258, 5]> stft_out_cast_fp16",
            1,
        ),
        "type-mismatch",
        (conv, 13),
    );
    // Stride 64 instead of 128: (640 − 256) / 64 + 1 = 7 ≠ 4. (Stride 100 would still give 4.)
    assert_eq!(vad.matches("val = tensor<int32, [1]>([128])").count(), 1);
    assert_eq!(
        diags(&vad.replacen(
            "val = tensor<int32, [1]>([128])",
            "val = tensor<int32, [1]>([100])",
            1
        )),
        vec![]
    );
    first(
        &vad.replacen(
            "val = tensor<int32, [1]>([128])",
            "val = tensor<int32, [1]>([64])",
            1,
        ),
        "type-mismatch",
        (conv, 13),
    );

    let multi = fixture("rebecker");
    first(
        &multi.replacen("relu(x = input)", "relu(x = inputs)", 1),
        "bad-argument",
        (5, 13),
    );
    // The second function's copy.
    let second = multi.rfind("relu(x = input)").unwrap();
    let mut broken = multi.clone();
    broken.replace_range(second..second + "relu(x = input)".len(), "relu(y = input)");
    first(&broken, "type-error", (8, 13));
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
            let d = diags(&text);
            let f = d
                .first()
                .unwrap_or_else(|| panic!("{name}: deleting line {} is not noticed", i + 1));
            assert_eq!(
                (f.code, f.span.line, f.span.col),
                (code, shifted, col),
                "{name}: deleting line {}: {f}",
                i + 1
            );
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
            let text: String = src
                .lines()
                .enumerate()
                .map(|(j, l)| if j == i { broken_line.as_str() } else { l })
                .collect::<Vec<_>>()
                .join("\n");
            let d = diags(&text);
            let f = d
                .first()
                .unwrap_or_else(|| panic!("{name}:{}: rename not noticed", i + 1));
            assert_eq!(
                (f.code, f.span.line, f.span.col),
                ("type-error", i as u32 + 1, col_of_op(line)),
                "{name}: {f}"
            );
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
            let text: String = src
                .lines()
                .enumerate()
                .map(|(j, l)| if j == i { broken_line.as_str() } else { l })
                .collect::<Vec<_>>()
                .join("\n");
            let d = diags(&text);
            let f = d
                .first()
                .unwrap_or_else(|| panic!("{name}:{}: mutation not noticed: {broken_line}", i + 1));
            assert_eq!(
                (f.code, f.span.line, f.span.col),
                ("type-mismatch", i as u32 + 1, col_of_op(line)),
                "{name}: {f}"
            );
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
