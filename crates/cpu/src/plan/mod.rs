//! The planner: turns one MIL function into a list of steps over preallocated slots.
//!
//! Ops are visited in body order (already topological). Constant ops are evaluated on the spot
//! and their results kept in constant slots; view ops only make new views; everything else emits
//! a step writing a fresh contiguous slot. A slot returns to the free list once no live variable
//! refers to it, and later outputs reuse it (best fit), so run-time memory follows the peak of
//! live tensors rather than their sum.

pub(crate) mod analyze;
mod args;
mod constants;
mod elementwise;
mod linalg;
mod lower;
mod shape;

use std::collections::HashMap;
use std::rc::Rc;

use malus_mil::{DType, Function, Literal, Operation, Type, Value, Weights};

use crate::error::{CpuError, OpErrorKind, Result};
use crate::kernels::Step;
use crate::kernels::data::Copy;
use crate::layout::{Class, Slot, View};
use crate::storage::{Ctx, Storage};
use crate::walk::Walk;
use analyze::{Analysis, END};

/// A typed view: what a variable is bound to.
#[derive(Clone, Debug)]
pub(crate) struct Tensor {
    pub dtype: DType,
    pub view: View,
}

#[derive(Clone, Copy, Debug)]
struct SlotInfo {
    runtime: bool,
    cap: usize,
    refs: usize,
    used_at_runtime: bool,
}

/// What the planner produced, for tests and for `malus mil run --explain`-style summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Steps executed per run.
    pub steps: usize,
    /// Steps per kind, e.g. `("matmul", 2)`.
    pub step_kinds: Vec<(&'static str, usize)>,
    /// Elementwise ops folded into a group with others (not counting each group's last op).
    pub fused_ops: usize,
    /// Ops that became views (reshape, transpose, slices, casts between float types, …).
    pub view_ops: usize,
    /// Ops evaluated once at compile time (constants and ops on constants only).
    pub const_ops: usize,
    /// Run-time slots and their total size in bytes (after reuse).
    pub runtime_slots: usize,
    pub runtime_bytes: usize,
    /// Bytes held by constants that run-time steps read.
    pub const_bytes: usize,
}

pub(crate) struct Planner<'a> {
    pub f: &'a Function,
    pub weights: &'a Weights,
    pub ctx: Ctx,
    pub a: Analysis,
    pub st: Storage,
    slots: HashMap<Slot, SlotInfo>,
    free: Vec<Slot>,
    vars: HashMap<String, Tensor>,
    pub steps: Vec<Step>,
    /// The op (name and position) each step comes from.
    pub labels: Vec<String>,
    label: String,
    /// Values of `const` ops, shared so parameter readers can borrow them while planning.
    pub lits: Rc<HashMap<String, Literal>>,
    /// The op being lowered is evaluated now, at compile time.
    pub konst: bool,
    scratch: Vec<Slot>,
    pub stats: PlanStats,
}

/// The result of planning: steps, storage and where inputs and outputs live.
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub labels: Vec<String>,
    pub st: Storage,
    /// Dense view of each input's slot (`None` when no op reads it).
    pub inputs: Vec<Option<View>>,
    pub outputs: Vec<Tensor>,
    pub stats: PlanStats,
}

