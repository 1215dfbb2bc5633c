//! A checked layer over [`Backend`]: classes resolved and selectors verified once at open, every
//! message's arguments checked against its signature before it is sent, and Foundation object
//! construction inside an autorelease [`Pool`].

use std::ffi::{CStr, CString, c_void};
use std::sync::Arc;

use crate::backend::{Arg, Backend, Id, Ret};
use crate::error::{Error, Result};
use crate::protocol::{ClassName, Receiver, Selector};

/// The Objective-C side of an open device.
pub(crate) struct Runtime {
    backend: Arc<dyn Backend>,
    /// Class pointers by [`ClassName::index`]; nil for a missing optional class.
    classes: [Id; ClassName::ALL.len()],
}

// SAFETY: class pointers are immutable, process-lifetime runtime objects, safe to use from any
// thread; the backend is `Send + Sync`.
unsafe impl Send for Runtime {}
// SAFETY: as above; `Runtime` has no interior mutability.
unsafe impl Sync for Runtime {}

impl Runtime {
    /// Resolves every class and checks every selector. A missing required class or selector is an
    /// error naming it; a missing optional class (or one of its selectors) disables it.
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Result<Runtime> {
        let mut classes = [Id::NIL; ClassName::ALL.len()];
        for c in ClassName::ALL {
            let id = backend.class(c);
            if id.is_nil() && c.required() {
                return Err(Error::MissingClass {
                    class: c.name().into(),
                });
            }
            classes[c.index()] = id;
        }
        for s in Selector::ALL {
            let (c, sign) = match s.signature().receiver {
                Receiver::Class(c) => (c, '+'),
                Receiver::Instance(c) => (c, '-'),
            };
            let class = classes[c.index()];
            if class.is_nil() || backend.has_method(class, s) {
                continue;
            }
            if c.required() {
                return Err(Error::MissingSelector {
                    class: c.name().into(),
                    selector: format!("{sign}{}", s.name()),
                });
            }
            classes[c.index()] = Id::NIL;
        }
        Ok(Runtime { backend, classes })
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The class object (nil only for a missing optional class).
    pub(crate) fn class(&self, c: ClassName) -> Id {
        self.classes[c.index()]
    }

    /// Opens an autorelease pool, popped when the guard drops.
    pub(crate) fn pool(&self) -> Pool<'_> {
        Pool {
            rt: self,
            token: self.backend.pool_push(),
        }
    }

    /// Sends `selector` after checking `args` against its signature. A nil receiver returns the
    /// zero value without a call, as Objective-C messaging of nil does. Mismatched arguments are a
    /// bug in this crate: debug builds panic, release builds return the zero value unsent.
    ///
    /// # Safety
    ///
    /// `receiver` is nil or a live object/class responding to `selector`; pointer arguments are
    /// valid as the selector's contract requires (see [`Backend::send`]).
    pub(crate) unsafe fn send(&self, receiver: Id, selector: Selector, args: &[Arg]) -> Ret {
        let sig = selector.signature();
        let matches = args.len() == sig.args.len() && args.iter().zip(sig.args).all(|(a, k)| a.kind() == *k);
        debug_assert!(matches, "{} sent with {args:?}", selector.name());
        if !matches || receiver.is_nil() {
            return Ret::failure(sig.ret);
        }
        // SAFETY: forwarded caller contract; arguments match the signature.
        let ret = unsafe { self.backend.send(receiver, selector, args) };
        if ret.kind() != sig.ret {
            debug_assert!(false, "{} returned {ret:?}", selector.name());
            return Ret::failure(sig.ret);
        }
        ret
    }

    /// [`Runtime::send`] for selectors that return an object.
    ///
    /// # Safety
    ///
    /// As [`Runtime::send`].
    pub(crate) unsafe fn send_id(&self, receiver: Id, selector: Selector, args: &[Arg]) -> Id {
        // SAFETY: forwarded caller contract.
        match unsafe { self.send(receiver, selector, args) } {
            Ret::Id(id) => id,
            _ => Id::NIL,
        }
    }

    /// Sends one of the `BOOL ...error:(NSError**)` messages and returns the result and the error
    /// object (autoreleased: read it before the pool pops).
    ///
    /// # Safety
    ///
    /// `receiver` and every object argument are live; `args` does not contain the error slot
    /// (it is appended here).
    pub(crate) unsafe fn send_with_error(
        &self,
        receiver: Id,
        selector: Selector,
        args: &[Arg],
    ) -> (bool, Id) {
        let mut err = Id::NIL;
        let mut all = args.to_vec();
        all.push(Arg::ErrOut(&mut err));
        // SAFETY: forwarded caller contract; the error slot is a live local for the whole call.
        let ok = match unsafe { self.send(receiver, selector, &all) } {
            Ret::Bool(b) => b,
            _ => false,
        };
        (ok, err)
    }

