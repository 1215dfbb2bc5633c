//! Lowering of elementwise ops. Float ops form fused groups (see `kernels::fused`): a tree of
//! single-use elementwise ops of one shape runs as one pass at the position of its last op.
//! Integer binary ops get their own exact kernel.

use std::collections::HashMap;

use malus_mil::{DType, Operation, Value};

use super::analyze::{BINARY, root};
use super::args::Args;
use super::lower::param_as;
use super::{Planner, Tensor};
use crate::error::{CpuError, OpErrorKind, Result};
use crate::kernels::Step;
use crate::kernels::data::IntBin;
use crate::kernels::fused::{Fused, Ins, MAX_INPUTS, MAX_REGS, Src};
use crate::kernels::math::{Bin, GeluMode, Un};
use crate::layout::{Class, View};

pub(crate) fn lower(p: &mut Planner, i: usize, op: &Operation) -> Result<()> {
    let (dtype, _) = p.out_type(op, 0);
    if !dtype.is_float() {
        return int_binary(p, op);
    }
    let mut group = members(p, i);
    group.push(i);
    if let Some((fused, out)) = build(p, &group, false)? {
        p.stats.fused_ops += group.len() - 1;
        p.emit(Step::Fused(fused));
        p.bind_out(op, 0, out);
        return Ok(());
    }
    one_by_one(p, &group)
}

/// The ops fused into op `i` (body order).
fn members(p: &Planner, i: usize) -> Vec<usize> {
    (0..i)
        .filter(|&j| p.a.live[j] && p.a.fused_into[j].is_some() && root(&p.a, j) == i)
        .collect()
}

/// Too many registers or inputs for one group: runs each op on its own.
fn one_by_one(p: &mut Planner, group: &[usize]) -> Result<()> {
    for &j in group {
        let o = &p.f.body[j];
        let (fused, out) = build(p, &[j], false)?
            .ok_or_else(|| CpuError::op(o, OpErrorKind::Unsupported, "too many inputs"))?;
        p.emit(Step::Fused(fused));
        p.bind_out(o, 0, out);
    }
    Ok(())
}

/// The elementwise group feeding softmax op `i` (see `analyze::mark_fusion`), built to write
/// the softmax's input row-major; `None` when there is none (or it had to be split, in which
/// case its ops were emitted and the softmax reads their result as usual).
pub(crate) fn softmax_prologue(p: &mut Planner, i: usize) -> Result<Option<(Fused, Tensor)>> {
    let group = members(p, i);
    if group.is_empty() {
        return Ok(None);
    }
    match build(p, &group, true)? {
        Some(g) => {
            p.stats.fused_ops += group.len();
            Ok(Some(g))
        }
        None => one_by_one(p, &group).map(|_| None),
    }
}

fn unary_op(p: &Planner, op: &Operation, dtype: DType) -> Result<Un> {
    let args = Args::new(op, &p.lits);
    let eps = |default: f64| -> Result<f32> { Ok(param_as(dtype, args.f64("epsilon")?.unwrap_or(default))) };
    Ok(match op.op.as_str() {
        "sqrt" => Un::Sqrt,
        "rsqrt" => Un::Rsqrt(eps(1e-12)?),
        "exp" => Un::Exp,
        "log" => Un::Log(eps(1e-45)?),
        "sigmoid" => Un::Sigmoid,
        "silu" => Un::Silu,
        "tanh" => Un::Tanh,
        "relu" => Un::Relu,
        "gelu" => Un::Gelu(match args.string("mode")?.as_deref().unwrap_or("EXACT") {
            "TANH_APPROXIMATION" => GeluMode::Tanh,
            "SIGMOID_APPROXIMATION" => GeluMode::Sigmoid,
            _ => GeluMode::Exact,
        }),
        o => {
            return Err(CpuError::op(
                op,
                OpErrorKind::UnsupportedOp,
                format!("`{o}` is not elementwise"),
            ));
        }
    })
}

/// Virtual-register program of a group, before register allocation.
enum VIns {
    Load(usize),
    Un(Un, usize),
    Bin(Bin, VSrc, VSrc),
}

#[derive(Clone, Copy)]
enum VSrc {
    V(usize),
    Imm(f32),
}

