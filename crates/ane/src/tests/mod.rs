//! Runtime tests against the recording fake (docs/ane-runtime.md §2–§5 and §8).

mod failures;
mod io;
mod lifecycle;
mod open;

use std::sync::Arc;
use std::time::Duration;

use crate::fake::{Event, FakeBackend, Value};
use crate::protocol::Selector;
use crate::{Ane, AneConfig, CompileCounter, IoDType, KernelSpec, TensorSpec};

const MIL: &str = "program(1.3)\n{\n    func main<ios18>(...) { ... } -> (y);\n}\n";
const W1: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const W2: &[u8] = &[0xAA; 4];

/// Two inputs declared out of alphabetical order (`b`, `a`), one output, two weight files.
fn spec() -> KernelSpec {
    KernelSpec {
        name: "attn".into(),
        mil_text: MIL.into(),
        weights: vec![
            ("@model_path/weights/w.bin".into(), W1.to_vec()),
            ("@model_path/weights/mask.bin".into(), W2.to_vec()),
        ],
        inputs: vec![
            TensorSpec::new("b", IoDType::Fp16, [1, 4, 1, 8]),
            TensorSpec::new("a", IoDType::Fp16, [1, 2, 1, 8]),
        ],
        outputs: vec![TensorSpec::new("y", IoDType::Fp32, [1, 4, 1, 8])],
    }
}

/// One fp16 input `x` and one fp16 output `y` of 32 elements, no weights.
fn simple_spec() -> KernelSpec {
    KernelSpec {
        name: "copy".into(),
        mil_text: "program(1.3) copy".into(),
        weights: vec![],
        inputs: vec![TensorSpec::new("x", IoDType::Fp16, [1, 4, 1, 8])],
        outputs: vec![TensorSpec::new("y", IoDType::Fp16, [1, 4, 1, 8])],
    }
}

/// Test configuration: own compile counter, short load retry.
fn config() -> AneConfig {
    AneConfig {
        counter: CompileCounter::new(),
        load_retry_delay: Some(Duration::from_millis(1)),
        ..AneConfig::default()
    }
}

fn open(fake: &Arc<FakeBackend>) -> Ane {
    Ane::open_with(fake.clone()).unwrap().with_config(config())
}

/// Sends of one selector: (receiver, args, ret).
fn sends_of(fake: &FakeBackend, sel: Selector) -> Vec<(Value, Vec<Value>, Value)> {
    fake.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Send {
                receiver,
                selector,
                args,
                ret,
            } if selector == sel => Some((receiver, args, ret)),
            _ => None,
        })
        .collect()
}

/// The ANE-class selectors sent, in order (Foundation plumbing filtered out).
fn ane_selectors(fake: &FakeBackend) -> Vec<Selector> {
    use Selector::*;
    fake.selectors()
        .into_iter()
        .filter(|s| {
            matches!(
                s,
                ModelWithMilText
                    | InMemoryModelWithDescriptor
                    | HexStringIdentifier
                    | CompileWithQos
                    | LoadWithQos
                    | EvaluateWithQos
                    | UnloadWithQos
                    | ObjectWithIoSurface
                    | RequestWithInputs
                    | AneSubType
            )
        })
        .collect()
}

fn count(fake: &FakeBackend, sel: Selector) -> usize {
    fake.selectors().iter().filter(|&&s| s == sel).count()
}

/// After everything is dropped: no leaks, no violations.
fn assert_clean(fake: &FakeBackend) {
    assert_eq!(fake.violations(), Vec::<String>::new(), "protocol violations");
    assert_eq!(fake.live_objects(), Vec::<String>::new(), "leaked objects");
    assert_eq!(fake.live_surfaces(), 0, "leaked surfaces");
    let pushes = fake.events().iter().filter(|e| **e == Event::PoolPush).count();
    let pops = fake.events().iter().filter(|e| **e == Event::PoolPop).count();
    assert_eq!(pushes, pops, "unbalanced autorelease pools");
}

fn str_value(s: &str) -> Value {
    Value::Str(s.into())
}

/// The hex identifier the fake handed out (from the recorded return value).
fn hex_of(fake: &FakeBackend) -> String {
    match &sends_of(fake, Selector::HexStringIdentifier)[0].2 {
        Value::Str(s) => s.clone(),
        v => panic!("hexStringIdentifier returned {v:?}"),
    }
}