pub(crate) fn plan(f: &Function, inputs: &[(String, Type)], weights: &Weights, ctx: Ctx) -> Result<Plan> {
    let mut a = analyze::analyze(f, inputs)?;
    let lits = Rc::new(std::mem::take(&mut a.lits));
    let mut p = Planner {
        lits,
        f,
        weights,
        ctx,
        a,
        st: Storage::default(),
        slots: HashMap::new(),
        free: Vec::new(),
        vars: HashMap::new(),
        steps: Vec::new(),
        labels: Vec::new(),
        label: String::new(),
        konst: false,
        scratch: Vec::new(),
        stats: PlanStats::default(),
    };
    let mut input_views = Vec::new();
    for (name, ty) in inputs {
        let used = p.a.last_use.contains_key(name);
        let (dtype, shape) = (ty.dtype().expect("checked"), ty.known_shape().expect("checked"));
        input_views.push(used.then(|| {
            let t = p.dense(dtype, &shape);
            p.bind(name, t.clone());
            t.view
        }));
    }
    let mut dies_at: HashMap<usize, Vec<String>> = HashMap::new();
    for (v, &at) in &p.a.last_use {
        dies_at.entry(at).or_default().push(v.clone());
    }
    dies_at.values_mut().for_each(|v| v.sort()); // a deterministic plan
    for (i, op) in f.body.iter().enumerate() {
        if !p.a.live[i] || p.a.fused_into[i].is_some() {
            continue;
        }
        p.konst = p.a.konst[i];
        p.label = format!("{} `{}` ({})", op.op, crate::error::op_label(op), op.span);
        lower::lower(&mut p, i, op)?;
        for s in std::mem::take(&mut p.scratch) {
            p.release_slot(s);
        }
        for v in dies_at.remove(&i).unwrap_or_default() {
            p.release_var(&v);
        }
        for (o, _) in &op.outputs {
            if !p.a.last_use.contains_key(o) {
                p.release_var(o);
            }
        }
    }
    p.konst = false;
    let outputs = f
        .outputs
        .iter()
        .map(|o| p.var(o).cloned())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| CpuError::Signature {
            name: f.outputs.join(", "),
            span: f.span,
            msg: "a returned variable is not a tensor".into(),
        })?;
    for t in &outputs {
        p.mark_used(t.view.slot);
    }
    p.finish(input_views, outputs)
}

impl<'a> Planner<'a> {
    fn finish(mut self, inputs: Vec<Option<View>>, outputs: Vec<Tensor>) -> Result<Plan> {
        let mut stats = std::mem::take(&mut self.stats);
        for (slot, info) in &self.slots {
            if info.runtime {
                self.st
                    .resize(*slot, info.cap)
                    .map_err(|_| CpuError::OutOfMemory {
                        bytes: info.cap * if slot.class == Class::I { 8 } else { 4 },
                    })?;
                stats.runtime_slots += 1;
            } else if !info.used_at_runtime {
                self.st.resize(*slot, 0).expect("shrinking never allocates");
                match slot.class {
                    Class::F => self.st.f[slot.idx].shrink_to_fit(),
                    Class::I => self.st.i[slot.idx].shrink_to_fit(),
                    Class::B => self.st.b[slot.idx].shrink_to_fit(),
                }
            }
        }
        let size = |s: &Slot| match s.class {
            Class::F => self.st.f[s.idx].len() * 4,
            Class::I => self.st.i[s.idx].len() * 8,
            Class::B => self.st.b[s.idx].len(),
        };
        stats.runtime_bytes = self
            .slots
            .iter()
            .filter(|(_, i)| i.runtime)
            .map(|(s, _)| size(s))
            .sum();
        stats.const_bytes = self.st.bytes() - stats.runtime_bytes;
        stats.steps = self.steps.len();
        for s in &self.steps {
            match stats.step_kinds.iter_mut().find(|(k, _)| *k == s.kind()) {
                Some((_, n)) => *n += 1,
                None => stats.step_kinds.push((s.kind(), 1)),
            }
        }
        Ok(Plan {
            steps: self.steps,
            labels: self.labels,
            st: self.st,
            inputs,
            outputs,
            stats,
        })
    }

