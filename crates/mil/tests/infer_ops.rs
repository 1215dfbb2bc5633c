//! Type and shape inference of every op in `malus_mil::infer::OPS`, through the builder: good cases
//! with expected shapes worked out by hand (conv sizes from ⌊(in + pads − d·(k − 1) − 1) / s⌋ + 1,
//! numpy broadcasting, …), and bad cases whose error must name the op and the argument at fault.

use malus_mil::builder::ConvParams;
use malus_mil::error::InferError;
use malus_mil::types::{DType, Dim, Type};
use malus_mil::value::{Lit, Literal, Value};
use malus_mil::{FunctionBuilder, Program, Var, validate};

use DType::{Bool, Fp16, Fp32, Int8, Int32, Uint8};

/// Every op this file tests with good and bad cases; must equal the op table.
const COVERED: &[&str] = &[
    "const",
    "cast",
    "identity",
    "sqrt",
    "rsqrt",
    "exp",
    "log",
    "sigmoid",
    "silu",
    "tanh",
    "relu",
    "gelu",
    "add",
    "sub",
    "mul",
    "real_div",
    "maximum",
    "minimum",
    "pow",
    "softmax",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "slice_by_size",
    "slice_by_index",
    "reshape",
    "transpose",
    "concat",
    "split",
    "expand_dims",
    "squeeze",
    "layer_norm",
    "linear",
    "matmul",
    "conv",
    "select",
    "quantize",
    "dequantize",
    "constexpr_affine_dequantize",
];

#[test]
fn every_op_of_the_table_is_covered() {
    let mut table: Vec<&str> = malus_mil::infer::OPS.iter().map(|s| s.name).collect();
    let mut covered = COVERED.to_vec();
    table.sort_unstable();
    covered.sort_unstable();
    assert_eq!(
        table, covered,
        "ops of infer::OPS without tests here (or tested but gone)"
    );
}

fn fb() -> FunctionBuilder {
    FunctionBuilder::new("main", "ios18")
}

fn t(d: DType, s: &[usize]) -> Type {
    Type::tensor(d, s)
}

/// A tensor type with some unknown dims (`None` = `?`).
fn tu(d: DType, s: &[Option<usize>]) -> Type {
    Type::Tensor {
        dtype: d,
        shape: s.iter().map(|x| x.map_or(Dim::Unknown, Dim::Known)).collect(),
    }
}

fn v(x: &Var) -> Value {
    Value::Var(x.name.clone())
}

/// The result must be an error naming `op` and `arg`.
#[track_caller]
fn bad<T: std::fmt::Debug>(r: Result<T, InferError>, op: &str, arg: &str) -> InferError {
    let e = r.expect_err("expected an inference error");
    assert_eq!(e.op, op, "wrong op in {e}");
    assert_eq!(e.arg.as_deref(), Some(arg), "wrong argument in {e}");
    assert!(!e.msg.is_empty());
    let shown = e.to_string();
    assert!(
        shown.starts_with(op) && shown.contains(&format!("`{arg}`")),
        "{shown}"
    );
    e
}

/// The result must be a single var of exactly this type.
#[track_caller]
fn good(r: Result<Var, InferError>, want: Type) -> Var {
    let x = r.unwrap_or_else(|e| panic!("unexpected error: {e}"));
    assert_eq!(x.ty, want);
    x
}

/// A finished builder function must also validate as text would.
#[track_caller]
fn check_valid(b: FunctionBuilder, outs: &[&Var]) {
    let p = Program::new(vec![b.build(outs)]);
    let d = validate(&p);
    assert!(d.is_empty(), "{d:?}\n{}", malus_mil::print(&p));
    let text = malus_mil::print(&p);
    let q = malus_mil::parse(&text).unwrap();
    assert_eq!(q, p);
    assert!(validate(&q).is_empty());
}

// ---------------------------------------------------------------- const, cast, identity

#[test]
fn const_good() {
    let mut b = fb();
    let c = b.constant(Literal::floats(Fp16, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(c.ty, t(Fp16, &[2, 3]));
    let s = b.string("hello");
    assert_eq!(s.ty, Type::scalar(DType::String));
    let i = b.ints(&[1, -2, 3]);
    assert_eq!(i.ty, t(Int32, &[3]));
    let w = good(
        b.blob(t(Fp16, &[4, 8]), "@model_path/weights/w.bin", 64),
        t(Fp16, &[4, 8]),
    );
    let k = b.scalar(Bool, 1.0);
    assert_eq!(k.ty, Type::scalar(Bool));
    // An identical literal is declared once.
    let again = b.ints(&[1, -2, 3]);
    assert_eq!(again.name, i.name);
    check_valid(b, &[&c, &s, &w, &k]);
}

#[test]
fn const_bad() {
    let mut b = fb();
    // Two values for a [3] tensor.
    bad(
        b.try_constant(Literal::new(
            t(Int32, &[3]),
            Lit::List(vec![Lit::Int(1), Lit::Int(2)]),
        )),
        "const",
        "val",
    );
    // 300 does not fit int8.
    bad(
        b.try_constant(Literal::new(Type::scalar(Int8), Lit::Int(300))),
        "const",
        "val",
    );
    // A float in an integer tensor.
    bad(
        b.try_constant(Literal::new(Type::scalar(Int32), Lit::Float(0.5))),
        "const",
        "val",
    );
    // A bool blob.
    bad(
        b.blob(t(Bool, &[4]), "@model_path/weights/w.bin", 64),
        "const",
        "val",
    );
    // Unknown and missing arguments.
    let lit = Value::Literal(Literal::scalar_i32(1));
    bad(b.op("const", &[("value", lit)], None), "const", "value");
    bad(b.op("const", &[], None), "const", "val");
}

#[test]
fn cast_good() {
    let mut b = fb();
    let x = b.input("x", t(Fp32, &[1, 4, 8]));
    let h = good(b.cast(&x, Fp16), t(Fp16, &[1, 4, 8]));
    let i = good(b.cast(&h, Int32), t(Int32, &[1, 4, 8]));
    let s = b.input("s", Type::scalar(Fp32));
    let sb = good(b.cast(&s, Bool), Type::scalar(Bool));
    check_valid(b, &[&i, &sb]);
}

#[test]
fn cast_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp32, &[2]));
    bad(b.cast(&x, DType::String), "cast", "dtype");
    let f = b.string("float");
    bad(
        b.op("cast", &[("x", v(&x)), ("dtype", v(&f))], None),
        "cast",
        "dtype",
    );
    // The target dtype must be a constant.
    let d = b.input("d", Type::scalar(DType::String));
    bad(
        b.op("cast", &[("x", v(&x)), ("dtype", v(&d))], None),
        "cast",
        "dtype",
    );
    let tup = b.input("tup", Type::Tuple(vec![t(Fp32, &[2])]));
    let h = b.string("fp16");
    bad(
        b.op("cast", &[("x", v(&tup)), ("dtype", v(&h))], None),
        "cast",
        "x",
    );
    bad(b.op("cast", &[("x", v(&x))], None), "cast", "dtype");
}

#[test]
fn identity_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", tu(Int32, &[Some(3), None]));
    let y = good(b.identity(&x), tu(Int32, &[Some(3), None]));
    let k = b.input("k", Type::scalar(Bool));
    let z = good(b.identity(&k), Type::scalar(Bool));
    bad(
        b.op("identity", &[("x", v(&x)), ("y", v(&x))], None),
        "identity",
        "y",
    );
    bad(b.op("identity", &[], None), "identity", "x");
    check_valid(b, &[&y, &z]);
}

// ---------------------------------------------------------------- elementwise

