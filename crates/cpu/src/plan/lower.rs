//! Per-op lowering: dispatch, and the ops that need no more than a step each (cast, select,
//! reductions, softmax, layer norm, (de)quantisation).

use half::f16;
use malus_mil::{DType, Operation};

use super::analyze::{BINARY, UNARY};
use super::args::Args;
use super::constants::literal_tensor;
use super::{Planner, Tensor, elementwise, linalg, shape};
use crate::error::{CpuError, OpErrorKind, Result};
use crate::kernels::Step;
use crate::kernels::data::{Affine, Cast, Quantize, Select};
use crate::kernels::reduce::{LayerNorm, Reduce, ReduceKind, Rows, Softmax};
use crate::layout::{Class, View};

pub(crate) fn lower(p: &mut Planner, i: usize, op: &Operation) -> Result<()> {
    if p.konst {
        p.stats.const_ops += 1;
    }
    match op.op.as_str() {
        "const" => {
            let l = op
                .const_value()
                .ok_or_else(|| CpuError::op(op, OpErrorKind::Invalid, "const without `val`"))?;
            if let Some(t) = literal_tensor(p, op, l)? {
                p.bind_out(op, 0, t);
            }
            Ok(())
        }
        "identity" => {
            let x = p.arg(op, "x")?;
            p.stats.view_ops += 1;
            p.bind_out(op, 0, x);
            Ok(())
        }
        "cast" => cast(p, op),
        "reshape" | "expand_dims" | "squeeze" => shape::reshape(p, op),
        "transpose" => shape::transpose(p, op),
        "slice_by_index" => shape::slice_by_index(p, op),
        "slice_by_size" => shape::slice_by_size(p, op),
        "split" => shape::split(p, op),
        "concat" => shape::concat(p, op),
        "select" => select(p, op),
        "softmax" => softmax(p, i, op),
        "reduce_sum" | "reduce_mean" | "reduce_max" => reduce(p, op),
        "layer_norm" => layer_norm(p, op),
        "matmul" => linalg::matmul(p, op),
        "linear" => linalg::linear(p, op),
        "conv" => linalg::conv(p, op),
        "quantize" | "dequantize" | "constexpr_affine_dequantize" => affine(p, op),
        o if UNARY.contains(&o) || BINARY.contains(&o) => elementwise::lower(p, i, op),
        o => Err(CpuError::op(
            op,
            OpErrorKind::UnsupportedOp,
            format!("the CPU executor has no kernel for `{o}`"),
        )),
    }
}

/// An error for an op applied to a dtype it has no kernel for.
pub(crate) fn unsupported_dtype(op: &Operation, d: DType) -> CpuError {
    CpuError::op(
        op,
        OpErrorKind::Unsupported,
        format!("no CPU kernel for `{}` on {d}", op.op),
    )
}

/// Rounds a parameter to the op's dtype, as the op would see it.
pub(crate) fn param_as(dtype: DType, v: f64) -> f32 {
    if dtype == DType::Fp16 {
        f16::from_f64(v).to_f32()
    } else {
        v as f32
    }
}

fn cast(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let (to, shape) = p.out_type(op, 0);
    let (from_c, to_c) = (Class::of(x.dtype), Class::of(to));
    let same = match (from_c, to_c) {
        (Some(Class::F), Some(Class::F)) | (Some(Class::B), Some(Class::B)) => true,
        (Some(Class::I), Some(Class::I)) => x.dtype == to,
        _ => false,
    };
    if same {
        p.stats.view_ops += 1;
        p.bind_out(
            op,
            0,
            Tensor {
                dtype: to,
                view: x.view,
            },
        );
        return Ok(());
    }
    let from = from_c.ok_or_else(|| unsupported_dtype(op, x.dtype))?;
    let out = p.dense(to, &shape);
    let walk = p.walk(op, &shape, &[&out.view, &x.view])?;
    p.emit(Step::Cast(Cast {
        from,
        to,
        out: out.view.slot,
        x: x.view.slot,
        walk,
    }));
    p.bind_out(op, 0, out);
    Ok(())
}

