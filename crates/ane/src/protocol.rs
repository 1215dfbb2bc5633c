//! The Objective-C protocol this crate speaks, as data: every class and selector it uses, with the
//! exact C signature of each message (docs/ane-runtime.md §2).
//!
//! Keeping the signatures in one table means the real backend picks its `objc_msgSend` function
//! type from the table (never from the call site), and tests can compare the table with the facts.

/// An Objective-C class the crate looks up by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassName {
    /// `_ANEInMemoryModelDescriptor`: MIL text + weights → descriptor.
    AneInMemoryModelDescriptor,
    /// `_ANEInMemoryModel`: compile, load, evaluate, unload.
    AneInMemoryModel,
    /// `_ANERequest`: binds surfaces to a program's inputs and outputs.
    AneRequest,
    /// `_ANEIOSurfaceObject`: wraps an `IOSurfaceRef` for a request.
    AneIoSurfaceObject,
    /// `_ANEDeviceInfo`: optional, only used for [`crate::DeviceInfo`].
    AneDeviceInfo,
    /// `NSObject`: `retain`, `release`, `description`.
    NsObject,
    /// `NSData`: MIL text and weight bytes.
    NsData,
    /// `NSString`: dictionary keys, and strings we read back.
    NsString,
    /// `NSNumber`: offsets and indices.
    NsNumber,
    /// `NSDictionary`: weights, options.
    NsDictionary,
    /// `NSArray`: request surfaces and indices.
    NsArray,
}

impl ClassName {
    /// Every class, in the order [`ClassName::index`] numbers them.
    pub const ALL: [ClassName; 11] = [
        ClassName::AneInMemoryModelDescriptor,
        ClassName::AneInMemoryModel,
        ClassName::AneRequest,
        ClassName::AneIoSurfaceObject,
        ClassName::AneDeviceInfo,
        ClassName::NsObject,
        ClassName::NsData,
        ClassName::NsString,
        ClassName::NsNumber,
        ClassName::NsDictionary,
        ClassName::NsArray,
    ];

    /// The runtime name passed to `objc_getClass`.
    pub fn name(self) -> &'static str {
        match self {
            ClassName::AneInMemoryModelDescriptor => "_ANEInMemoryModelDescriptor",
            ClassName::AneInMemoryModel => "_ANEInMemoryModel",
            ClassName::AneRequest => "_ANERequest",
            ClassName::AneIoSurfaceObject => "_ANEIOSurfaceObject",
            ClassName::AneDeviceInfo => "_ANEDeviceInfo",
            ClassName::NsObject => "NSObject",
            ClassName::NsData => "NSData",
            ClassName::NsString => "NSString",
            ClassName::NsNumber => "NSNumber",
            ClassName::NsDictionary => "NSDictionary",
            ClassName::NsArray => "NSArray",
        }
    }

    /// Whether `Ane::open` fails when the class is missing (only `_ANEDeviceInfo` is optional).
    pub fn required(self) -> bool {
        self != ClassName::AneDeviceInfo
    }

    /// Position in [`ClassName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// C type of one message argument (after the implicit `self` and `_cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// An object pointer (`id`, `NSData*`, …), nil allowed.
    Id,
    /// `unsigned int` (QoS).
    U32,
    /// `int` (`numberWithInt:`).
    I32,
    /// `NSUInteger` (lengths, counts).
    Usize,
    /// A non-object pointer: `const void*`, `const char*`, `const id*`, `IOSurfaceRef`.
    Ptr,
    /// `NSError**`.
    ErrOut,
}

/// C type of a message's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    /// An object pointer.
    Id,
    /// `BOOL`.
    Bool,
    /// A non-object pointer (`const char*`).
    Ptr,
    /// `void`.
    Void,
}

/// Who receives a message: the class object itself, or an instance of the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// A class method (`+`).
    Class(ClassName),
    /// An instance method (`-`).
    Instance(ClassName),
}

/// The full C signature of one selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Class or instance method, and of which class.
    pub receiver: Receiver,
    /// Argument types, in order.
    pub args: &'static [ArgKind],
    /// Return type.
    pub ret: RetKind,
}