#[test]
fn unary_float_ops() {
    type U = fn(&mut FunctionBuilder, &Var) -> Result<Var, InferError>;
    let ops: [(&str, U); 8] = [
        ("sqrt", FunctionBuilder::sqrt),
        ("rsqrt", FunctionBuilder::rsqrt),
        ("exp", FunctionBuilder::exp),
        ("log", FunctionBuilder::log),
        ("sigmoid", FunctionBuilder::sigmoid),
        ("silu", FunctionBuilder::silu),
        ("tanh", FunctionBuilder::tanh),
        ("relu", FunctionBuilder::relu),
    ];
    for (name, f) in ops {
        let mut b = fb();
        let x = b.input("x", t(Fp16, &[2, 3, 5]));
        let s = b.input("s", Type::scalar(Fp32));
        let u = b.input("u", tu(Fp32, &[None, Some(7)]));
        let i = b.input("i", t(Int32, &[2]));
        let k = b.input("k", t(Bool, &[2]));
        let y = good(f(&mut b, &x), t(Fp16, &[2, 3, 5]));
        let z = good(f(&mut b, &s), Type::scalar(Fp32));
        let w = good(f(&mut b, &u), tu(Fp32, &[None, Some(7)]));
        let e = bad(f(&mut b, &i), name, "x");
        assert!(e.msg.contains("int32"), "{e}");
        bad(f(&mut b, &k), name, "x");
        bad(b.op(name, &[("x", v(&x)), ("alpha", v(&s))], None), name, "alpha");
        bad(b.op(name, &[], None), name, "x");
        check_valid(b, &[&y, &z, &w]);
    }
}

#[test]
fn epsilon_of_rsqrt_and_log() {
    for name in ["rsqrt", "log"] {
        let mut b = fb();
        let x = b.input("x", t(Fp16, &[4]));
        let eps = b.scalar(Fp16, 1e-7);
        let y = good(
            b.op(name, &[("epsilon", v(&eps)), ("x", v(&x))], None)
                .map(|mut r| r.remove(0)),
            t(Fp16, &[4]),
        );
        // Wrong dtype and wrong rank of epsilon.
        let e32 = b.scalar(Fp32, 1e-7);
        bad(
            b.op(name, &[("epsilon", v(&e32)), ("x", v(&x))], None),
            name,
            "epsilon",
        );
        let ev = b.constant(Literal::floats(Fp16, &[1], &[1e-7]));
        bad(
            b.op(name, &[("epsilon", v(&ev)), ("x", v(&x))], None),
            name,
            "epsilon",
        );
        check_valid(b, &[&y]);
    }
    // sqrt has no epsilon.
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[4]));
    let eps = b.scalar(Fp16, 1e-7);
    bad(
        b.op("sqrt", &[("epsilon", v(&eps)), ("x", v(&x))], None),
        "sqrt",
        "epsilon",
    );
}

#[test]
fn gelu_modes() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[1, 8]));
    let mut outs = Vec::new();
    for m in ["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"] {
        outs.push(good(b.gelu(&x, m), t(Fp16, &[1, 8])));
    }
    // Mode is optional.
    outs.push(good(
        b.op("gelu", &[("x", v(&x))], None).map(|mut r| r.remove(0)),
        t(Fp16, &[1, 8]),
    ));
    bad(b.gelu(&x, "FAST"), "gelu", "mode");
    bad(b.gelu(&x, "exact"), "gelu", "mode");
    let i = b.input("i", t(Int32, &[1, 8]));
    bad(b.gelu(&i, "EXACT"), "gelu", "x");
    let refs: Vec<&Var> = outs.iter().collect();
    check_valid(b, &refs);
}

#[test]
fn binary_broadcasting() {
    type B = fn(&mut FunctionBuilder, &Var, &Var) -> Result<Var, InferError>;
    let ops: [(&str, B); 7] = [
        ("add", FunctionBuilder::add),
        ("sub", FunctionBuilder::sub),
        ("mul", FunctionBuilder::mul),
        ("real_div", FunctionBuilder::real_div),
        ("maximum", FunctionBuilder::maximum),
        ("minimum", FunctionBuilder::minimum),
        ("pow", FunctionBuilder::pow),
    ];
    for (name, f) in ops {
        let mut b = fb();
        let a = b.input("a", t(Fp16, &[2, 1, 4]));
        let c = b.input("c", t(Fp16, &[3, 1]));
        let s = b.input("s", Type::scalar(Fp16));
        let m = b.input("m", t(Fp16, &[1, 6, 1]));
        let n = b.input("n", t(Fp16, &[4, 1, 5]));
        let one = b.input("one", t(Fp16, &[1]));
        let u = b.input("u", tu(Fp16, &[None, Some(4)]));
        let mut outs = vec![
            // [2,1,4] ∘ [3,1] → [2,3,4]
            good(f(&mut b, &a, &c), t(Fp16, &[2, 3, 4])),
            good(f(&mut b, &c, &a), t(Fp16, &[2, 3, 4])),
            // scalar ∘ [2,1,4] → [2,1,4]
            good(f(&mut b, &s, &a), t(Fp16, &[2, 1, 4])),
            // [4,1,5] ∘ [1,6,1] → [4,6,5]
            good(f(&mut b, &n, &m), t(Fp16, &[4, 6, 5])),
            // [1] ∘ [] → [1]; [] ∘ [] → []
            good(f(&mut b, &one, &s), t(Fp16, &[1])),
            good(f(&mut b, &s, &s), Type::scalar(Fp16)),
            // [?,4] ∘ [3,1] → [3,4]; [?,4] ∘ [1] → [?,4]
            good(f(&mut b, &u, &c), t(Fp16, &[3, 4])),
            good(f(&mut b, &u, &one), tu(Fp16, &[None, Some(4)])),
        ];
        // Integers are numeric too.
        let i = b.input("i", t(Int32, &[2, 2]));
        outs.push(good(f(&mut b, &i, &i), t(Int32, &[2, 2])));
        // [2,1,4] ∘ [3,1,4]: 2 vs 3 cannot broadcast.
        let five = b.input("five", t(Fp16, &[3, 1, 4]));
        let e = bad(f(&mut b, &a, &five), name, "y");
        assert!(e.msg.contains("broadcast"), "{e}");
        let h32 = b.input("h32", t(Fp32, &[2, 1, 4]));
        bad(f(&mut b, &a, &h32), name, "y");
        let k = b.input("k", t(Bool, &[2]));
        bad(f(&mut b, &k, &k), name, "x");
        let st = b.input("st", t(DType::String, &[2]));
        bad(f(&mut b, &st, &st), name, "x");
        bad(b.op(name, &[("x", v(&a))], None), name, "y");
        bad(
            b.op(name, &[("x", v(&a)), ("y", v(&a)), ("z", v(&a))], None),
            name,
            "z",
        );
        let refs: Vec<&Var> = outs.iter().collect();
        check_valid(b, &refs);
    }
}

// ---------------------------------------------------------------- softmax, reductions

#[test]
fn softmax_axes() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3, 4]));
    let y = good(b.softmax(&x, -1), t(Fp16, &[2, 3, 4]));
    let z = good(b.softmax(&x, 1), t(Fp16, &[2, 3, 4]));
    let w = good(b.softmax(&x, -3), t(Fp16, &[2, 3, 4]));
    // Axis defaults to -1.
    let d = good(
        b.op("softmax", &[("x", v(&x))], None).map(|mut r| r.remove(0)),
        t(Fp16, &[2, 3, 4]),
    );
    let e = bad(b.softmax(&x, 3), "softmax", "axis");
    assert!(e.msg.contains("out of range"), "{e}");
    bad(b.softmax(&x, -4), "softmax", "axis");
    let two = b.ints(&[1, 2]);
    bad(
        b.op("softmax", &[("axis", v(&two)), ("x", v(&x))], None),
        "softmax",
        "axis",
    );
    let i = b.input("i", t(Int32, &[2]));
    bad(b.softmax(&i, 0), "softmax", "x");
    let s = b.input("s", Type::scalar(Fp16));
    bad(b.softmax(&s, 0), "softmax", "axis");
    check_valid(b, &[&y, &z, &w, &d]);
}

