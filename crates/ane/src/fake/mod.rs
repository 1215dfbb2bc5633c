//! A recording fake of the Objective-C runtime, Foundation, IOSurface and the ANE classes, for
//! testing everything above [`Backend`] on any OS (enabled in this crate's tests and by the
//! `fake` feature for other crates' tests).
//!
//! Beyond recording, it models what would crash or misbehave on a Mac and reports it as a
//! *violation*: reference counts and autorelease pools (a message to a deallocated object, an
//! autorelease with no pool in place, a leak), the model state machine (load before compile,
//! evaluate before load, release while loaded), a compile whose temp directory is not populated,
//! and a surface locked during evaluate.

use std::collections::HashMap;
use std::ffi::{CStr, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Arg, Backend, Id, Ret, SurfaceRef};
use crate::protocol::{ClassName, Selector};

mod world;

use world::{FakeSurface, Kind, Obj, SURFACE_TAG, State, bytes_of, ids, surface_index};

/// A decoded message argument, receiver or object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// nil.
    Nil,
    /// A class object.
    Class(&'static str),
    /// An NSData.
    Data(Vec<u8>),
    /// An NSString.
    Str(String),
    /// An NSNumber.
    Number(i64),
    /// An NSDictionary, entries in construction order.
    Dict(Vec<(Value, Value)>),
    /// An NSArray.
    Array(Vec<Value>),
    /// Any other object: its kind and table id.
    Object(&'static str, usize),
    /// A raw byte buffer argument (`dataWithBytes:`).
    Bytes(Vec<u8>),
    /// A C string argument.
    CStr(String),
    /// A C array of objects argument.
    Objects(Vec<Value>),
    /// An `IOSurfaceRef` argument (surface number).
    Surface(usize),
    /// `unsigned int`.
    U32(u32),
    /// `int`.
    I32(i32),
    /// `NSUInteger`.
    Usize(usize),
    /// A `BOOL` result.
    Bool(bool),
    /// An `NSError**` slot.
    ErrOut,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `objc_msgSend`.
    Send {
        /// Decoded receiver.
        receiver: Value,
        /// Selector.
        selector: Selector,
        /// Decoded arguments.
        args: Vec<Value>,
        /// Decoded return value (`Bool`, an object, a C string, or `Nil`).
        ret: Value,
    },
    /// `objc_autoreleasePoolPush`.
    PoolPush,
    /// `objc_autoreleasePoolPop`.
    PoolPop,
    /// `NSTemporaryDirectory()`.
    TemporaryDirectory,
    /// `IOSurfaceCreate`.
    SurfaceCreate {
        /// Bytes asked for.
        bytes: usize,
        /// Surface number given (`None` if configured to fail).
        surface: Option<usize>,
    },
    /// `IOSurfaceLock`.
    Lock {
        /// Surface number.
        surface: usize,
        /// Options.
        options: u32,
    },
    /// `IOSurfaceUnlock`.
    Unlock {
        /// Surface number.
        surface: usize,
        /// Options.
        options: u32,
    },
    /// `CFRelease` of a surface.
    CfRelease {
        /// Surface number.
        surface: usize,
    },
}

/// Computes output surfaces from input surfaces (both in request order, full allocations).
pub type EvalFn = Arc<dyn Fn(&[Vec<u8>]) -> Vec<Vec<u8>> + Send + Sync>;

/// The program being evaluated, as its descriptor carried it: the MIL text and the weight
/// files (`@model_path/…` key, bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeModel {
    /// The MIL text.
    pub mil: String,
    /// Weight files: `@model_path/…` key and contents.
    pub weights: Vec<(String, Vec<u8>)>,
}

/// Like [`EvalFn`], also given the program: lets a test compute what the ANE would (e.g. with
/// a CPU executor of the same MIL), so code above the runtime runs end to end on any OS.
pub type ModelEvalFn = Arc<dyn Fn(&FakeModel, &[Vec<u8>]) -> Vec<Vec<u8>> + Send + Sync>;

