//! Type and shape inference of every op in `malus_mil::infer::OPS`, through the builder: good cases
//! with expected shapes worked out by hand (conv sizes from ⌊(in + pads − d·(k − 1) − 1) / s⌋ + 1,
//! numpy broadcasting, …), and bad cases whose error must name the op and the argument at fault.
//!
//! The cases of an op are tables: the input types (short spellings, see [`ty`]) and parameters of
//! a builder call, or the named arguments of the op as text would give them (see [`Run::raw`]),
//! each with what it must give (see [`Run::check`]). Every input is a fresh function parameter;
//! the good results of a test are finally validated as a program.

use std::fmt::Debug;

use malus_mil::builder::ConvParams;
use malus_mil::error::InferError;
use malus_mil::printer::{Spelling, literal_str, type_str};
use malus_mil::types::{DType, Dim, Type};
use malus_mil::value::{Lit, Literal, Value};
use malus_mil::{FunctionBuilder, Program, Var, validate};

use DType::{Bool, Fp16, Fp32, Int8, Int32, Uint8};

/// Every op this file tests with good and bad cases; must equal the op table.
const COVERED: &str = "const cast identity sqrt rsqrt exp log sigmoid silu tanh relu gelu \
    add sub mul real_div maximum minimum pow softmax reduce_sum reduce_mean reduce_max \
    slice_by_size slice_by_index reshape transpose concat split expand_dims squeeze \
    layer_norm linear matmul conv select quantize dequantize constexpr_affine_dequantize";

#[test]
fn every_op_of_the_table_is_covered() {
    let mut table: Vec<&str> = malus_mil::infer::OPS.iter().map(|s| s.name).collect();
    let mut covered: Vec<&str> = COVERED.split_whitespace().collect();
    table.sort_unstable();
    covered.sort_unstable();
    assert_eq!(
        table, covered,
        "ops of infer::OPS without tests here (or tested but gone)"
    );
}

/// A type from its short spelling: `fp16[2,?,4]` (`?` an unknown extent), a bare dtype a scalar.
fn ty(s: &str) -> Type {
    let (d, dims) = s.split_once('[').unwrap_or((s, "]"));
    let dtype = DType::from_name(d).unwrap_or_else(|| panic!("no dtype in {s:?}"));
    let dims = dims.strip_suffix(']').expect("`]` after the dims");
    let dim = |e: &str| match e {
        "?" => Dim::Unknown,
        _ => Dim::Known(e.parse().unwrap()),
    };
    let shape = dims.split(',').filter(|e| !e.is_empty()).map(dim).collect();
    Type::Tensor { dtype, shape }
}

fn v(x: &Var) -> Value {
    Value::Var(x.name.clone())
}

/// An argument of a case written as text would give it.
#[derive(Clone)]
enum A {
    /// A fresh function input of this type.
    Input(Type),
    /// A tuple of fresh inputs of these types (spelled as for [`ty`]).
    Inputs(&'static [&'static str]),
    /// A `const` of this value.
    Const(Literal),
    /// This value inline.
    Inline(Literal),
}

fn input(spec: &str) -> A {
    A::Input(ty(spec))
}
fn int(v: i32) -> A {
    A::Const(Literal::scalar_i32(v))
}
fn ints(v: &[i64]) -> A {
    A::Const(Literal::ints(Int32, v))
}
fn flag(v: bool) -> A {
    A::Const(Literal::scalar_bool(v))
}
fn text(s: &str) -> A {
    A::Const(Literal::string(s))
}

impl Debug for A {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            A::Input(t) => write!(f, "{}", type_str(t, Spelling::BareScalars)),
            A::Inputs(items) => write!(f, "({})", items.join(", ")),
            A::Const(l) => write!(f, "const {}", literal_str(l, Spelling::BareScalars)),
            A::Inline(l) => write!(f, "{}", literal_str(l, Spelling::BareScalars)),
        }
    }
}