#[test]
fn reductions() {
    type Rd = fn(&mut FunctionBuilder, &Var, &[i64], bool) -> Result<Var, InferError>;
    let ops: [(&str, Rd); 3] = [
        ("reduce_sum", FunctionBuilder::reduce_sum),
        ("reduce_mean", FunctionBuilder::reduce_mean),
        ("reduce_max", FunctionBuilder::reduce_max),
    ];
    for (name, f) in ops {
        let mut b = fb();
        let x = b.input("x", t(Fp16, &[2, 3, 4]));
        let outs = [
            good(f(&mut b, &x, &[1], false), t(Fp16, &[2, 4])),
            good(f(&mut b, &x, &[1], true), t(Fp16, &[2, 1, 4])),
            good(f(&mut b, &x, &[-1, 0], false), t(Fp16, &[3])),
            good(f(&mut b, &x, &[0, 1, 2], true), t(Fp16, &[1, 1, 1])),
            // No axes: all of them.
            good(
                b.op(name, &[("x", v(&x))], None).map(|mut r| r.remove(0)),
                Type::scalar(Fp16),
            ),
        ];
        let keep = b.bool(true);
        let all_kept = good(
            b.op(name, &[("keep_dims", v(&keep)), ("x", v(&x))], None)
                .map(|mut r| r.remove(0)),
            t(Fp16, &[1, 1, 1]),
        );
        let i = b.input("i", t(Int32, &[5, 6]));
        let ir = good(f(&mut b, &i, &[0], false), t(Int32, &[6]));
        bad(f(&mut b, &x, &[3], false), name, "axes");
        let e = bad(f(&mut b, &x, &[1, -2], false), name, "axes");
        assert!(e.msg.contains("twice"), "{e}");
        let one = b.int(1);
        bad(
            b.op(name, &[("keep_dims", v(&one)), ("x", v(&x))], None),
            name,
            "keep_dims",
        );
        let rt = b.input("rt", t(Int32, &[1]));
        bad(b.op(name, &[("axes", v(&rt)), ("x", v(&x))], None), name, "axes");
        let mut refs: Vec<&Var> = outs.iter().collect();
        refs.push(&all_kept);
        refs.push(&ir);
        check_valid(b, &refs);
    }
}

// ---------------------------------------------------------------- slicing

#[test]
fn slice_by_size_good() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[4, 6, 8]));
    // begin [1,2,0] size [2,-1,8] → [2, 6-2, 8]
    let y = good(b.slice_by_size(&x, &[1, 2, 0], &[2, -1, 8]), t(Fp16, &[2, 4, 8]));
    let z = good(b.slice_by_size(&x, &[3, 0, 7], &[1, 6, 1]), t(Fp16, &[1, 6, 1]));
    // A runtime begin: only the fixed sizes are known.
    let rb = b.input("rb", t(Int32, &[3]));
    let sz = b.ints(&[2, -1, 8]);
    let w = good(
        b.op(
            "slice_by_size",
            &[("begin", v(&rb)), ("size", v(&sz)), ("x", v(&x))],
            None,
        )
        .map(|mut r| r.remove(0)),
        tu(Fp16, &[Some(2), None, Some(8)]),
    );
    // A runtime size: nothing is known but the rank.
    let rs = b.input("rs", t(Int32, &[3]));
    let bg = b.ints(&[0, 0, 0]);
    let u = good(
        b.op(
            "slice_by_size",
            &[("begin", v(&bg)), ("size", v(&rs)), ("x", v(&x))],
            None,
        )
        .map(|mut r| r.remove(0)),
        tu(Fp16, &[None, None, None]),
    );
    check_valid(b, &[&y, &z, &w, &u]);
}

#[test]
fn slice_by_size_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[4, 6, 8]));
    bad(b.slice_by_size(&x, &[0, 0], &[1, 1, 1]), "slice_by_size", "begin");
    bad(b.slice_by_size(&x, &[0, 0, 0], &[1, 1]), "slice_by_size", "size");
    // 2 + 3 > 4 on axis 0.
    let e = bad(
        b.slice_by_size(&x, &[2, 0, 0], &[3, 1, 1]),
        "slice_by_size",
        "size",
    );
    assert!(e.msg.contains("axis 0"), "{e}");
    bad(
        b.slice_by_size(&x, &[-1, 0, 0], &[1, 1, 1]),
        "slice_by_size",
        "begin",
    );
    bad(
        b.slice_by_size(&x, &[0, 0, 0], &[1, -2, 1]),
        "slice_by_size",
        "size",
    );
    // begin past the end with size -1.
    bad(
        b.slice_by_size(&x, &[5, 0, 0], &[-1, 1, 1]),
        "slice_by_size",
        "begin",
    );
    let f = b.constant(Literal::floats(Fp32, &[3], &[0.0, 0.0, 0.0]));
    let s = b.ints(&[1, 1, 1]);
    bad(
        b.op(
            "slice_by_size",
            &[("begin", v(&f)), ("size", v(&s)), ("x", v(&x))],
            None,
        ),
        "slice_by_size",
        "begin",
    );
}

#[test]
fn slice_by_index_good() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[10, 4, 6]));
    // axis 0: [1, 7) step 2 → 1, 3, 5
    let a = good(
        b.slice_by_index(&x, &[1, 0, 0], &[7, 4, 6], Some(&[2, 1, 1]), None, None, None),
        t(Fp16, &[3, 4, 6]),
    );
    // Negative indices: [-3, -1) of 6 → 3, 4; end beyond the extent clamps: [2, 100) of 4 → 2.
    let c = good(
        b.slice_by_index(&x, &[0, 2, -3], &[10, 100, -1], None, None, None, None),
        t(Fp16, &[10, 2, 2]),
    );
    // Axis 0 reversed with both masks: x[::-1] → 10. Axis 2: x[8:2:-3] over 6 clamps begin to 5
    // and takes 5 only (2 is the excluded end) → 1.
    let r = good(
        b.slice_by_index(
            &x,
            &[0, 0, 8],
            &[0, 4, 2],
            Some(&[-1, 1, -3]),
            Some(&[true, false, false]),
            Some(&[true, false, false]),
            None,
        ),
        t(Fp16, &[10, 4, 1]),
    );
    // Squeeze axis 0 (selects exactly 1): x[3:4, 1:3, :] with the end mask on axis 2.
    let s = good(
        b.slice_by_index(
            &x,
            &[3, 1, 0],
            &[4, 3, 0],
            None,
            None,
            Some(&[false, false, true]),
            Some(&[true, false, false]),
        ),
        t(Fp16, &[2, 6]),
    );
    // An empty selection is a zero extent.
    let z = good(
        b.slice_by_index(&x, &[5, 0, 0], &[5, 4, 6], None, None, None, None),
        t(Fp16, &[0, 4, 6]),
    );
    // Runtime begin/end: full masks with stride 1 still give the extent, the rest is unknown.
    let rb = b.input("rb", t(Int32, &[3]));
    let re = b.input("re", t(Int32, &[3]));
    let bm = b.constant(Literal::bools(&[true, false, false]));
    let em = b.constant(Literal::bools(&[true, false, false]));
    let u = good(
        b.op(
            "slice_by_index",
            &[
                ("begin", v(&rb)),
                ("begin_mask", v(&bm)),
                ("end", v(&re)),
                ("end_mask", v(&em)),
                ("x", v(&x)),
            ],
            None,
        )
        .map(|mut r| r.remove(0)),
        tu(Fp16, &[Some(10), None, None]),
    );
    check_valid(b, &[&a, &c, &r, &s, &z, &u]);
}

