//! Shape ops. Reshapes, transposes, slices, splits, `expand_dims` and `squeeze` become views
//! (a reshape copies only when its input's strides cannot express the new shape); `concat`
//! copies each input into its part of a fresh output.

use malus_mil::shapes::slice_by_index_axis;
use malus_mil::{Operation, Value};

use super::args::Args;
use super::{Planner, Tensor};
use crate::error::{CpuError, OpErrorKind, Result};
use crate::layout::View;

fn bind_view(p: &mut Planner, op: &Operation, k: usize, t: Tensor) {
    p.stats.view_ops += (k == 0) as usize;
    p.bind_out(op, k, t);
}

/// `reshape`, `expand_dims` and `squeeze`: the result shape comes from type inference.
pub(crate) fn reshape(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let (dtype, shape) = p.out_type(op, 0);
    let view = match x.view.reshape(&shape) {
        Some(v) => v,
        None => {
            let c = p.contiguous(op, x)?;
            c.view.reshape(&shape).expect("a dense view reshapes")
        }
    };
    bind_view(p, op, 0, Tensor { dtype, view });
    Ok(())
}

pub(crate) fn transpose(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let rank = x.view.shape.len();
    let perm = Args::new(op, &p.lits.clone())
        .axes("perm", rank)?
        .ok_or_else(|| CpuError::op(op, OpErrorKind::Invalid, "missing `perm`"))?;
    let view = x.view.permute(&perm);
    bind_view(p, op, 0, Tensor { dtype: x.dtype, view });
    Ok(())
}

pub(crate) fn slice_by_index(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let r = x.view.shape.len();
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let need = |name: &str| {
        args.ints(name)?.filter(|v| v.len() == r).ok_or_else(|| {
            CpuError::op(
                op,
                OpErrorKind::Invalid,
                format!("`{name}` must have {r} entries"),
            )
        })
    };
    let (begin, end) = (need("begin")?, need("end")?);
    let stride = args.ints("stride")?.unwrap_or(vec![1; r]);
    let (bm, em, sm) = (
        args.bools("begin_mask", r)?,
        args.bools("end_mask", r)?,
        args.bools("squeeze_mask", r)?,
    );
    let mut view = x.view.clone();
    for d in 0..r {
        let ax = slice_by_index_axis(x.view.shape[d], begin[d], end[d], stride[d], bm[d], em[d])
            .map_err(|m| CpuError::op(op, OpErrorKind::Invalid, format!("axis {d}: {m}")))?;
        view = view.slice_axis(d, ax.start, ax.stride, ax.len);
    }
    let squeezed: Vec<usize> = (0..r).filter(|&d| sm[d]).collect();
    let view = view.remove_axes(&squeezed);
    bind_view(p, op, 0, Tensor { dtype: x.dtype, view });
    Ok(())
}

pub(crate) fn slice_by_size(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let begin = args.ints("begin")?.unwrap_or_default();
    let (_, shape) = p.out_type(op, 0);
    if begin.len() != shape.len() {
        return Err(CpuError::op(
            op,
            OpErrorKind::Invalid,
            "`begin` must have one entry per axis",
        ));
    }
    let mut view = x.view.clone();
    for (d, (&b, &len)) in begin.iter().zip(&shape).enumerate() {
        view = view.slice_axis(d, b, 1, len);
    }
    bind_view(p, op, 0, Tensor { dtype: x.dtype, view });
    Ok(())
}

pub(crate) fn split(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let axis = Args::new(op, &p.lits.clone()).axis("axis", 0, x.view.shape.len())?;
    let mut at = 0i64;
    for k in 0..op.outputs.len() {
        let (_, shape) = p.out_type(op, k);
        let view = x.view.slice_axis(axis, at, 1, shape[axis]);
        at += shape[axis] as i64;
        bind_view(p, op, k, Tensor { dtype: x.dtype, view });
    }
    Ok(())
}

pub(crate) fn concat(p: &mut Planner, op: &Operation) -> Result<()> {
    let values: Vec<Value> = match op.arg("values") {
        Some(Value::Tuple(items)) => items.clone(),
        Some(v) => vec![v.clone()],
        None => return Err(CpuError::op(op, OpErrorKind::Invalid, "missing `values`")),
    };
    let (dtype, shape) = p.out_type(op, 0);
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let axis = args.axis("axis", 0, shape.len())?;
    let interleave = args.bool("interleave", false)?;
    let parts = values
        .iter()
        .map(|v| p.value(op, v))
        .collect::<Result<Vec<_>>>()?;
    // Lay the result out like the first part (see `dense_like`), unless interleaving.
    let like = parts.first().filter(|_| !interleave).map(|t| {
        let order = t.view.stride_order();
        View::dense_in_order(t.view.slot, &shape, &order)
    });
    let out = p.dense_like(dtype, &shape, like.as_ref());
    let k = parts.len() as i64;
    let mut at = 0i64;
    for (j, t) in parts.iter().enumerate() {
        let n = t.view.shape[axis];
        let dst = if interleave {
            out.view.slice_axis(axis, j as i64, k, n)
        } else {
            out.view.slice_axis(axis, at, 1, n)
        };
        at += n as i64;
        if n > 0 {
            p.copy(op, &dst, &t.view)?;
        }
    }
    p.bind_out(op, 0, out);
    Ok(())
}
