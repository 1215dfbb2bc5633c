//! Property tests of the text form: random valid programs built with the builder (random chains of
//! ops on random shapes, constants of every dtype, blob constants, multi-output split, tuples,
//! several functions, program and function attributes) print to text that parses back to the same
//! program in both spellings, printing is a fixed point, and the programs validate. Hex floats
//! round-trip exactly for every finite f64.

mod common;

use common::*;
use malus_mil::parser::parse_number;
use malus_mil::printer::hex_float;
use malus_mil::types::{DType, Type};
use malus_mil::value::{Lit, Literal};
use malus_mil::{FunctionBuilder, Program, Spelling, parse, print, print_with, validate};
use proptest::prelude::*;

/// The round-trip properties of one program.
fn check_round_trip(p: &Program) -> Result<(), TestCaseError> {
    let d = validate(p);
    prop_assert!(d.is_empty(), "{:?}\n{}", d, print(p));
    let text = print(p);
    let q = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(&q, p);
    prop_assert_eq!(print(&q), text.clone(), "print is not a fixed point");
    let texts: Vec<String> = [Spelling::BareScalars, Spelling::Rank0Tensors]
        .into_iter()
        .map(|sp| print_with(p, sp))
        .collect();
    for (sp, t) in [Spelling::BareScalars, Spelling::Rank0Tensors]
        .into_iter()
        .zip(&texts)
    {
        let q = parse(t).map_err(|e| TestCaseError::fail(format!("{sp:?}: {e}\n{t}")))?;
        prop_assert_eq!(&q, p, "{:?}", sp);
        prop_assert_eq!(&print_with(&q, sp), t);
        // The other spelling of the reparsed program is the other spelling of the original.
        for (sp2, t2) in [Spelling::BareScalars, Spelling::Rank0Tensors]
            .into_iter()
            .zip(&texts)
        {
            prop_assert_eq!(&print_with(&q, sp2), t2);
        }
        prop_assert!(validate(&q).is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_round_trip(r in recipe()) {
        let p = build_program(&r);
        check_round_trip(&p)?;
    }

    /// Every finite f64 survives hex printing exactly, bit for bit (sign of zero included).
    #[test]
    fn hex_float_round_trips(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        let s = hex_float(x);
        match parse_number(&s) {
            Some(Lit::Float(y)) => prop_assert_eq!(y.to_bits(), x.to_bits(), "{} → {}", x, s),
            other => prop_assert!(false, "{} printed as {} parses to {:?}", x, s, other),
        }
        // The C99 shape: [-]0x<h>[.<hex>]p<sign><dec>.
        let body = s.strip_prefix('-').unwrap_or(&s);
        prop_assert!(body.starts_with("0x0") || body.starts_with("0x1"), "{}", s);
        let (mant, exp) = body[2..].split_once('p').unwrap();
        prop_assert!(exp.starts_with('+') || exp.starts_with('-'));
        prop_assert!(exp[1..].bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(
            mant == "0" || mant == "1" || (mant.len() > 2 && mant[1..].starts_with('.') && !mant.ends_with('0')),
            "{}",
            s
        );
    }

    #[test]
    fn hex_float_round_trips_nice_values(x in special_float()) {
        prop_assume!(x.is_finite()); // `inf` is a word of the literal grammar, not a number
        let s = hex_float(x);
        match parse_number(&s) {
            Some(Lit::Float(y)) => prop_assert_eq!(y.to_bits(), x.to_bits(), "{} → {}", x, s),
            other => prop_assert!(false, "{} printed as {} parses to {:?}", x, s, other),
        }
    }

    /// Rust's shortest decimal form of any finite f64 parses back to the same value.
    #[test]
    fn decimal_floats_parse_exactly(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        for s in [format!("{x:e}"), format!("{x:?}")] {
            match parse_number(&s) {
                Some(Lit::Float(y)) => prop_assert_eq!(y.to_bits(), x.to_bits(), "{}", s),
                other => prop_assert!(false, "{} parses to {:?}", s, other),
            }
        }
    }

    #[test]
    fn integers_parse_exactly(i in any::<i64>(), u in any::<u64>(), w in (i128::MIN + 1)..=i128::MAX) {
        prop_assert_eq!(parse_number(&i.to_string()), Some(Lit::Int(i.into())));
        prop_assert_eq!(parse_number(&u.to_string()), Some(Lit::Int(u.into())));
        prop_assert_eq!(parse_number(&w.to_string()), Some(Lit::Int(w)));
        prop_assert_eq!(parse_number(&format!("{:#x}", u)), Some(Lit::Int(u.into())));
    }

    /// Any string survives quoting.
    #[test]
    fn strings_round_trip(s in tricky_string()) {
        let p = {
            let mut b = FunctionBuilder::new("main", "ios18");
            b.name("s");
            let v = b.string(&s);
            Program::new(vec![b.build(&[&v])])
        };
        check_round_trip(&p)?;
        let q = parse(&print(&p)).unwrap();
        prop_assert_eq!(q.functions[0].body[0].const_value().unwrap().as_str(), Some(s.as_str()));
    }
}

/// The generator reaches every op with an inference rule, and programs of some size.
#[test]
fn generator_covers_every_op() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    let mut ops = 0;
    let mut functions = 0;
    for _ in 0..300 {
        let r = recipe().new_tree(&mut runner).unwrap().current();
        let p = build_program(&r);
        functions += p.functions.len();
        for f in &p.functions {
            ops += f.body.len();
            seen.extend(f.body.iter().map(|o| o.op.clone()));
        }
    }
    let missing: Vec<&str> = malus_mil::infer::OPS
        .iter()
        .map(|s| s.name)
        .filter(|n| !seen.contains(*n))
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    assert!(
        functions > 450 && ops > 20 * functions,
        "{functions} functions, {ops} ops"
    );
}

/// Infinities are literal words, in both spellings.
#[test]
fn infinities_round_trip() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let i = b.constant(Literal::floats(
        DType::Fp32,
        &[3],
        &[f64::INFINITY, f64::NEG_INFINITY, -0.0],
    ));
    let p = Program::new(vec![b.build(&[&i])]);
    check_round_trip(&p).unwrap();
    let text = print(&p);
    assert!(text.contains("([inf, -inf, -0x0p+0])"), "{text}");
    let q = parse(&text).unwrap();
    let vals = q.functions[0].body[0].const_value().unwrap().to_f64s().unwrap();
    assert_eq!(vals[2].to_bits(), (-0.0f64).to_bits());
}

#[test]
fn hex_float_examples() {
    for (x, s) in [
        (0.0, "0x0p+0"),
        (-0.0, "-0x0p+0"),
        (1.0, "0x1p+0"),
        (3.0, "0x1.8p+1"),
        (-0.125, "-0x1p-3"),
        (65504.0, "0x1.ffcp+15"),
        (5e-324, "0x0.0000000000001p-1022"),
        (f64::MAX, "0x1.fffffffffffffp+1023"),
        (f64::MIN_POSITIVE, "0x1p-1022"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        assert_eq!(hex_float(x), s);
    }
    assert_eq!(hex_float(f64::NAN), "nan");
    // What coremlc writes, read exactly.
    assert_eq!(
        parse_number("0x1.010102p-8"),
        Some(Lit::Float(f64::from_bits(0x3F70_1010_2000_0000)))
    );
    assert_eq!(
        parse_number("0x1.f0a3d8p-1"),
        Some(Lit::Float(0.970_000_028_610_229_5))
    );
    assert_eq!(parse_number("0X1P-3"), Some(Lit::Float(0.125)));
    assert_eq!(parse_number("0x.8p1"), Some(Lit::Float(1.0)));
    assert_eq!(parse_number("0x10"), Some(Lit::Int(16)));
    assert_eq!(parse_number("-0x10"), Some(Lit::Int(-16)));
    // Malformed.
    for s in [
        "", "-", "0x", "0xp1", "1.2.3", "--1", "+-1", "0x-1", "0x+1", "-0x-1", "1e", "0x1p", "0x1pz", "abc",
    ] {
        assert_eq!(parse_number(s), None, "{s:?}");
    }
}

/// A blob constant's offset may be any u64 (bug: offsets ≥ 2^63 used to fail to parse back).
#[test]
fn blob_offsets_of_full_u64_range_round_trip() {
    for off in [0, 64, i64::MAX as u64, 1 << 63, u64::MAX] {
        let mut b = FunctionBuilder::new("main", "ios18");
        let w = b
            .blob(
                Type::tensor(DType::Fp16, &[2, 2]),
                "@model_path/weights/w.bin",
                off,
            )
            .unwrap();
        let p = Program::new(vec![b.build(&[&w])]);
        for sp in [Spelling::BareScalars, Spelling::Rank0Tensors] {
            let q = parse(&print_with(&p, sp)).unwrap_or_else(|e| panic!("offset {off}: {e}"));
            assert_eq!(q, p);
        }
    }
}
