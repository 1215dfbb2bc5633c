//! Inputs that crashed (panicked, overflowed the stack, or failed to round-trip) before their fix,
//! found by the tests and fuzzers of this crate. Each must now give an error or the right answer.

use malus_mil::parser::parse_number;
use malus_mil::types::{DType, Dim, Type};
use malus_mil::value::{Lit, Literal, Value};
use malus_mil::{FunctionBuilder, Weights, parse, print, validate};

/// Parses and validates; returns the diagnostics' codes and messages.
fn check(src: &str) -> Vec<(String, String)> {
    let p = parse(src).unwrap_or_else(|e| panic!("{e}"));
    let d = validate(&p);
    // Printing and reparsing must work too.
    assert_eq!(parse(&print(&p)).unwrap(), p);
    d.into_iter().map(|d| (d.code.to_string(), d.message)).collect()
}

#[track_caller]
fn one_error(src: &str, code: &str, what: &str) {
    let d = check(src);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, code, "{d:?}");
    assert!(d[0].1.contains(what), "{:?} does not mention {what:?}", d[0].1);
}

fn func(params: &str, body: &str, ret: &str) -> String {
    format!("program(1.3)\n{{\n    func main<ios18>({params}) {{\n{body}\n    }} -> ({ret});\n}}\n")
}

const I64MAX: i64 = i64::MAX;

/// `slice_by_size` printed `begin + size` in its message with i64 overflow.
#[test]
fn slice_by_size_with_huge_begin_and_size() {
    let big = I64MAX / 2 + 10;
    let src = func(
        "tensor<fp16, [4]> x",
        &format!(
            "tensor<fp16, [4]> y = slice_by_size(begin = tensor<int64, [1]>([{big}]), size = tensor<int64, [1]>([{big}]), x = x);"
        ),
        "y",
    );
    one_error(&src, "type-error", "argument `size`");
}

/// `slice_by_index` took `stride.abs()` (overflow at i64::MIN) and `span + step` (overflow for
/// huge strides).
#[test]
fn slice_by_index_with_extreme_strides() {
    for (stride, want) in [(i64::MIN, 1), (I64MAX, 1), (-I64MAX, 1)] {
        let src = func(
            "tensor<fp16, [5]> x",
            &format!(
                "tensor<fp16, [{want}]> y = slice_by_index(begin = tensor<int64, [1]>([{}]), end = tensor<int64, [1]>([{}]), stride = tensor<int64, [1]>([{stride}]), x = x);",
                if stride > 0 { 0 } else { 4 },
                if stride > 0 { 5 } else { -6 },
            ),
            "y",
        );
        assert_eq!(check(&src), vec![], "stride {stride}");
    }
    // Extreme begin and end clamp.
    let src = func(
        "tensor<fp16, [5]> x",
        &format!(
            "tensor<fp16, [5]> y = slice_by_index(begin = tensor<int64, [1]>([{}]), end = tensor<int64, [1]>([{I64MAX}]), x = x);",
            i64::MIN
        ),
        "y",
    );
    assert_eq!(check(&src), vec![]);
}

/// Conv geometry multiplied and added extents, dilations and pads without overflow checks, and
/// `same` padding of an empty axis subtracted 1 from 0.
#[test]
fn conv_with_extreme_parameters() {
    let conv = |x: &str, w: &str, params: &str| {
        func(
            &format!("{x} x, {w} w"),
            &format!("tensor<fp16, [1, 1, 1, 1]> y = conv({params}, weight = w, x = x);"),
            "y",
        )
    };
    let x = "tensor<fp16, [1, 1, 8, 8]>";
    // Effective kernel I64MAX·4 + 1 overflows.
    one_error(
        &conv(
            x,
            "tensor<fp16, [1, 1, 5, 5]>",
            &format!("dilations = tensor<int64, [2]>([{I64MAX}, 1])"),
        ),
        "type-error",
        "overflows",
    );
    // Effective kernel I64MAX·2 + 1 = 2^64 − 1 fits, but `same` adds (out − 1)·stride to it.
    one_error(
        &conv(
            x,
            "tensor<fp16, [1, 1, 3, 3]>",
            &format!("dilations = tensor<int64, [2]>([{I64MAX}, 1]), pad_type = string(\"same\")"),
        ),
        "type-error",
        "overflows",
    );
    // 8 + I64MAX + I64MAX overflows.
    one_error(
        &conv(
            x,
            "tensor<fp16, [1, 1, 3, 3]>",
            &format!("pad = tensor<int64, [4]>([{I64MAX}, {I64MAX}, 0, 0]), pad_type = string(\"custom\")"),
        ),
        "type-error",
        "overflows",
    );
    // 3 input channels per group × I64MAX groups overflows.
    one_error(
        &conv(
            "tensor<fp16, [1, 3, 8, 8]>",
            "tensor<fp16, [3, 3, 3, 3]>",
            &format!("groups = int64({I64MAX})"),
        ),
        "type-error",
        "argument `weight`",
    );
    // An empty spatial axis with `same` padding.
    one_error(
        &conv(
            "tensor<fp16, [1, 1, 0, 8]>",
            "tensor<fp16, [1, 1, 3, 3]>",
            "pad_type = string(\"same\")",
        ),
        "type-error",
        "larger than the padded input",
    );
    // An unknown pad type is blamed on `pad_type`, not on `weight`.
    one_error(
        &conv(x, "tensor<fp16, [1, 1, 3, 3]>", "pad_type = string(\"reflect\")"),
        "type-error",
        "argument `pad_type`",
    );
}