/// Every selector the crate sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// `+[_ANEInMemoryModelDescriptor modelWithMILText:weights:optionsPlist:]`
    ModelWithMilText,
    /// `+[_ANEInMemoryModel inMemoryModelWithDescriptor:]`
    InMemoryModelWithDescriptor,
    /// `-[_ANEInMemoryModel hexStringIdentifier]`
    HexStringIdentifier,
    /// `-[_ANEInMemoryModel compileWithQoS:options:error:]`
    CompileWithQos,
    /// `-[_ANEInMemoryModel loadWithQoS:options:error:]`
    LoadWithQos,
    /// `-[_ANEInMemoryModel evaluateWithQoS:options:request:error:]`
    EvaluateWithQos,
    /// `-[_ANEInMemoryModel unloadWithQoS:error:]`
    UnloadWithQos,
    /// `+[_ANEIOSurfaceObject objectWithIOSurface:]`
    ObjectWithIoSurface,
    /// `+[_ANERequest requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:]`
    RequestWithInputs,
    /// `+[_ANEDeviceInfo aneSubType]`
    AneSubType,
    /// `+[NSData dataWithBytes:length:]`
    DataWithBytes,
    /// `+[NSString stringWithUTF8String:]`
    StringWithUtf8String,
    /// `+[NSNumber numberWithInt:]` (what the literal `@0` compiles to).
    NumberWithInt,
    /// `+[NSDictionary dictionaryWithObjects:forKeys:count:]`
    DictionaryWithObjects,
    /// `+[NSArray arrayWithObjects:count:]`
    ArrayWithObjects,
    /// `-[NSObject description]`
    Description,
    /// `-[NSString UTF8String]`
    Utf8String,
    /// `-[NSObject retain]`
    Retain,
    /// `-[NSObject release]`
    Release,
}

use ArgKind as A;

impl Selector {
    /// Every selector, in the order [`Selector::index`] numbers them.
    pub const ALL: [Selector; 19] = [
        Selector::ModelWithMilText,
        Selector::InMemoryModelWithDescriptor,
        Selector::HexStringIdentifier,
        Selector::CompileWithQos,
        Selector::LoadWithQos,
        Selector::EvaluateWithQos,
        Selector::UnloadWithQos,
        Selector::ObjectWithIoSurface,
        Selector::RequestWithInputs,
        Selector::AneSubType,
        Selector::DataWithBytes,
        Selector::StringWithUtf8String,
        Selector::NumberWithInt,
        Selector::DictionaryWithObjects,
        Selector::ArrayWithObjects,
        Selector::Description,
        Selector::Utf8String,
        Selector::Retain,
        Selector::Release,
    ];

