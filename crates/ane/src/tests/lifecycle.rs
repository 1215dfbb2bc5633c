//! The happy path, message by message, against docs/ane-runtime.md §2–§5 and §8.

use super::*;
use crate::BindingOrder;
use crate::fake::FakeConfig;
use crate::protocol::Selector::*;

#[test]
fn compile_sends_the_documented_sequence() {
    let fake = FakeBackend::new();
    let ane = open(&fake);
    let k = ane.compile(&spec()).unwrap();
    assert_eq!(
        ane_selectors(&fake),
        [
            ModelWithMilText,
            InMemoryModelWithDescriptor,
            HexStringIdentifier,
            CompileWithQos,
            LoadWithQos,
            ObjectWithIoSurface,
            ObjectWithIoSurface,
            ObjectWithIoSurface,
            RequestWithInputs,
        ]
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    // The temp dir is written after hexStringIdentifier and before compile (docs/ane-runtime.md §3 step 4).
    let evs = fake.events();
    let pos = |pred: &dyn Fn(&Event) -> bool| evs.iter().position(pred).unwrap();
    let tmp = pos(&|e| *e == Event::TemporaryDirectory);
    let hex = pos(&|e| {
        matches!(
            e,
            Event::Send {
                selector: HexStringIdentifier,
                ..
            }
        )
    });
    let compile = pos(&|e| {
        matches!(
            e,
            Event::Send {
                selector: CompileWithQos,
                ..
            }
        )
    });
    assert!(hex < tmp && tmp < compile);
    drop(k);
    assert_clean(&fake);
}

#[test]
fn descriptor_gets_nsdata_mil_weights_dictionary_and_nil_options() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&spec()).unwrap();
    let d = sends_of(&fake, ModelWithMilText);
    assert_eq!(d.len(), 1);
    let (receiver, args, _) = &d[0];
    assert_eq!(*receiver, Value::Class("_ANEInMemoryModelDescriptor"));
    let entry = |key: &str, data: &[u8]| {
        (
            str_value(key),
            Value::Dict(vec![
                (str_value("offset"), Value::Number(0)),
                (str_value("data"), Value::Data(data.to_vec())),
            ]),
        )
    };
    assert_eq!(
        *args,
        vec![
            Value::Data(MIL.as_bytes().to_vec()),
            Value::Dict(vec![
                entry("@model_path/weights/w.bin", W1),
                entry("@model_path/weights/mask.bin", W2),
            ]),
            Value::Nil,
        ]
    );
    // The NSData is built from the UTF-8 bytes, never through an NSString.
    let data_calls = sends_of(&fake, DataWithBytes);
    assert_eq!(data_calls[0].0, Value::Class("NSData"));
    assert_eq!(
        data_calls[0].1,
        vec![Value::Bytes(MIL.as_bytes().to_vec()), Value::Usize(MIL.len())]
    );
    let offset = sends_of(&fake, NumberWithInt);
    assert_eq!(offset[0].1, vec![Value::I32(0)], "offset is @0 (numberWithInt:)");
    let m = sends_of(&fake, InMemoryModelWithDescriptor);
    assert_eq!(m[0].0, Value::Class("_ANEInMemoryModel"));
    assert!(matches!(
        m[0].1[..],
        [Value::Object("_ANEInMemoryModelDescriptor", _)]
    ));
    drop(k);
    assert_clean(&fake);
}

#[test]
fn no_weights_means_an_empty_dictionary_not_nil() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&simple_spec()).unwrap();
    let d = sends_of(&fake, ModelWithMilText);
    assert_eq!(d[0].1[1], Value::Dict(vec![]));
    let dir = fake.temp_root().join(hex_of(&fake));
    assert!(dir.join("weights").is_dir());
    assert_eq!(
        std::fs::read(dir.join("model.mil")).unwrap(),
        b"program(1.3) copy"
    );
    drop(k);
    assert_clean(&fake);
}

#[test]
fn compile_load_and_evaluate_use_qos_and_an_empty_options_dictionary() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    k.run().unwrap();
    let model = |v: &Value| matches!(v, Value::Object("_ANEInMemoryModel", _));
    for sel in [CompileWithQos, LoadWithQos] {
        let s = sends_of(&fake, sel);
        assert_eq!(s.len(), 1);
        assert!(model(&s[0].0));
        assert_eq!(s[0].1, vec![Value::U32(21), Value::Dict(vec![]), Value::ErrOut]);
    }
    let e = sends_of(&fake, EvaluateWithQos);
    assert!(model(&e[0].0));
    assert!(matches!(
        e[0].1[..],
        [Value::U32(21), Value::Dict(ref d), Value::Object("_ANERequest", _), Value::ErrOut] if d.is_empty()
    ));
    fake.clear_events();
    drop(k);
    let u = sends_of(&fake, UnloadWithQos);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].1, vec![Value::U32(21), Value::ErrOut]);
    assert_clean(&fake);
}

#[test]
fn qos_is_configurable_for_every_call() {
    let fake = FakeBackend::new();
    let ane = Ane::open_with(fake.clone())
        .unwrap()
        .with_config(AneConfig { qos: 0, ..config() });
    let mut k = ane.compile(&simple_spec()).unwrap();
    k.run().unwrap();
    drop(k);
    for sel in [CompileWithQos, LoadWithQos, EvaluateWithQos, UnloadWithQos] {
        assert_eq!(sends_of(&fake, sel)[0].1[0], Value::U32(0), "{sel:?}");
    }
}