/// `split` allocated `num_splits` results for an unknown extent (a huge count aborted the process),
/// summed `split_sizes` with i64 overflow, and produced zero results for empty sizes.
#[test]
fn split_with_extreme_counts() {
    let src = func(
        "tensor<fp16, [?]> x",
        &format!("tensor<fp16, [?]> a = split(axis = int32(0), num_splits = int64({I64MAX}), x = x);"),
        "a",
    );
    one_error(&src, "type-error", "argument `num_splits`");
    let src = func(
        "tensor<fp16, [4294967295]> x",
        "tensor<fp16, [1]> a = split(axis = int32(0), num_splits = int64(4294967295), x = x);",
        "a",
    );
    one_error(&src, "type-error", "argument `num_splits`");
    let src = func(
        "tensor<fp16, [4]> x",
        &format!(
            "tensor<fp16, [4]> a = split(axis = int32(0), split_sizes = tensor<int64, [3]>([{I64MAX}, {I64MAX}, 6]), x = x);"
        ),
        "a",
    );
    one_error(&src, "type-error", "do not sum");
    let src = func(
        "tensor<fp16, [0]> x",
        "tensor<fp16, [0]> a = split(axis = int32(0), split_sizes = tensor<int32, [0]>([]), x = x);",
        "a",
    );
    one_error(&src, "type-error", "at least one size");
}

/// Element counts multiplied without overflow checks: literal checks, reshape and blob sizes.
#[test]
fn element_counts_that_overflow() {
    let huge = "4294967295, 4294967295, 4294967295";
    let src = func(
        "",
        &format!("tensor<fp16, [{huge}]> c = const()[val = tensor<fp16, [{huge}]>([1])];"),
        "c",
    );
    one_error(&src, "bad-argument", "more elements than fit");
    let src = func(
        "",
        &format!(
            "tensor<fp16, [{huge}]> c = const()[val = tensor<fp16, [{huge}]>(BLOBFILE(path = string(\"w\"), offset = uint64(64)))];"
        ),
        "c",
    );
    one_error(&src, "bad-argument", "more bytes than fit");
    let src = func(
        &format!("tensor<fp16, [{huge}]> x"),
        "tensor<fp16, [?]> y = reshape(shape = tensor<int32, [1]>([-1]), x = x);",
        "y",
    );
    one_error(&src, "type-error", "more elements than fit");
    let src = func(
        "tensor<fp16, [4]> x",
        &format!(
            "tensor<fp16, [?, ?, ?]> y = reshape(shape = tensor<int64, [3]>([{I64MAX}, {I64MAX}, -1]), x = x);"
        ),
        "y",
    );
    one_error(&src, "type-error", "more elements than fit");
    assert_eq!(Type::tensor(DType::Fp16, &[usize::MAX, 2]).num_elements(), None);
    assert_eq!(
        Type::tensor(DType::Fp16, &[usize::MAX, 1]).num_elements(),
        Some(usize::MAX)
    );
    assert_eq!(
        Type::tensor(DType::Fp16, &[usize::MAX, 0]).num_elements(),
        Some(0)
    );
    // Blob resolution against such a type.
    let mut w = Weights::new();
    let at = w.add_f16("k", &[1.0]);
    let lit = Literal::blob(Type::tensor(DType::Fp16, &[usize::MAX, 2]), "k", at);
    assert!(w.resolve(&lit).is_err());
}