/// Builds the fused program of `ops` (body order; the last one is the result). `None` when it
/// needs more registers or inputs than the kernel has. The result is row-major when asked,
/// else laid out like its largest input.
fn build(p: &mut Planner, ops: &[usize], row_major: bool) -> Result<Option<(Fused, Tensor)>> {
    let last = &p.f.body[*ops.last().expect("non-empty group")];
    let (dtype, shape) = p.out_type(last, 0);
    let mut prog: Vec<VIns> = Vec::new();
    let mut leaves: Vec<View> = Vec::new();
    let mut leaf_of_var: HashMap<String, usize> = HashMap::new();
    let mut value_of_var: HashMap<String, VSrc> = HashMap::new();
    for &j in ops {
        let op = &p.f.body[j];
        let names: &[&str] = if BINARY.contains(&op.op.as_str()) {
            &["x", "y"]
        } else {
            &["x"]
        };
        let mut srcs = Vec::new();
        for name in names {
            let v = op
                .arg(name)
                .ok_or_else(|| CpuError::op(op, OpErrorKind::Invalid, format!("missing `{name}`")))?;
            if let Some(s) = v.as_var().and_then(|n| value_of_var.get(n)) {
                srcs.push(*s);
                continue;
            }
            if let Some(&vr) = v.as_var().and_then(|n| leaf_of_var.get(n)) {
                srcs.push(VSrc::V(vr));
                continue;
            }
            let t = p.value(op, v)?;
            if t.view.len() == 1 && p.is_const(t.view.slot) {
                srcs.push(VSrc::Imm(p.st.f[t.view.slot.idx][t.view.offset]));
                continue;
            }
            leaves.push(t.view.broadcast_to(&shape));
            prog.push(VIns::Load(leaves.len() - 1));
            if let Value::Var(n) = v {
                leaf_of_var.insert(n.clone(), prog.len() - 1);
            }
            srcs.push(VSrc::V(prog.len() - 1));
        }
        let ins = match (Bin::from_op(&op.op), srcs.as_slice()) {
            (Some(b), [x, y]) => VIns::Bin(b, *x, *y),
            (None, [VSrc::V(x)]) => VIns::Un(unary_op(p, op, dtype)?, *x),
            (None, [VSrc::Imm(_)]) => {
                // A unary op of a constant scalar inside a run-time group: load it instead.
                let t = p.arg(op, "x")?;
                leaves.push(t.view.broadcast_to(&shape));
                prog.push(VIns::Load(leaves.len() - 1));
                VIns::Un(unary_op(p, op, dtype)?, prog.len() - 1)
            }
            _ => return Err(CpuError::op(op, OpErrorKind::Invalid, "bad operands")),
        };
        prog.push(ins);
        value_of_var.insert(op.outputs[0].0.clone(), VSrc::V(prog.len() - 1));
    }
    if leaves.len() > MAX_INPUTS {
        return Ok(None);
    }
    let Some((ins, result)) = allocate(&prog) else {
        return Ok(None);
    };
    let like = leaves
        .iter()
        .max_by_key(|l| l.len() * (!l.strides.contains(&0)) as usize);
    let out = p.dense_like(dtype, &shape, like.filter(|_| !row_major));
    let mut views = vec![&out.view];
    views.extend(leaves.iter());
    let walk = p.walk_by_first(last, &shape, &views)?;
    let fused = Fused {
        ins,
        result,
        out: out.view.slot,
        inputs: leaves.iter().map(|l| l.slot).collect(),
        walk,
    };
    Ok(Some((fused, out)))
}

/// Linear-scan register allocation: a destination never shares a register with its sources;
/// a register is freed after its value's last read.
fn allocate(prog: &[VIns]) -> Option<(Vec<Ins>, u8)> {
    let mut uses = vec![0usize; prog.len()];
    let reads = |i: &VIns| -> Vec<usize> {
        let v = |s: &VSrc| match s {
            VSrc::V(x) => Some(*x),
            VSrc::Imm(_) => None,
        };
        match i {
            VIns::Load(_) => vec![],
            VIns::Un(_, a) => vec![*a],
            VIns::Bin(_, a, b) => v(a).into_iter().chain(v(b)).collect(),
        }
    };
    for i in prog {
        for r in reads(i) {
            uses[r] += 1;
        }
    }
    let mut reg = vec![u8::MAX; prog.len()];
    let mut free: Vec<u8> = (0..MAX_REGS as u8).rev().collect();
    let mut out = Vec::with_capacity(prog.len());
    for (k, i) in prog.iter().enumerate() {
        let dst = free.pop()?;
        reg[k] = dst;
        let src = |s: &VSrc| match s {
            VSrc::V(x) => Src::Reg(reg[*x]),
            VSrc::Imm(v) => Src::Imm(*v),
        };
        out.push(match i {
            VIns::Load(input) => Ins::Load {
                input: *input as u8,
                dst,
            },
            VIns::Un(op, a) => Ins::Un {
                op: *op,
                a: reg[*a],
                dst,
            },
            VIns::Bin(op, a, b) => Ins::Bin {
                op: *op,
                a: src(a),
                b: src(b),
                dst,
            },
        });
        for r in reads(i) {
            uses[r] -= 1;
            if uses[r] == 0 {
                free.push(reg[r]);
            }
        }
    }
    Some((out, reg[prog.len() - 1]))
}

fn int_binary(p: &mut Planner, op: &Operation) -> Result<()> {
    let (x, y) = (p.arg(op, "x")?, p.arg(op, "y")?);
    let (dtype, shape) = p.out_type(op, 0);
    if Class::of(dtype) != Some(Class::I) {
        return Err(super::lower::unsupported_dtype(op, dtype));
    }
    let op_kind = Bin::from_op(&op.op).ok_or_else(|| super::lower::unsupported_dtype(op, dtype))?;
    let out = p.dense(dtype, &shape);
    let views = [
        &out.view,
        &x.view.broadcast_to(&shape),
        &y.view.broadcast_to(&shape),
    ];
    let walk = p.walk(op, &shape, &views)?;
    let s = IntBin {
        op: op_kind,
        dtype,
        out: out.view.slot,
        x: x.view.slot,
        y: y.view.slot,
        walk,
    };
    p.emit(Step::IntBin(s));
    p.bind_out(op, 0, out);
    Ok(())
}
