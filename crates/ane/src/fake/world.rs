//! The fake's model of the world: objects with reference counts and autorelease pools, surfaces,
//! and what each message does to them.

use std::ffi::{CString, c_void};
use std::path::Path;

use super::{Event, FakeConfig, Value};
use crate::backend::{Arg, Id, Ret};
use crate::protocol::{ClassName, Selector};
use crate::spec::weight_relative_path;

#[derive(Debug)]
pub(super) enum Kind {
    Class(ClassName),
    Data(Vec<u8>),
    Str(CString),
    Number(i64),
    Dict(Vec<(Id, Id)>),
    Array(Vec<Id>),
    Descriptor {
        mil: Vec<u8>,
        weights: Id,
    },
    Model {
        descriptor: Id,
        hex: String,
        compiled: bool,
        loaded: bool,
    },
    SurfaceObject(usize),
    Request {
        inputs: Id,
        outputs: Id,
    },
    Error(String),
}

impl Kind {
    pub(super) fn name(&self) -> &'static str {
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
    pub(super) fn children(&self) -> Vec<Id> {
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

pub(super) struct Obj {
    pub(super) kind: Kind,
    /// Strong references: ours (retain) plus containers'.
    pub(super) refs: i64,
    /// Pool token holding the pending autorelease, if any.
    pub(super) pool: Option<usize>,
    pub(super) alive: bool,
}

pub(super) struct FakeSurface {
    pub(super) mem: Box<[u64]>,
    pub(super) alloc: usize,
    pub(super) refs: i64,
    pub(super) locked: Option<u32>,
}

pub(super) struct State {
    pub(super) cfg: FakeConfig,
    pub(super) objs: Vec<Obj>,
    pub(super) surfaces: Vec<FakeSurface>,
    pub(super) pools: Vec<usize>,
    pub(super) next_pool: usize,
    pub(super) events: Vec<Event>,
    pub(super) violations: Vec<String>,
}

// SAFETY: the `Id`s stored in the fake are tokens it made itself (table indices shaped as
// pointers) and are never dereferenced; surface memory is owned boxed data.
unsafe impl Send for State {}

pub(super) const SURFACE_TAG: usize = 1 << 40;

pub(super) fn obj_index(id: Id) -> Option<usize> {
    let v = id.0 as usize;
    (v != 0 && v < SURFACE_TAG && v % 16 == 0).then(|| v / 16 - 1)
}

pub(super) fn surface_index(s: *const c_void) -> Option<usize> {
    let v = s as usize;
    (v >= SURFACE_TAG).then(|| (v - SURFACE_TAG) / 16)
}

pub(super) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in parts {
        for b in p.iter() {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100000001b3);
    }
    h
}

pub(super) fn bytes_of(mem: &[u64]) -> &[u8] {
    // SAFETY: any u64 buffer is a valid byte buffer of 8× the length (alignment 8 ≥ 1).
    unsafe { std::slice::from_raw_parts(mem.as_ptr().cast(), mem.len() * 8) }
}

pub(super) fn bytes_of_mut(mem: &mut [u64]) -> &mut [u8] {
    // SAFETY: as `bytes_of`, with exclusive access through `&mut`.
    unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), mem.len() * 8) }
}

impl State {
    pub(super) fn violation(&mut self, v: String) {
        self.violations.push(v);
    }

    pub(super) fn id_of(i: usize) -> Id {
        Id(((i + 1) * 16) as *mut c_void)
    }