    /// `[obj retain]`; returns `obj`.
    pub(crate) fn retain(&self, obj: Id) -> Id {
        // SAFETY: only called on live objects this crate received from the framework.
        unsafe { self.send_id(obj, Selector::Retain, &[]) }
    }

    /// `[obj release]`, balancing one [`Runtime::retain`].
    pub(crate) fn release(&self, obj: Id) {
        // SAFETY: only called once per `retain`, on an object still retained by us.
        let _ = unsafe { self.send(obj, Selector::Release, &[]) };
    }

    /// `+[_ANEDeviceInfo aneSubType]` as a string, if the class exists.
    pub(crate) fn ane_sub_type(&self) -> Option<String> {
        let class = self.class(ClassName::AneDeviceInfo);
        if class.is_nil() {
            return None;
        }
        let pool = self.pool();
        // SAFETY: the class was verified to implement `+aneSubType` at open.
        let obj = unsafe { self.send_id(class, Selector::AneSubType, &[]) };
        pool.describe(obj)
    }
}

/// An autorelease pool; objects made through it live until it drops (unless retained).
pub(crate) struct Pool<'rt> {
    rt: &'rt Runtime,
    token: *mut c_void,
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        // SAFETY: the token came from `pool_push`; guards are scoped values, so pops are LIFO, and
        // `Pool` is !Send (raw pointer field), so it is popped on the thread that pushed it.
        unsafe { self.rt.backend.pool_pop(self.token) }
    }
}

