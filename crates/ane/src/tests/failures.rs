//! Every NO / nil / NSError becomes the right Rust error, with the kernel name and description,
//! and everything created before the failure is undone.

use super::*;
use crate::Error;
use crate::protocol::Selector::*;

/// Compiles `spec()` with one selector failing once; returns the error.
fn compile_failing(sel: Selector, error: Option<&str>) -> (Arc<FakeBackend>, Ane, Error) {
    let fake = FakeBackend::new();
    fake.fail(sel, 1, error);
    let ane = open(&fake);
    let err = match ane.compile(&spec()) {
        Err(e) => e,
        Ok(_) => panic!("compile succeeded despite {sel:?} failing"),
    };
    (fake, ane, err)
}

fn no_dirs_left(fake: &FakeBackend) {
    let left: Vec<_> = std::fs::read_dir(fake.temp_root()).unwrap().collect();
    assert!(left.is_empty(), "temp dirs left: {left:?}");
}

#[test]
fn nil_descriptor_is_a_descriptor_error_before_any_compile() {
    let (fake, ane, err) = compile_failing(ModelWithMilText, None);
    assert!(
        matches!(&err, Error::Descriptor { kernel } if kernel == "attn"),
        "{err}"
    );
    assert_eq!(count(&fake, CompileWithQos), 0);
    assert_eq!(ane.compiles_used(), 0, "no compiler call, no budget used");
    no_dirs_left(&fake);
    assert_clean(&fake);
}

#[test]
fn nil_model_is_a_model_error() {
    let (fake, _, err) = compile_failing(InMemoryModelWithDescriptor, None);
    let Error::Model { kernel, detail } = &err else {
        panic!("{err}")
    };
    assert_eq!(kernel, "attn");
    assert!(detail.contains("inMemoryModelWithDescriptor:"), "{detail}");
    assert_clean(&fake);
}

#[test]
fn nil_hex_identifier_is_a_model_error() {
    let (fake, _, err) = compile_failing(HexStringIdentifier, None);
    assert!(
        matches!(&err, Error::Model { detail, .. } if detail.contains("hexStringIdentifier")),
        "{err}"
    );
    assert_eq!(count(&fake, CompileWithQos), 0);
    assert_clean(&fake);
}

#[test]
fn compile_no_carries_the_nserror_description() {
    let (fake, ane, err) = compile_failing(CompileWithQos, Some("ANECCompile() FAILED: bad op"));
    let Error::Compile { kernel, description } = &err else {
        panic!("{err}")
    };
    assert_eq!(kernel, "attn");
    assert_eq!(description, "ANECCompile() FAILED: bad op");
    assert!(err.to_string().contains("attn") && err.to_string().contains("bad op"));
    assert_eq!(count(&fake, LoadWithQos), 0);
    assert_eq!(count(&fake, UnloadWithQos), 0, "never loaded, never unloaded");
    assert_eq!(ane.compiles_used(), 1, "a failed compile still counts");
    no_dirs_left(&fake);
    assert_clean(&fake);
}

#[test]
fn compile_no_without_nserror_still_fails_with_a_description() {
    let (fake, _, err) = compile_failing(CompileWithQos, None);
    assert!(
        matches!(&err, Error::Compile { description, .. } if description.contains("without an NSError")),
        "{err}"
    );
    assert_clean(&fake);
}

#[test]
fn load_is_retried_once() {
    let fake = FakeBackend::new();
    fake.fail(LoadWithQos, 1, Some("slot busy"));
    let k = open(&fake).compile(&spec()).unwrap();
    assert_eq!(count(&fake, LoadWithQos), 2);
    drop(k);
    assert_clean(&fake);
}

#[test]
fn load_failing_twice_is_a_load_error() {
    let fake = FakeBackend::new();
    fake.fail(LoadWithQos, 2, Some("no ANE slot"));
    let Err(err) = open(&fake).compile(&spec()) else {
        panic!()
    };
    assert!(
        matches!(&err, Error::Load { kernel, description } if kernel == "attn" && description == "no ANE slot"),
        "{err}"
    );
    assert_eq!(count(&fake, UnloadWithQos), 0);
    no_dirs_left(&fake);
    assert_clean(&fake);
}

#[test]
fn load_retry_can_be_disabled() {
    let fake = FakeBackend::new();
    fake.fail(LoadWithQos, 1, Some("busy"));
    let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
        load_retry_delay: None,
        ..config()
    });
    assert!(matches!(ane.compile(&spec()), Err(Error::Load { .. })));
    assert_eq!(count(&fake, LoadWithQos), 1);
}

#[test]
fn nil_request_is_a_request_error_and_unloads() {
    let (fake, _, err) = compile_failing(RequestWithInputs, None);
    assert!(
        matches!(&err, Error::Request { kernel, .. } if kernel == "attn"),
        "{err}"
    );
    assert_eq!(
        count(&fake, UnloadWithQos),
        1,
        "loaded programs are unloaded on failure"
    );
    no_dirs_left(&fake);
    assert_clean(&fake);
}

#[test]
fn nil_surface_wrapper_is_a_surface_error() {
    let (fake, _, err) = compile_failing(ObjectWithIoSurface, None);
    assert!(
        matches!(&err, Error::Surface { name, detail, .. } if name == "a" && detail.contains("objectWithIOSurface")),
        "{err}"
    );
    assert_eq!(count(&fake, UnloadWithQos), 1);
    assert_clean(&fake);
}

