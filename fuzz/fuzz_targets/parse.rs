//! Arbitrary text through parse → validate → print → parse: never a panic, and every program that
//! parses prints to text that parses back to the same program in both spellings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use malus_mil::ir::Program;
use malus_mil::value::{Lit, Value};
use malus_mil::{Spelling, parse, print, print_with, validate};

fn lit_has_nan(l: &Lit) -> bool {
    match l {
        Lit::Float(f) => f.is_nan(),
        Lit::List(v) | Lit::Tuple(v) => v.iter().any(lit_has_nan),
        Lit::Dict(e) => e.iter().any(|(k, v)| lit_has_nan(k) || lit_has_nan(v)),
        _ => false,
    }
}

fn value_has_nan(v: &Value) -> bool {
    match v {
        Value::Literal(l) => lit_has_nan(&l.lit),
        Value::Tuple(items) => items.iter().any(value_has_nan),
        Value::Var(_) => false,
    }
}

/// NaN is not equal to itself, so programs holding one are compared as text only.
fn has_nan(p: &Program) -> bool {
    let named = |a: &[(String, Value)]| a.iter().any(|(_, v)| value_has_nan(v));
    named(&p.attrs)
        || p.functions.iter().any(|f| {
            named(&f.attrs) || f.body.iter().any(|op| named(&op.inputs) || named(&op.attrs))
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = parse(src) else {
        return;
    };
    let _ = validate(&p);
    let text = print(&p);
    let q = parse(&text).unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
    assert_eq!(print(&q), text, "printing is not a fixed point");
    if !has_nan(&p) {
        assert_eq!(q, p, "parse(print(p)) != p");
    }
    for sp in [Spelling::BareScalars, Spelling::Rank0Tensors] {
        let t = print_with(&p, sp);
        let r = parse(&t).unwrap_or_else(|e| panic!("{sp:?} text does not parse: {e}\n{t}"));
        assert_eq!(print_with(&r, sp), t);
        if !has_nan(&p) {
            assert_eq!(r, p);
        }
        assert_eq!(validate(&r).len(), validate(&p).len());
    }
});