    /// Position in [`Selector::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The selector string passed to `sel_registerName`.
    pub fn name(self) -> &'static str {
        match self {
            Selector::ModelWithMilText => "modelWithMILText:weights:optionsPlist:",
            Selector::InMemoryModelWithDescriptor => "inMemoryModelWithDescriptor:",
            Selector::HexStringIdentifier => "hexStringIdentifier",
            Selector::CompileWithQos => "compileWithQoS:options:error:",
            Selector::LoadWithQos => "loadWithQoS:options:error:",
            Selector::EvaluateWithQos => "evaluateWithQoS:options:request:error:",
            Selector::UnloadWithQos => "unloadWithQoS:error:",
            Selector::ObjectWithIoSurface => "objectWithIOSurface:",
            Selector::RequestWithInputs => {
                "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"
            }
            Selector::AneSubType => "aneSubType",
            Selector::DataWithBytes => "dataWithBytes:length:",
            Selector::StringWithUtf8String => "stringWithUTF8String:",
            Selector::NumberWithInt => "numberWithInt:",
            Selector::DictionaryWithObjects => "dictionaryWithObjects:forKeys:count:",
            Selector::ArrayWithObjects => "arrayWithObjects:count:",
            Selector::Description => "description",
            Selector::Utf8String => "UTF8String",
            Selector::Retain => "retain",
            Selector::Release => "release",
        }
    }

    /// The exact C signature (docs/ane-runtime.md §2 for the ANE classes, Foundation headers otherwise).
    pub fn signature(self) -> Signature {
        use ClassName as C;
        use Receiver::{Class, Instance};
        let (receiver, args, ret): (Receiver, &'static [ArgKind], RetKind) = match self {
            Selector::ModelWithMilText => (
                Class(C::AneInMemoryModelDescriptor),
                &[A::Id, A::Id, A::Id],
                RetKind::Id,
            ),
            Selector::InMemoryModelWithDescriptor => (Class(C::AneInMemoryModel), &[A::Id], RetKind::Id),
            Selector::HexStringIdentifier => (Instance(C::AneInMemoryModel), &[], RetKind::Id),
            Selector::CompileWithQos | Selector::LoadWithQos => (
                Instance(C::AneInMemoryModel),
                &[A::U32, A::Id, A::ErrOut],
                RetKind::Bool,
            ),
            Selector::EvaluateWithQos => (
                Instance(C::AneInMemoryModel),
                &[A::U32, A::Id, A::Id, A::ErrOut],
                RetKind::Bool,
            ),
            Selector::UnloadWithQos => (Instance(C::AneInMemoryModel), &[A::U32, A::ErrOut], RetKind::Bool),
            Selector::ObjectWithIoSurface => (Class(C::AneIoSurfaceObject), &[A::Ptr], RetKind::Id),
            Selector::RequestWithInputs => (
                Class(C::AneRequest),
                &[A::Id, A::Id, A::Id, A::Id, A::Id, A::Id, A::Id],
                RetKind::Id,
            ),
            Selector::AneSubType => (Class(C::AneDeviceInfo), &[], RetKind::Id),
            Selector::DataWithBytes => (Class(C::NsData), &[A::Ptr, A::Usize], RetKind::Id),
            Selector::StringWithUtf8String => (Class(C::NsString), &[A::Ptr], RetKind::Id),
            Selector::NumberWithInt => (Class(C::NsNumber), &[A::I32], RetKind::Id),
            Selector::DictionaryWithObjects => {
                (Class(C::NsDictionary), &[A::Ptr, A::Ptr, A::Usize], RetKind::Id)
            }
            Selector::ArrayWithObjects => (Class(C::NsArray), &[A::Ptr, A::Usize], RetKind::Id),
            Selector::Description => (Instance(C::NsObject), &[], RetKind::Id),
            Selector::Utf8String => (Instance(C::NsString), &[], RetKind::Ptr),
            Selector::Retain => (Instance(C::NsObject), &[], RetKind::Id),
            Selector::Release => (Instance(C::NsObject), &[], RetKind::Void),
        };
        Signature { receiver, args, ret }
    }
}

/// The distinct C function types `objc_msgSend` is cast to. Each variant is one
/// `extern "C" fn(id, SEL, ...) -> R` type in the real backend; [`Shape::of`] maps a signature
/// to it, and a test checks that every selector in the table has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `id f(id, SEL)`
    RetId,
    /// `const char* f(id, SEL)`
    RetPtr,
    /// `void f(id, SEL)`
    RetVoid,
    /// `id f(id, SEL, id)`
    IdToId,
    /// `id f(id, SEL, id, id, id)`
    Id3ToId,
    /// `id f(id, SEL, id, id, id, id, id, id, id)`
    Id7ToId,
    /// `id f(id, SEL, const void*)`
    PtrToId,
    /// `id f(id, SEL, int)`
    I32ToId,
    /// `id f(id, SEL, const void*, NSUInteger)`
    PtrUsizeToId,
    /// `id f(id, SEL, const void*, const void*, NSUInteger)`
    PtrPtrUsizeToId,
    /// `BOOL f(id, SEL, unsigned int, NSError**)`
    U32ErrToBool,
    /// `BOOL f(id, SEL, unsigned int, id, NSError**)`
    U32IdErrToBool,
    /// `BOOL f(id, SEL, unsigned int, id, id, NSError**)`
    U32IdIdErrToBool,
}