    /// A new autoreleased object (+0 for the caller, pending in the innermost pool).
    pub(super) fn new_obj(&mut self, kind: Kind) -> Id {
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

    pub(super) fn get(&mut self, id: Id, what: &str) -> Option<usize> {
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

    pub(super) fn retain(&mut self, id: Id) {
        if let Some(i) = self.get(id, "retain") {
            self.objs[i].refs += 1;
        }
    }

    pub(super) fn release(&mut self, id: Id) {
        let Some(i) = self.get(id, "release") else {
            return;
        };
        self.objs[i].refs -= 1;
        if self.objs[i].refs < 0 {
            self.violation(format!("{} #{i} over-released", self.objs[i].kind.name()));
        }
        self.maybe_dealloc(i);
    }

    pub(super) fn maybe_dealloc(&mut self, i: usize) {
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

    pub(super) fn decode(&mut self, id: Id) -> Value {
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

    pub(super) fn string(&mut self, s: &str) -> Id {
        self.new_obj(Kind::Str(CString::new(s).unwrap_or_default()))
    }

    /// Consumes one configured failure of `sel`; returns the error description if it fails.
    pub(super) fn fails(&mut self, sel: Selector) -> Option<Option<String>> {
        let f = self.cfg.failures.get_mut(&sel)?;
        if f.0 > 0 {
            f.0 -= 1;
            return None;
        }
        if f.1 == 0 {
            return None;
        }
        f.1 -= 1;
        Some(f.2.clone())
    }

    pub(super) fn bool_result(&mut self, sel: Selector, err: Option<*mut Id>) -> Ret {
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

    pub(super) fn model_mut(&mut self, i: usize) -> Option<(&mut bool, &mut bool, String)> {
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

    pub(super) fn check_program_dir(&mut self, root: &Path, hex: &str, model: usize) {
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
            self.violation(format!(
                "model #{model}: compile before {dir:?}/model.mil holds the MIL"
            ));
        }
        if let Value::Dict(entries) = self.decode(weights) {
            for (k, v) in entries {
                let (Value::Str(key), Value::Dict(inner)) = (k, v) else {
                    continue;
                };
                let data = inner.iter().find(|(k, _)| *k == Value::Str("data".into()));
                let file = weight_relative_path(&key).map(|r| dir.join(r));
                let on_disk = file.ok().and_then(|f| std::fs::read(f).ok());
                if data.map(|(_, d)| d.clone()) != on_disk.map(Value::Data) {
                    self.violation(format!("compile before weight file for {key} was written"));
                }
            }
        }
    }

    /// The MIL text and weight files of a model, from its descriptor.
    fn program_of(&mut self, model: usize) -> Option<super::FakeModel> {
        let Kind::Model { descriptor, .. } = self.objs[model].kind else {
            return None;
        };
        let d = self.get(descriptor, "model descriptor")?;
        let Kind::Descriptor { mil, weights } = &self.objs[d].kind else {
            return None;
        };
        let (mil, weights) = (String::from_utf8_lossy(mil).into_owned(), *weights);
        let mut files = Vec::new();
        if let Value::Dict(entries) = self.decode(weights) {
            for (k, v) in entries {
                let (Value::Str(key), Value::Dict(inner)) = (k, v) else {
                    continue;
                };
                if let Some((_, Value::Data(bytes))) =
                    inner.into_iter().find(|(k, _)| *k == Value::Str("data".into()))
                {
                    files.push((key, bytes));
                }
            }
        }
        Some(super::FakeModel { mil, weights: files })
    }

    pub(super) fn evaluate(&mut self, model: usize, request: Id) {
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
            let Some(a) = st.get(arr, "request array") else {
                return vec![];
            };
            let Kind::Array(items) = &st.objs[a].kind else {
                return vec![];
            };
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
        let data: Vec<Vec<u8>> = ins
            .iter()
            .map(|&s| bytes_of(&self.surfaces[s].mem)[..self.surfaces[s].alloc].to_vec())
            .collect();
        let results = if let Some(f) = self.cfg.on_evaluate_model.clone() {
            let Some(program) = self.program_of(model) else {
                self.violation(format!("model #{model}: evaluate without a descriptor"));
                return;
            };
            f(&program, &data)
        } else if let Some(f) = self.cfg.on_evaluate.clone() {
            f(&data)
        } else {
            return;
        };
        for (o, bytes) in outs.iter().zip(results) {
            let s = &mut self.surfaces[*o];
            let n = bytes.len().min(s.alloc);
            bytes_of_mut(&mut s.mem)[..n].copy_from_slice(&bytes[..n]);
        }
    }
}

impl State {
    /// Performs one message on the model of the world; `r` is the receiver's table index.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond(
        &mut self,
        root: &Path,
        receiver: Id,
        r: usize,
        sel: Selector,
        args: &[Arg],
        mut decoded: Vec<Value>,
        err_slot: Option<*mut Id>,
    ) -> Ret {
        let fail_nil = sel.signature().ret == crate::protocol::RetKind::Id
            && !matches!(sel, Selector::Retain)
            && self.fails(sel).is_some();
        if fail_nil {
            return Ret::Id(Id::NIL);
        }
        let id_arg = |i: usize| match args.get(i) {
            Some(Arg::Id(x)) => *x,
            _ => Id::NIL,
        };
        match sel {
            Selector::Retain => {
                self.retain(receiver);
                Ret::Id(receiver)
            }
            Selector::Release => {
                self.release(receiver);
                Ret::Void
            }
            Selector::DataWithBytes => {
                let Value::Bytes(b) = decoded.swap_remove(0) else {
                    unreachable!()
                };
                Ret::Id(self.new_obj(Kind::Data(b)))
            }
            Selector::StringWithUtf8String => {
                let Value::CStr(s) = &decoded[0] else {
                    unreachable!()
                };
                Ret::Id(self.string(s))
            }
            Selector::NumberWithInt => {
                let Value::I32(v) = decoded[0] else { unreachable!() };
                Ret::Id(self.new_obj(Kind::Number(v.into())))
            }
            Selector::DictionaryWithObjects => {
                let (Arg::Ptr(v), Arg::Ptr(k), Arg::Usize(n)) = (args[0], args[1], args[2]) else {
                    unreachable!()
                };
                // SAFETY: as above: `n` keys and `n` values.
                let (keys, values) = unsafe { (ids(k, n), ids(v, n)) };
                Ret::Id(self.new_obj(Kind::Dict(keys.into_iter().zip(values).collect())))
            }
            Selector::ArrayWithObjects => {
                let (Arg::Ptr(p), Arg::Usize(n)) = (args[0], args[1]) else {
                    unreachable!()
                };
                // SAFETY: as above.
                let items = unsafe { ids(p, n) };
                Ret::Id(self.new_obj(Kind::Array(items)))
            }
            Selector::Description => {
                let text = match &self.objs[r].kind {
                    Kind::Error(d) => d.clone(),
                    Kind::Str(s) => s.to_string_lossy().into_owned(),
                    k => format!("<{}>", k.name()),
                };
                Ret::Id(self.string(&text))
            }
            Selector::Utf8String => match &self.objs[r].kind {
                Kind::Str(s) => Ret::Ptr(s.as_ptr().cast()),
                _ => {
                    self.violation("UTF8String sent to a non-string".into());
                    Ret::Ptr(std::ptr::null())
                }
            },
            Selector::AneSubType => match self.cfg.ane_subtype.clone() {
                Some(s) => Ret::Id(self.string(&s)),
                None => Ret::Id(Id::NIL),
            },
            Selector::ModelWithMilText => {
                let Value::Data(mil) = &decoded[0] else {
                    self.violation(format!("MIL text passed as {:?}, not NSData", decoded[0]));
                    return Ret::Id(Id::NIL);
                };
                if !matches!(decoded[1], Value::Dict(_)) {
                    self.violation(format!("weights passed as {:?}, not a dictionary", decoded[1]));
                }
                let mil = mil.clone();
                Ret::Id(self.new_obj(Kind::Descriptor {
                    mil,
                    weights: id_arg(1),
                }))
            }
            Selector::InMemoryModelWithDescriptor => {
                let Some(d) = self.get(id_arg(0), "descriptor") else {
                    return Ret::Id(Id::NIL);
                };
                let Kind::Descriptor { mil, weights } = &self.objs[d].kind else {
                    return Ret::Id(Id::NIL);
                };
                let (mil, weights) = (mil.clone(), *weights);
                let wv = format!("{:?}", self.decode(weights));
                let hex = format!("{:016X}", fnv(&[&mil, wv.as_bytes()]));
                Ret::Id(self.new_obj(Kind::Model {
                    descriptor: id_arg(0),
                    hex,
                    compiled: false,
                    loaded: false,
                }))
            }
            Selector::HexStringIdentifier => {
                let hex = self.model_mut(r).map(|m| m.2).unwrap_or_default();
                Ret::Id(self.string(&hex))
            }
            Selector::CompileWithQos => {
                let hex = self.model_mut(r).map(|m| m.2).unwrap_or_default();
                self.check_program_dir(root, &hex, r);
                let ret = self.bool_result(sel, err_slot);
                if let (Ret::Bool(true), Some(m)) = (ret, self.model_mut(r)) {
                    *m.0 = true;
                }
                ret
            }
            Selector::LoadWithQos => {
                if !self.model_mut(r).is_some_and(|m| *m.0) {
                    self.violation(format!("model #{r}: load before compile"));
                }
                let ret = self.bool_result(sel, err_slot);
                if let (Ret::Bool(true), Some(m)) = (ret, self.model_mut(r)) {
                    *m.1 = true;
                }
                ret
            }
            Selector::EvaluateWithQos => {
                if !self.model_mut(r).is_some_and(|m| *m.1) {
                    self.violation(format!("model #{r}: evaluate while not loaded"));
                }
                let ret = self.bool_result(sel, err_slot);
                if ret == Ret::Bool(true) {
                    self.evaluate(r, id_arg(2));
                }
                ret
            }
            Selector::UnloadWithQos => {
                if !self.model_mut(r).is_some_and(|m| *m.1) {
                    self.violation(format!("model #{r}: unload while not loaded"));
                }
                if let Some(m) = self.model_mut(r) {
                    *m.1 = false;
                }
                self.bool_result(sel, err_slot)
            }
            Selector::ObjectWithIoSurface => match decoded[0] {
                Value::Surface(s) if s < self.surfaces.len() && self.surfaces[s].refs > 0 => {
                    self.surfaces[s].refs += 1;
                    Ret::Id(self.new_obj(Kind::SurfaceObject(s)))
                }
                _ => {
                    self.violation("objectWithIOSurface: not a live surface".into());
                    Ret::Id(Id::NIL)
                }
            },
            Selector::RequestWithInputs => {
                let (inputs, outputs) = (id_arg(0), id_arg(2));
                Ret::Id(self.new_obj(Kind::Request { inputs, outputs }))
            }
        }
    }
}

/// Reads `n` object pointers.
///
/// # Safety
///
/// `p` points to `n` readable `Id`s.
pub(super) unsafe fn ids(p: *const c_void, n: usize) -> Vec<Id> {
    if n == 0 {
        return Vec::new();
    }
    // SAFETY: caller contract.
    unsafe { std::slice::from_raw_parts(p.cast::<Id>(), n) }.to_vec()
}