/// `concat` summed extents without an overflow check (reachable with builder-inferred extents).
#[test]
fn concat_of_huge_inferred_extents() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input(
        "x",
        Type::Tensor {
            dtype: DType::Fp16,
            shape: vec![Dim::Unknown],
        },
    );
    let shape = b.constant(Literal::ints(DType::Int64, &[I64MAX]));
    let y = b
        .op(
            "reshape",
            &[("shape", Value::var(&shape.name)), ("x", Value::var(&x.name))],
            None,
        )
        .unwrap()
        .remove(0);
    assert_eq!(y.ty, Type::tensor(DType::Fp16, &[I64MAX as usize]));
    let e = b.concat(&[&y, &y, &y], 0).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("concat", Some("values")));
}

/// `BLOBFILE(path = …)` arguments restarted the nesting count, so nested BLOBFILEs overflowed the
/// stack.
#[test]
fn nested_blobfiles_are_refused() {
    let n = 5000;
    let val = format!(
        "{}string(\"p\"), offset = uint64(64)){}",
        "fp16(BLOBFILE(path = ".repeat(n),
        "), offset = uint64(64)))".repeat(n)
    );
    let src = func("", &format!("fp16 c = const()[val = {val}];"), "c");
    let e = parse(&src).unwrap_err();
    assert!(e.msg.contains("nested too deeply"), "{e}");
}

/// Offsets ≥ 2^63 were read as i64 and refused.
#[test]
fn blob_offset_above_i64() {
    let src = func(
        "",
        "tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>(BLOBFILE(path = string(\"w\"), offset = uint64(18446744073709551615)))];",
        "c",
    );
    assert_eq!(check(&src), vec![]);
    let src = func(
        "",
        "tensor<fp16, [1]> c = const()[val = tensor<fp16, [1]>(BLOBFILE(path = string(\"w\"), offset = uint64(18446744073709551616)))];",
        "c",
    );
    assert!(parse(&src).unwrap_err().msg.contains("BLOBFILE"));
}

/// `parse_number` accepted a second sign (`--1` was 1) and signs after `0x`, and negating
/// `-0x-8000…` overflowed i128.
#[test]
fn numbers_with_misplaced_signs() {
    assert_eq!(parse_number("-0x-80000000000000000000000000000000"), None);
    assert_eq!(parse_number("--1.5"), None);
    assert_eq!(parse_number("-+1"), None);
    assert_eq!(parse_number("0x+f"), None);
    assert_eq!(
        parse_number("-0x7fffffffffffffffffffffffffffffff"),
        Some(Lit::Int(-i128::MAX))
    );
    assert_eq!(parse_number("1e-5"), Some(Lit::Float(1e-5)));
    assert_eq!(parse_number("-1E+5"), Some(Lit::Float(-1e5)));
}

/// `linear` on a scalar blamed `weight`.
#[test]
fn linear_of_a_scalar_blames_x() {
    let src = func(
        "fp16 x, tensor<fp16, [2, 1]> w",
        "tensor<fp16, [2]> y = linear(weight = w, x = x);",
        "y",
    );
    one_error(&src, "type-error", "argument `x`");
}

/// The builder gave the name meant for an op's result to the first parameter constant the op
/// method created, panicked on parameters out of the int32 range (`ints`) or silently truncated
/// them (`int`), and panicked on `layer_norm` of a bool tensor.
#[test]
fn builder_parameters() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[2, 3]));
    b.name("t");
    let t = b.transpose(&x, &[1, 0]).unwrap();
    assert_eq!(t.name, "t");
    let e = b.reshape(&x, &[1 << 40]).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("reshape", Some("shape")));
    let e = b.split(&x, 1 << 33, 1).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("split", Some("num_splits")));
    let k = b.input("k", Type::tensor(DType::Bool, &[2]));
    let e = b.layer_norm(&k, &[-1], None, None, 1e-5).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("layer_norm", Some("x")));
    assert_eq!(b.scalar(DType::Bool, 1.0).ty, Type::scalar(DType::Bool));
    let r = std::panic::catch_unwind(move || {
        let mut b = FunctionBuilder::new("main", "ios18");
        b.int(1 << 33)
    });
    assert!(r.is_err(), "int() must not truncate silently");
    // A taken name is an error from try_constant.
    let mut b = FunctionBuilder::new("main", "ios18");
    b.input("x", Type::scalar(DType::Fp16));
    b.name("x");
    assert!(b.try_constant(Literal::scalar_i32(1)).is_err());
}