/// How the fake behaves.
#[derive(Clone, Default)]
pub struct FakeConfig {
    /// Classes `objc_getClass` does not find.
    pub missing_classes: Vec<ClassName>,
    /// Selectors the classes do not implement.
    pub missing_selectors: Vec<Selector>,
    /// Selector → (calls that succeed first, calls that then fail, NSError description). A
    /// failing object-returning selector returns nil; a failing BOOL selector returns NO and sets
    /// the error if given.
    pub failures: HashMap<Selector, (usize, usize, Option<String>)>,
    /// `IOSurfaceCreate` returns NULL once this many surfaces exist (`Some(0)`: always).
    pub surface_create_fails_after: Option<usize>,
    /// `IOSurfaceLock` returns this `kern_return_t` when non-zero.
    pub lock_error: i32,
    /// `NSTemporaryDirectory()` returns nil.
    pub temporary_directory_nil: bool,
    /// `aneSubType`'s description (`None` → nil).
    pub ane_subtype: Option<String>,
    /// What evaluate does to the surfaces (nothing if `None`).
    pub on_evaluate: Option<EvalFn>,
    /// What evaluate does, knowing the program; takes precedence over `on_evaluate`.
    pub on_evaluate_model: Option<ModelEvalFn>,
}

/// The fake backend. Cheap to create; each instance has its own temp root, removed on drop.
pub struct FakeBackend {
    state: Mutex<State>,
    root: PathBuf,
}

impl FakeBackend {
    /// A fake where everything succeeds, the sub-type is `"H16G"` and evaluate does nothing.
    pub fn new() -> Arc<FakeBackend> {
        FakeBackend::with_config(FakeConfig {
            ane_subtype: Some("H16G".into()),
            ..FakeConfig::default()
        })
    }

    /// A fake with the given behaviour.
    pub fn with_config(cfg: FakeConfig) -> Arc<FakeBackend> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("malus-ane-fake-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&root);
        let mut st = State {
            cfg,
            objs: Vec::new(),
            surfaces: Vec::new(),
            pools: Vec::new(),
            next_pool: 1,
            events: Vec::new(),
            violations: Vec::new(),
        };
        for c in ClassName::ALL {
            st.objs.push(Obj {
                kind: Kind::Class(c),
                refs: 1,
                pool: None,
                alive: true,
            });
        }
        Arc::new(FakeBackend {
            state: Mutex::new(st),
            root,
        })
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the behaviour from now on.
    pub fn configure(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.st().cfg)
    }

    /// Makes the next `times` calls of `selector` fail (nil / NO + NSError `error`).
    pub fn fail(&self, selector: Selector, times: usize, error: Option<&str>) {
        self.fail_after(selector, 0, times, error)
    }

    /// Lets `after` calls of `selector` succeed, then makes `times` calls fail.
    pub fn fail_after(&self, selector: Selector, after: usize, times: usize, error: Option<&str>) {
        let entry = (after, times, error.map(str::to_string));
        self.configure(|c| {
            c.failures.insert(selector, entry);
        })
    }

    /// The directory `NSTemporaryDirectory()` returns.
    pub fn temp_root(&self) -> &Path {
        &self.root
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.st().events.clone()
    }

    /// Forgets the recorded events.
    pub fn clear_events(&self) {
        self.st().events.clear()
    }