impl Shape {
    /// The function type for a signature, or `None` when the real backend has no such cast.
    pub fn of(sig: &Signature) -> Option<Shape> {
        use ArgKind::*;
        Some(match (sig.ret, sig.args) {
            (RetKind::Id, []) => Shape::RetId,
            (RetKind::Ptr, []) => Shape::RetPtr,
            (RetKind::Void, []) => Shape::RetVoid,
            (RetKind::Id, [Id]) => Shape::IdToId,
            (RetKind::Id, [Id, Id, Id]) => Shape::Id3ToId,
            (RetKind::Id, [Id, Id, Id, Id, Id, Id, Id]) => Shape::Id7ToId,
            (RetKind::Id, [Ptr]) => Shape::PtrToId,
            (RetKind::Id, [I32]) => Shape::I32ToId,
            (RetKind::Id, [Ptr, Usize]) => Shape::PtrUsizeToId,
            (RetKind::Id, [Ptr, Ptr, Usize]) => Shape::PtrPtrUsizeToId,
            (RetKind::Bool, [U32, ErrOut]) => Shape::U32ErrToBool,
            (RetKind::Bool, [U32, Id, ErrOut]) => Shape::U32IdErrToBool,
            (RetKind::Bool, [U32, Id, Id, ErrOut]) => Shape::U32IdIdErrToBool,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_all_tables() {
        for (i, s) in Selector::ALL.iter().enumerate() {
            assert_eq!(s.index(), i, "{s:?}");
        }
        for (i, c) in ClassName::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
    }

    #[test]
    fn every_selector_has_a_msgsend_shape() {
        for s in Selector::ALL {
            assert!(Shape::of(&s.signature()).is_some(), "{s:?} has no cast");
        }
    }

    #[test]
    fn selector_colons_match_argument_count() {
        for s in Selector::ALL {
            assert_eq!(
                s.name().matches(':').count(),
                s.signature().args.len(),
                "{}",
                s.name()
            );
        }
    }

    /// The table against docs/ane-runtime.md §2, row by row.
    #[test]
    fn ane_signatures_match_facts_a2() {
        use ArgKind::*;
        let rows: [(Selector, &str, Receiver, &[ArgKind], RetKind); 10] = [
            (
                Selector::ModelWithMilText,
                "modelWithMILText:weights:optionsPlist:",
                Receiver::Class(ClassName::AneInMemoryModelDescriptor),
                &[Id, Id, Id],
                RetKind::Id,
            ),
            (
                Selector::InMemoryModelWithDescriptor,
                "inMemoryModelWithDescriptor:",
                Receiver::Class(ClassName::AneInMemoryModel),
                &[Id],
                RetKind::Id,
            ),
            (
                Selector::HexStringIdentifier,
                "hexStringIdentifier",
                Receiver::Instance(ClassName::AneInMemoryModel),
                &[],
                RetKind::Id,
            ),
            (
                Selector::CompileWithQos,
                "compileWithQoS:options:error:",
                Receiver::Instance(ClassName::AneInMemoryModel),
                &[U32, Id, ErrOut],
                RetKind::Bool,
            ),
            (
                Selector::LoadWithQos,
                "loadWithQoS:options:error:",
                Receiver::Instance(ClassName::AneInMemoryModel),
                &[U32, Id, ErrOut],
                RetKind::Bool,
            ),
            (
                Selector::EvaluateWithQos,
                "evaluateWithQoS:options:request:error:",
                Receiver::Instance(ClassName::AneInMemoryModel),
                &[U32, Id, Id, ErrOut],
                RetKind::Bool,
            ),
            (
                Selector::UnloadWithQos,
                "unloadWithQoS:error:",
                Receiver::Instance(ClassName::AneInMemoryModel),
                &[U32, ErrOut],
                RetKind::Bool,
            ),
            (
                Selector::ObjectWithIoSurface,
                "objectWithIOSurface:",
                Receiver::Class(ClassName::AneIoSurfaceObject),
                &[Ptr],
                RetKind::Id,
            ),
            (
                Selector::RequestWithInputs,
                "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:",
                Receiver::Class(ClassName::AneRequest),
                &[Id, Id, Id, Id, Id, Id, Id],
                RetKind::Id,
            ),
            (
                Selector::AneSubType,
                "aneSubType",
                Receiver::Class(ClassName::AneDeviceInfo),
                &[],
                RetKind::Id,
            ),
        ];
        for (sel, name, receiver, args, ret) in rows {
            assert_eq!(sel.name(), name);
            let sig = sel.signature();
            assert_eq!(sig.receiver, receiver, "{name}");
            assert_eq!(sig.args, args, "{name}");
            assert_eq!(sig.ret, ret, "{name}");
        }
    }

    #[test]
    fn only_device_info_is_optional() {
        let optional: Vec<_> = ClassName::ALL.iter().filter(|c| !c.required()).collect();
        assert_eq!(optional, [&ClassName::AneDeviceInfo]);
    }
}
