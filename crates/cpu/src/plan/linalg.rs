//! `matmul`, `linear` and `conv` lowering. Transposes and slices of the operands stay views
//! (gemm takes strides); batch dims that only the left operand has fold into its rows, so a
//! `linear` over `[B, S, K]` is one product; and a product whose only consumer swaps its last
//! two axes is written transposed, which makes that transpose free.

use malus_mil::Operation;
use malus_mil::shapes::conv_axis;

use super::args::Args;
use super::lower::unsupported_dtype;
use super::{Planner, Tensor};
use crate::error::{CpuError, OpErrorKind, Result};
use crate::kernels::Step;
use crate::kernels::conv::Conv;
use crate::kernels::matmul::{Mat, Matmul};
use crate::layout::{Class, View, row_major};
use crate::walk::MAX_RANK;

/// Products at most this many multiply-adds run one per thread when batched.
const SMALL_PRODUCT: usize = 1 << 23;

fn swap_last2(v: &View) -> View {
    let r = v.shape.len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 1, r - 2);
    v.permute(&perm)
}

pub(crate) fn matmul(p: &mut Planner, op: &Operation) -> Result<()> {
    let (x, y) = (p.arg(op, "x")?, p.arg(op, "y")?);
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let (tx, ty) = (args.bool("transpose_x", false)?, args.bool("transpose_y", false)?);
    let xv = match x.view.shape.len() {
        1 => View {
            shape: vec![1, x.view.shape[0]],
            strides: vec![0, x.view.strides[0]],
            ..x.view.clone()
        },
        _ if tx => swap_last2(&x.view),
        _ => x.view.clone(),
    };
    let yv = match y.view.shape.len() {
        1 => View {
            shape: vec![y.view.shape[0], 1],
            strides: vec![y.view.strides[0], 0],
            ..y.view.clone()
        },
        _ if ty => swap_last2(&y.view),
        _ => y.view.clone(),
    };
    let vectors = x.view.shape.len() == 1 || y.view.shape.len() == 1;
    product(p, op, x.dtype, xv, yv, None, !vectors)
}

pub(crate) fn linear(p: &mut Planner, op: &Operation) -> Result<()> {
    let (x, w) = (p.arg(op, "x")?, p.arg(op, "weight")?);
    let bias = p.opt_arg(op, "bias")?;
    let xv = match x.view.shape.len() {
        1 => View {
            shape: vec![1, x.view.shape[0]],
            strides: vec![0, x.view.strides[0]],
            ..x.view.clone()
        },
        _ => x.view.clone(),
    };
    let bias = bias.map(|b| (b.view.slot, b.view.offset, b.view.strides[0]));
    product(p, op, x.dtype, xv, w.view.permute(&[1, 0]), bias, false)
}

/// Emits `x · y` for views `[..., m, k]` and `[..., k, n]` (batch dims broadcast).
fn product(
    p: &mut Planner,
    op: &Operation,
    dtype: malus_mil::DType,
    xv: View,
    yv: View,
    bias: Option<(crate::layout::Slot, usize, isize)>,
    may_transpose_out: bool,
) -> Result<()> {
    if Class::of(dtype) != Some(Class::F) {
        return Err(unsupported_dtype(op, dtype));
    }
    let (xr, yr) = (xv.shape.len(), yv.shape.len());
    let (mut m, k, n) = (xv.shape[xr - 2], xv.shape[xr - 1], yv.shape[yr - 1]);
    let br = (xr - 2).max(yr - 2);
    let pad = |v: &View, r: usize| -> (Vec<usize>, Vec<isize>) {
        let lead = br - (r - 2);
        let shape = (0..br)
            .map(|d| if d < lead { 1 } else { v.shape[d - lead] })
            .collect();
        let strides = (0..br)
            .map(|d| if d < lead { 0 } else { v.strides[d - lead] })
            .collect();
        (shape, strides)
    };
    let ((xs, xst), (ys, yst)) = (pad(&xv, xr), pad(&yv, yr));
    let mut batch = Vec::new();
    let (mut x_bs, mut y_bs) = (Vec::new(), Vec::new());
    for d in 0..br {
        let size = xs[d].max(ys[d]);
        if size != 1 {
            batch.push(size);
            x_bs.push(if xs[d] == 1 { 0 } else { xst[d] });
            y_bs.push(if ys[d] == 1 { 0 } else { yst[d] });
        }
    }
    let (dt, out_shape) = p.out_type(op, 0);
    let out_var = op.outputs[0].0.clone();
    let r = out_shape.len();
    let transposed = may_transpose_out
        && r >= 2
        && p.only_consumer_perm(&out_var).is_some_and(|perm| {
            let want: Vec<i64> = (0..r as i64 - 2).chain([r as i64 - 1, r as i64 - 2]).collect();
            let norm: Vec<i64> = perm
                .iter()
                .map(|&a| if a < 0 { a + r as i64 } else { a })
                .collect();
            norm == want
        });
    let mut xm = Mat {
        off: xv.offset,
        rs: xv.strides[xr - 2],
        cs: xv.strides[xr - 1],
    };
    if m == 1 {
        xm.rs = 0;
    }
    // Fold trailing batch dims that y broadcasts into x's rows.
    while !transposed && !batch.is_empty() {
        let d = batch.len() - 1;
        if y_bs[d] != 0 || (m > 1 && x_bs[d] != m as isize * xm.rs) {
            break;
        }
        if m == 1 {
            xm.rs = x_bs[d];
        }
        m *= batch[d];
        batch.pop();
        x_bs.pop();
        y_bs.pop();
    }
    if batch.len() > MAX_RANK {
        return Err(CpuError::op(
            op,
            OpErrorKind::Unsupported,
            "more than 8 batch dimensions",
        ));
    }
    let batches: usize = batch.iter().product();
    let out = p.dense(dt, &out_shape);
    let om = if transposed {
        Mat {
            off: 0,
            rs: 1,
            cs: m as isize,
        }
    } else {
        Mat {
            off: 0,
            rs: n as isize,
            cs: 1,
        }
    };
    let mm = Matmul {
        m,
        n,
        k,
        x: xv.slot,
        y: yv.slot,
        out: out.view.slot,
        xm,
        ym: Mat {
            off: yv.offset,
            rs: yv.strides[yr - 2],
            cs: yv.strides[yr - 1],
        },
        om,
        batch,
        x_bs,
        y_bs,
        bias,
        batch_parallel: batches >= 2 && m * n * k < SMALL_PRODUCT,
    };
    p.emit(Step::Matmul(mm));
    let mut view = out.view;
    if transposed {
        let mut t = row_major(&view.shape);
        t[r - 1] = m as isize;
        t[r - 2] = 1;
        view.strides = t;
    }
    p.bind_out(op, 0, Tensor { dtype: dt, view });
    Ok(())
}

