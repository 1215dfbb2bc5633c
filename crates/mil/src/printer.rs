//! Deterministic MIL text output in either spelling of scalars.
//!
//! Layout follows Apple's compiler output (4-space functions, 12-space ops), floats are printed as
//! C99 hex floats (exact, and the form `coremlc` itself writes), so `parse(print(p)) == p`.

use std::fmt::Write;

use crate::ir::{Function, Named, Operation, Program};
use crate::types::Type;
use crate::value::{Lit, Literal, Value};

/// How scalars are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `int32(1)`, `string("x")` — `program(1.3)` and later.
    BareScalars,
    /// `tensor<int32, []>(1)` — `program(1.0)`, which older chips (M1/M2) are reported to need.
    Rank0Tensors,
}

impl Spelling {
    /// The spelling a program version uses: rank-0 tensors for `1.0`, bare scalars otherwise.
    pub fn for_version(version: &str) -> Spelling {
        if version == "1.0" || version == "1" {
            Spelling::Rank0Tensors
        } else {
            Spelling::BareScalars
        }
    }
}

/// Prints a program in the spelling of its version.
pub fn print(p: &Program) -> String {
    print_with(p, Spelling::for_version(&p.version))
}

/// Prints a program in the given spelling.
pub fn print_with(p: &Program, sp: Spelling) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "program({})", p.version);
    if !p.attrs.is_empty() {
        let _ = writeln!(s, "{}", attr_block(&p.attrs, sp));
    }
    s.push_str("{\n");
    for f in &p.functions {
        function(&mut s, f, sp);
    }
    s.push_str("}\n");
    s
}

fn function(s: &mut String, f: &Function, sp: Spelling) {
    let params: Vec<String> = f
        .inputs
        .iter()
        .map(|(n, t)| format!("{} {n}", type_str(t, sp)))
        .collect();
    let _ = write!(s, "    func {}<{}>({})", f.name, f.opset, params.join(", "));
    if !f.attrs.is_empty() {
        let _ = write!(s, " {}", attr_block(&f.attrs, sp));
    }
    s.push_str(" {\n");
    for op in &f.body {
        let _ = writeln!(s, "            {}", operation(op, sp));
    }
    let _ = writeln!(s, "        }} -> ({});", f.outputs.join(", "));
}

/// One operation statement without indentation, e.g. for diagnostics.
pub fn operation(op: &Operation, sp: Spelling) -> String {
    let outs: Vec<String> = op
        .outputs
        .iter()
        .map(|(n, t)| format!("{} {n}", type_str(t, sp)))
        .collect();
    let mut s = format!("{} = {}({})", outs.join(", "), op.op, named(&op.inputs, sp));
    if !op.attrs.is_empty() {
        s.push_str(&attr_block(&op.attrs, sp));
    }
    s.push(';');
    s
}

fn attr_block(attrs: &[Named], sp: Spelling) -> String {
    format!("[{}]", named(attrs, sp))
}

fn named(items: &[Named], sp: Spelling) -> String {
    items
        .iter()
        .map(|(n, v)| format!("{n} = {}", value_str(v, sp)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A type in the given spelling.
pub fn type_str(t: &Type, sp: Spelling) -> String {
    match t {
        Type::Tensor { dtype, shape } if shape.is_empty() && sp == Spelling::BareScalars => {
            dtype.name().to_string()
        }
        Type::Tensor { dtype, shape } => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("tensor<{dtype}, [{}]>", dims.join(", "))
        }
        Type::Tuple(items) => {
            let inner: Vec<String> = items.iter().map(|t| type_str(t, sp)).collect();
            format!("tuple<{}>", inner.join(", "))
        }
        Type::Dict(k, v) => format!("dict<{}, {}>", type_str(k, sp), type_str(v, sp)),
        Type::List(e, n) => format!("list<{}, {n}>", type_str(e, sp)),
    }
}

/// A value in the given spelling.
pub fn value_str(v: &Value, sp: Spelling) -> String {
    match v {
        Value::Var(n) => n.clone(),
        Value::Literal(l) => literal_str(l, sp),
        Value::Tuple(items) => {
            let inner: Vec<String> = items.iter().map(|v| value_str(v, sp)).collect();
            format!("({})", inner.join(", "))
        }
    }
}

/// A typed literal, e.g. `tensor<int32, [2]>([1, 2])`.
pub fn literal_str(l: &Literal, sp: Spelling) -> String {
    format!("{}({})", type_str(&l.ty, sp), lit_str(&l.lit, sp))
}

fn lit_str(l: &Lit, sp: Spelling) -> String {
    match l {
        Lit::Int(i) => i.to_string(),
        Lit::Float(f) => hex_float(*f),
        Lit::Bool(b) => b.to_string(),
        Lit::Str(s) => quote(s),
        Lit::List(items) => format!("[{}]", join_lits(items, sp)),
        Lit::Tuple(items) => format!("({})", join_lits(items, sp)),
        Lit::Dict(entries) => {
            let e: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{{{}, {}}}", lit_str(k, sp), lit_str(v, sp)))
                .collect();
            format!("{{{}}}", e.join(", "))
        }
        Lit::Blob { path, offset } => format!(
            "BLOBFILE(path = {}, offset = {})",
            literal_str(&Literal::string(path), sp),
            literal_str(
                &Literal::new(
                    Type::scalar(crate::types::DType::Uint64),
                    Lit::Int(*offset as i128)
                ),
                sp
            )
        ),
    }
}

fn join_lits(items: &[Lit], sp: Spelling) -> String {
    items
        .iter()
        .map(|l| lit_str(l, sp))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// C99 `%a`-style hex float: `0x1.8p+1`, `-0x1p-3`, `0x0p+0`; `inf`, `-inf`, `nan`.
pub fn hex_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let bits = v.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let mant = bits & ((1u64 << 52) - 1);
    let (lead, exp) = match (exp_bits, mant) {
        (0, 0) => return format!("{sign}0x0p+0"),
        (0, _) => (0, -1022),
        _ => (1, exp_bits - 1023),
    };
    let mut frac = format!("{mant:013x}");
    while frac.ends_with('0') {
        frac.pop();
    }
    let dot = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    let esign = if exp >= 0 { "+" } else { "-" };
    format!("{sign}0x{lead}{dot}p{esign}{}", exp.abs())
}