    /// The sizes of the surfaces created, in order.
    pub fn surface_sizes(&self) -> Vec<usize> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::SurfaceCreate { bytes, .. } => Some(bytes),
                _ => None,
            })
            .collect()
    }

    /// The messages sent, in order: (receiver, selector, arguments).
    pub fn sends(&self) -> Vec<(Value, Selector, Vec<Value>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Send {
                    receiver,
                    selector,
                    args,
                    ..
                } => Some((receiver, selector, args)),
                _ => None,
            })
            .collect()
    }

    /// Just the selectors sent, in order.
    pub fn selectors(&self) -> Vec<Selector> {
        self.sends().into_iter().map(|(_, s, _)| s).collect()
    }

    /// Protocol violations seen (empty when the runtime behaved).
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }

    /// Objects (other than classes) still alive: leaks once every kernel is dropped.
    pub fn live_objects(&self) -> Vec<String> {
        let st = self.st();
        st.objs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.alive && !matches!(o.kind, Kind::Class(_)))
            .map(|(i, o)| format!("#{i} {} refs {}", o.kind.name(), o.refs))
            .collect()
    }

    /// Surfaces not yet released.
    pub fn live_surfaces(&self) -> usize {
        self.st().surfaces.iter().filter(|s| s.refs > 0).count()
    }

    /// The bytes of surface `n` (in creation order).
    pub fn surface_contents(&self, n: usize) -> Vec<u8> {
        let st = self.st();
        let s = &st.surfaces[n];
        bytes_of(&s.mem)[..s.alloc].to_vec()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// SAFETY: surface memory is a boxed `[u64]` (8-aligned, `alloc` ≤ its size) that is never freed
// or moved before the fake drops; UTF8String pointers point into `CString`s that are never freed
// before the fake drops; `send` reads pointer arguments only within the lengths given.
unsafe impl Backend for FakeBackend {
    fn class(&self, name: ClassName) -> Id {
        let st = self.st();
        if st.cfg.missing_classes.contains(&name) {
            return Id::NIL;
        }
        State::id_of(name.index())
    }

    fn has_method(&self, _class: Id, selector: Selector) -> bool {
        !self.st().cfg.missing_selectors.contains(&selector)
    }

    unsafe fn send(&self, receiver: Id, sel: Selector, args: &[Arg]) -> Ret {
        let mut st = self.st();
        let recv_value = st.decode(receiver);
        let Some(r) = st.get(receiver, sel.name()) else {
            return Ret::failure(sel.signature().ret);
        };
        let mut decoded = Vec::new();
        let mut err_slot = None;
        for a in args {
            decoded.push(match *a {
                Arg::Id(id) => st.decode(id),
                Arg::U32(v) => Value::U32(v),
                Arg::I32(v) => Value::I32(v),
                Arg::Usize(v) => Value::Usize(v),
                Arg::ErrOut(p) => {
                    err_slot = Some(p);
                    Value::ErrOut
                }
                Arg::Ptr(p) => match (sel, args) {
                    (Selector::DataWithBytes, [_, Arg::Usize(n)]) if *n > 0 => {
                        // SAFETY: `dataWithBytes:length:` contract: `n` readable bytes.
                        Value::Bytes(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), *n) }.to_vec())
                    }
                    (Selector::DataWithBytes, _) => Value::Bytes(Vec::new()),
                    (Selector::StringWithUtf8String, _) => {
                        // SAFETY: `stringWithUTF8String:` contract: a NUL-terminated string.
                        Value::CStr(unsafe { CStr::from_ptr(p.cast()) }.to_string_lossy().into_owned())
                    }
                    (Selector::DictionaryWithObjects, [.., Arg::Usize(n)])
                    | (Selector::ArrayWithObjects, [_, Arg::Usize(n)]) => {
                        // SAFETY: collection constructor contract: `n` readable objects.
                        let v = unsafe { ids(p, *n) };
                        Value::Objects(v.into_iter().map(|x| st.decode(x)).collect())
                    }
                    (Selector::ObjectWithIoSurface, _) => {
                        Value::Surface(surface_index(p).unwrap_or(usize::MAX))
                    }
                    _ => Value::Nil,
                },
            });
        }
        let ret = st.respond(&self.root, receiver, r, sel, args, decoded.clone(), err_slot);
        let ret_value = match ret {
            Ret::Id(id) => st.decode(id),
            Ret::Bool(b) => Value::Bool(b),
            Ret::Ptr(p) if !p.is_null() => {
                // SAFETY: the fake's own UTF8String results point into live `CString`s.
                let c = unsafe { CStr::from_ptr(p.cast()) };
                Value::CStr(c.to_string_lossy().into_owned())
            }
            Ret::Ptr(_) | Ret::Void => Value::Nil,
        };
        st.events.push(Event::Send {
            receiver: recv_value,
            selector: sel,
            args: decoded,
            ret: ret_value,
        });
        ret
    }

    fn pool_push(&self) -> *mut c_void {
        let mut st = self.st();
        let t = st.next_pool;
        st.next_pool += 1;
        st.pools.push(t);
        st.events.push(Event::PoolPush);
        t as *mut c_void
    }

    unsafe fn pool_pop(&self, token: *mut c_void) {
        let mut st = self.st();
        st.events.push(Event::PoolPop);
        let t = token as usize;
        if st.pools.last() != Some(&t) {
            st.violation(format!("pool {t} popped out of order"));
        }
        st.pools.retain(|&p| p != t);
        for i in 0..st.objs.len() {
            if st.objs[i].pool == Some(t) {
                st.objs[i].pool = None;
                st.maybe_dealloc(i);
            }
        }
    }

    fn temporary_directory(&self) -> Id {
        let mut st = self.st();
        st.events.push(Event::TemporaryDirectory);
        if st.cfg.temporary_directory_nil {
            return Id::NIL;
        }
        st.string(&self.root.to_string_lossy())
    }

    fn surface_create(&self, bytes: usize) -> SurfaceRef {
        let mut st = self.st();
        let exhausted = st
            .cfg
            .surface_create_fails_after
            .is_some_and(|n| st.surfaces.len() >= n);
        if exhausted || bytes == 0 {
            st.events.push(Event::SurfaceCreate { bytes, surface: None });
            return SurfaceRef(std::ptr::null_mut());
        }
        // Like IOSurface, round the allocation up (here to 16 bytes) so callers must not
        // confuse the allocation with the tensor size.
        let alloc = bytes.div_ceil(16) * 16;
        st.surfaces.push(FakeSurface {
            mem: vec![0xA5A5_A5A5_A5A5_A5A5u64; alloc / 8].into_boxed_slice(),
            alloc,
            refs: 1,
            locked: None,
        });
        let n = st.surfaces.len() - 1;
        st.events.push(Event::SurfaceCreate {
            bytes,
            surface: Some(n),
        });
        SurfaceRef((SURFACE_TAG + n * 16) as *mut c_void)
    }

    unsafe fn surface_lock(&self, surface: SurfaceRef, options: u32) -> i32 {
        let mut st = self.st();
        let Some(n) = surface_index(surface.0).filter(|&n| n < st.surfaces.len()) else {
            st.violation("lock of an unknown surface".into());
            return 1;
        };
        st.events.push(Event::Lock { surface: n, options });
        if st.cfg.lock_error != 0 {
            return st.cfg.lock_error;
        }
        if st.surfaces[n].refs <= 0 || st.surfaces[n].locked.is_some() {
            st.violation(format!("surface {n}: lock while released or already locked"));
        }
        st.surfaces[n].locked = Some(options);
        0
    }

    unsafe fn surface_unlock(&self, surface: SurfaceRef, options: u32) -> i32 {
        let mut st = self.st();
        let Some(n) = surface_index(surface.0).filter(|&n| n < st.surfaces.len()) else {
            st.violation("unlock of an unknown surface".into());
            return 1;
        };
        st.events.push(Event::Unlock { surface: n, options });
        if st.surfaces[n].locked != Some(options) {
            st.violation(format!("surface {n}: unlock({options}) does not match its lock"));
        }
        st.surfaces[n].locked = None;
        0
    }

    unsafe fn surface_base(&self, surface: SurfaceRef) -> *mut u8 {
        let mut st = self.st();
        match surface_index(surface.0).filter(|&n| n < st.surfaces.len()) {
            Some(n) => {
                if st.surfaces[n].locked.is_none() {
                    st.violation(format!("surface {n}: base address used while unlocked"));
                }
                st.surfaces[n].mem.as_mut_ptr().cast()
            }
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn surface_alloc_size(&self, surface: SurfaceRef) -> usize {
        let st = self.st();
        surface_index(surface.0)
            .and_then(|n| st.surfaces.get(n))
            .map_or(0, |s| s.alloc)
    }

    unsafe fn cf_release(&self, surface: SurfaceRef) {
        let mut st = self.st();
        let Some(n) = surface_index(surface.0).filter(|&n| n < st.surfaces.len()) else {
            st.violation("CFRelease of an unknown surface".into());
            return;
        };
        st.events.push(Event::CfRelease { surface: n });
        st.surfaces[n].refs -= 1;
        if st.surfaces[n].refs < 0 {
            st.violation(format!("surface {n} over-released"));
        }
    }
}
