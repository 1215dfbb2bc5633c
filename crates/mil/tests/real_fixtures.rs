//! Every real `model.mil` (written by Apple's compiler, see tests/fixtures/mil-real/README.md)
//! parses, validates where its ops are known, and round-trips through text.

mod common;

use common::{fixture, fixtures};
use malus_mil::{Spelling, parse, print, print_with, validate};

#[test]
fn fixtures_parse_and_validate() {
    for (name, text) in fixtures() {
        let p = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let diags = validate(&p);
        assert!(
            diags.is_empty(),
            "{name}: {}",
            diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn fixtures_round_trip_in_both_spellings() {
    for (name, text) in fixtures() {
        let p = parse(&text).unwrap();
        let printed = print(&p);
        let again =
            parse(&printed).unwrap_or_else(|e| panic!("{name}: reprint does not parse: {e}\n{printed}"));
        assert_eq!(again, p, "{name}: parse(print(p)) != p");
        assert_eq!(print(&again), printed, "{name}: printing is not a fixed point");
        for sp in [Spelling::BareScalars, Spelling::Rank0Tensors] {
            let other = print_with(&p, sp);
            assert_eq!(
                parse(&other).unwrap(),
                p,
                "{name}: {sp:?} spelling does not round-trip"
            );
        }
    }
}

#[test]
fn fixture_details_are_kept() {
    let get = |n: &str| parse(&fixture(n)).unwrap();
    let multi = get("rebecker");
    assert_eq!(multi.version, "1.3");
    assert_eq!(multi.functions.len(), 2);
    assert_eq!(multi.functions[1].name, "second");
    assert!(
        multi.functions[0]
            .attrs
            .iter()
            .any(|(n, _)| n == "FlexibleShapeInformation")
    );
    let vad = get("FluidInference_mobius");
    let lstm = vad.functions[0].body.iter().find(|o| o.op == "lstm").unwrap();
    assert_eq!(lstm.outputs.len(), 3);
    let add = get("apple");
    assert_eq!(add.version, "1.0");
    assert_eq!(add.functions[0].inputs.len(), 2);
    // The rank-0 spelling of the original survives printing.
    assert!(print(&add).contains("name = tensor<string, []>(\"op_3_cast_fp16\")"));
}