#[test]
fn slice_by_index_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[10, 4]));
    let e = bad(
        b.slice_by_index(&x, &[0, 0], &[1, 1], Some(&[0, 1]), None, None, None),
        "slice_by_index",
        "stride",
    );
    assert!(e.msg.contains("axis 0"), "{e}");
    bad(
        b.slice_by_index(&x, &[0], &[1, 1], None, None, None, None),
        "slice_by_index",
        "begin",
    );
    bad(
        b.slice_by_index(&x, &[0, 0], &[1, 1, 1], None, None, None, None),
        "slice_by_index",
        "end",
    );
    bad(
        b.slice_by_index(&x, &[0, 0], &[1, 1], Some(&[1, 1, 1]), None, None, None),
        "slice_by_index",
        "stride",
    );
    bad(
        b.slice_by_index(&x, &[0, 0], &[3, 1], None, None, None, Some(&[true, false])),
        "slice_by_index",
        "squeeze_mask",
    );
    bad(
        b.slice_by_index(&x, &[0, 0], &[1, 1], None, Some(&[true]), None, None),
        "slice_by_index",
        "begin_mask",
    );
    bad(
        b.slice_by_index(&x, &[0, 0], &[1, 1], None, None, Some(&[true, true, true]), None),
        "slice_by_index",
        "end_mask",
    );
    let bg = b.ints(&[0, 0]);
    bad(
        b.op("slice_by_index", &[("begin", v(&bg)), ("x", v(&x))], None),
        "slice_by_index",
        "end",
    );
}

// ---------------------------------------------------------------- shape ops

#[test]
fn reshape_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3, 4]));
    let outs = [
        good(b.reshape(&x, &[6, -1]), t(Fp16, &[6, 4])),
        good(b.reshape(&x, &[0, 12]), t(Fp16, &[2, 12])),
        good(b.reshape(&x, &[24]), t(Fp16, &[24])),
        good(b.reshape(&x, &[1, 1, 2, 3, 4]), t(Fp16, &[1, 1, 2, 3, 4])),
        good(b.reshape(&x, &[-1, 2, 2]), t(Fp16, &[6, 2, 2])),
    ];
    // A runtime shape of known length: rank known, extents not.
    let rs = b.input("rs", t(Int32, &[3]));
    let u = good(
        b.op("reshape", &[("shape", v(&rs)), ("x", v(&x))], None)
            .map(|mut r| r.remove(0)),
        tu(Fp16, &[None, None, None]),
    );
    // An unknown input extent: -1 stays unknown.
    let q = b.input("q", tu(Fp16, &[None, Some(4)]));
    let qq = good(b.reshape(&q, &[-1, 2]), tu(Fp16, &[None, Some(2)]));
    bad(b.reshape(&x, &[5, -1]), "reshape", "shape");
    bad(b.reshape(&x, &[-1, -1]), "reshape", "shape");
    bad(b.reshape(&x, &[2, 3, 5]), "reshape", "shape");
    bad(b.reshape(&x, &[-2, 12]), "reshape", "shape");
    bad(b.reshape(&x, &[0, 0, 0, 0]), "reshape", "shape");
    let rq = b.input("rq", tu(Int32, &[None]));
    bad(
        b.op("reshape", &[("shape", v(&rq)), ("x", v(&x))], None),
        "reshape",
        "shape",
    );
    let mut refs: Vec<&Var> = outs.iter().collect();
    refs.extend([&u, &qq]);
    check_valid(b, &refs);
}

#[test]
fn transpose_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3, 4]));
    let a = good(b.transpose(&x, &[2, 0, 1]), t(Fp16, &[4, 2, 3]));
    let c = good(b.transpose(&x, &[-1, 0, 1]), t(Fp16, &[4, 2, 3]));
    let d = good(b.transpose(&x, &[0, 1, 2]), t(Fp16, &[2, 3, 4]));
    let y = b.input("y", t(Fp16, &[1, 8, 16, 32]));
    let e = good(b.transpose(&y, &[0, 1, 3, 2]), t(Fp16, &[1, 8, 32, 16]));
    bad(b.transpose(&x, &[0, 1]), "transpose", "perm");
    bad(b.transpose(&x, &[0, 0, 1]), "transpose", "perm");
    bad(b.transpose(&x, &[0, 1, 3]), "transpose", "perm");
    bad(b.transpose(&x, &[0, 1, 2, 3]), "transpose", "perm");
    let rp = b.input("rp", t(Int32, &[3]));
    bad(
        b.op("transpose", &[("perm", v(&rp)), ("x", v(&x))], None),
        "transpose",
        "perm",
    );
    check_valid(b, &[&a, &c, &d, &e]);
}

#[test]
fn concat_good_and_bad() {
    let mut b = fb();
    let p = b.input("p", t(Fp16, &[2, 3]));
    let q = b.input("q", t(Fp16, &[2, 5]));
    let r1 = b.input("r1", t(Fp16, &[1, 4]));
    let r2 = b.input("r2", t(Fp16, &[2, 4]));
    let r3 = b.input("r3", t(Fp16, &[3, 4]));
    let u = b.input("u", tu(Fp16, &[None, Some(3)]));
    let outs = [
        good(b.concat(&[&p, &q], 1), t(Fp16, &[2, 8])),
        good(b.concat(&[&p, &q], -1), t(Fp16, &[2, 8])),
        good(b.concat(&[&r1, &r2, &r3], 0), t(Fp16, &[6, 4])),
        good(b.concat(&[&p], 0), t(Fp16, &[2, 3])),
        // An unknown extent off the axis is filled from the other item; on the axis it is unknown.
        good(b.concat(&[&u, &p], 1), t(Fp16, &[2, 6])),
        good(b.concat(&[&u, &p], 0), tu(Fp16, &[None, Some(3)])),
    ];
    let h32 = b.input("h32", t(Fp32, &[2, 3]));
    bad(b.concat(&[&p, &h32], 1), "concat", "values");
    let r3d = b.input("r3d", t(Fp16, &[2, 3, 1]));
    bad(b.concat(&[&p, &r3d], 1), "concat", "values");
    bad(b.concat(&[&p, &q], 0), "concat", "values");
    bad(b.concat(&[&p, &q], 2), "concat", "axis");
    bad(b.concat(&[], 0), "concat", "values");
    let ax = b.int(1);
    let yes = b.bool(true);
    bad(
        b.op(
            "concat",
            &[
                ("axis", v(&ax)),
                ("interleave", v(&yes)),
                ("values", Value::Tuple(vec![v(&p), v(&q)])),
            ],
            None,
        ),
        "concat",
        "values",
    );
    bad(
        b.op("concat", &[("values", Value::Tuple(vec![v(&p)]))], None),
        "concat",
        "axis",
    );
    let refs: Vec<&Var> = outs.iter().collect();
    check_valid(b, &refs);
}

