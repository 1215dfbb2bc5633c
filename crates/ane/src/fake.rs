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
use std::ffi::{CStr, CString, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Arg, Backend, Id, Ret, SurfaceRef};
use crate::protocol::{ClassName, Selector};
use crate::spec::weight_relative_path;

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

/// How the fake behaves.
#[derive(Clone, Default)]
pub struct FakeConfig {
    /// Classes `objc_getClass` does not find.
    pub missing_classes: Vec<ClassName>,
    /// Selectors the classes do not implement.
    pub missing_selectors: Vec<Selector>,
    /// Selector → (how many calls fail, NSError description). A failing object-returning
    /// selector returns nil; a failing BOOL selector returns NO and sets the error if given.
    pub failures: HashMap<Selector, (usize, Option<String>)>,
    /// `IOSurfaceCreate` returns NULL.
    pub surface_create_fails: bool,
    /// `IOSurfaceLock` returns this `kern_return_t` when non-zero.
    pub lock_error: i32,
    /// `NSTemporaryDirectory()` returns nil.
    pub temporary_directory_nil: bool,
    /// `aneSubType`'s description (`None` → nil).
    pub ane_subtype: Option<String>,
    /// What evaluate does to the surfaces (nothing if `None`).
    pub on_evaluate: Option<EvalFn>,
}

#[derive(Debug)]
enum Kind {
    Class(ClassName),
    Data(Vec<u8>),
    Str(CString),
    Number(i64),
    Dict(Vec<(Id, Id)>),
    Array(Vec<Id>),
    Descriptor { mil: Vec<u8>, weights: Id },
    Model { descriptor: Id, hex: String, compiled: bool, loaded: bool },
    SurfaceObject(usize),
    Request { inputs: Id, outputs: Id },
    Error(String),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Class(_) => "Class",
            Kind::Data(_) => "NSData",
            Kind::Str(_) => "NSString",
            Kind::Number(_) => "NSNumber",
            Kind::Dict(_) => "NSDictionary",
            Kind::Array(_) => "NSArray",
            Kind::Descriptor { .. } => "_ANEInMemoryModelDescriptor",
            Kind::Model { .. } => "_ANEInMemoryModel",
            Kind::SurfaceObject(_) => "_ANEIOSurfaceObject",
            Kind::Request { .. } => "_ANERequest",
            Kind::Error(_) => "NSError",
        }
    }

    /// Objects this one retains.
    fn children(&self) -> Vec<Id> {
        match self {
            Kind::Dict(e) => e.iter().flat_map(|(k, v)| [*k, *v]).collect(),
            Kind::Array(a) => a.clone(),
            Kind::Descriptor { weights, .. } => vec![*weights],
            Kind::Model { descriptor, .. } => vec![*descriptor],
            Kind::Request { inputs, outputs } => vec![*inputs, *outputs],
            _ => Vec::new(),
        }
    }
}

struct Obj {
    kind: Kind,
    /// Strong references: ours (retain) plus containers'.
    refs: i64,
    /// Pool token holding the pending autorelease, if any.
    pool: Option<usize>,
    alive: bool,
}

struct FakeSurface {
    mem: Box<[u64]>,
    alloc: usize,
    refs: i64,
    locked: Option<u32>,
}

struct State {
    cfg: FakeConfig,
    objs: Vec<Obj>,
    surfaces: Vec<FakeSurface>,
    pools: Vec<usize>,
    next_pool: usize,
    events: Vec<Event>,
    violations: Vec<String>,
}

/// The fake backend. Cheap to create; each instance has its own temp root, removed on drop.
pub struct FakeBackend {
    state: Mutex<State>,
    root: PathBuf,
}

const SURFACE_TAG: usize = 1 << 40;

fn obj_index(id: Id) -> Option<usize> {
    let v = id.0 as usize;
    (v != 0 && v < SURFACE_TAG && v % 16 == 0).then(|| v / 16 - 1)
}