    /// A new slot of `len` elements: a constant slot (filled now) when folding, else a run-time
    /// slot from the free list (best fit) or a new one.
    pub(crate) fn alloc(&mut self, class: Class, len: usize) -> Slot {
        if self.konst {
            let slot = match class {
                Class::F => self.st.push_f(vec![0.0; len]),
                Class::I => self.st.push_i(vec![0; len]),
                Class::B => self.st.push_b(vec![0; len]),
            };
            self.register_const(slot, len);
            return slot;
        }
        let cap = |s: &Slot, sl: &HashMap<Slot, SlotInfo>| sl[s].cap;
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, s)| s.class == class)
            .min_by_key(|(_, s)| {
                let c = cap(s, &self.slots);
                if c >= len { (0, c) } else { (1, usize::MAX - c) }
            })
            .map(|(i, _)| i);
        let slot = match fit {
            Some(i) => self.free.swap_remove(i),
            None => {
                let slot = match class {
                    Class::F => self.st.push_f(Vec::new()),
                    Class::I => self.st.push_i(Vec::new()),
                    Class::B => self.st.push_b(Vec::new()),
                };
                self.slots.insert(
                    slot,
                    SlotInfo {
                        runtime: true,
                        cap: 0,
                        refs: 0,
                        used_at_runtime: true,
                    },
                );
                slot
            }
        };
        let info = self.slots.get_mut(&slot).expect("slot");
        info.cap = info.cap.max(len);
        slot
    }

    /// A dense tensor in a new slot.
    pub(crate) fn dense(&mut self, dtype: DType, shape: &[usize]) -> Tensor {
        let class = Class::of(dtype).unwrap_or(Class::F);
        let slot = self.alloc(class, shape.iter().product());
        Tensor {
            dtype,
            view: View::dense(slot, shape),
        }
    }

    /// A new dense tensor whose dims sit in memory in the same order as `like`'s (when `like`
    /// has this shape and is not a broadcast), else row-major. Elementwise results and concats
    /// follow their input's layout this way, so work on transposed views stays sequential.
    pub(crate) fn dense_like(&mut self, dtype: DType, shape: &[usize], like: Option<&View>) -> Tensor {
        let order = like
            .filter(|v| v.shape == shape && v.strides.iter().zip(&v.shape).all(|(&s, &n)| s != 0 || n == 1))
            .map(View::stride_order);
        let t = self.dense(dtype, shape);
        match order {
            Some(o) => Tensor {
                dtype,
                view: View::dense_in_order(t.view.slot, shape, &o),
            },
            None => t,
        }
    }

    /// A slot that lives only while the current op runs.
    pub(crate) fn scratch(&mut self, class: Class, len: usize) -> Slot {
        let s = self.alloc(class, len);
        if !self.konst {
            self.scratch.push(s);
        }
        s
    }

    /// Runs a step now (constant op) or appends it to the run list.
    pub(crate) fn emit(&mut self, step: Step) {
        if self.konst {
            step.exec(&mut self.st, &self.ctx);
        } else {
            self.steps.push(step);
            self.labels.push(self.label.clone());
        }
    }

    /// Records a constant slot: filled at compile time, so never on the free list.
    pub(crate) fn register_const(&mut self, slot: Slot, len: usize) {
        self.slots.insert(
            slot,
            SlotInfo {
                runtime: false,
                cap: len,
                refs: 0,
                used_at_runtime: false,
            },
        );
    }

    fn mark_used(&mut self, s: Slot) {
        if let Some(i) = self.slots.get_mut(&s) {
            i.used_at_runtime = true;
        }
    }

    pub(crate) fn var(&self, name: &str) -> Option<&Tensor> {
        self.vars.get(name)
    }

    pub(crate) fn bind(&mut self, name: &str, t: Tensor) {
        if let Some(i) = self.slots.get_mut(&t.view.slot) {
            i.refs += 1;
        }
        if let Some(old) = self.vars.insert(name.to_string(), t) {
            self.unref(old.view.slot);
        }
    }

    fn release_var(&mut self, name: &str) {
        if let Some(t) = self.vars.remove(name) {
            self.unref(t.view.slot);
        }
    }

    fn unref(&mut self, s: Slot) {
        if let Some(i) = self.slots.get_mut(&s) {
            i.refs = i.refs.saturating_sub(1);
            if i.refs == 0 && i.runtime {
                self.free.push(s);
            }
        }
    }

    fn release_slot(&mut self, s: Slot) {
        if self.slots.get(&s).is_some_and(|i| i.refs == 0 && i.runtime) && !self.free.contains(&s) {
            self.free.push(s);
        }
    }

    /// The tensor an argument value denotes (a variable, or a literal made into a constant).
    pub(crate) fn value(&mut self, op: &Operation, v: &Value) -> Result<Tensor> {
        let t = match v {
            Value::Var(name) => self.vars.get(name).cloned().ok_or_else(|| {
                CpuError::op(op, OpErrorKind::Invalid, format!("`{name}` is not a tensor here"))
            })?,
            Value::Literal(l) => constants::literal_tensor(self, op, l)?
                .ok_or_else(|| CpuError::op(op, OpErrorKind::Unsupported, "string operand"))?,
            Value::Tuple(_) => return Err(CpuError::op(op, OpErrorKind::Invalid, "unexpected tuple")),
        };
        if !self.konst {
            self.mark_used(t.view.slot);
        }
        Ok(t)
    }

    /// The tensor of a required argument.
    pub(crate) fn arg(&mut self, op: &Operation, name: &str) -> Result<Tensor> {
        let v = op
            .arg(name)
            .ok_or_else(|| CpuError::op(op, OpErrorKind::Invalid, format!("missing argument `{name}`")))?;
        self.value(op, v)
    }

    pub(crate) fn opt_arg(&mut self, op: &Operation, name: &str) -> Result<Option<Tensor>> {
        match op.arg(name) {
            Some(v) => self.value(op, v).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a slot holds a constant (known at compile time).
    pub(crate) fn is_const(&self, s: Slot) -> bool {
        self.slots.get(&s).is_some_and(|i| !i.runtime)
    }

    /// Dtype and shape of an op result (inferred during analysis).
    pub(crate) fn out_type(&self, op: &Operation, k: usize) -> (DType, Vec<usize>) {
        let ty = &self.a.types[&op.outputs[k].0];
        (ty.dtype().expect("tensor"), ty.known_shape().expect("known"))
    }

    /// Binds result `k` of `op`.
    pub(crate) fn bind_out(&mut self, op: &Operation, k: usize, t: Tensor) {
        self.bind(&op.outputs[k].0.clone(), t);
    }

    /// A copy of `src` into the view `dst` (same shape).
    pub(crate) fn copy(&mut self, op: &Operation, dst: &View, src: &View) -> Result<()> {
        self.check_views(&[dst, src]);
        let walk = Walk::by_first(&dst.shape, &[dst, src]).ok_or_else(|| Self::rank_err(op))?;
        self.emit(Step::Copy(
            src.slot.class,
            Copy {
                dst: dst.slot,
                src: src.slot,
                walk,
            },
        ));
        Ok(())
    }

    /// `t` itself when dense row-major, else a dense copy.
    pub(crate) fn contiguous(&mut self, op: &Operation, t: Tensor) -> Result<Tensor> {
        if t.view.is_contiguous() {
            return Ok(t);
        }
        let out = self.dense(t.dtype, &t.view.shape);
        self.copy(op, &out.view, &t.view)?;
        Ok(out)
    }

    pub(crate) fn walk(&self, op: &Operation, shape: &[usize], views: &[&View]) -> Result<Walk> {
        self.check_views(views);
        Walk::new(shape, views).ok_or_else(|| Self::rank_err(op))
    }

    /// A walk that visits the first view (the destination) in memory order.
    pub(crate) fn walk_by_first(&self, op: &Operation, shape: &[usize], views: &[&View]) -> Result<Walk> {
        self.check_views(views);
        Walk::by_first(shape, views).ok_or_else(|| Self::rank_err(op))
    }

    fn rank_err(op: &Operation) -> CpuError {
        CpuError::op(
            op,
            OpErrorKind::Unsupported,
            "tensor rank above 8 after merging dimensions",
        )
    }

    /// Debug check: every view stays inside its slot.
    fn check_views(&self, views: &[&View]) {
        debug_assert!(
            views
                .iter()
                .all(|v| v.extent().is_none_or(|(_, hi)| hi < self.slots[&v.slot].cap)),
            "{}: a view reaches past its slot",
            self.label
        );
    }

    /// Whether the variable's only consumer transposes it with `perm`.
    pub(crate) fn only_consumer_perm(&self, var: &str) -> Option<Vec<i64>> {
        if self.a.last_use.get(var) == Some(&END) {
            return None;
        }
        let users: Vec<&Operation> = self
            .f
            .body
            .iter()
            .enumerate()
            .filter(|(i, o)| self.a.live[*i] && analyze::operand_vars(o).any(|v| v == var))
            .map(|(_, o)| o)
            .collect();
        match users.as_slice() {
            [t] if t.op == "transpose" && t.arg("x").and_then(Value::as_var) == Some(var) => {
                args::Args::new(t, &self.lits).ints("perm").ok().flatten()
            }
            _ => None,
        }
    }
}