#[test]
fn split_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[6, 4]));
    let parts = b.split(&x, 3, 0).unwrap();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert_eq!(p.ty, t(Fp16, &[2, 4]));
    }
    let sized = b.split_sizes(&x, &[1, 3], 1).unwrap();
    assert_eq!(
        sized.iter().map(|p| p.ty.clone()).collect::<Vec<_>>(),
        vec![t(Fp16, &[6, 1]), t(Fp16, &[6, 3])]
    );
    let neg = b.split(&x, 2, -1).unwrap();
    assert_eq!(neg[1].ty, t(Fp16, &[6, 2]));
    let u = b.input("u", tu(Fp16, &[None, Some(4)]));
    let uparts = b.split(&u, 2, 0).unwrap();
    assert_eq!(uparts[0].ty, tu(Fp16, &[None, Some(4)]));
    let e = bad(b.split(&x, 4, 0), "split", "num_splits");
    assert!(e.msg.contains("divide"), "{e}");
    bad(b.split(&x, 0, 0), "split", "num_splits");
    bad(b.split_sizes(&x, &[1, 2], 1), "split", "split_sizes");
    bad(b.split_sizes(&x, &[-1, 5], 1), "split", "split_sizes");
    bad(b.split(&x, 2, 2), "split", "axis");
    let ax = b.int(0);
    let n = b.int(2);
    let sz = b.ints(&[3, 3]);
    bad(
        b.op(
            "split",
            &[
                ("axis", v(&ax)),
                ("num_splits", v(&n)),
                ("split_sizes", v(&sz)),
                ("x", v(&x)),
            ],
            None,
        ),
        "split",
        "num_splits",
    );
    bad(
        b.op("split", &[("axis", v(&ax)), ("x", v(&x))], None),
        "split",
        "num_splits",
    );
    let mut refs: Vec<&Var> = parts.iter().collect();
    refs.extend(sized.iter());
    refs.extend(neg.iter());
    refs.extend(uparts.iter());
    check_valid(b, &refs);
}

#[test]
fn expand_dims_and_squeeze() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3]));
    let outs = [
        good(b.expand_dims(&x, &[0]), t(Fp16, &[1, 2, 3])),
        good(b.expand_dims(&x, &[-1]), t(Fp16, &[2, 3, 1])),
        good(b.expand_dims(&x, &[0, 3]), t(Fp16, &[1, 2, 3, 1])),
        good(b.expand_dims(&x, &[1, 2]), t(Fp16, &[2, 1, 1, 3])),
        good(b.expand_dims(&x, &[-4, -1]), t(Fp16, &[1, 2, 3, 1])),
    ];
    bad(b.expand_dims(&x, &[4]), "expand_dims", "axes");
    bad(b.expand_dims(&x, &[0, 0]), "expand_dims", "axes");
    bad(b.expand_dims(&x, &[-5]), "expand_dims", "axes");
    bad(b.op("expand_dims", &[("x", v(&x))], None), "expand_dims", "axes");

    let y = b.input("y", t(Fp16, &[1, 3, 1, 4]));
    let sq = [
        good(b.squeeze(&y, &[0]), t(Fp16, &[3, 1, 4])),
        good(b.squeeze(&y, &[0, 2]), t(Fp16, &[3, 4])),
        good(b.squeeze(&y, &[-2]), t(Fp16, &[1, 3, 4])),
        good(
            b.op("squeeze", &[("x", v(&y))], None).map(|mut r| r.remove(0)),
            t(Fp16, &[3, 4]),
        ),
    ];
    let e = bad(b.squeeze(&y, &[1]), "squeeze", "axes");
    assert!(e.msg.contains("extent 3"), "{e}");
    bad(b.squeeze(&y, &[4]), "squeeze", "axes");
    bad(b.squeeze(&y, &[0, -4]), "squeeze", "axes");
    let mut refs: Vec<&Var> = outs.iter().collect();
    refs.extend(sq.iter());
    check_valid(b, &refs);
}

// ---------------------------------------------------------------- normalisation, linear

#[test]
fn layer_norm_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 5, 8]));
    let g = b.input("g", t(Fp16, &[8]));
    let be = b.input("be", t(Fp16, &[8]));
    let g2 = b.input("g2", t(Fp16, &[5, 8]));
    let a = good(
        b.layer_norm(&x, &[-1], Some(&g), Some(&be), 1e-5),
        t(Fp16, &[2, 5, 8]),
    );
    let c = good(
        b.layer_norm(&x, &[1, 2], Some(&g2), None, 1e-5),
        t(Fp16, &[2, 5, 8]),
    );
    let d = good(b.layer_norm(&x, &[0], None, None, 1e-5), t(Fp16, &[2, 5, 8]));
    bad(
        b.layer_norm(&x, &[-1], Some(&g2), None, 1e-5),
        "layer_norm",
        "gamma",
    );
    let b32 = b.input("b32", t(Fp32, &[8]));
    bad(
        b.layer_norm(&x, &[-1], None, Some(&b32), 1e-5),
        "layer_norm",
        "beta",
    );
    bad(b.layer_norm(&x, &[3], None, None, 1e-5), "layer_norm", "axes");
    let i = b.input("i", t(Int32, &[2, 8]));
    bad(b.layer_norm(&i, &[-1], None, None, 1e-5), "layer_norm", "x");
    let k = b.input("k", t(Bool, &[2, 8]));
    bad(b.layer_norm(&k, &[-1], None, None, 1e-5), "layer_norm", "x");
    let ev = b.constant(Literal::floats(Fp16, &[2], &[1e-5, 1e-5]));
    bad(
        b.op("layer_norm", &[("epsilon", v(&ev)), ("x", v(&x))], None),
        "layer_norm",
        "epsilon",
    );
    check_valid(b, &[&a, &c, &d]);
}

#[test]
fn linear_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[3, 4, 16]));
    let w = b.input("w", t(Fp16, &[32, 16]));
    let bias = b.input("bias", t(Fp16, &[32]));
    let a = good(b.linear(&x, &w, Some(&bias)), t(Fp16, &[3, 4, 32]));
    let v1 = b.input("v1", t(Fp16, &[16]));
    let c = good(b.linear(&v1, &w, None), t(Fp16, &[32]));
    let w15 = b.input("w15", t(Fp16, &[32, 15]));
    let e = bad(b.linear(&x, &w15, None), "linear", "weight");
    assert!(e.msg.contains("15"), "{e}");
    let b16 = b.input("b16", t(Fp16, &[16]));
    bad(b.linear(&x, &w, Some(&b16)), "linear", "bias");
    let w3 = b.input("w3", t(Fp16, &[1, 32, 16]));
    bad(b.linear(&x, &w3, None), "linear", "weight");
    let w32 = b.input("w32", t(Fp32, &[32, 16]));
    bad(b.linear(&x, &w32, None), "linear", "weight");
    let s = b.input("s", Type::scalar(Fp16));
    bad(b.linear(&s, &w, None), "linear", "x");
    check_valid(b, &[&a, &c]);
}

