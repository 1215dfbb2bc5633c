//! Shared helpers of the tests: the real fixtures, and the generators of the property tests
//! (literal strategies of every dtype and random valid programs built through the builder).
#![allow(dead_code)]

use std::path::PathBuf;

use malus_mil::builder::ConvParams;
use malus_mil::ir::{Function, Named};
use malus_mil::types::{DType, Dim, Type};
use malus_mil::value::{Lit, Literal, Value};
use malus_mil::{FunctionBuilder, Program, Var};
use proptest::prelude::*;

// ---------------------------------------------------------------- real fixtures

/// The real `model.mil` files of tests/fixtures/mil-real (see its README.md): (file name, text),
/// sorted by name.
pub fn fixtures() -> Vec<(String, String)> {
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
    assert_eq!(out.len(), 4, "expected the four shared fixtures");
    out
}

/// The text of the real fixture whose file name starts with `prefix`.
pub fn fixture(prefix: &str) -> String {
    fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no fixture {prefix}*"))
        .1
}

// ---------------------------------------------------------------- literal strategies

/// Floats worth printing in hex: exact powers, fp16 limits, signed zero, subnormals, huge values.
pub fn special_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1e-7),
        Just(65504.0),
        Just(-65504.0),
        Just(-0.0),
        Just(0.0),
        Just(5e-324),
        Just(-5e-324),
        Just(f64::MIN_POSITIVE),
        Just(f64::MIN_POSITIVE / 3.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::EPSILON),
        Just(1.0 / 3.0),
        Just(0.1),
        Just(2f64.powi(-24)),  // smallest fp16 subnormal
        Just(6.103515625e-05), // smallest fp16 normal
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |f| f.is_finite()),
        any::<u16>()
            .prop_map(|b| half::f16::from_bits(b).to_f64())
            .prop_filter("finite", |f| f.is_finite()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(f64::from),
        -1e6f64..1e6,
    ]
}

pub fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("a\"b\\c\nd\te\rf\0g".to_string()),
        Just("\\\"\\\\\"".to_string()),
        Just("// not a comment".to_string()),
        Just("@model_path/weights/weight.bin".to_string()),
        Just("üñí©ødé ✓ 𝄞".to_string()),
        any::<String>(),
        "[ -~]{0,12}",
    ]
}

/// The untyped value of one element of `d`.
pub fn scalar_lit(d: DType) -> BoxedStrategy<Lit> {
    match d {
        DType::Fp16 | DType::Fp32 | DType::Fp64 => prop_oneof![
            4 => special_float().prop_map(Lit::Float),
            1 => (-1000i128..1000).prop_map(Lit::Int),
        ]
        .boxed(),
        DType::Int8 => any::<i8>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Uint8 => any::<u8>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Int16 => any::<i16>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Uint16 => any::<u16>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Int32 => any::<i32>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Uint32 => any::<u32>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Int64 => any::<i64>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Uint64 => any::<u64>().prop_map(|v| Lit::Int(v.into())).boxed(),
        DType::Bool => any::<bool>().prop_map(Lit::Bool).boxed(),
        DType::String => tricky_string().prop_map(Lit::Str).boxed(),
    }
}

/// A tensor literal of `d` with rank 0–3 and extents 0–3, values nested row-major.
pub fn tensor_literal(d: DType) -> impl Strategy<Value = Literal> {
    prop::collection::vec(0usize..4, 0..4).prop_flat_map(move |dims| {
        let n: usize = dims.iter().product();
        prop::collection::vec(scalar_lit(d), n).prop_map(move |vals| {
            fn nest(dims: &[usize], vals: &mut std::vec::IntoIter<Lit>) -> Lit {
                match dims.split_first() {
                    None => vals.next().unwrap(),
                    Some((&n, rest)) => Lit::List((0..n).map(|_| nest(rest, vals)).collect()),
                }
            }
            Literal::new(Type::tensor(d, &dims), nest(&dims, &mut vals.into_iter()))
        })
    })
}

pub fn blob_literal() -> impl Strategy<Value = Literal> {
    (
        prop::sample::select(vec![DType::Fp16, DType::Fp32, DType::Int8, DType::Uint8]),
        prop::collection::vec(1usize..5, 1..4),
        tricky_string(),
        any::<u64>(),
    )
        .prop_map(|(d, dims, path, offset)| Literal::blob(Type::tensor(d, &dims), &path, offset))
}

