//! Opening: missing libraries, classes and selectors; device info.

use super::*;
use crate::fake::FakeConfig;
use crate::protocol::ClassName;
use crate::{ChipFamily, Error, availability};

#[cfg(not(target_os = "macos"))]
#[test]
fn open_is_unavailable_here_and_names_libobjc() {
    let err = match Ane::open() {
        Err(e) => e,
        Ok(_) => panic!("opened an ANE on a non-Apple system"),
    };
    let Error::Unavailable { reason } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("/usr/lib/libobjc.A.dylib"), "{reason}");
    assert!(err.is_unavailable());
    let msg = availability().unwrap_err();
    assert!(msg.contains("unavailable") && msg.contains("libobjc"), "{msg}");
}

#[test]
fn missing_required_class_is_named() {
    let fake = FakeBackend::with_config(FakeConfig {
        missing_classes: vec![ClassName::AneRequest],
        ..FakeConfig::default()
    });
    let err = Ane::open_with(fake).err().unwrap();
    assert!(
        matches!(&err, Error::MissingClass { class } if class == "_ANERequest"),
        "{err}"
    );
    assert!(err.is_unavailable());
}

#[test]
fn missing_selector_is_named_with_its_kind() {
    let fake = FakeBackend::with_config(FakeConfig {
        missing_selectors: vec![Selector::EvaluateWithQos],
        ..FakeConfig::default()
    });
    let err = Ane::open_with(fake).err().unwrap();
    let Error::MissingSelector { class, selector } = &err else {
        panic!("{err}")
    };
    assert_eq!(class, "_ANEInMemoryModel");
    assert_eq!(selector, "-evaluateWithQoS:options:request:error:");
    let fake = FakeBackend::with_config(FakeConfig {
        missing_selectors: vec![Selector::ObjectWithIoSurface],
        ..FakeConfig::default()
    });
    let err = Ane::open_with(fake).err().unwrap();
    assert!(err.to_string().contains("+objectWithIOSurface:"), "{err}");
}

#[test]
fn device_info_reads_the_subtype() {
    let fake = FakeBackend::new();
    let info = open(&fake).device_info();
    assert_eq!(info.subtype.as_deref(), Some("H16G"));
    assert_eq!(info.chip_family, ChipFamily::M4);
    let s = sends_of(&fake, Selector::AneSubType);
    assert_eq!(s[0].0, Value::Class("_ANEDeviceInfo"));
    assert_clean(&fake);
}

#[test]
fn device_info_is_optional() {
    for cfg in [
        FakeConfig {
            missing_classes: vec![ClassName::AneDeviceInfo],
            ..FakeConfig::default()
        },
        FakeConfig {
            missing_selectors: vec![Selector::AneSubType],
            ..FakeConfig::default()
        },
        FakeConfig::default(), // aneSubType returns nil
    ] {
        let fake = FakeBackend::with_config(cfg);
        let info = open(&fake).device_info();
        assert_eq!(info.subtype, None);
        assert_eq!(info.chip_family, ChipFamily::Unknown);
        assert_clean(&fake);
    }
}

#[test]
fn open_checks_every_selector_once_and_sends_nothing() {
    let fake = FakeBackend::new();
    let _ane = open(&fake);
    assert!(fake.events().is_empty());
}