#[test]
fn matmul_good() {
    let mut b = fb();
    let i = |b: &mut FunctionBuilder, n: &str, s: &[usize]| b.input(n, t(Fp16, s));
    let x23 = i(&mut b, "x23", &[2, 3]);
    let y34 = i(&mut b, "y34", &[3, 4]);
    let x32 = i(&mut b, "x32", &[3, 2]);
    let y43 = i(&mut b, "y43", &[4, 3]);
    let q = i(&mut b, "q", &[1, 12, 64, 32]);
    let k = i(&mut b, "k", &[1, 12, 32, 64]);
    let bx = i(&mut b, "bx", &[5, 1, 2, 3]);
    let by = i(&mut b, "by", &[4, 3, 7]);
    let v3 = i(&mut b, "v3", &[3]);
    let y634 = i(&mut b, "y634", &[6, 3, 4]);
    let x523 = i(&mut b, "x523", &[5, 2, 3]);
    let outs = vec![
        good(b.matmul(&x23, &y34, false, false), t(Fp16, &[2, 4])),
        good(b.matmul(&x32, &y34, true, false), t(Fp16, &[2, 4])),
        good(b.matmul(&x23, &y43, false, true), t(Fp16, &[2, 4])),
        good(b.matmul(&x32, &y43, true, true), t(Fp16, &[2, 4])),
        good(b.matmul(&q, &k, false, false), t(Fp16, &[1, 12, 64, 64])),
        // Q·Kᵀ with K stored [1,12,64,32]: transpose_y.
        good(b.matmul(&q, &q, false, true), t(Fp16, &[1, 12, 64, 64])),
        // Batch dims [5,1] and [4] broadcast to [5,4].
        good(b.matmul(&bx, &by, false, false), t(Fp16, &[5, 4, 2, 7])),
        // Rank-1 x: [3]·[3,4] → [4]; [3]·[6,3,4] → [6,4].
        good(b.matmul(&v3, &y34, false, false), t(Fp16, &[4])),
        good(b.matmul(&v3, &y634, false, false), t(Fp16, &[6, 4])),
        // Rank-1 y: [2,3]·[3] → [2]; [5,2,3]·[3] → [5,2].
        good(b.matmul(&x23, &v3, false, false), t(Fp16, &[2])),
        good(b.matmul(&x523, &v3, false, false), t(Fp16, &[5, 2])),
        // Two vectors: a scalar.
        good(b.matmul(&v3, &v3, false, false), Type::scalar(Fp16)),
        // Transpose flags have no effect on a rank-1 operand (coremltools' documented rule).
        good(b.matmul(&x23, &v3, false, true), t(Fp16, &[2])),
    ];
    let u = b.input("u", tu(Fp16, &[None, Some(3)]));
    let uu = good(b.matmul(&u, &y34, false, false), tu(Fp16, &[None, Some(4)]));
    let refs: Vec<&Var> = outs.iter().chain([&uu]).collect();
    check_valid(b, &refs);
}

#[test]
fn matmul_bad() {
    let mut b = fb();
    let x23 = b.input("x23", t(Fp16, &[2, 3]));
    let y43 = b.input("y43", t(Fp16, &[4, 3]));
    let e = bad(b.matmul(&x23, &y43, false, false), "matmul", "y");
    assert!(e.msg.contains("inner dimensions"), "{e}");
    bad(b.matmul(&x23, &y43, true, false), "matmul", "y");
    let y32 = b.input("y32", t(Fp32, &[3, 4]));
    bad(b.matmul(&x23, &y32, false, false), "matmul", "y");
    let s = b.input("s", Type::scalar(Fp16));
    bad(b.matmul(&s, &x23, false, false), "matmul", "x");
    bad(b.matmul(&x23, &s, false, false), "matmul", "y");
    // Batch dims [2] and [3] do not broadcast.
    let bx = b.input("bx", t(Fp16, &[2, 2, 3]));
    let by = b.input("by", t(Fp16, &[3, 3, 4]));
    let e = bad(b.matmul(&bx, &by, false, false), "matmul", "y");
    assert!(e.msg.contains("batch"), "{e}");
    let one = b.int(1);
    bad(
        b.op(
            "matmul",
            &[("transpose_x", v(&one)), ("x", v(&x23)), ("y", v(&y43))],
            None,
        ),
        "matmul",
        "transpose_x",
    );
    let flag = b.input("flag", Type::scalar(Bool));
    bad(
        b.op(
            "matmul",
            &[("transpose_y", v(&flag)), ("x", v(&x23)), ("y", v(&y43))],
            None,
        ),
        "matmul",
        "transpose_y",
    );
}

// ---------------------------------------------------------------- conv

fn conv_params(strides: &[i64], dil: &[i64], pad: &[i64], pad_type: &str, groups: i64) -> ConvParams {
    ConvParams {
        strides: Some(strides.to_vec()),
        dilations: Some(dil.to_vec()),
        pad: Some(pad.to_vec()),
        pad_type: pad_type.into(),
        groups,
    }
}

#[test]
fn conv_good() {
    let mut b = fb();
    let mut outs = Vec::new();
    let mut case = |b: &mut FunctionBuilder, x: &[usize], w: &[usize], p: ConvParams, want: &[usize]| {
        let n = outs.len();
        let xv = b.input(&format!("x{n}"), t(Fp16, x));
        let wv = b.input(&format!("w{n}"), t(Fp16, w));
        outs.push(good(b.conv(&xv, &wv, &p, None), t(Fp16, want)));
    };
    // valid, 3×3, stride 1: 32 − 3 + 1 = 30
    case(
        &mut b,
        &[1, 8, 32, 32],
        &[16, 8, 3, 3],
        ConvParams::default(),
        &[1, 16, 30, 30],
    );
    // custom pad 1, stride 2: ⌊(32 + 2 − 3) / 2⌋ + 1 = 16
    case(
        &mut b,
        &[1, 8, 32, 32],
        &[16, 8, 3, 3],
        conv_params(&[2, 2], &[1, 1], &[1, 1, 1, 1], "custom", 1),
        &[1, 16, 16, 16],
    );
    // dilations [2,3]: effective kernels 5 and 7 → 28, 26
    case(
        &mut b,
        &[1, 8, 32, 32],
        &[16, 8, 3, 3],
        conv_params(&[1, 1], &[2, 3], &[0, 0, 0, 0], "valid", 1),
        &[1, 16, 28, 26],
    );
    // groups 4: weight has 8 / 4 = 2 input channels
    case(
        &mut b,
        &[2, 8, 10, 12],
        &[12, 2, 1, 1],
        conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 4),
        &[2, 12, 10, 12],
    );
    // depthwise 3×3
    case(
        &mut b,
        &[1, 8, 5, 5],
        &[8, 1, 3, 3],
        conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 8),
        &[1, 8, 3, 3],
    );
    // same, stride 3: ⌈10 / 3⌉ = 4
    case(
        &mut b,
        &[1, 4, 10, 10],
        &[4, 4, 4, 4],
        conv_params(&[3, 3], &[1, 1], &[0, 0, 0, 0], "same", 1),
        &[1, 4, 4, 4],
    );
    // same_lower, stride 1, kernels 3×5: the output keeps the input extent
    case(
        &mut b,
        &[1, 4, 7, 9],
        &[6, 4, 3, 5],
        conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "same_lower", 1),
        &[1, 6, 7, 9],
    );
    // same with stride 2 and dilation 2 on 9: ⌈9 / 2⌉ = 5
    case(
        &mut b,
        &[1, 1, 9, 9],
        &[1, 1, 3, 3],
        conv_params(&[2, 2], &[2, 2], &[0, 0, 0, 0], "same", 1),
        &[1, 1, 5, 5],
    );
    // 1-D, as in the parakeet fixture: (640 − 256) / 128 + 1 = 4
    case(
        &mut b,
        &[1, 1, 640],
        &[258, 1, 256],
        conv_params(&[128], &[1], &[0, 0], "valid", 1),
        &[1, 258, 4],
    );
    // 3-D, strides [1,2,3], custom pads [0,1, 1,1, 2,0]:
    // d: 5+1−2+1 = 5; h: ⌊(6+2−3)/2⌋+1 = 3; w: ⌊(7+2−4)/3⌋+1 = 2
    case(
        &mut b,
        &[1, 2, 5, 6, 7],
        &[3, 2, 2, 3, 4],
        conv_params(&[1, 2, 3], &[1, 1, 1], &[0, 1, 1, 1, 2, 0], "custom", 1),
        &[1, 3, 5, 3, 2],
    );
    // 1×1 conv as a linear layer
    case(
        &mut b,
        &[1, 64, 1, 256],
        &[128, 64, 1, 1],
        ConvParams::default(),
        &[1, 128, 1, 256],
    );
    // asymmetric custom pads: h 5+2+0 → 5, w 5+0+1 → 4
    case(
        &mut b,
        &[1, 1, 5, 5],
        &[1, 1, 3, 3],
        conv_params(&[1, 1], &[1, 1], &[2, 0, 0, 1], "custom", 1),
        &[1, 1, 5, 4],
    );
    // kernel as large as the input
    case(
        &mut b,
        &[1, 1, 4, 4],
        &[1, 1, 4, 4],
        ConvParams::default(),
        &[1, 1, 1, 1],
    );
    // stride larger than the kernel: ⌊(11 − 2) / 4⌋ + 1 = 3
    case(
        &mut b,
        &[1, 1, 11, 11],
        &[1, 1, 2, 2],
        conv_params(&[4, 4], &[1, 1], &[0, 0, 0, 0], "valid", 1),
        &[1, 1, 3, 3],
    );
    // pads are ignored unless pad_type is custom
    case(
        &mut b,
        &[1, 1, 6, 6],
        &[1, 1, 3, 3],
        conv_params(&[1, 1], &[1, 1], &[5, 5, 5, 5], "valid", 1),
        &[1, 1, 4, 4],
    );
    // with a bias
    let x = b.input("xb", t(Fp16, &[1, 8, 6, 6]));
    let w = b.input("wb", t(Fp16, &[16, 8, 3, 3]));
    let bias = b.input("bias", t(Fp16, &[16]));
    outs.push(good(
        b.conv(&x, &w, &ConvParams::default(), Some(&bias)),
        t(Fp16, &[1, 16, 4, 4]),
    ));
    // unknown spatial extent and batch
    let xu = b.input("xu", tu(Fp16, &[None, Some(8), None, Some(6)]));
    outs.push(good(
        b.conv(&xu, &w, &ConvParams::default(), None),
        tu(Fp16, &[None, Some(16), None, Some(4)]),
    ));
    let refs: Vec<&Var> = outs.iter().collect();
    check_valid(b, &refs);
}