/// Cases: the inputs and parameters of a call, with what it must give (see [`Run::check`]).
type Rows<'a, C> = &'a [(C, &'a str)];

/// Cases as named arguments, with what each must give.
type Raw<'a> = &'a [(&'a [(&'a str, A)], &'a str)];

/// The results of a builder call: one var, or several.
trait Outs {
    fn outs(self) -> Vec<Var>;
}

impl Outs for Var {
    fn outs(self) -> Vec<Var> {
        vec![self]
    }
}

impl Outs for Vec<Var> {
    fn outs(self) -> Vec<Var> {
        self
    }
}

/// One function under construction, with the good results its cases gave.
struct Run {
    b: FunctionBuilder,
    outs: Vec<Var>,
    inputs: usize,
}

impl Run {
    fn new() -> Run {
        Run {
            b: FunctionBuilder::new("main", "ios18"),
            outs: Vec::new(),
            inputs: 0,
        }
    }

    /// A fresh function input of the type spelled `spec`.
    fn input(&mut self, spec: &str) -> Var {
        self.input_of(ty(spec))
    }

    fn input_of(&mut self, t: Type) -> Var {
        self.inputs += 1;
        self.b.input(&format!("in{}", self.inputs), t)
    }

    /// A fresh input for a non-empty `spec`, none for `""`.
    fn opt(&mut self, spec: &str) -> Option<Var> {
        (!spec.is_empty()).then(|| self.input(spec))
    }

    /// The result of `call`, a case of `op` named `case` on failure, must be what `want` says: the
    /// types of its results (spelled as for [`ty`], separated by spaces), or with `!arg` an error
    /// naming `op` and the argument `arg`, with `!arg: text` one whose message contains `text`.
    fn check<O: Outs>(
        &mut self,
        op: &str,
        case: impl Debug,
        want: &str,
        call: impl FnOnce(&mut FunctionBuilder) -> Result<O, InferError>,
    ) {
        let case = format!("{op} {case:?}");
        let got = call(&mut self.b);
        let Some(err) = want.strip_prefix('!') else {
            let got = got.unwrap_or_else(|e| panic!("{case}: {e}")).outs();
            let types: Vec<&Type> = got.iter().map(|x| &x.ty).collect();
            let want: Vec<Type> = want.split_whitespace().map(ty).collect();
            assert_eq!(types, want.iter().collect::<Vec<_>>(), "{case}");
            self.outs.extend(got);
            return;
        };
        let (arg, what) = err.split_once(": ").unwrap_or((err, ""));
        let Err(e) = got else {
            panic!("{case}: expected an inference error naming `{arg}`")
        };
        assert_eq!(e.op, op, "{case}: wrong op in {e}");
        assert_eq!(e.arg.as_deref(), Some(arg), "{case}: wrong argument in {e}");
        assert!(!e.msg.is_empty(), "{case}: {e}");
        assert!(e.msg.contains(what), "{case}: {e} does not mention {what:?}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(op) && shown.contains(&format!("`{arg}`")),
            "{case}: {shown}"
        );
    }

    /// Cases of `op` as its named arguments.
    fn raw(&mut self, op: &str, rows: Raw) {
        for &(args, want) in rows {
            let values: Vec<(&str, Value)> = args
                .iter()
                .map(|(n, a)| match a {
                    A::Input(t) => (*n, v(&self.input_of(t.clone()))),
                    A::Inputs(items) => (
                        *n,
                        Value::Tuple(items.iter().map(|s| v(&self.input(s))).collect()),
                    ),
                    A::Const(l) => (*n, v(&self.b.constant(l.clone()))),
                    A::Inline(l) => (*n, Value::Literal(l.clone())),
                })
                .collect();
            self.check(op, args, want, |b| b.op(op, &values, None));
        }
    }

    /// The good results must also validate, and round-trip through text.
    fn done(self) {
        let refs: Vec<&Var> = self.outs.iter().collect();
        let p = Program::new(vec![self.b.build(&refs)]);
        let d = validate(&p);
        assert!(d.is_empty(), "{d:?}\n{}", malus_mil::print(&p));
        let text = malus_mil::print(&p);
        let q = malus_mil::parse(&text).unwrap();
        assert_eq!(q, p);
        assert!(validate(&q).is_empty());
    }
}

// ---------------------------------------------------------------- const, cast, identity

#[test]
fn constants() {
    let mut r = Run::new();
    let w = "@model_path/weights/w.bin";
    let i = r.b.ints(&[1, -2, 3]);
    let floats = Literal::floats(Fp16, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let short = Literal::new(ty("int32[3]"), Lit::List(vec![Lit::Int(1), Lit::Int(2)]));
    #[rustfmt::skip]
    let rows: Vec<(&str, Result<Var, InferError>, &str)> = vec![
        ("tensor", Ok(r.b.constant(floats)), "fp16[2,3]"),
        ("string", Ok(r.b.string("hello")), "string"),
        ("ints", Ok(i.clone()), "int32[3]"),
        ("blob", r.b.blob(ty("fp16[4,8]"), w, 64), "fp16[4,8]"),
        ("bool", Ok(r.b.scalar(Bool, 1.0)), "bool"),
        // Two values for a [3] tensor.
        ("short", r.b.try_constant(short), "!val"),
        // 300 does not fit int8.
        ("int8 300", r.b.try_constant(Literal::new(ty("int8"), Lit::Int(300))), "!val"),
        // A float in an integer tensor.
        ("int32 0.5", r.b.try_constant(Literal::new(ty("int32"), Lit::Float(0.5))), "!val"),
        ("bool blob", r.b.blob(ty("bool[4]"), w, 64), "!val"),
    ];
    for (case, got, want) in rows {
        r.check("const", case, want, |_| got);
    }
    // Unknown and missing arguments.
    let one = A::Inline(Literal::scalar_i32(1));
    r.raw("const", &[(&[("value", one)], "!value"), (&[], "!val")]);
    // An identical literal is declared once.
    assert_eq!(r.b.ints(&[1, -2, 3]).name, i.name);
    r.done();
}

#[test]
fn cast() {
    let mut r = Run::new();
    let rows = [
        (("fp32[1,4,8]", Fp16), "fp16[1,4,8]"),
        (("fp16[1,4,8]", Int32), "int32[1,4,8]"),
        (("fp32", Bool), "bool"),
        (("fp32[2]", DType::String), "!dtype"),
    ];
    for (c @ (x, d), want) in rows {
        let x = r.input(x);
        r.check("cast", c, want, |b| b.cast(&x, d));
    }
    let tup = A::Input(Type::Tuple(vec![ty("fp32[2]")]));
    let raw: Raw = &[
        (&[("x", input("fp32[2]")), ("dtype", text("float"))], "!dtype"),
        // The target dtype must be a constant.
        (&[("x", input("fp32[2]")), ("dtype", input("string"))], "!dtype"),
        (&[("x", tup), ("dtype", text("fp16"))], "!x"),
        (&[("x", input("fp32[2]"))], "!dtype"),
    ];
    r.raw("cast", raw);
    r.done();
}

#[test]
fn identity() {
    let mut r = Run::new();
    for (x, want) in [("int32[3,?]", "int32[3,?]"), ("bool", "bool")] {
        let xv = r.input(x);
        r.check("identity", x, want, |b| b.identity(&xv));
    }
    let x = input("int32[3,?]");
    r.raw("identity", &[(&[("x", x.clone()), ("y", x)], "!y"), (&[], "!x")]);
    r.done();
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
    let rows = [
        ("fp16[2,3,5]", "fp16[2,3,5]"),
        ("fp32", "fp32"),
        ("fp32[?,7]", "fp32[?,7]"),
        ("int32[2]", "!x: int32"),
        ("bool[2]", "!x"),
    ];
    let raw: Raw = &[
        (&[("x", input("fp16[2,3,5]")), ("alpha", input("fp32"))], "!alpha"),
        (&[], "!x"),
    ];
    for (name, f) in ops {
        let mut r = Run::new();
        for (x, want) in rows {
            let xv = r.input(x);
            r.check(name, x, want, |b| f(b, &xv));
        }
        r.raw(name, raw);
        r.done();
    }
}

#[test]
fn epsilon_of_rsqrt_and_log() {
    let eps = |l| ("epsilon", A::Const(l));
    let x = ("x", input("fp16[4]"));
    let fp16 = eps(Literal::scalar_f(Fp16, 1e-7));
    let (fp32, vector) = (
        eps(Literal::scalar_f(Fp32, 1e-7)),
        eps(Literal::floats(Fp16, &[1], &[1e-7])),
    );
    let raw: Raw = &[
        (&[fp16.clone(), x.clone()], "fp16[4]"),
        // Wrong dtype and wrong rank of epsilon.
        (&[fp32, x.clone()], "!epsilon"),
        (&[vector, x.clone()], "!epsilon"),
    ];
    for name in ["rsqrt", "log"] {
        let mut r = Run::new();
        r.raw(name, raw);
        r.done();
    }
    // sqrt has no epsilon.
    Run::new().raw("sqrt", &[(&[fp16, x], "!epsilon")]);
}

#[test]
fn gelu_modes() {
    let mut r = Run::new();
    let rows = [
        (("fp16[1,8]", "EXACT"), "fp16[1,8]"),
        (("fp16[1,8]", "TANH_APPROXIMATION"), "fp16[1,8]"),
        (("fp16[1,8]", "SIGMOID_APPROXIMATION"), "fp16[1,8]"),
        (("fp16[1,8]", "FAST"), "!mode"),
        (("fp16[1,8]", "exact"), "!mode"),
        (("int32[1,8]", "EXACT"), "!x"),
    ];
    for (c @ (x, mode), want) in rows {
        let x = r.input(x);
        r.check("gelu", c, want, |b| b.gelu(&x, mode));
    }
    // Mode is optional.
    r.raw("gelu", &[(&[("x", input("fp16[1,8]"))], "fp16[1,8]")]);
    r.done();
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
    let rows = [
        // [2,1,4] ∘ [3,1] → [2,3,4]
        (("fp16[2,1,4]", "fp16[3,1]"), "fp16[2,3,4]"),
        (("fp16[3,1]", "fp16[2,1,4]"), "fp16[2,3,4]"),
        (("fp16", "fp16[2,1,4]"), "fp16[2,1,4]"),
        (("fp16[4,1,5]", "fp16[1,6,1]"), "fp16[4,6,5]"),
        (("fp16[1]", "fp16"), "fp16[1]"),
        (("fp16", "fp16"), "fp16"),
        (("fp16[?,4]", "fp16[3,1]"), "fp16[3,4]"),
        (("fp16[?,4]", "fp16[1]"), "fp16[?,4]"),
        // Integers are numeric too.
        (("int32[2,2]", "int32[2,2]"), "int32[2,2]"),
        // 2 vs 3 cannot broadcast.
        (("fp16[2,1,4]", "fp16[3,1,4]"), "!y: broadcast"),
        (("fp16[2,1,4]", "fp32[2,1,4]"), "!y"),
        (("bool[2]", "bool[2]"), "!x"),
        (("string[2]", "string[2]"), "!x"),
    ];
    let a = ("x", input("fp16[2,1,4]"));
    let raw: Raw = &[
        (&[("x", input("fp16[2,1,4]"))], "!y"),
        (&[a.clone(), ("y", a.1.clone()), ("z", a.1.clone())], "!z"),
    ];
    for (name, f) in ops {
        let mut r = Run::new();
        for (xy, want) in rows {
            let (x, y) = (r.input(xy.0), r.input(xy.1));
            r.check(name, xy, want, |b| f(b, &x, &y));
        }
        r.raw(name, raw);
        r.done();
    }
}

// ---------------------------------------------------------------- softmax, reductions

#[test]
fn softmax_axes() {
    let mut r = Run::new();
    let rows = [
        (("fp16[2,3,4]", -1), "fp16[2,3,4]"),
        (("fp16[2,3,4]", 1), "fp16[2,3,4]"),
        (("fp16[2,3,4]", -3), "fp16[2,3,4]"),
        (("fp16[2,3,4]", 3), "!axis: out of range"),
        (("fp16[2,3,4]", -4), "!axis"),
        (("int32[2]", 0), "!x"),
        (("fp16", 0), "!axis"),
    ];
    for (c @ (x, axis), want) in rows {
        let x = r.input(x);
        r.check("softmax", c, want, |b| b.softmax(&x, axis));
    }
    let x = ("x", input("fp16[2,3,4]"));
    let raw: Raw = &[
        // Axis defaults to -1.
        (&[("x", input("fp16[2,3,4]"))], "fp16[2,3,4]"),
        (&[("axis", ints(&[1, 2])), x.clone()], "!axis"),
    ];
    r.raw("softmax", raw);
    r.done();
}

#[test]
fn reductions() {
    type Rd = fn(&mut FunctionBuilder, &Var, &[i64], bool) -> Result<Var, InferError>;
    let ops: [(&str, Rd); 3] = [
        ("reduce_sum", FunctionBuilder::reduce_sum),
        ("reduce_mean", FunctionBuilder::reduce_mean),
        ("reduce_max", FunctionBuilder::reduce_max),
    ];
    let rows: Rows<(&str, &[i64], bool)> = &[
        (("fp16[2,3,4]", &[1], false), "fp16[2,4]"),
        (("fp16[2,3,4]", &[1], true), "fp16[2,1,4]"),
        (("fp16[2,3,4]", &[-1, 0], false), "fp16[3]"),
        (("fp16[2,3,4]", &[0, 1, 2], true), "fp16[1,1,1]"),
        (("int32[5,6]", &[0], false), "int32[6]"),
        (("fp16[2,3,4]", &[3], false), "!axes"),
        (("fp16[2,3,4]", &[1, -2], false), "!axes: twice"),
    ];
    let x = ("x", input("fp16[2,3,4]"));
    let raw: Raw = &[
        // No axes: all of them.
        (&[("x", input("fp16[2,3,4]"))], "fp16"),
        (&[("keep_dims", flag(true)), x.clone()], "fp16[1,1,1]"),
        (&[("keep_dims", int(1)), x.clone()], "!keep_dims"),
        (&[("axes", input("int32[1]")), x.clone()], "!axes"),
    ];
    for (name, f) in ops {
        let mut r = Run::new();
        for &(c @ (x, axes, keep), want) in rows {
            let x = r.input(x);
            r.check(name, c, want, |b| f(b, &x, axes, keep));
        }
        r.raw(name, raw);
        r.done();
    }
}

// ---------------------------------------------------------------- slicing

#[test]
fn slice_by_size() {
    let mut r = Run::new();
    let rows: Rows<(&[i64], &[i64])> = &[
        // begin [1,2,0] size [2,-1,8] → [2, 6-2, 8]
        ((&[1, 2, 0], &[2, -1, 8]), "fp16[2,4,8]"),
        ((&[3, 0, 7], &[1, 6, 1]), "fp16[1,6,1]"),
        ((&[0, 0], &[1, 1, 1]), "!begin"),
        ((&[0, 0, 0], &[1, 1]), "!size"),
        // 2 + 3 > 4 on axis 0.
        ((&[2, 0, 0], &[3, 1, 1]), "!size: axis 0"),
        ((&[-1, 0, 0], &[1, 1, 1]), "!begin"),
        ((&[0, 0, 0], &[1, -2, 1]), "!size"),
        // begin past the end with size -1.
        ((&[5, 0, 0], &[-1, 1, 1]), "!begin"),
    ];
    let x = r.input("fp16[4,6,8]");
    for &(c @ (begin, size), want) in rows {
        r.check("slice_by_size", c, want, |b| b.slice_by_size(&x, begin, size));
    }
    let (x, i3) = (("x", input("fp16[4,6,8]")), input("int32[3]"));
    let f3 = A::Const(Literal::floats(Fp32, &[3], &[0.0, 0.0, 0.0]));
    #[rustfmt::skip]
    let raw: Raw = &[
        // A runtime begin: only the fixed sizes are known.
        (&[("begin", i3.clone()), ("size", ints(&[2, -1, 8])), x.clone()], "fp16[2,?,8]"),
        // A runtime size: nothing is known but the rank.
        (&[("begin", ints(&[0, 0, 0])), ("size", i3), x.clone()], "fp16[?,?,?]"),
        (&[("begin", f3), ("size", ints(&[1, 1, 1])), x], "!begin"),
    ];
    r.raw("slice_by_size", raw);
    r.done();
}

/// A `slice_by_index` mask spelled `tf…`; `""` for none given.
fn mask(m: &str) -> Option<Vec<bool>> {
    (!m.is_empty()).then(|| m.chars().map(|c| c == 't').collect())
}

#[test]
fn slice_by_index() {
    let mut r = Run::new();
    // (x, begin, end, stride ([] for none), begin_mask, end_mask, squeeze_mask)
    type S = &'static str;
    type I = &'static [i64];
    type Args = (S, I, I, I, S, S, S);
    #[rustfmt::skip]
    let rows: Rows<Args> = &[
        // axis 0: [1, 7) step 2 → 1, 3, 5
        (("fp16[10,4,6]", &[1, 0, 0], &[7, 4, 6], &[2, 1, 1], "", "", ""), "fp16[3,4,6]"),
        // Negative indices: [-3, -1) of 6 → 3, 4; end beyond the extent clamps: [2, 100) of 4 → 2.
        (("fp16[10,4,6]", &[0, 2, -3], &[10, 100, -1], &[], "", "", ""), "fp16[10,2,2]"),
        // Axis 0 reversed with both masks: x[::-1] → 10. Axis 2: x[8:2:-3] over 6 clamps begin to 5
        // and takes 5 only (2 is the excluded end) → 1.
        (("fp16[10,4,6]", &[0, 0, 8], &[0, 4, 2], &[-1, 1, -3], "tff", "tff", ""), "fp16[10,4,1]"),
        // Squeeze axis 0 (selects exactly 1): x[3:4, 1:3, :] with the end mask on axis 2.
        (("fp16[10,4,6]", &[3, 1, 0], &[4, 3, 0], &[], "", "fft", "tff"), "fp16[2,6]"),
        // An empty selection is a zero extent.
        (("fp16[10,4,6]", &[5, 0, 0], &[5, 4, 6], &[], "", "", ""), "fp16[0,4,6]"),
        (("fp16[10,4]", &[0, 0], &[1, 1], &[0, 1], "", "", ""), "!stride: axis 0"),
        (("fp16[10,4]", &[0], &[1, 1], &[], "", "", ""), "!begin"),
        (("fp16[10,4]", &[0, 0], &[1, 1, 1], &[], "", "", ""), "!end"),
        (("fp16[10,4]", &[0, 0], &[1, 1], &[1, 1, 1], "", "", ""), "!stride"),
        (("fp16[10,4]", &[0, 0], &[3, 1], &[], "", "", "tf"), "!squeeze_mask"),
        (("fp16[10,4]", &[0, 0], &[1, 1], &[], "t", "", ""), "!begin_mask"),
        (("fp16[10,4]", &[0, 0], &[1, 1], &[], "", "ttt", ""), "!end_mask"),
    ];
    for &(c @ (x, begin, end, stride, bm, em, sm), want) in rows {
        let x = r.input(x);
        let stride = (!stride.is_empty()).then_some(stride);
        let (bm, em, sm) = (mask(bm), mask(em), mask(sm));
        let (bm, em, sm) = (bm.as_deref(), em.as_deref(), sm.as_deref());
        r.check("slice_by_index", c, want, |b| {
            b.slice_by_index(&x, begin, end, stride, bm, em, sm)
        });
    }
    let (i3, tff) = (input("int32[3]"), A::Const(Literal::bools(&[true, false, false])));
    #[rustfmt::skip]
    let raw: Raw = &[
        // Runtime begin/end: full masks with stride 1 still give the extent, the rest is unknown.
        (
            &[("begin", i3.clone()), ("begin_mask", tff.clone()), ("end", i3), ("end_mask", tff), ("x", input("fp16[10,4,6]"))],
            "fp16[10,?,?]",
        ),
        (&[("begin", ints(&[0, 0])), ("x", input("fp16[10,4]"))], "!end"),
    ];
    r.raw("slice_by_index", raw);
    r.done();
}

// ---------------------------------------------------------------- shape ops

/// reshape, transpose, expand_dims and squeeze: a tensor and a list of ints.
#[test]
fn shape_ops() {
    type L = fn(&mut FunctionBuilder, &Var, &[i64]) -> Result<Var, InferError>;
    let ops: [(&str, L); 4] = [
        ("reshape", FunctionBuilder::reshape),
        ("transpose", FunctionBuilder::transpose),
        ("expand_dims", FunctionBuilder::expand_dims),
        ("squeeze", FunctionBuilder::squeeze),
    ];
    let rows: &[(&str, &str, &[i64], &str)] = &[
        ("reshape", "fp16[2,3,4]", &[6, -1], "fp16[6,4]"),
        ("reshape", "fp16[2,3,4]", &[0, 12], "fp16[2,12]"),
        ("reshape", "fp16[2,3,4]", &[24], "fp16[24]"),
        ("reshape", "fp16[2,3,4]", &[1, 1, 2, 3, 4], "fp16[1,1,2,3,4]"),
        ("reshape", "fp16[2,3,4]", &[-1, 2, 2], "fp16[6,2,2]"),
        // An unknown input extent: -1 stays unknown.
        ("reshape", "fp16[?,4]", &[-1, 2], "fp16[?,2]"),
        ("reshape", "fp16[2,3,4]", &[5, -1], "!shape"),
        ("reshape", "fp16[2,3,4]", &[-1, -1], "!shape"),
        ("reshape", "fp16[2,3,4]", &[2, 3, 5], "!shape"),
        ("reshape", "fp16[2,3,4]", &[-2, 12], "!shape"),
        ("reshape", "fp16[2,3,4]", &[0, 0, 0, 0], "!shape"),
        ("transpose", "fp16[2,3,4]", &[2, 0, 1], "fp16[4,2,3]"),
        ("transpose", "fp16[2,3,4]", &[-1, 0, 1], "fp16[4,2,3]"),
        ("transpose", "fp16[2,3,4]", &[0, 1, 2], "fp16[2,3,4]"),
        ("transpose", "fp16[1,8,16,32]", &[0, 1, 3, 2], "fp16[1,8,32,16]"),
        ("transpose", "fp16[2,3,4]", &[0, 1], "!perm"),
        ("transpose", "fp16[2,3,4]", &[0, 0, 1], "!perm"),
        ("transpose", "fp16[2,3,4]", &[0, 1, 3], "!perm"),
        ("transpose", "fp16[2,3,4]", &[0, 1, 2, 3], "!perm"),
        ("expand_dims", "fp16[2,3]", &[0], "fp16[1,2,3]"),
        ("expand_dims", "fp16[2,3]", &[-1], "fp16[2,3,1]"),
        ("expand_dims", "fp16[2,3]", &[0, 3], "fp16[1,2,3,1]"),
        ("expand_dims", "fp16[2,3]", &[1, 2], "fp16[2,1,1,3]"),
        ("expand_dims", "fp16[2,3]", &[-4, -1], "fp16[1,2,3,1]"),
        ("expand_dims", "fp16[2,3]", &[4], "!axes"),
        ("expand_dims", "fp16[2,3]", &[0, 0], "!axes"),
        ("expand_dims", "fp16[2,3]", &[-5], "!axes"),
        ("squeeze", "fp16[1,3,1,4]", &[0], "fp16[3,1,4]"),
        ("squeeze", "fp16[1,3,1,4]", &[0, 2], "fp16[3,4]"),
        ("squeeze", "fp16[1,3,1,4]", &[-2], "fp16[1,3,4]"),
        ("squeeze", "fp16[1,3,1,4]", &[1], "!axes: extent 3"),
        ("squeeze", "fp16[1,3,1,4]", &[4], "!axes"),
        ("squeeze", "fp16[1,3,1,4]", &[0, -4], "!axes"),
    ];
    let mut r = Run::new();
    for &(op, x, list, want) in rows {
        let f = ops.iter().find(|o| o.0 == op).unwrap().1;
        let xv = r.input(x);
        r.check(op, (x, list), want, |b| f(b, &xv, list));
    }
    let x = ("x", input("fp16[2,3,4]"));
    #[rustfmt::skip]
    let raw: &[(&str, Raw)] = &[
        // A runtime shape of known length: rank known, extents not.
        ("reshape", &[(&[("shape", input("int32[3]")), x.clone()], "fp16[?,?,?]")]),
        ("reshape", &[(&[("shape", input("int32[?]")), x.clone()], "!shape")]),
        ("transpose", &[(&[("perm", input("int32[3]")), x.clone()], "!perm")]),
        ("expand_dims", &[(&[x], "!axes")]),
        ("squeeze", &[(&[("x", input("fp16[1,3,1,4]"))], "fp16[3,4]")]),
    ];
    for &(op, rows) in raw {
        r.raw(op, rows);
    }
    r.done();
}

#[test]
fn concat() {
    let mut r = Run::new();
    let rows: Rows<(&[&str], i64)> = &[
        ((&["fp16[2,3]", "fp16[2,5]"], 1), "fp16[2,8]"),
        ((&["fp16[2,3]", "fp16[2,5]"], -1), "fp16[2,8]"),
        ((&["fp16[1,4]", "fp16[2,4]", "fp16[3,4]"], 0), "fp16[6,4]"),
        ((&["fp16[2,3]"], 0), "fp16[2,3]"),
        // An unknown extent off the axis is filled from the other item; on the axis it is unknown.
        ((&["fp16[?,3]", "fp16[2,3]"], 1), "fp16[2,6]"),
        ((&["fp16[?,3]", "fp16[2,3]"], 0), "fp16[?,3]"),
        ((&["fp16[2,3]", "fp32[2,3]"], 1), "!values"),
        ((&["fp16[2,3]", "fp16[2,3,1]"], 1), "!values"),
        ((&["fp16[2,3]", "fp16[2,5]"], 0), "!values"),
        ((&["fp16[2,3]", "fp16[2,5]"], 2), "!axis"),
        ((&[], 0), "!values"),
    ];
    for &(c @ (items, axis), want) in rows {
        let items: Vec<Var> = items.iter().map(|s| r.input(s)).collect();
        r.check("concat", c, want, |b| {
            b.concat(&items.iter().collect::<Vec<_>>(), axis)
        });
    }
    let p = A::Inputs(&["fp16[2,3]", "fp16[2,5]"]);
    #[rustfmt::skip]
    let raw: Raw = &[
        (&[("axis", int(1)), ("interleave", flag(true)), ("values", p)], "!values"),
        (&[("values", A::Inputs(&["fp16[2,3]"]))], "!axis"),
    ];
    r.raw("concat", raw);
    r.done();
}

#[test]
fn split() {
    let mut r = Run::new();
    let rows = [
        (("fp16[6,4]", 3, 0), "fp16[2,4] fp16[2,4] fp16[2,4]"),
        (("fp16[6,4]", 2, -1), "fp16[6,2] fp16[6,2]"),
        (("fp16[?,4]", 2, 0), "fp16[?,4] fp16[?,4]"),
        (("fp16[6,4]", 4, 0), "!num_splits: divide"),
        (("fp16[6,4]", 0, 0), "!num_splits"),
        (("fp16[6,4]", 2, 2), "!axis"),
    ];
    for (c @ (x, n, axis), want) in rows {
        let x = r.input(x);
        r.check("split", c, want, |b| b.split(&x, n, axis));
    }
    let rows: Rows<(&str, &[i64], i64)> = &[
        (("fp16[6,4]", &[1, 3], 1), "fp16[6,1] fp16[6,3]"),
        (("fp16[6,4]", &[1, 2], 1), "!split_sizes"),
        (("fp16[6,4]", &[-1, 5], 1), "!split_sizes"),
        // An empty split would print as text that does not parse.
        (("fp16[0,2]", &[], 0), "!split_sizes"),
    ];
    for &(c @ (x, sizes, axis), want) in rows {
        let x = r.input(x);
        r.check("split", c, want, |b| b.split_sizes(&x, sizes, axis));
    }
    let x = ("x", input("fp16[6,4]"));
    #[rustfmt::skip]
    let raw: Raw = &[
        (&[("axis", int(0)), ("num_splits", int(2)), ("split_sizes", ints(&[3, 3])), x.clone()], "!num_splits"),
        (&[("axis", int(0)), x.clone()], "!num_splits"),
    ];
    r.raw("split", raw);
    r.done();
}

// ---------------------------------------------------------------- normalisation, linear

#[test]
fn layer_norm() {
    let mut r = Run::new();
    // (x, axes, gamma, beta), "" for no gamma or beta
    let rows: Rows<(&str, &[i64], &str, &str)> = &[
        (("fp16[2,5,8]", &[-1], "fp16[8]", "fp16[8]"), "fp16[2,5,8]"),
        (("fp16[2,5,8]", &[1, 2], "fp16[5,8]", ""), "fp16[2,5,8]"),
        (("fp16[2,5,8]", &[0], "", ""), "fp16[2,5,8]"),
        (("fp16[2,5,8]", &[-1], "fp16[5,8]", ""), "!gamma"),
        (("fp16[2,5,8]", &[-1], "", "fp32[8]"), "!beta"),
        (("fp16[2,5,8]", &[3], "", ""), "!axes"),
        (("int32[2,8]", &[-1], "", ""), "!x"),
        (("bool[2,8]", &[-1], "", ""), "!x"),
    ];
    for &(c @ (x, axes, g, be), want) in rows {
        let (x, g, be) = (r.input(x), r.opt(g), r.opt(be));
        r.check("layer_norm", c, want, |b| {
            b.layer_norm(&x, axes, g.as_ref(), be.as_ref(), 1e-5)
        });
    }
    let ev = A::Const(Literal::floats(Fp16, &[2], &[1e-5, 1e-5]));
    r.raw(
        "layer_norm",
        &[(&[("epsilon", ev), ("x", input("fp16[2,5,8]"))], "!epsilon")],
    );
    r.done();
}

#[test]
fn linear() {
    let mut r = Run::new();
    // (x, weight, bias or "")
    let rows = [
        (("fp16[3,4,16]", "fp16[32,16]", "fp16[32]"), "fp16[3,4,32]"),
        (("fp16[16]", "fp16[32,16]", ""), "fp16[32]"),
        (("fp16[3,4,16]", "fp16[32,15]", ""), "!weight: 15"),
        (("fp16[3,4,16]", "fp16[32,16]", "fp16[16]"), "!bias"),
        (("fp16[3,4,16]", "fp16[1,32,16]", ""), "!weight"),
        (("fp16[3,4,16]", "fp32[32,16]", ""), "!weight"),
        (("fp16", "fp16[32,16]", ""), "!x"),
    ];
    for (c @ (x, w, bias), want) in rows {
        let (x, w, bias) = (r.input(x), r.input(w), r.opt(bias));
        r.check("linear", c, want, |b| b.linear(&x, &w, bias.as_ref()));
    }
    r.done();
}

#[test]
fn matmul() {
    let mut r = Run::new();
    // (x, y, transpose_x, transpose_y)
    #[rustfmt::skip]
    let rows = [
        (("fp16[2,3]", "fp16[3,4]", false, false), "fp16[2,4]"),
        (("fp16[3,2]", "fp16[3,4]", true, false), "fp16[2,4]"),
        (("fp16[2,3]", "fp16[4,3]", false, true), "fp16[2,4]"),
        (("fp16[3,2]", "fp16[4,3]", true, true), "fp16[2,4]"),
        (("fp16[1,12,64,32]", "fp16[1,12,32,64]", false, false), "fp16[1,12,64,64]"),
        // Q·Kᵀ with K stored [1,12,64,32]: transpose_y.
        (("fp16[1,12,64,32]", "fp16[1,12,64,32]", false, true), "fp16[1,12,64,64]"),
        // Batch dims [5,1] and [4] broadcast to [5,4].
        (("fp16[5,1,2,3]", "fp16[4,3,7]", false, false), "fp16[5,4,2,7]"),
        // Rank-1 x: [3]·[3,4] → [4]; [3]·[6,3,4] → [6,4].
        (("fp16[3]", "fp16[3,4]", false, false), "fp16[4]"),
        (("fp16[3]", "fp16[6,3,4]", false, false), "fp16[6,4]"),
        // Rank-1 y: [2,3]·[3] → [2]; [5,2,3]·[3] → [5,2].
        (("fp16[2,3]", "fp16[3]", false, false), "fp16[2]"),
        (("fp16[5,2,3]", "fp16[3]", false, false), "fp16[5,2]"),
        // Two vectors: a scalar.
        (("fp16[3]", "fp16[3]", false, false), "fp16"),
        // Transpose flags have no effect on a rank-1 operand (coremltools' documented rule).
        (("fp16[2,3]", "fp16[3]", false, true), "fp16[2]"),
        (("fp16[?,3]", "fp16[3,4]", false, false), "fp16[?,4]"),
        (("fp16[2,3]", "fp16[4,3]", false, false), "!y: inner dimensions"),
        (("fp16[2,3]", "fp16[4,3]", true, false), "!y"),
        (("fp16[2,3]", "fp32[3,4]", false, false), "!y"),
        (("fp16", "fp16[2,3]", false, false), "!x"),
        (("fp16[2,3]", "fp16", false, false), "!y"),
        // Batch dims [2] and [3] do not broadcast.
        (("fp16[2,2,3]", "fp16[3,3,4]", false, false), "!y: batch"),
    ];
    for (c @ (x, y, t_x, t_y), want) in rows {
        let (x, y) = (r.input(x), r.input(y));
        r.check("matmul", c, want, |b| b.matmul(&x, &y, t_x, t_y));
    }
    let xy = [("x", input("fp16[2,3]")), ("y", input("fp16[4,3]"))];
    #[rustfmt::skip]
    let raw: Raw = &[
        (&[("transpose_x", int(1)), xy[0].clone(), xy[1].clone()], "!transpose_x"),
        (&[("transpose_y", input("bool")), xy[0].clone(), xy[1].clone()], "!transpose_y"),
    ];
    r.raw("matmul", raw);
    r.done();
}

// ---------------------------------------------------------------- conv

fn cp(strides: &[i64], dil: &[i64], pad: &[i64], pad_type: &str, groups: i64) -> ConvParams {
    ConvParams {
        strides: Some(strides.to_vec()),
        dilations: Some(dil.to_vec()),
        pad: Some(pad.to_vec()),
        pad_type: pad_type.into(),
        groups,
    }
}

#[test]
fn conv() {
    let mut r = Run::new();
    // (x, weight, parameters (d() the defaults), bias or "")
    let d = ConvParams::default;
    #[rustfmt::skip]
    let rows = [
        // valid, 3×3, stride 1: 32 − 3 + 1 = 30
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", d(), ""), "fp16[1,16,30,30]"),
        // custom pad 1, stride 2: ⌊(32 + 2 − 3) / 2⌋ + 1 = 16
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[2, 2], &[1, 1], &[1, 1, 1, 1], "custom", 1), ""), "fp16[1,16,16,16]"),
        // dilations [2,3]: effective kernels 5 and 7 → 28, 26
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[2, 3], &[0, 0, 0, 0], "valid", 1), ""), "fp16[1,16,28,26]"),
        // groups 4: weight has 8 / 4 = 2 input channels
        (("fp16[2,8,10,12]", "fp16[12,2,1,1]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 4), ""), "fp16[2,12,10,12]"),
        // depthwise 3×3
        (("fp16[1,8,5,5]", "fp16[8,1,3,3]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 8), ""), "fp16[1,8,3,3]"),
        // same, stride 3: ⌈10 / 3⌉ = 4
        (("fp16[1,4,10,10]", "fp16[4,4,4,4]", cp(&[3, 3], &[1, 1], &[0, 0, 0, 0], "same", 1), ""), "fp16[1,4,4,4]"),
        // same_lower, stride 1, kernels 3×5: the output keeps the input extent
        (("fp16[1,4,7,9]", "fp16[6,4,3,5]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "same_lower", 1), ""), "fp16[1,6,7,9]"),
        // same with stride 2 and dilation 2 on 9: ⌈9 / 2⌉ = 5
        (("fp16[1,1,9,9]", "fp16[1,1,3,3]", cp(&[2, 2], &[2, 2], &[0, 0, 0, 0], "same", 1), ""), "fp16[1,1,5,5]"),
        // 1-D, as in the parakeet fixture: (640 − 256) / 128 + 1 = 4
        (("fp16[1,1,640]", "fp16[258,1,256]", cp(&[128], &[1], &[0, 0], "valid", 1), ""), "fp16[1,258,4]"),
        // 3-D, strides [1,2,3], custom pads [0,1, 1,1, 2,0]:
        // d: 5+1−2+1 = 5; h: ⌊(6+2−3)/2⌋+1 = 3; w: ⌊(7+2−4)/3⌋+1 = 2
        (("fp16[1,2,5,6,7]", "fp16[3,2,2,3,4]", cp(&[1, 2, 3], &[1, 1, 1], &[0, 1, 1, 1, 2, 0], "custom", 1), ""), "fp16[1,3,5,3,2]"),
        // 1×1 conv as a linear layer
        (("fp16[1,64,1,256]", "fp16[128,64,1,1]", d(), ""), "fp16[1,128,1,256]"),
        // asymmetric custom pads: h 5+2+0 → 5, w 5+0+1 → 4
        (("fp16[1,1,5,5]", "fp16[1,1,3,3]", cp(&[1, 1], &[1, 1], &[2, 0, 0, 1], "custom", 1), ""), "fp16[1,1,5,4]"),
        // kernel as large as the input
        (("fp16[1,1,4,4]", "fp16[1,1,4,4]", d(), ""), "fp16[1,1,1,1]"),
        // stride larger than the kernel: ⌊(11 − 2) / 4⌋ + 1 = 3
        (("fp16[1,1,11,11]", "fp16[1,1,2,2]", cp(&[4, 4], &[1, 1], &[0, 0, 0, 0], "valid", 1), ""), "fp16[1,1,3,3]"),
        // pads are ignored unless pad_type is custom
        (("fp16[1,1,6,6]", "fp16[1,1,3,3]", cp(&[1, 1], &[1, 1], &[5, 5, 5, 5], "valid", 1), ""), "fp16[1,1,4,4]"),
        // with a bias
        (("fp16[1,8,6,6]", "fp16[16,8,3,3]", d(), "fp16[16]"), "fp16[1,16,4,4]"),
        // unknown spatial extent and batch
        (("fp16[?,8,?,6]", "fp16[16,8,3,3]", d(), ""), "fp16[?,16,?,4]"),
        (("fp16[8,32]", "fp16[16,8]", d(), ""), "!x"),
        (("fp16[1,8,32,32]", "fp32[16,8,3,3]", d(), ""), "!weight"),
        (("fp16[1,8,32,32]", "fp16[16,8,3]", d(), ""), "!weight"),
        (("fp16[1,8,32,32]", "fp16[16,4,3,3]", d(), ""), "!weight: channels"),
        // 12 channels = 4 per group × 3 groups, but 16 outputs are not divisible by 3.
        (("fp16[1,12,8,8]", "fp16[16,4,3,3]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 3), ""), "!groups"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "valid", 0), ""), "!groups"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[0, 1], &[1, 1], &[0, 0, 0, 0], "valid", 1), ""), "!strides"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1], &[1, 1], &[0, 0, 0, 0], "valid", 1), ""), "!strides"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[1, 0], &[0, 0, 0, 0], "valid", 1), ""), "!dilations"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[1, 1], &[0, 0], "custom", 1), ""), "!pad"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[1, 1], &[0, -1, 0, 0], "custom", 1), ""), "!pad"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[1, 1], &[0, 0, 0, 0], "reflect", 1), ""), "!pad_type"),
        // The kernel is larger than the input.
        (("fp16[1,8,2,2]", "fp16[16,8,3,3]", d(), ""), "!weight"),
        // Dilation 16 makes the effective kernel 33 > 32.
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1, 1], &[16, 1], &[0, 0, 0, 0], "valid", 1), ""), "!weight"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", d(), "fp16[8]"), "!bias"),
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", d(), "fp32[16]"), "!bias"),
        // Parameters out of the int32 range are refused by name, not by a panic.
        (("fp16[1,8,32,32]", "fp16[16,8,3,3]", cp(&[1 << 40, 1], &[1, 1], &[0, 0, 0, 0], "valid", 1), ""), "!strides"),
    ];
    for (c, want) in &rows {
        let (x, w, bias) = (r.input(c.0), r.input(c.1), r.opt(c.3));
        r.check("conv", c, want, |b| b.conv(&x, &w, &c.2, bias.as_ref()));
    }
    r.raw("conv", &[(&[("x", input("fp16[1,8,32,32]"))], "!weight")]);
    r.done();
}

// ---------------------------------------------------------------- select, quantization

#[test]
fn select() {
    let mut r = Run::new();
    // (cond, a, b)
    let rows = [
        (("bool[2,1]", "fp16[2,3]", "fp16[3]"), "fp16[2,3]"),
        // a,b → [2,3], then with cond [4,1,1] → [4,2,3]
        (("bool[4,1,1]", "fp16[1,3]", "fp16[2,1]"), "fp16[4,2,3]"),
        (("bool", "fp16[3]", "fp16[3]"), "fp16[3]"),
        (("fp16[2,1]", "fp16[2,3]", "fp16[3]"), "!cond"),
        (("bool[2,1]", "fp16[2,3]", "fp32[3]"), "!b"),
        (("bool[2,1]", "fp16[2,3]", "fp16[4,3]"), "!b"),
        (("bool[5]", "fp16[2,3]", "fp16[3]"), "!cond"),
    ];
    for (c @ (cond, a, b), want) in rows {
        let (cond, a, bv) = (r.input(cond), r.input(a), r.input(b));
        r.check("select", c, want, |b| b.select(&cond, &a, &bv));
    }
    r.done();
}

#[test]
fn quantize() {
    let mut r = Run::new();
    let s = r.b.scalar(Fp16, 0.125);
    let z8 = r.b.constant(Literal::new(ty("uint8"), Lit::Int(128)));
    let si = r.b.int(2);
    let sv = Literal::floats(Fp16, &[3], &[0.5, 0.25, 0.125]);
    let svv = r.b.constant(sv.clone());
    // (input, scale, zero point, output dtype)
    let rows = [
        (("fp16[2,3]", &s, None, Int8), "int8[2,3]"),
        (("fp16[2,3]", &s, Some(&z8), Uint8), "uint8[2,3]"),
        (("fp16[2,3]", &si, None, Int8), "!scale"),
        (("fp16[2,3]", &s, Some(&z8), Int8), "!zero_point"),
        (("int32[2,3]", &s, None, Int8), "!input"),
        // A vector scale needs an axis.
        (("fp16[2,3]", &svv, None, Int8), "!scale"),
        (("fp16[2,3]", &s, None, Fp16), "!output_dtype"),
    ];
    for (c @ (x, scale, zp, d), want) in rows {
        let x = r.input(x);
        r.check("quantize", c, want, |b| b.quantize(&x, scale, zp, d));
    }
    let x = ("input", input("fp16[2,3]"));
    let s = ("scale", A::Const(Literal::scalar_f(Fp16, 0.125)));
    #[rustfmt::skip]
    let raw: Raw = &[
        // Per-axis scale along axis 1.
        (&[("axis", int(1)), x.clone(), ("output_dtype", text("int8")), ("scale", A::Const(sv))], "int8[2,3]"),
        (&[x.clone(), ("output_dtype", text("int4")), s], "!output_dtype"),
    ];
    r.raw("quantize", raw);
    r.done();
}

#[test]
fn dequantize() {
    let mut r = Run::new();
    let (s32, s16, si) = (r.b.scalar(Fp32, 0.5), r.b.scalar(Fp16, 0.5), r.b.int(3));
    let zu = r.b.constant(Literal::new(ty("uint8"), Lit::Int(0)));
    // (input, scale, zero point)
    let rows = [
        (("int8[2,3]", &s32, None), "fp32[2,3]"),
        (("uint8[4]", &s16, None), "fp16[4]"),
        (("fp16[2,3]", &s16, None), "!input"),
        (("int8[2,3]", &si, None), "!scale"),
        (("int8[2,3]", &s16, Some(&zu)), "!zero_point"),
    ];
    for (c @ (q, scale, zp), want) in rows {
        let q = r.input(q);
        r.check("dequantize", c, want, |b| b.dequantize(&q, scale, zp));
    }
    let q = ("input", input("int8[2,3]"));
    let s16 = ("scale", A::Const(Literal::scalar_f(Fp16, 0.5)));
    let z = ("zero_point", A::Const(Literal::ints(Int8, &[0, 1, -1])));
    let raw: Raw = &[
        (&[("axis", int(-1)), q.clone(), s16.clone(), z], "fp16[2,3]"),
        (&[("axis", int(5)), q.clone(), s16.clone()], "!axis"),
    ];
    r.raw("dequantize", raw);
    r.done();
}

#[test]
fn constexpr_affine_dequantize() {
    let mut r = Run::new();
    let pairs = (0..4).map(|i| Lit::List(vec![Lit::Int(i), Lit::Int(-i)]));
    let data = Literal::new(ty("int8[4,2]"), Lit::List(pairs.collect()));
    let scale = Literal::floats(Fp16, &[4], &[0.5, 0.25, 1.0, 2.0]);
    let zp = Literal::ints(Int8, &[0, 0, 1, -1]);
    // Blob data with scalar parameters, as Core ML writes it.
    let blob = Literal::blob(ty("uint8[16,8,1,1]"), "@model_path/weights/w.bin", 64);
    let int = |d, x| Literal::new(ty(d), Lit::Int(x));
    // (quantized data, scale, zero point, axis)
    #[rustfmt::skip]
    let rows = [
        ((&data, &scale, &zp, 0), "fp16[4,2]"),
        ((&blob, &Literal::scalar_f(Fp32, 0.125), &int("uint8", 7), 1), "fp32[16,8,1,1]"),
        // Per-axis scale along the wrong axis.
        ((&data, &Literal::floats(Fp16, &[2], &[1.0, 1.0]), &zp, 0), "!scale"),
        ((&data, &scale, &Literal::new(ty("uint8[4]"), Lit::List(vec![Lit::Int(0); 4])), 0), "!zero_point"),
        ((&data, &scale, &zp, 2), "!axis"),
        ((&Literal::floats(Fp16, &[4], &[1.0; 4]), &scale, &zp, 0), "!quantized_data"),
        // Literal values are checked: 200 does not fit int8.
        ((&Literal::new(ty("int8[1]"), Lit::List(vec![Lit::Int(200)])), &Literal::scalar_f(Fp16, 1.0), &int("int8", 0), 0), "!quantized_data"),
    ];
    for (c @ (data, scale, zp, axis), want) in rows {
        let (data, scale, zp) = (data.clone(), scale.clone(), zp.clone());
        r.check("constexpr_affine_dequantize", c, want, |b| {
            b.constexpr_affine_dequantize(data, scale, zp, axis)
        });
    }
    r.done();
}

// ---------------------------------------------------------------- builder behaviour

/// `name()` names the op's result, not a parameter constant the op method creates first.
#[test]
fn requested_name_goes_to_the_op_result() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", ty("fp16[2,3]"));
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
    assert_eq!(b.relu(&x).expect_err("expected an error").op, "relu");
    let f = b.build(&[&p, &r, &y]);
    let prog = Program::new(vec![f]);
    assert!(validate(&prog).is_empty());
    let text = malus_mil::print(&prog);
    assert!(text.contains("tensor<fp16, [2, 3]> probs = softmax("), "{text}");
}

#[test]
fn unknown_ops_need_result_types() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", ty("fp16[4]"));
    let y = b.op("my_op", &[("x", v(&x))], Some(vec![ty("fp16[8]")])).unwrap();
    assert_eq!(y[0].ty, ty("fp16[8]"));
    let e = b.op("other_op", &[("x", v(&x))], None).unwrap_err();
    assert_eq!((e.op.as_str(), e.arg.as_deref()), ("other_op", None));
    // Zero results would print as text that does not parse (so would an empty split, see `split`).
    let e = b.op("other_op", &[("x", v(&x))], Some(vec![])).unwrap_err();
    assert_eq!(e.op, "other_op");
}