/// Any literal a `const` may hold: every dtype, tensors and blobs.
pub fn const_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        5 => prop::sample::select(DType::ALL.to_vec()).prop_flat_map(tensor_literal),
        1 => blob_literal(),
    ]
}

/// Attribute literals: tensors plus dicts, tuples and lists (as in FlexibleShapeInformation).
pub fn attr_literal() -> impl Strategy<Value = Literal> {
    let s = Type::scalar(DType::String);
    let shapes = Type::Dict(
        Box::new(s.clone()),
        Box::new(Type::Tensor {
            dtype: DType::Int32,
            shape: vec![Dim::Unknown],
        }),
    );
    prop_oneof![
        const_literal(),
        prop::collection::vec((tricky_string(), tricky_string()), 0..4).prop_map(move |kv| {
            Literal::new(
                Type::Dict(Box::new(s.clone()), Box::new(s.clone())),
                Lit::Dict(kv.into_iter().map(|(k, v)| (Lit::Str(k), Lit::Str(v))).collect()),
            )
        }),
        (tricky_string(), prop::collection::vec(any::<i32>(), 0..4)).prop_map(move |(k, v)| {
            Literal::new(
                Type::Tuple(vec![Type::scalar(DType::String), shapes.clone()]),
                Lit::Tuple(vec![
                    Lit::Str(k.clone()),
                    Lit::Dict(vec![(
                        Lit::Str(k),
                        Lit::List(v.into_iter().map(|x| Lit::Int(x.into())).collect()),
                    )]),
                ]),
            )
        }),
        prop::collection::vec((any::<i32>(), any::<i32>()), 0..3).prop_map(|pairs| {
            Literal::new(
                Type::List(Box::new(Type::tensor(DType::Int32, &[2])), Dim::Unknown),
                Lit::List(
                    pairs
                        .into_iter()
                        .map(|(a, b)| Lit::List(vec![Lit::Int(a.into()), Lit::Int(b.into())]))
                        .collect(),
                ),
            )
        }),
    ]
}

/// Identifiers as the lexer reads them (letters incl. non-ASCII, digits, `_`, `@`, `.`).
pub fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_@é][a-zA-Z0-9_@.é]{0,8}"
}

// ---------------------------------------------------------------- program recipes

#[derive(Clone, Debug)]
pub struct FuncRecipe {
    name: String,
    opset: String,
    seed: u64,
    steps: usize,
    consts: Vec<(Option<String>, Literal)>,
    attrs: Vec<(String, Literal)>,
}

#[derive(Clone, Debug)]
pub struct Recipe {
    version: &'static str,
    attrs: Vec<(String, Literal)>,
    funcs: Vec<FuncRecipe>,
}

pub fn func_recipe() -> impl Strategy<Value = FuncRecipe> {
    (
        ident(),
        prop::sample::select(vec!["ios16", "ios17", "ios18"]),
        any::<u64>(),
        1usize..30,
        prop::collection::vec((prop::option::of(ident()), const_literal()), 0..6),
        prop::collection::vec((ident(), attr_literal()), 0..3),
    )
        .prop_map(|(name, opset, seed, steps, consts, attrs)| FuncRecipe {
            name,
            opset: opset.to_string(),
            seed,
            steps,
            consts,
            attrs,
        })
}

pub fn recipe() -> impl Strategy<Value = Recipe> {
    (
        prop::sample::select(vec!["1.0", "1.3"]),
        prop::collection::vec((ident(), attr_literal()), 0..3),
        prop::collection::vec(func_recipe(), 1..4),
    )
        .prop_map(|(version, attrs, funcs)| Recipe {
            version,
            attrs,
            funcs,
        })
}

/// SplitMix64: the op choices of a function come from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn flip(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    /// A float from a fixed set of interesting values.
    fn float(&mut self) -> f64 {
        *self.pick(&[
            0.5,
            -1.25,
            1e-7,
            65504.0,
            -0.0,
            3.0,
            0.1,
            2f64.powi(-24),
            1.0 / 3.0,
        ])
    }
}