#[test]
fn conv_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[1, 8, 32, 32]));
    let w = b.input("w", t(Fp16, &[16, 8, 3, 3]));
    let d = ConvParams::default();
    let x2 = b.input("x2", t(Fp16, &[8, 32]));
    let w2 = b.input("w2", t(Fp16, &[16, 8]));
    bad(b.conv(&x2, &w2, &d, None), "conv", "x");
    let w32 = b.input("w32", t(Fp32, &[16, 8, 3, 3]));
    bad(b.conv(&x, &w32, &d, None), "conv", "weight");
    let w3 = b.input("w3", t(Fp16, &[16, 8, 3]));
    bad(b.conv(&x, &w3, &d, None), "conv", "weight");
    let w4 = b.input("w4", t(Fp16, &[16, 4, 3, 3]));
    let e = bad(b.conv(&x, &w4, &d, None), "conv", "weight");
    assert!(e.msg.contains("channels"), "{e}");
    // 12 channels = 4 per group × 3 groups, but 16 outputs are not divisible by 3.
    let x12 = b.input("x12", t(Fp16, &[1, 12, 8, 8]));
    bad(
        b.conv(
            &x12,
            &w4,
            &conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 3),
            None,
        ),
        "conv",
        "groups",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 0),
            None,
        ),
        "conv",
        "groups",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[0, 1], &[1, 1], &[0, 0, 0, 0], "valid", 1),
            None,
        ),
        "conv",
        "strides",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1], &[1, 1], &[0, 0, 0, 0], "valid", 1),
            None,
        ),
        "conv",
        "strides",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1, 1], &[1, 0], &[0, 0, 0, 0], "valid", 1),
            None,
        ),
        "conv",
        "dilations",
    );
    bad(
        b.conv(&x, &w, &conv_params(&[1, 1], &[1, 1], &[0, 0], "custom", 1), None),
        "conv",
        "pad",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1, 1], &[1, 1], &[0, -1, 0, 0], "custom", 1),
            None,
        ),
        "conv",
        "pad",
    );
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1, 1], &[1, 1], &[0, 0, 0, 0], "reflect", 1),
            None,
        ),
        "conv",
        "pad_type",
    );
    // The kernel is larger than the input.
    let xs = b.input("xs", t(Fp16, &[1, 8, 2, 2]));
    bad(b.conv(&xs, &w, &d, None), "conv", "weight");
    // Dilation 16 makes the effective kernel 33 > 32.
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1, 1], &[16, 1], &[0, 0, 0, 0], "valid", 1),
            None,
        ),
        "conv",
        "weight",
    );
    let b8 = b.input("b8", t(Fp16, &[8]));
    bad(b.conv(&x, &w, &d, Some(&b8)), "conv", "bias");
    let b32 = b.input("b32", t(Fp32, &[16]));
    bad(b.conv(&x, &w, &d, Some(&b32)), "conv", "bias");
    // Parameters out of the int32 range are refused by name, not by a panic.
    bad(
        b.conv(
            &x,
            &w,
            &conv_params(&[1 << 40, 1], &[1, 1], &[0, 0, 0, 0], "valid", 1),
            None,
        ),
        "conv",
        "strides",
    );
    bad(b.op("conv", &[("x", v(&x))], None), "conv", "weight");
}

// ---------------------------------------------------------------- select, quantization

#[test]
fn select_good_and_bad() {
    let mut b = fb();
    let c21 = b.input("c21", t(Bool, &[2, 1]));
    let a23 = b.input("a23", t(Fp16, &[2, 3]));
    let b3 = b.input("b3", t(Fp16, &[3]));
    let c411 = b.input("c411", t(Bool, &[4, 1, 1]));
    let a13 = b.input("a13", t(Fp16, &[1, 3]));
    let b21 = b.input("b21", t(Fp16, &[2, 1]));
    let cs = b.input("cs", Type::scalar(Bool));
    let r1 = good(b.select(&c21, &a23, &b3), t(Fp16, &[2, 3]));
    // a,b → [2,3], then with cond [4,1,1] → [4,2,3]
    let r2 = good(b.select(&c411, &a13, &b21), t(Fp16, &[4, 2, 3]));
    let r3 = good(b.select(&cs, &b3, &b3), t(Fp16, &[3]));
    let cf = b.input("cf", t(Fp16, &[2, 1]));
    bad(b.select(&cf, &a23, &b3), "select", "cond");
    let b32 = b.input("b32", t(Fp32, &[3]));
    bad(b.select(&c21, &a23, &b32), "select", "b");
    let b43 = b.input("b43", t(Fp16, &[4, 3]));
    bad(b.select(&c21, &a23, &b43), "select", "b");
    let c5 = b.input("c5", t(Bool, &[5]));
    bad(b.select(&c5, &a23, &b3), "select", "cond");
    check_valid(b, &[&r1, &r2, &r3]);
}