fn select(p: &mut Planner, op: &Operation) -> Result<()> {
    let (c, a, b) = (p.arg(op, "cond")?, p.arg(op, "a")?, p.arg(op, "b")?);
    let (dtype, shape) = p.out_type(op, 0);
    let class = Class::of(dtype).ok_or_else(|| unsupported_dtype(op, dtype))?;
    let out = p.dense(dtype, &shape);
    let views = [
        &out.view,
        &c.view.broadcast_to(&shape),
        &a.view.broadcast_to(&shape),
        &b.view.broadcast_to(&shape),
    ];
    let walk = p.walk(op, &shape, &views)?;
    let s = Select {
        out: out.view.slot,
        cond: c.view.slot,
        a: a.view.slot,
        b: b.view.slot,
        walk,
    };
    p.emit(Step::Select(class, s));
    p.bind_out(op, 0, out);
    Ok(())
}

/// Splits a shape around a run of axes into `(outer, n, inner)`.
fn split3(shape: &[usize], first: usize, last: usize) -> (usize, usize, usize) {
    let prod = |s: &[usize]| s.iter().product::<usize>();
    (
        prod(&shape[..first]),
        prod(&shape[first..=last]),
        prod(&shape[last + 1..]),
    )
}

/// The rows of a contiguous input `x` (read from its offset) into a fresh dense `out`.
fn rows(x: &Tensor, out: &Tensor, (outer, n, inner): (usize, usize, usize)) -> Rows {
    Rows {
        x: x.view.slot,
        x_off: x.view.offset,
        out: out.view.slot,
        outer,
        n,
        inner,
    }
}

fn softmax(p: &mut Planner, i: usize, op: &Operation) -> Result<()> {
    let (dtype, shape) = p.out_type(op, 0);
    let rank = shape.len();
    let axis = Args::new(op, &p.lits.clone()).axis("axis", -1, rank.max(1))?;
    let (outer, n, inner) = if rank == 0 {
        (1, 1, 1)
    } else {
        split3(&shape, axis, axis)
    };
    if let Some((pre, x)) = elementwise::softmax_prologue(p, i)? {
        // The input group writes each block of rows, then the softmax runs on it in place.
        let rows = Rows {
            x: x.view.slot,
            x_off: 0,
            out: x.view.slot,
            outer,
            n,
            inner,
        };
        p.emit(Step::Softmax(Softmax { rows, pre: Some(pre) }));
        p.bind_out(op, 0, x);
        return Ok(());
    }
    let x = p.arg(op, "x")?;
    let x = p.contiguous(op, x)?;
    let out = p.dense(dtype, &shape);
    let rows = rows(&x, &out, (outer, n, inner));
    p.emit(Step::Softmax(Softmax { rows, pre: None }));
    p.bind_out(op, 0, out);
    Ok(())
}

fn reduce(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let rank = x.view.shape.len();
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let axes = args.axes("axes", rank)?.unwrap_or_else(|| (0..rank).collect());
    let keep = args.bool("keep_dims", false)?;
    let (dtype, shape) = p.out_type(op, 0);
    let class = match Class::of(dtype) {
        Some(c @ (Class::F | Class::I)) => c,
        _ => return Err(unsupported_dtype(op, dtype)),
    };
    let kind = match op.op.as_str() {
        "reduce_sum" => ReduceKind::Sum,
        "reduce_mean" => ReduceKind::Mean,
        _ => ReduceKind::Max,
    };
    let out = p.dense(dtype, &shape);
    // The output seen with the input's shape: stride 0 along reduced axes.
    let mut strides = Vec::with_capacity(rank);
    let mut od = 0;
    for d in 0..rank {
        if axes.contains(&d) {
            strides.push(0);
            od += keep as usize;
        } else {
            strides.push(out.view.strides[od]);
            od += 1;
        }
    }
    let spread = View {
        strides,
        shape: x.view.shape.clone(),
        ..out.view.clone()
    };
    let walk = p.walk(op, &x.view.shape, &[&x.view, &spread])?;
    let count = axes.iter().map(|&a| x.view.shape[a]).product();
    let r = Reduce {
        kind,
        x: x.view.slot,
        out: out.view.slot,
        out_len: out.view.len(),
        count,
        walk,
    };
    p.emit(Step::Reduce(class, r));
    p.bind_out(op, 0, out);
    Ok(())
}