#[test]
fn a_later_wrapper_failing_releases_the_earlier_ones() {
    let fake = FakeBackend::new();
    fake.fail_after(ObjectWithIoSurface, 2, 1, None);
    let Err(err) = open(&fake).compile(&spec()) else {
        panic!()
    };
    assert!(
        matches!(&err, Error::Surface { name, .. } if name == "y"),
        "{err}"
    );
    assert_clean(&fake);
}

#[test]
fn a_later_surface_failing_releases_the_earlier_ones() {
    let fake = FakeBackend::new();
    // The first two surfaces (b, a) are created, then `y`'s fails.
    fake.configure(|c| c.surface_create_fails_after = Some(2));
    let Err(err) = open(&fake).compile(&spec()) else {
        panic!()
    };
    assert!(
        matches!(&err, Error::Surface { name, .. } if name == "y"),
        "{err}"
    );
    assert_eq!(count(&fake, UnloadWithQos), 1);
    assert_clean(&fake);
}

#[test]
fn surface_creation_failure_names_the_tensor() {
    let fake = FakeBackend::new();
    fake.configure(|c| c.surface_create_fails_after = Some(0));
    let Err(err) = open(&fake).compile(&spec()) else {
        panic!()
    };
    assert!(
        matches!(&err, Error::Surface { kernel, name, .. } if kernel == "attn" && name == "b"),
        "{err}"
    );
    assert_eq!(count(&fake, UnloadWithQos), 1);
    assert_clean(&fake);
}

#[test]
fn evaluate_no_is_an_error_and_the_kernel_stays_usable() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    fake.fail(
        EvaluateWithQos,
        1,
        Some("ANEProgramProcessRequestDirect() Failed with status=0x1d"),
    );
    let err = k.run().unwrap_err();
    assert!(
        matches!(&err, Error::Evaluate { kernel, description } if kernel == "attn" && description.contains("0x1d")),
        "{err}"
    );
    k.run().unwrap();
    drop(k);
    assert_clean(&fake);
}

#[test]
fn evaluate_no_without_error_is_not_ignored() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&simple_spec()).unwrap();
    fake.fail(EvaluateWithQos, 1, None);
    assert!(matches!(k.run(), Err(Error::Evaluate { .. })));
}

#[test]
fn unload_failure_in_drop_does_not_panic_and_close_reports_it() {
    let fake = FakeBackend::new();
    let ane = open(&fake);
    let k = ane.compile(&simple_spec()).unwrap();
    fake.fail(UnloadWithQos, 1, Some("unload refused"));
    drop(k);
    let k = ane.compile(&simple_spec()).unwrap();
    fake.fail(UnloadWithQos, 1, Some("unload refused"));
    let err = k.close().unwrap_err();
    assert!(
        matches!(&err, Error::Unload { kernel, description } if kernel == "copy" && description == "unload refused"),
        "{err}"
    );
    assert_eq!(fake.live_objects(), Vec::<String>::new());
    assert_eq!(fake.live_surfaces(), 0);
}

#[test]
fn lock_failure_is_a_surface_error() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&simple_spec()).unwrap();
    fake.configure(|c| c.lock_error = 0x2c2);
    let err = k.write_input_f32("x", &[0.0; 32]).unwrap_err();
    assert!(
        matches!(&err, Error::Surface { name, detail, .. } if name == "x" && detail.contains("0x2c2")),
        "{err}"
    );
}

#[test]
fn nil_temporary_directory_falls_back_to_std_temp_dir() {
    let fake = FakeBackend::new();
    fake.configure(|c| c.temporary_directory_nil = true);
    let k = open(&fake).compile(&simple_spec()).unwrap();
    let dir = k.program_dir().unwrap().to_path_buf();
    assert!(dir.starts_with(std::env::temp_dir()));
    assert!(dir.join("model.mil").exists());
    drop(k);
    assert!(!dir.exists());
}

#[test]
fn invalid_spec_fails_before_any_framework_call() {
    let fake = FakeBackend::new();
    let ane = open(&fake);
    fake.clear_events();
    let mut s = spec();
    s.weights[0].0 = "@model_path/../escape.bin".into();
    let err = ane.compile(&s).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { kernel, .. } if kernel == "attn"),
        "{err}"
    );
    assert!(fake.events().is_empty());
}

#[test]
fn budget_exhaustion_stops_before_the_compiler() {
    let fake = FakeBackend::new();
    let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
        compile_budget: 2,
        ..config()
    });
    let k1 = ane.compile(&spec()).unwrap();
    let k2 = ane.compile(&simple_spec()).unwrap();
    assert_eq!((ane.compiles_used(), ane.compiles_left()), (2, 0));
    fake.clear_events();
    let err = ane.compile(&spec()).unwrap_err();
    assert!(
        matches!(err, Error::CompileBudgetExhausted { used: 2, budget: 2 }),
        "{err}"
    );
    assert!(fake.events().is_empty(), "nothing sent: {:?}", fake.events());
    assert_eq!(ane.compiles_used(), 2);
    drop((k1, k2));
    assert_clean(&fake);
}

#[test]
fn budget_is_shared_through_the_counter() {
    let fake = FakeBackend::new();
    let counter = CompileCounter::new();
    let cfg = || AneConfig {
        counter: counter.clone(),
        compile_budget: 1,
        ..config()
    };
    let a = Ane::open_with(fake.clone()).unwrap().with_config(cfg());
    let b = Ane::open_with(fake.clone()).unwrap().with_config(cfg());
    let _k = a.compile(&simple_spec()).unwrap();
    assert!(matches!(
        b.compile(&simple_spec()),
        Err(Error::CompileBudgetExhausted { .. })
    ));
}