#[test]
fn quantize_good_and_bad() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3]));
    let s = b.scalar(Fp16, 0.125);
    let z8 = b.constant(Literal::new(Type::scalar(Uint8), Lit::Int(128)));
    let q1 = good(b.quantize(&x, &s, None, Int8), t(Int8, &[2, 3]));
    let q2 = good(b.quantize(&x, &s, Some(&z8), Uint8), t(Uint8, &[2, 3]));
    // Per-axis scale along axis 1.
    let sv = b.constant(Literal::floats(Fp16, &[3], &[0.5, 0.25, 0.125]));
    let ax = b.int(1);
    let od = b.string("int8");
    let q3 = good(
        b.op(
            "quantize",
            &[
                ("axis", v(&ax)),
                ("input", v(&x)),
                ("output_dtype", v(&od)),
                ("scale", v(&sv)),
            ],
            None,
        )
        .map(|mut r| r.remove(0)),
        t(Int8, &[2, 3]),
    );
    let i4 = b.string("int4");
    bad(
        b.op(
            "quantize",
            &[("input", v(&x)), ("output_dtype", v(&i4)), ("scale", v(&s))],
            None,
        ),
        "quantize",
        "output_dtype",
    );
    let si = b.int(2);
    bad(b.quantize(&x, &si, None, Int8), "quantize", "scale");
    bad(b.quantize(&x, &s, Some(&z8), Int8), "quantize", "zero_point");
    let xi = b.input("xi", t(Int32, &[2, 3]));
    bad(b.quantize(&xi, &s, None, Int8), "quantize", "input");
    // A vector scale needs an axis.
    bad(b.quantize(&x, &sv, None, Int8), "quantize", "scale");
    bad(b.quantize(&x, &s, None, Fp16), "quantize", "output_dtype");
    check_valid(b, &[&q1, &q2, &q3]);
}

#[test]
fn dequantize_good_and_bad() {
    let mut b = fb();
    let q = b.input("q", t(Int8, &[2, 3]));
    let s32 = b.scalar(Fp32, 0.5);
    let s16 = b.scalar(Fp16, 0.5);
    let d1 = good(b.dequantize(&q, &s32, None), t(Fp32, &[2, 3]));
    let z = b.constant(Literal::ints(Int8, &[0, 1, -1]));
    let ax = b.int(-1);
    let d2 = good(
        b.op(
            "dequantize",
            &[
                ("axis", v(&ax)),
                ("input", v(&q)),
                ("scale", v(&s16)),
                ("zero_point", v(&z)),
            ],
            None,
        )
        .map(|mut r| r.remove(0)),
        t(Fp16, &[2, 3]),
    );
    let u = b.input("u", t(Uint8, &[4]));
    let d3 = good(b.dequantize(&u, &s16, None), t(Fp16, &[4]));
    let h = b.input("h", t(Fp16, &[2, 3]));
    bad(b.dequantize(&h, &s16, None), "dequantize", "input");
    let si = b.int(3);
    bad(b.dequantize(&q, &si, None), "dequantize", "scale");
    let zu = b.constant(Literal::new(Type::scalar(Uint8), Lit::Int(0)));
    bad(b.dequantize(&q, &s16, Some(&zu)), "dequantize", "zero_point");
    let ax5 = b.int(5);
    bad(
        b.op(
            "dequantize",
            &[("axis", v(&ax5)), ("input", v(&q)), ("scale", v(&s16))],
            None,
        ),
        "dequantize",
        "axis",
    );
    check_valid(b, &[&d1, &d2, &d3]);
}

#[test]
fn constexpr_affine_dequantize_good_and_bad() {
    let mut b = fb();
    let data = Literal::new(
        t(Int8, &[4, 2]),
        Lit::List(
            (0..4)
                .map(|i| Lit::List(vec![Lit::Int(i), Lit::Int(-i)]))
                .collect(),
        ),
    );
    let scale = Literal::floats(Fp16, &[4], &[0.5, 0.25, 1.0, 2.0]);
    let zp = Literal::ints(Int8, &[0, 0, 1, -1]);
    let a = good(
        b.constexpr_affine_dequantize(data.clone(), scale.clone(), zp.clone(), 0),
        t(Fp16, &[4, 2]),
    );
    // Blob data with scalar parameters, as Core ML writes it.
    let blob = Literal::blob(t(Uint8, &[16, 8, 1, 1]), "@model_path/weights/w.bin", 64);
    let c = good(
        b.constexpr_affine_dequantize(
            blob.clone(),
            Literal::scalar_f(Fp32, 0.125),
            Literal::new(Type::scalar(Uint8), Lit::Int(7)),
            1,
        ),
        t(Fp32, &[16, 8, 1, 1]),
    );
    // Per-axis scale along the wrong axis.
    bad(
        b.constexpr_affine_dequantize(
            data.clone(),
            Literal::floats(Fp16, &[2], &[1.0, 1.0]),
            zp.clone(),
            0,
        ),
        "constexpr_affine_dequantize",
        "scale",
    );
    bad(
        b.constexpr_affine_dequantize(
            data.clone(),
            scale.clone(),
            Literal::new(t(Uint8, &[4]), Lit::List(vec![Lit::Int(0); 4])),
            0,
        ),
        "constexpr_affine_dequantize",
        "zero_point",
    );
    bad(
        b.constexpr_affine_dequantize(data.clone(), scale.clone(), zp.clone(), 2),
        "constexpr_affine_dequantize",
        "axis",
    );
    bad(
        b.constexpr_affine_dequantize(
            Literal::floats(Fp16, &[4], &[1.0; 4]),
            scale.clone(),
            zp.clone(),
            0,
        ),
        "constexpr_affine_dequantize",
        "quantized_data",
    );
    // Literal values are checked: 200 does not fit int8.
    let big = Literal::new(t(Int8, &[1]), Lit::List(vec![Lit::Int(200)]));
    bad(
        b.constexpr_affine_dequantize(
            big,
            Literal::scalar_f(Fp16, 1.0),
            Literal::new(Type::scalar(Int8), Lit::Int(0)),
            0,
        ),
        "constexpr_affine_dequantize",
        "quantized_data",
    );
    check_valid(b, &[&a, &c]);
}

// ---------------------------------------------------------------- builder behaviour

/// `name()` names the op's result, not a parameter constant the op method creates first.
#[test]
fn requested_name_goes_to_the_op_result() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[2, 3]));
    b.name("probs");
    let p = b.softmax(&x, -1).unwrap();
    assert_eq!(p.name, "probs");
    b.name("r");
    let r = b.reshape(&x, &[3, 2]).unwrap();
    assert_eq!(r.name, "r");
    b.name("parts");
    let parts = b.split(&x, 3, 1).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["parts_0", "parts_1", "parts_2"]
    );
    b.name("w");
    let w = b.ints(&[7, 8]);
    assert_eq!(w.name, "w");
    // A failed op does not hand its name to the next one.
    b.name("bad");
    assert!(b.softmax(&x, 5).is_err());
    let y = b.relu(&x).unwrap();
    assert_ne!(y.name, "bad");
    // A requested name that is taken is an error.
    b.name("x");
    bad_any(b.relu(&x), "relu");
    let f = b.build(&[&p, &r, &y]);
    let prog = Program::new(vec![f]);
    assert!(validate(&prog).is_empty());
    let text = malus_mil::print(&prog);
    assert!(text.contains("tensor<fp16, [2, 3]> probs = softmax("), "{text}");
}

#[track_caller]
fn bad_any<T: std::fmt::Debug>(r: Result<T, InferError>, op: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.op, op);
}

#[test]
fn unknown_ops_need_result_types() {
    let mut b = fb();
    let x = b.input("x", t(Fp16, &[4]));
    let y = b.op("my_op", &[("x", v(&x))], Some(vec![t(Fp16, &[8])])).unwrap();
    assert_eq!(y[0].ty, t(Fp16, &[8]));
    let e = b.op("other_op", &[("x", v(&x))], None).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("other_op", None));
    // Zero results would print as text that does not parse.
    let e = b.op("other_op", &[("x", v(&x))], Some(vec![])).unwrap_err();
    assert_eq!(e.op, "other_op");
    // So would an empty split.
    let z = b.input("z", t(Fp16, &[0, 2]));
    bad(b.split_sizes(&z, &[], 0), "split", "split_sizes");
}