fn surface_index(s: *const c_void) -> Option<usize> {
    let v = s as usize;
    (v >= SURFACE_TAG).then(|| (v - SURFACE_TAG) / 16)
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in parts {
        for b in p.iter() {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100000001b3);
    }
    h
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
        let root =
            std::env::temp_dir().join(format!("malus-ane-fake-{}-{n}", std::process::id()));
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
        self.configure(|c| {
            c.failures
                .insert(selector, (times, error.map(str::to_string)));
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

    /// The messages sent, in order: (receiver, selector, arguments).
    pub fn sends(&self) -> Vec<(Value, Selector, Vec<Value>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Send {
                    receiver,
                    selector,
                    args,
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

fn bytes_of(mem: &[u64]) -> &[u8] {
    // SAFETY: any u64 buffer is a valid byte buffer of 8× the length (alignment 8 ≥ 1).
    unsafe { std::slice::from_raw_parts(mem.as_ptr().cast(), mem.len() * 8) }
}

fn bytes_of_mut(mem: &mut [u64]) -> &mut [u8] {
    // SAFETY: as `bytes_of`, with exclusive access through `&mut`.
    unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), mem.len() * 8) }
}

impl State {
    fn violation(&mut self, v: String) {
        self.violations.push(v);
    }

    fn id_of(i: usize) -> Id {
        Id(((i + 1) * 16) as *mut c_void)
    }

    /// A new autoreleased object (+0 for the caller, pending in the innermost pool).
    fn new_obj(&mut self, kind: Kind) -> Id {
        for c in kind.children() {
            self.retain(c);
        }
        let pool = self.pools.last().copied();
        if pool.is_none() {
            self.violation(format!("{} autoreleased with no pool in place", kind.name()));
        }
        self.objs.push(Obj {
            kind,
            refs: 0,
            pool,
            alive: true,
        });
        State::id_of(self.objs.len() - 1)
    }

    fn get(&mut self, id: Id, what: &str) -> Option<usize> {
        if id.is_nil() {
            return None;
        }
        match obj_index(id).filter(|&i| i < self.objs.len()) {
            Some(i) if self.objs[i].alive => Some(i),
            Some(i) => {
                let k = self.objs[i].kind.name();
                self.violation(format!("{what}: {k} #{i} used after deallocation"));
                None
            }
            None => {
                self.violation(format!("{what}: {id:?} is not an object"));
                None
            }
        }
    }

    fn retain(&mut self, id: Id) {
        if let Some(i) = self.get(id, "retain") {
            self.objs[i].refs += 1;
        }
    }

    fn release(&mut self, id: Id) {
        let Some(i) = self.get(id, "release") else {
            return;
        };
        self.objs[i].refs -= 1;
        if self.objs[i].refs < 0 {
            self.violation(format!("{} #{i} over-released", self.objs[i].kind.name()));
        }
        self.maybe_dealloc(i);
    }

    fn maybe_dealloc(&mut self, i: usize) {
        let o = &self.objs[i];
        if !o.alive || o.refs > 0 || o.pool.is_some() {
            return;
        }
        self.objs[i].alive = false;
        if let Kind::Model { loaded: true, .. } = self.objs[i].kind {
            self.violation(format!("_ANEInMemoryModel #{i} deallocated while loaded"));
        }
        if let Kind::SurfaceObject(s) = self.objs[i].kind {
            self.surfaces[s].refs -= 1;
        }
        for c in self.objs[i].kind.children() {
            self.release(c);
        }
    }

    fn decode(&mut self, id: Id) -> Value {
        if id.is_nil() {
            return Value::Nil;
        }
        let Some(i) = self.get(id, "decode") else {
            return Value::Object("dead", obj_index(id).unwrap_or(usize::MAX));
        };
        let pairs = match &self.objs[i].kind {
            Kind::Class(c) => return Value::Class(c.name()),
            Kind::Data(d) => return Value::Data(d.clone()),
            Kind::Str(s) => return Value::Str(s.to_string_lossy().into_owned()),
            Kind::Number(n) => return Value::Number(*n),
            Kind::Dict(e) => e.clone(),
            Kind::Array(a) => {
                let a = a.clone();
                return Value::Array(a.into_iter().map(|x| self.decode(x)).collect());
            }
            other => return Value::Object(other.name(), i),
        };
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (self.decode(k), self.decode(v)))
                .collect(),
        )
    }

    fn string(&mut self, s: &str) -> Id {
        self.new_obj(Kind::Str(CString::new(s).unwrap_or_default()))
    }

    /// Consumes one configured failure of `sel`; returns the error description if it fails.
    fn fails(&mut self, sel: Selector) -> Option<Option<String>> {
        let f = self.cfg.failures.get_mut(&sel)?;
        if f.0 == 0 {
            return None;
        }
        f.0 -= 1;
        Some(f.1.clone())
    }

    fn bool_result(&mut self, sel: Selector, err: Option<*mut Id>) -> Ret {
        match self.fails(sel) {
            None => Ret::Bool(true),
            Some(desc) => {
                if let (Some(slot), Some(d)) = (err, desc) {
                    let e = self.new_obj(Kind::Error(d));
                    // SAFETY: the runtime passes a live `Id` slot for every `error:` argument.
                    unsafe { *slot = e };
                }
                Ret::Bool(false)
            }
        }
    }

    fn model_mut(&mut self, i: usize) -> Option<(&mut bool, &mut bool, String)> {
        match &mut self.objs[i].kind {
            Kind::Model {
                hex,
                compiled,
                loaded,
                ..
            } => Some((compiled, loaded, hex.clone())),
            _ => None,
        }
    }

    fn check_program_dir(&mut self, root: &Path, hex: &str, model: usize) {
        let dir = root.join(hex);
        let Kind::Model { descriptor, .. } = self.objs[model].kind else {
            return;
        };
        let Some(d) = self.get(descriptor, "model descriptor") else {
            return;
        };
        let Kind::Descriptor { mil, weights } = &self.objs[d].kind else {
            return;
        };
        let (mil, weights) = (mil.clone(), *weights);
        if std::fs::read(dir.join("model.mil")).ok().as_deref() != Some(&mil[..]) {
            self.violation(format!("model #{model}: compile before {dir:?}/model.mil holds the MIL"));
        }
        if let Value::Dict(entries) = self.decode(weights) {
            for (k, v) in entries {
                let (Value::Str(key), Value::Dict(inner)) = (k, v) else { continue };
                let data = inner.iter().find(|(k, _)| *k == Value::Str("data".into()));
                let file = weight_relative_path(&key).map(|r| dir.join(r));
                let on_disk = file.ok().and_then(|f| std::fs::read(f).ok());
                if data.map(|(_, d)| d.clone()) != on_disk.map(Value::Data) {
                    self.violation(format!("compile before weight file for {key} was written"));
                }
            }
        }
    }

    fn evaluate(&mut self, model: usize, request: Id) {
        if self.surfaces.iter().any(|s| s.locked.is_some()) {
            self.violation("evaluate while a surface is locked".into());
        }
        let Some(r) = self.get(request, "evaluate request") else {
            self.violation(format!("model #{model}: evaluate without a request"));
            return;
        };
        let Kind::Request { inputs, outputs } = self.objs[r].kind else {
            self.violation("evaluate: request argument is not an _ANERequest".into());
            return;
        };
        let surfaces_of = |st: &mut State, arr: Id| -> Vec<usize> {
            let Some(a) = st.get(arr, "request array") else { return vec![] };
            let Kind::Array(items) = &st.objs[a].kind else { return vec![] };
            items
                .clone()
                .into_iter()
                .filter_map(|w| match st.get(w, "wrapper").map(|i| &st.objs[i].kind) {
                    Some(Kind::SurfaceObject(s)) => Some(*s),
                    _ => None,
                })
                .collect()
        };
        let ins = surfaces_of(self, inputs);
        let outs = surfaces_of(self, outputs);
        let Some(f) = self.cfg.on_evaluate.clone() else { return };
        let data: Vec<Vec<u8>> = ins
            .iter()
            .map(|&s| bytes_of(&self.surfaces[s].mem)[..self.surfaces[s].alloc].to_vec())
            .collect();
        for (o, bytes) in outs.iter().zip(f(&data)) {
            let s = &mut self.surfaces[*o];
            let n = bytes.len().min(s.alloc);
            bytes_of_mut(&mut s.mem)[..n].copy_from_slice(&bytes[..n]);
        }
    }
}