impl Pool<'_> {
    /// `[NSData dataWithBytes:length:]` (copies the bytes).
    pub(crate) fn data(&self, bytes: &[u8]) -> Id {
        let args = [Arg::Ptr(bytes.as_ptr().cast()), Arg::Usize(bytes.len())];
        // SAFETY: `bytes` is readable for `len` bytes during the call; NSData copies them.
        self.id(unsafe {
            self.rt
                .send(self.rt.class(ClassName::NsData), Selector::DataWithBytes, &args)
        })
    }

    /// `[NSString stringWithUTF8String:]`; nil if `s` contains NUL.
    pub(crate) fn string(&self, s: &str) -> Id {
        let Ok(c) = CString::new(s) else {
            return Id::NIL;
        };
        let args = [Arg::Ptr(c.as_ptr().cast())];
        let class = self.rt.class(ClassName::NsString);
        // SAFETY: `c` is NUL-terminated and outlives the call; NSString copies it.
        self.id(unsafe { self.rt.send(class, Selector::StringWithUtf8String, &args) })
    }

    /// `[NSNumber numberWithInt:]` (what `@0` compiles to).
    pub(crate) fn number(&self, v: i32) -> Id {
        // SAFETY: NSNumber is a live class; the argument is a plain int.
        unsafe {
            self.rt.send_id(
                self.rt.class(ClassName::NsNumber),
                Selector::NumberWithInt,
                &[Arg::I32(v)],
            )
        }
    }

    /// `[NSDictionary dictionaryWithObjects:forKeys:count:]`; nil if any key/value is nil or the
    /// lengths differ (the constructor would raise).
    pub(crate) fn dictionary(&self, keys: &[Id], values: &[Id]) -> Id {
        if keys.len() != values.len() || keys.iter().chain(values).any(|o| o.is_nil()) {
            return Id::NIL;
        }
        let args = [
            Arg::Ptr(values.as_ptr().cast()),
            Arg::Ptr(keys.as_ptr().cast()),
            Arg::Usize(keys.len()),
        ];
        let class = self.rt.class(ClassName::NsDictionary);
        // SAFETY: both arrays hold `count` live, non-nil objects (`Id` is a transparent pointer
        // wrapper) and outlive the call; the dictionary retains them.
        self.id(unsafe { self.rt.send(class, Selector::DictionaryWithObjects, &args) })
    }

    /// `[NSArray arrayWithObjects:count:]`; nil if an element is nil.
    pub(crate) fn array(&self, items: &[Id]) -> Id {
        if items.iter().any(|o| o.is_nil()) {
            return Id::NIL;
        }
        let args = [Arg::Ptr(items.as_ptr().cast()), Arg::Usize(items.len())];
        // SAFETY: `items` holds `count` live objects and outlives the call; the array retains them.
        self.id(unsafe {
            self.rt.send(
                self.rt.class(ClassName::NsArray),
                Selector::ArrayWithObjects,
                &args,
            )
        })
    }

    /// The UTF-8 contents of an `NSString` (lossy), or `None` for nil.
    pub(crate) fn to_string(&self, s: Id) -> Option<String> {
        // SAFETY: `s` is nil or a live NSString (verified by the callers' protocol: it came from
        // `hexStringIdentifier`, `description` or `NSTemporaryDirectory`).
        let p = match unsafe { self.rt.send(s, Selector::Utf8String, &[]) } {
            Ret::Ptr(p) if !p.is_null() => p,
            _ => return None,
        };
        // SAFETY: `UTF8String` returns a NUL-terminated buffer valid until this pool pops
        // (Backend contract); it is copied before returning.
        Some(unsafe { CStr::from_ptr(p.cast()) }.to_string_lossy().into_owned())
    }

    /// `[[obj description] UTF8String]`, or `None` for nil.
    pub(crate) fn describe(&self, obj: Id) -> Option<String> {
        // SAFETY: `obj` is nil or a live object; every NSObject answers `description`.
        let d = unsafe { self.rt.send_id(obj, Selector::Description, &[]) };
        self.to_string(d)
    }

    /// The description of an `NSError` from an `error:` slot, for error messages.
    pub(crate) fn error_text(&self, err: Id) -> String {
        self.describe(err)
            .unwrap_or_else(|| "the framework returned NO without an NSError".into())
    }

    fn id(&self, r: Ret) -> Id {
        match r {
            Ret::Id(id) => id,
            _ => Id::NIL,
        }
    }

    /// The runtime this pool belongs to.
    pub(crate) fn rt(&self) -> &Runtime {
        self.rt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeBackend, Value};

    fn runtime() -> (Arc<FakeBackend>, Runtime) {
        let fake = FakeBackend::new();
        let rt = Runtime::new(fake.clone()).unwrap();
        (fake, rt)
    }

    #[test]
    fn nil_receiver_returns_zero_without_sending() {
        let (fake, rt) = runtime();
        // SAFETY: a nil receiver is never dereferenced.
        let r = unsafe { rt.send(Id::NIL, Selector::HexStringIdentifier, &[]) };
        assert_eq!(r, Ret::Id(Id::NIL));
        // SAFETY: as above.
        let (ok, err) =
            unsafe { rt.send_with_error(Id::NIL, Selector::LoadWithQos, &[Arg::U32(1), Arg::Id(Id::NIL)]) };
        assert!(!ok && err.is_nil());
        assert!(fake.events().is_empty());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "numberWithInt: sent with")]
    fn mismatched_arguments_are_caught_before_sending() {
        let (_fake, rt) = runtime();
        let class = rt.class(ClassName::NsNumber);
        // SAFETY: the mismatch is caught before anything is sent.
        let _ = unsafe { rt.send(class, Selector::NumberWithInt, &[Arg::U32(1)]) };
    }

    #[test]
    fn pool_builds_foundation_objects() {
        let (fake, rt) = runtime();
        {
            let pool = rt.pool();
            let k = pool.string("k");
            let v = pool.array(&[pool.number(7), pool.data(b"ab")]);
            let d = pool.dictionary(&[k], &[v]);
            assert!(!d.is_nil());
            assert_eq!(pool.describe(k).as_deref(), Some("k"));
            assert!(pool.string("nul\0inside").is_nil());
            assert!(pool.dictionary(&[k], &[]).is_nil());
            assert!(pool.array(&[Id::NIL]).is_nil());
            assert!(!pool.data(&[]).is_nil());
        }
        let dict = fake
            .sends()
            .into_iter()
            .find(|(_, s, _)| *s == Selector::DictionaryWithObjects)
            .unwrap();
        assert_eq!(
            dict.2,
            vec![
                Value::Objects(vec![Value::Array(vec![
                    Value::Number(7),
                    Value::Data(b"ab".to_vec())
                ])]),
                Value::Objects(vec![Value::Str("k".into())]),
                Value::Usize(1),
            ],
            "objects first, then keys"
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
        assert!(fake.live_objects().is_empty(), "{:?}", fake.live_objects());
    }
}