pub(crate) fn conv(p: &mut Planner, op: &Operation) -> Result<()> {
    let x = p.arg(op, "x")?;
    let w = p.arg(op, "weight")?;
    let bias = p.opt_arg(op, "bias")?;
    if Class::of(x.dtype) != Some(Class::F) {
        return Err(unsupported_dtype(op, x.dtype));
    }
    let x = p.contiguous(op, x)?;
    let w = p.contiguous(op, w)?;
    let bias = bias.map(|b| p.contiguous(op, b)).transpose()?;
    let lits = p.lits.clone();
    let args = Args::new(op, &lits);
    let nsp = x.view.shape.len() - 2;
    if nsp > MAX_RANK {
        return Err(CpuError::op(
            op,
            OpErrorKind::Unsupported,
            "more than 8 spatial dimensions",
        ));
    }
    let list = |name: &str, default: i64| -> Result<Vec<usize>> {
        Ok(args
            .ints(name)?
            .unwrap_or(vec![default; nsp])
            .iter()
            .map(|&v| v.max(0) as usize)
            .collect())
    };
    let (strides, dilations, pad) = (list("strides", 1)?, list("dilations", 1)?, {
        let v = args.ints("pad")?.unwrap_or(vec![0; 2 * nsp]);
        v.iter().map(|&v| v.max(0) as usize).collect::<Vec<_>>()
    });
    let pad_type = args.string("pad_type")?.unwrap_or_else(|| "valid".into());
    let groups = args.int("groups", 1)?.max(1) as usize;
    let (in_sp, k_sp) = (x.view.shape[2..].to_vec(), w.view.shape[2..].to_vec());
    let mut out_sp = Vec::new();
    let mut pad_begin = Vec::new();
    for d in 0..nsp {
        let ax = conv_axis(
            in_sp[d],
            k_sp[d],
            strides[d],
            dilations[d],
            &pad_type,
            (pad[2 * d], pad[2 * d + 1]),
        )
        .map_err(|m| CpuError::op(op, OpErrorKind::Invalid, m))?;
        out_sp.push(ax.out);
        pad_begin.push(ax.pad_begin);
    }
    let direct =
        k_sp.iter().all(|&k| k == 1) && strides.iter().all(|&s| s == 1) && pad_begin.iter().all(|&b| b == 0);
    let (cin, cout) = (x.view.shape[1], w.view.shape[0]);
    let out_p: usize = out_sp.iter().product();
    let cols = (!direct).then(|| p.scratch(Class::F, cin / groups * k_sp.iter().product::<usize>() * out_p));
    let (dt, out_shape) = p.out_type(op, 0);
    let out = p.dense(dt, &out_shape);
    let c = Conv {
        x: x.view.slot,
        x_off: x.view.offset,
        w: w.view.slot,
        w_off: w.view.offset,
        bias: bias.map(|b| (b.view.slot, b.view.offset)),
        out: out.view.slot,
        cols,
        batch: x.view.shape[0],
        cin,
        cout,
        groups,
        in_sp,
        k_sp,
        out_sp,
        strides,
        dilations,
        pad_begin,
    };
    p.emit(Step::Conv(c));
    p.bind_out(op, 0, out);
    Ok(())
}