/// Builds one function from a recipe. Every op is chosen to be valid, so an error here is a bug
/// in inference (or in this generator).
pub fn build_function(r: &FuncRecipe) -> Function {
    let mut rng = Rng(r.seed);
    let mut b = FunctionBuilder::new(&r.name, &r.opset);
    let float = if rng.flip() { DType::Fp16 } else { DType::Fp32 };
    let mut n_inputs = 0;
    let mut new_input = |b: &mut FunctionBuilder, ty: Type| {
        n_inputs += 1;
        b.input(&format!("in{n_inputs}"), ty)
    };
    let rank = 1 + rng.below(4);
    let dims: Vec<usize> = (0..rank).map(|_| 1 + rng.below(6)).collect();
    // The pool of float tensors ops work on.
    let mut pool: Vec<Var> = vec![new_input(&mut b, Type::tensor(float, &dims))];
    let mut others: Vec<Var> = Vec::new();
    for (i, (name, lit)) in r.consts.iter().enumerate() {
        if let Some(n) = name {
            b.name(&format!("c{i}_{n}"));
        }
        others.push(b.constant(lit.clone()));
    }
    let consts_of = |rng: &mut Rng, n: usize| -> Vec<f64> { (0..n).map(|_| rng.float()).collect() };
    let mut blob_offset = 64u64;
    for step in 0..r.steps {
        let x = pool[rng.below(pool.len())].clone();
        let s = x.shape();
        let d = x.dtype();
        let rk = s.len();
        let kind = rng.below(21);
        let ctx = format!("step {step} kind {kind} on {:?}", x.ty);
        let ok = |r: Result<Var, malus_mil::InferError>| r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        if rng.below(8) == 0 {
            b.name(&format!("named_{step}"));
        }
        let out: Vec<Var> = match kind {
            0 => {
                type U = fn(&mut FunctionBuilder, &Var) -> Result<Var, malus_mil::InferError>;
                let ops: [U; 9] = [
                    FunctionBuilder::sqrt,
                    FunctionBuilder::rsqrt,
                    FunctionBuilder::exp,
                    FunctionBuilder::log,
                    FunctionBuilder::sigmoid,
                    FunctionBuilder::silu,
                    FunctionBuilder::tanh,
                    FunctionBuilder::relu,
                    FunctionBuilder::identity,
                ];
                vec![ok(rng.pick(&ops)(&mut b, &x))]
            }
            1 => {
                let m = *rng.pick(&["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"]);
                vec![ok(b.gelu(&x, m))]
            }
            2 => {
                // A partner that broadcasts: some extents 1, some leading dims dropped.
                let drop = rng.below(rk + 1);
                let ps: Vec<usize> = s[drop..]
                    .iter()
                    .map(|&e| if rng.flip() { e } else { 1 })
                    .collect();
                let y = if rng.flip() {
                    new_input(&mut b, Type::tensor(d, &ps))
                } else {
                    let n = ps.iter().product();
                    let vals = consts_of(&mut rng, n);
                    b.constant(Literal::floats(d, &ps, &vals))
                };
                let (p, q) = if rng.flip() { (&x, &y) } else { (&y, &x) };
                type B = fn(&mut FunctionBuilder, &Var, &Var) -> Result<Var, malus_mil::InferError>;
                let ops: [B; 7] = [
                    FunctionBuilder::add,
                    FunctionBuilder::sub,
                    FunctionBuilder::mul,
                    FunctionBuilder::real_div,
                    FunctionBuilder::maximum,
                    FunctionBuilder::minimum,
                    FunctionBuilder::pow,
                ];
                vec![ok(rng.pick(&ops)(&mut b, p, q))]
            }
            3 if rk > 0 => {
                let a = rng.below(rk) as i64 - if rng.flip() { rk as i64 } else { 0 };
                vec![ok(b.softmax(&x, a))]
            }
            4 if rk > 0 => {
                let mut axes: Vec<i64> = (0..rk as i64).filter(|_| rng.flip()).collect();
                if axes.is_empty() {
                    axes.push(rng.below(rk) as i64);
                }
                let keep = rng.flip();
                let r = match rng.below(3) {
                    0 => b.reduce_sum(&x, &axes, keep),
                    1 => b.reduce_mean(&x, &axes, keep),
                    _ => b.reduce_max(&x, &axes, keep),
                };
                vec![ok(r)]
            }
            5 if rk > 0 => {
                let n: usize = s.iter().product();
                let divisors: Vec<usize> = (1..=n).filter(|k| n % k == 0).collect();
                let k = *rng.pick(&divisors);
                let target: Vec<i64> = match rng.below(4) {
                    0 => vec![n as i64],
                    1 => vec![k as i64, -1],
                    2 => vec![1, (n / k) as i64, k as i64],
                    _ => {
                        let mut t = vec![0];
                        t.push(-1);
                        t
                    }
                };
                vec![ok(b.reshape(&x, &target))]
            }
            6 if rk > 0 => {
                let mut perm: Vec<i64> = (0..rk as i64).collect();
                for i in (1..rk).rev() {
                    perm.swap(i, rng.below(i + 1));
                }
                vec![ok(b.transpose(&x, &perm))]
            }
            7 if rk > 0 => {
                let axis = rng.below(rk);
                let mut items = vec![x.clone()];
                for _ in 0..1 + rng.below(2) {
                    let mut ps = s.clone();
                    ps[axis] = 1 + rng.below(3);
                    items.push(if rng.flip() {
                        x.clone()
                    } else {
                        new_input(&mut b, Type::tensor(d, &ps))
                    });
                }
                let refs: Vec<&Var> = items.iter().collect();
                vec![ok(b.concat(&refs, axis as i64))]
            }
            8 if rk > 0 && s.iter().any(|&e| e > 1) => {
                let axis = (0..rk).find(|&i| s[i] > 1).unwrap();
                let e = s[axis];
                let parts = if rng.flip() {
                    let divs: Vec<usize> = (2..=e).filter(|k| e % k == 0).collect();
                    b.split(&x, *rng.pick(&divs) as i64, axis as i64)
                } else {
                    let first = 1 + rng.below(e - 1);
                    b.split_sizes(&x, &[first as i64, (e - first) as i64], axis as i64)
                };
                parts.unwrap_or_else(|e| panic!("{ctx}: {e}"))
            }
            9 => {
                let axes: Vec<i64> = if rng.flip() {
                    vec![0]
                } else {
                    vec![0, rk as i64 + 1]
                };
                let e = ok(b.expand_dims(&x, &axes));
                if rng.flip() {
                    vec![e.clone(), ok(b.squeeze(&e, &axes))]
                } else {
                    vec![e]
                }
            }
            10 if rk > 0 => {
                let begin: Vec<i64> = s.iter().map(|&e| rng.below(e) as i64).collect();
                let size: Vec<i64> = s
                    .iter()
                    .zip(&begin)
                    .map(|(&e, &bg)| {
                        if rng.flip() {
                            -1
                        } else {
                            1 + rng.below(e - bg as usize) as i64
                        }
                    })
                    .collect();
                vec![ok(b.slice_by_size(&x, &begin, &size))]
            }
            11 if rk > 0 => {
                let mut begin = Vec::new();
                let mut end = Vec::new();
                let mut stride = Vec::new();
                let mut squeeze = Vec::new();
                for &e in &s {
                    let e = e as i64;
                    let lo = rng.below(e as usize) as i64;
                    let hi = lo + 1 + rng.below((e - lo) as usize) as i64; // lo < hi ≤ e
                    let st = 1 + rng.below(3) as i64;
                    if rng.flip() {
                        // Forward, written with negative indices half of the time.
                        begin.push(if rng.flip() { lo - e } else { lo });
                        end.push(hi);
                        stride.push(st);
                        squeeze.push(false);
                    } else if hi - lo == 1 && rng.flip() {
                        begin.push(lo);
                        end.push(hi);
                        stride.push(1);
                        squeeze.push(true);
                    } else {
                        // Backwards from hi-1 down to lo (exclusive of lo-1).
                        begin.push(hi - 1);
                        end.push(lo - 1 - e); // negative: counts from the end
                        stride.push(-st);
                        squeeze.push(false);
                    }
                }
                // `lo - 1 - e` is -1 - e + lo: for lo = 0 that is -(e+1), clamped to "before 0".
                let sq = squeeze.iter().any(|&q| q).then_some(squeeze.as_slice());
                vec![ok(b.slice_by_index(
                    &x,
                    &begin,
                    &end,
                    Some(&stride),
                    None,
                    None,
                    sq,
                ))]
            }
            12 if rk > 0 => {
                let k = s[rk - 1];
                let nn = 1 + rng.below(5);
                let ty = rng.flip();
                let yshape = if rng.flip() && rk >= 2 {
                    // Batched, with broadcast batch dims.
                    let mut y: Vec<usize> = s[..rk - 2]
                        .iter()
                        .map(|&e| if rng.flip() { e } else { 1 })
                        .collect();
                    y.extend(if ty { [nn, k] } else { [k, nn] });
                    y
                } else if rng.flip() {
                    vec![k]
                } else if ty {
                    vec![nn, k]
                } else {
                    vec![k, nn]
                };
                let yv = new_input(&mut b, Type::tensor(d, &yshape));
                vec![ok(b.matmul(&x, &yv, false, ty && yshape.len() > 1))]
            }
            13 if rk == 3 || rk == 4 => {
                let cin = s[1];
                let groups = if cin % 2 == 0 && rng.flip() { 2 } else { 1 };
                let cout = groups * (1 + rng.below(3));
                let nsp = rk - 2;
                let kernel: Vec<usize> = s[2..].iter().map(|&e| 1 + rng.below(e)).collect();
                let mut w = vec![cout, cin / groups];
                w.extend(&kernel);
                let wv = if rng.flip() {
                    let v = b.blob(Type::tensor(d, &w), "@model_path/weights/weight.bin", blob_offset);
                    blob_offset +=
                        64 + (w.iter().product::<usize>() * d.size_bytes()).div_ceil(64) as u64 * 64;
                    ok(v)
                } else {
                    let n = w.iter().product();
                    let vals = consts_of(&mut rng, n);
                    b.constant(Literal::floats(d, &w, &vals))
                };
                let pad_type = *rng.pick(&["valid", "same", "same_lower", "custom"]);
                let params = ConvParams {
                    strides: Some((0..nsp).map(|_| 1 + rng.below(3) as i64).collect()),
                    dilations: Some(vec![1; nsp]),
                    pad: Some((0..2 * nsp).map(|_| rng.below(3) as i64).collect()),
                    pad_type: pad_type.into(),
                    groups: groups as i64,
                };
                let bias = if rng.flip() {
                    let vals = consts_of(&mut rng, cout);
                    Some(b.constant(Literal::floats(d, &[cout], &vals)))
                } else {
                    None
                };
                vec![ok(b.conv(&x, &wv, &params, bias.as_ref()))]
            }
            14 if rk > 0 => {
                let k = 1 + rng.below(rk);
                let axes: Vec<i64> = (rk - k..rk).map(|a| a as i64).collect();
                let ns = &s[rk - k..];
                let n = ns.iter().product();
                let g = rng.flip().then(|| {
                    let v = consts_of(&mut rng, n);
                    b.constant(Literal::floats(d, ns, &v))
                });
                let be = rng.flip().then(|| new_input(&mut b, Type::tensor(d, ns)));
                vec![ok(b.layer_norm(
                    &x,
                    &axes,
                    g.as_ref(),
                    be.as_ref(),
                    rng.float().abs(),
                ))]
            }
            15 if rk > 0 => {
                let k = s[rk - 1];
                let o = 1 + rng.below(4);
                let wv = {
                    let v = consts_of(&mut rng, o * k);
                    b.constant(Literal::floats(d, &[o, k], &v))
                };
                let bias = rng.flip().then(|| new_input(&mut b, Type::tensor(d, &[o])));
                vec![ok(b.linear(&x, &wv, bias.as_ref()))]
            }
            16 => {
                let cs: Vec<usize> = s.iter().map(|&e| if rng.flip() { e } else { 1 }).collect();
                let cond = new_input(&mut b, Type::tensor(DType::Bool, &cs));
                let other = b.scalar(d, rng.float());
                let (p, q) = if rng.flip() { (&x, &other) } else { (&other, &x) };
                vec![ok(b.select(&cond, p, q))]
            }
            17 => {
                let c = ok(b.cast(
                    &x,
                    if d == DType::Fp16 {
                        DType::Fp32
                    } else {
                        DType::Fp16
                    },
                ));
                let i = ok(b.cast(&c, DType::Int32));
                others.push(i.clone());
                vec![c, ok(b.cast(&i, d))]
            }
            18 => {
                let od = if rng.flip() { DType::Int8 } else { DType::Uint8 };
                let scale = b.scalar(d, 0.125);
                let zp = rng
                    .flip()
                    .then(|| b.constant(Literal::new(Type::scalar(od), Lit::Int(rng.below(100) as i128))));
                let q = ok(b.quantize(&x, &scale, zp.as_ref(), od));
                others.push(q.clone());
                vec![ok(b.dequantize(&q, &scale, zp.as_ref()))]
            }
            19 => {
                let qd = if rng.flip() { DType::Int8 } else { DType::Uint8 };
                let dims: Vec<usize> = (0..1 + rng.below(3)).map(|_| 1 + rng.below(4)).collect();
                let data = if rng.flip() {
                    Literal::blob(
                        Type::tensor(qd, &dims),
                        "@model_path/weights/q.bin",
                        64 * (step as u64 + 1),
                    )
                } else {
                    let n: usize = dims.iter().product();
                    Literal::ints(qd, &(0..n).map(|i| (i % 100) as i64).collect::<Vec<_>>())
                };
                let data_dims = data.ty.known_shape().unwrap();
                let axis = rng.below(data_dims.len());
                let scale = if rng.flip() {
                    Literal::scalar_f(d, 0.5)
                } else {
                    let v = consts_of(&mut rng, data_dims[axis]);
                    Literal::floats(d, &[data_dims[axis]], &v)
                };
                let zp = Literal::new(Type::scalar(qd), Lit::Int(3));
                vec![ok(b.constexpr_affine_dequantize(data, scale, zp, axis as i32))]
            }
            _ => {
                // A constant of any dtype from the recipe's pool, or a fresh float one.
                if let Some((_, lit)) = r.consts.get(rng.below(r.consts.len() + 1)) {
                    others.push(b.constant(lit.clone()));
                }
                vec![]
            }
        };
        // Results that are float tensors join the pool.
        for v in out {
            if v.ty.dtype().is_some_and(|d| d.is_float())
                && v.ty.known_shape().is_some_and(|s| s.iter().all(|&e| e > 0))
            {
                pool.push(v);
            } else {
                others.push(v);
            }
        }
    }
    // Return a non-empty subset: the last result always, others at random.
    let mut outs: Vec<Var> = pool
        .iter()
        .chain(&others)
        .filter(|_| rng.below(4) == 0)
        .cloned()
        .collect();
    let last = pool.last().unwrap().clone();
    if !outs.contains(&last) {
        outs.push(last);
    }
    // A returned name once only.
    let mut seen = std::collections::HashSet::new();
    outs.retain(|v| seen.insert(v.name.clone()));
    let refs: Vec<&Var> = outs.iter().collect();
    let mut f = b.build(&refs);
    let mut seen = std::collections::HashSet::new();
    f.attrs = r
        .attrs
        .iter()
        .filter(|(n, _)| seen.insert(n.clone()))
        .map(|(n, l)| (n.clone(), Value::Literal(l.clone())))
        .collect();
    f
}

pub fn build_program(r: &Recipe) -> Program {
    let mut funcs: Vec<Function> = Vec::new();
    for (i, fr) in r.funcs.iter().enumerate() {
        let mut f = build_function(fr);
        // Function names must be unique.
        if funcs.iter().any(|g| g.name == f.name) {
            f.name = format!("{}_{i}", f.name);
        }
        funcs.push(f);
    }
    let mut p = Program::new(funcs);
    p.version = r.version.to_string();
    let mut attrs: Vec<Named> = r
        .attrs
        .iter()
        .map(|(n, l)| (n.clone(), Value::Literal(l.clone())))
        .collect();
    attrs.retain(|(n, _)| n != "buildInfo");
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    attrs.dedup_by(|a, b| a.0 == b.0);
    p.attrs.extend(attrs);
    p
}