/// Reads `n` object pointers.
///
/// # Safety
///
/// `p` points to `n` readable `Id`s.
unsafe fn ids(p: *const c_void, n: usize) -> Vec<Id> {
    if n == 0 {
        return Vec::new();
    }
    // SAFETY: caller contract.
    unsafe { std::slice::from_raw_parts(p.cast::<Id>(), n) }.to_vec()
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
        st.events.push(Event::Send {
            receiver: recv_value,
            selector: sel,
            args: decoded.clone(),
        });
        let fail_nil = sel.signature().ret == crate::protocol::RetKind::Id
            && !matches!(sel, Selector::Retain)
            && st.fails(sel).is_some();
        if fail_nil {
            return Ret::Id(Id::NIL);
        }
        let id_arg = |i: usize| match args.get(i) {
            Some(Arg::Id(x)) => *x,
            _ => Id::NIL,
        };
        match sel {
            Selector::Retain => {
                st.retain(receiver);
                Ret::Id(receiver)
            }
            Selector::Release => {
                st.release(receiver);
                Ret::Void
            }
            Selector::DataWithBytes => {
                let Value::Bytes(b) = decoded.swap_remove(0) else { unreachable!() };
                Ret::Id(st.new_obj(Kind::Data(b)))
            }
            Selector::StringWithUtf8String => {
                let Value::CStr(s) = &decoded[0] else { unreachable!() };
                Ret::Id(st.string(s))
            }
            Selector::NumberWithInt => {
                let Value::I32(v) = decoded[0] else { unreachable!() };
                Ret::Id(st.new_obj(Kind::Number(v.into())))
            }
            Selector::DictionaryWithObjects => {
                let (Arg::Ptr(v), Arg::Ptr(k), Arg::Usize(n)) = (args[0], args[1], args[2]) else {
                    unreachable!()
                };
                // SAFETY: as above: `n` keys and `n` values.
                let (keys, values) = unsafe { (ids(k, n), ids(v, n)) };
                Ret::Id(st.new_obj(Kind::Dict(keys.into_iter().zip(values).collect())))
            }
            Selector::ArrayWithObjects => {
                let (Arg::Ptr(p), Arg::Usize(n)) = (args[0], args[1]) else { unreachable!() };
                // SAFETY: as above.
                let items = unsafe { ids(p, n) };
                Ret::Id(st.new_obj(Kind::Array(items)))
            }
            Selector::Description => {
                let text = match &st.objs[r].kind {
                    Kind::Error(d) => d.clone(),
                    Kind::Str(s) => s.to_string_lossy().into_owned(),
                    k => format!("<{}>", k.name()),
                };
                Ret::Id(st.string(&text))
            }
            Selector::Utf8String => match &st.objs[r].kind {
                Kind::Str(s) => Ret::Ptr(s.as_ptr().cast()),
                _ => {
                    st.violation("UTF8String sent to a non-string".into());
                    Ret::Ptr(std::ptr::null())
                }
            },
            Selector::AneSubType => match st.cfg.ane_subtype.clone() {
                Some(s) => Ret::Id(st.string(&s)),
                None => Ret::Id(Id::NIL),
            },
            Selector::ModelWithMilText => {
                let Value::Data(mil) = &decoded[0] else {
                    st.violation(format!("MIL text passed as {:?}, not NSData", decoded[0]));
                    return Ret::Id(Id::NIL);
                };
                if !matches!(decoded[1], Value::Dict(_)) {
                    st.violation(format!("weights passed as {:?}, not a dictionary", decoded[1]));
                }
                let mil = mil.clone();
                Ret::Id(st.new_obj(Kind::Descriptor { mil, weights: id_arg(1) }))
            }
            Selector::InMemoryModelWithDescriptor => {
                let Some(d) = st.get(id_arg(0), "descriptor") else { return Ret::Id(Id::NIL) };
                let Kind::Descriptor { mil, weights } = &st.objs[d].kind else {
                    return Ret::Id(Id::NIL);
                };
                let (mil, weights) = (mil.clone(), *weights);
                let wv = format!("{:?}", st.decode(weights));
                let hex = format!("{:016X}", fnv(&[&mil, wv.as_bytes()]));
                Ret::Id(st.new_obj(Kind::Model {
                    descriptor: id_arg(0),
                    hex,
                    compiled: false,
                    loaded: false,
                }))
            }
            Selector::HexStringIdentifier => {
                let hex = st.model_mut(r).map(|m| m.2).unwrap_or_default();
                Ret::Id(st.string(&hex))
            }
            Selector::CompileWithQos => {
                let hex = st.model_mut(r).map(|m| m.2).unwrap_or_default();
                st.check_program_dir(&self.root, &hex, r);
                let ret = st.bool_result(sel, err_slot);
                if let (Ret::Bool(true), Some(m)) = (ret, st.model_mut(r)) {
                    *m.0 = true;
                }
                ret
            }
            Selector::LoadWithQos => {
                if !st.model_mut(r).is_some_and(|m| *m.0) {
                    st.violation(format!("model #{r}: load before compile"));
                }
                let ret = st.bool_result(sel, err_slot);
                if let (Ret::Bool(true), Some(m)) = (ret, st.model_mut(r)) {
                    *m.1 = true;
                }
                ret
            }
            Selector::EvaluateWithQos => {
                if !st.model_mut(r).is_some_and(|m| *m.1) {
                    st.violation(format!("model #{r}: evaluate while not loaded"));
                }
                let ret = st.bool_result(sel, err_slot);
                if ret == Ret::Bool(true) {
                    st.evaluate(r, id_arg(2));
                }
                ret
            }
            Selector::UnloadWithQos => {
                if !st.model_mut(r).is_some_and(|m| *m.1) {
                    st.violation(format!("model #{r}: unload while not loaded"));
                }
                if let Some(m) = st.model_mut(r) {
                    *m.1 = false;
                }
                st.bool_result(sel, err_slot)
            }
            Selector::ObjectWithIoSurface => match decoded[0] {
                Value::Surface(s) if s < st.surfaces.len() && st.surfaces[s].refs > 0 => {
                    st.surfaces[s].refs += 1;
                    Ret::Id(st.new_obj(Kind::SurfaceObject(s)))
                }
                _ => {
                    st.violation("objectWithIOSurface: not a live surface".into());
                    Ret::Id(Id::NIL)
                }
            },
            Selector::RequestWithInputs => {
                let (inputs, outputs) = (id_arg(0), id_arg(2));
                Ret::Id(st.new_obj(Kind::Request { inputs, outputs }))
            }
        }
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
        if st.cfg.surface_create_fails || bytes == 0 {
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
        st.events.push(Event::SurfaceCreate { bytes, surface: Some(n) });
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