fn layer_norm(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let x = p.contiguous(op, x)?;
    let rank = x.view.shape.len();
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let mut axes = args.axes("axes", rank)?.unwrap_or_else(|| (0..rank).collect());
    axes.sort_unstable();
    let (dtype, shape) = p.out_type(op, 0);
    if axes.is_empty() || axes.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(CpuError::op(
            op,
            OpErrorKind::Unsupported,
            "layer_norm over non-adjacent axes",
        ));
    }
    let (outer, n, inner) = split3(&shape, axes[0], axes[axes.len() - 1]);
    let eps = param_as(dtype, args.f64("epsilon")?.unwrap_or(1e-5));
    let mut param = |name: &str| -> Result<Option<(crate::layout::Slot, usize)>> {
        match p.opt_arg(op, name)? {
            Some(t) => {
                let t = p.contiguous(op, t)?;
                Ok(Some((t.view.slot, t.view.offset)))
            }
            None => Ok(None),
        }
    };
    let (gamma, beta) = (param("gamma")?, param("beta")?);
    let out = p.dense(dtype, &shape);
    let rows = rows(&x, &out, (outer, n, inner));
    p.emit(Step::LayerNorm(LayerNorm {
        rows,
        gamma,
        beta,
        eps,
    }));
    p.bind_out(op, 0, out);
    Ok(())
}

/// A quantisation parameter (scalar, or vector along `axis`) broadcast to `shape`.
fn per_axis(op: &Operation, t: &Tensor, axis: Option<usize>, shape: &[usize]) -> Result<View> {
    match (t.view.shape.len(), axis) {
        (0, _) => Ok(t.view.broadcast_to(shape)),
        (1, Some(a)) if t.view.shape[0] == shape[a] || t.view.shape[0] == 1 => {
            let mut v = t.view.clone();
            v.shape = (0..shape.len())
                .map(|d| if d == a { t.view.shape[0] } else { 1 })
                .collect();
            v.strides = (0..shape.len())
                .map(|d| if d == a { t.view.strides[0] } else { 0 })
                .collect();
            Ok(v.broadcast_to(shape))
        }
        _ => Err(CpuError::op(
            op,
            OpErrorKind::Invalid,
            "scale/zero_point must be a scalar or a vector along `axis`",
        )),
    }
}

/// `quantize`, `dequantize` and `constexpr_affine_dequantize`: the same operands, broadcast
/// the same way; only the element function differs.
fn affine(p: &mut Planner, op: &Operation) -> Result<()> {
    let input = if op.op == "constexpr_affine_dequantize" {
        "quantized_data"
    } else {
        "input"
    };
    let x = p.arg(op, input)?;
    let scale = p.arg(op, "scale")?;
    let zp = p.opt_arg(op, "zero_point")?;
    let (dtype, shape) = p.out_type(op, 0);
    let lits = p.lits.clone();
    let axis = match Args::new(op, &lits).ints("axis")? {
        Some(_) => Some(Args::new(op, &lits).axis("axis", 0, shape.len())?),
        None => None,
    };
    // Only quantize has an integer range (and needs one).
    let range = (op.op == "quantize")
        .then(|| dtype.int_range().ok_or_else(|| unsupported_dtype(op, dtype)))
        .transpose()?;
    let out = p.dense(dtype, &shape);
    let sv = per_axis(op, &scale, axis, &shape)?;
    let zv = zp.as_ref().map(|z| per_axis(op, z, axis, &shape)).transpose()?;
    let mut views = vec![&out.view, &x.view, &sv];
    views.extend(zv.as_ref());
    let walk = p.walk(op, &shape, &views)?;
    let affine = Affine {
        out: out.view.slot,
        x: x.view.slot,
        scale: sv.slot,
        zero_point: zv.as_ref().map(|z| z.slot),
        walk,
    };
    p.emit(match range {
        Some((lo, hi)) => Step::Quantize(Quantize {
            affine,
            range: (lo as i64, hi as i64),
        }),
        None => Step::Dequantize(affine),
    });
    p.bind_out(op, 0, out);
    Ok(())
}