#[test]
fn surfaces_are_one_per_tensor_zeroed_and_sized_from_the_signature() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&spec()).unwrap();
    let created: Vec<_> = fake.surface_sizes();
    // b: 32 fp16, a: 16 fp16, y: 32 fp32 — spec order, exact sizes.
    assert_eq!(created, [64, 32, 128]);
    for n in 0..3 {
        assert!(
            fake.surface_contents(n).iter().all(|&b| b == 0),
            "surface {n} zeroed"
        );
    }
    drop(k);
    assert_clean(&fake);
}

#[test]
fn request_binds_by_name_with_indices_and_nil_extras() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&spec()).unwrap();
    assert_eq!(k.input_binding(), ["a", "b"]);
    assert_eq!(k.output_binding(), ["y"]);
    // Which wrapper wraps which surface (surfaces are numbered in spec order: b=0, a=1, y=2).
    let wraps: Vec<(usize, Value)> = sends_of(&fake, ObjectWithIoSurface)
        .into_iter()
        .map(|(recv, args, ret)| {
            assert_eq!(recv, Value::Class("_ANEIOSurfaceObject"));
            let [Value::Surface(s)] = args[..] else {
                panic!("{args:?}")
            };
            (s, ret)
        })
        .collect();
    assert_eq!(wraps.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 0, 2]);
    let r = sends_of(&fake, RequestWithInputs);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, Value::Class("_ANERequest"));
    assert_eq!(
        r[0].1,
        vec![
            Value::Array(vec![wraps[0].1.clone(), wraps[1].1.clone()]),
            Value::Array(vec![Value::Number(0), Value::Number(1)]),
            Value::Array(vec![wraps[2].1.clone()]),
            Value::Array(vec![Value::Number(0)]),
            Value::Nil,
            Value::Nil,
            Value::Number(0),
        ]
    );
    drop(k);
    assert_clean(&fake);
}

#[test]
fn declared_binding_order_keeps_the_spec_order() {
    let fake = FakeBackend::new();
    let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
        binding_order: BindingOrder::AsDeclared,
        ..config()
    });
    let k = ane.compile(&spec()).unwrap();
    assert_eq!(k.input_binding(), ["b", "a"]);
    let order: Vec<_> = sends_of(&fake, ObjectWithIoSurface)
        .into_iter()
        .map(|(_, a, _)| a[0].clone())
        .collect();
    assert_eq!(order, [Value::Surface(0), Value::Surface(1), Value::Surface(2)]);
}

#[test]
fn request_is_built_once_and_reused() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    for _ in 0..3 {
        k.run().unwrap();
    }
    assert_eq!(count(&fake, RequestWithInputs), 1);
    assert_eq!(count(&fake, ObjectWithIoSurface), 3);
    let reqs: Vec<_> = sends_of(&fake, EvaluateWithQos)
        .into_iter()
        .map(|(_, a, _)| a[2].clone())
        .collect();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| *r == reqs[0]));
    drop(k);
    assert_clean(&fake);
}

#[test]
fn temp_dir_holds_the_mil_and_weights_and_is_removed_on_drop() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&spec()).unwrap();
    let dir = fake.temp_root().join(hex_of(&fake));
    assert_eq!(k.program_dir(), Some(dir.as_path()));
    assert_eq!(std::fs::read(dir.join("model.mil")).unwrap(), MIL.as_bytes());
    assert_eq!(std::fs::read(dir.join("weights/w.bin")).unwrap(), W1);
    assert_eq!(std::fs::read(dir.join("weights/mask.bin")).unwrap(), W2);
    drop(k);
    assert!(!dir.exists());
}

#[test]
fn identical_programs_share_the_temp_dir_until_the_last_drops() {
    let fake = FakeBackend::new();
    let ane = open(&fake);
    let k1 = ane.compile(&spec()).unwrap();
    let k2 = ane.compile(&spec()).unwrap();
    assert_eq!(k1.program_dir(), k2.program_dir());
    let dir = k1.program_dir().unwrap().to_path_buf();
    drop(k1);
    assert!(dir.join("model.mil").exists());
    drop(k2);
    assert!(!dir.exists());
    assert_eq!(ane.compiles_used(), 2, "both compiles count");
    assert_clean(&fake);
}

#[test]
fn drop_unloads_then_releases_everything() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    k.run().unwrap();
    fake.clear_events();
    drop(k);
    let sels = fake.selectors();
    assert_eq!(sels[0], UnloadWithQos, "unload comes first: {sels:?}");
    assert_eq!(
        sels.iter().filter(|&&s| s == Release).count(),
        6,
        "request, 3 wrappers, options, model"
    );
    let cf: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::CfRelease { .. }))
        .collect();
    assert_eq!(cf.len(), 3);
    assert_clean(&fake);
}

#[test]
fn close_reports_success() {
    let fake = FakeBackend::new();
    let k = open(&fake).compile(&simple_spec()).unwrap();
    k.close().unwrap();
    assert_eq!(count(&fake, UnloadWithQos), 1, "no second unload from Drop");
    assert_clean(&fake);
}

#[test]
fn every_object_is_made_inside_an_autorelease_pool() {
    // The fake reports "autoreleased with no pool in place" as a violation; a full run with
    // device info exercises every path that creates objects.
    let fake = FakeBackend::with_config(FakeConfig {
        ane_subtype: Some("H15G".into()),
        ..FakeConfig::default()
    });
    let ane = open(&fake);
    let mut k = ane.compile(&spec()).unwrap();
    k.run().unwrap();
    let _ = ane.device_info();
    drop(k);
    assert_clean(&fake);
}

#[test]
fn kernel_is_send() {
    fn is_send<T: Send>() {}
    is_send::<crate::AneKernel>();
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Ane>();
}
