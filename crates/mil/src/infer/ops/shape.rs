//! Shape ops: slices, `reshape`, `transpose`, `concat`, `split`, `expand_dims`, `squeeze`.

use super::tensor;
use crate::error::InferError;
use crate::infer::{Arg, ArgVal, Ctx};
use crate::shapes::{self, fmt_shape};
use crate::types::{Dim, Type};

pub(in crate::infer) fn infer_slice_by_size(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let begin = c.ints_if_const("begin")?;
    let size = c.ints_if_const("size")?;
    for (name, v) in [("begin", &begin), ("size", &size)] {
        if let Some(v) = v {
            if v.len() != s.len() {
                return c.err(
                    name,
                    format!("has {} entries but x has rank {}", v.len(), s.len()),
                );
            }
        }
    }
    let Some(size) = size else {
        return Ok(vec![tensor(d, vec![Dim::Unknown; s.len()])]);
    };
    let mut out = Vec::with_capacity(s.len());
    for (i, &sz) in size.iter().enumerate() {
        let b = begin.as_ref().map(|b| b[i]);
        if let Some(b) = b {
            if b < 0 {
                return c.err("begin", format!("begin[{i}] = {b} is negative"));
            }
        }
        out.push(match (sz, s[i], b) {
            (-1, Dim::Known(dim), Some(b)) if (b as usize) <= dim => Dim::Known(dim - b as usize),
            (-1, Dim::Known(dim), Some(b)) => {
                return c.err("begin", format!("begin[{i}] = {b} exceeds the extent {dim}"));
            }
            (-1, _, _) => Dim::Unknown,
            (sz, dim, b) if sz >= 0 => {
                if let (Dim::Known(dim), Some(b)) = (dim, b) {
                    if b as usize + sz as usize > dim {
                        return c.err(
                            "size",
                            format!(
                                "slice [{b}, {}) on axis {i} exceeds the extent {dim}",
                                b as i128 + sz as i128
                            ),
                        );
                    }
                }
                Dim::Known(sz as usize)
            }
            (sz, _, _) => return c.err("size", format!("size[{i}] = {sz} is invalid")),
        });
    }
    Ok(vec![tensor(d, out)])
}

pub(in crate::infer) fn infer_slice_by_index(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let r = s.len();
    let begin = c.ints_if_const("begin")?;
    let end = c.ints_if_const("end")?;
    let stride = c.opt_const_ints("stride")?.unwrap_or(vec![1; r]);
    let bm = c.opt_const_bools("begin_mask", r)?;
    let em = c.opt_const_bools("end_mask", r)?;
    let sm = c.opt_const_bools("squeeze_mask", r)?;
    for (name, v) in [
        ("begin", &begin),
        ("end", &end),
        ("stride", &Some(stride.clone())),
    ] {
        if let Some(v) = v {
            if v.len() != r {
                return c.err(name, format!("has {} entries but x has rank {r}", v.len()));
            }
        }
    }
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let dim = match (s[i], &begin, &end) {
            (Dim::Known(dim), Some(b), Some(e)) => {
                let ax = shapes::slice_by_index_axis(dim, b[i], e[i], stride[i], bm[i], em[i])
                    .or_else(|m| c.err("stride", format!("axis {i}: {m}")))?;
                Dim::Known(ax.len)
            }
            (Dim::Known(dim), _, _) if bm[i] && em[i] && stride[i] == 1 => Dim::Known(dim),
            _ => Dim::Unknown,
        };
        if sm[i] {
            if let Dim::Known(n) = dim {
                if n != 1 {
                    return c.err(
                        "squeeze_mask",
                        format!("axis {i} is squeezed but selects {n} elements"),
                    );
                }
            }
        } else {
            out.push(dim);
        }
    }
    Ok(vec![tensor(d, out)])
}

pub(in crate::infer) fn infer_reshape(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    match c.ints_if_const("shape")? {
        Some(t) => {
            let out = shapes::reshape_target(s, &t).or_else(|m| c.err("shape", m))?;
            Ok(vec![tensor(d, out)])
        }
        None => {
            let rank = match c.arg("shape")?.ty.shape() {
                Some([Dim::Known(n)]) => *n,
                _ => return c.err("shape", "must be a rank-1 tensor of known length"),
            };
            Ok(vec![tensor(d, vec![Dim::Unknown; rank])])
        }
    }
}

pub(in crate::infer) fn infer_transpose(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let perm = c.const_ints("perm")?;
    let axes = c.axes("perm", &perm, s.len())?;
    if axes.len() != s.len() {
        return c.err(
            "perm",
            format!("has {} entries but x has rank {}", axes.len(), s.len()),
        );
    }
    Ok(vec![tensor(d, axes.iter().map(|&a| s[a]).collect())])
}

pub(in crate::infer) fn infer_concat(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let items: Vec<Arg> = match c.get("values") {
        Some(ArgVal::Many(v)) => v.clone(),
        Some(ArgVal::One(a)) => vec![*a],
        None => return c.err("values", "missing required argument"),
    };
    let Some(first) = items.first() else {
        return c.err("values", "needs at least one tensor");
    };
    let (Some(d), Some(s0)) = (first.ty.dtype(), first.ty.shape()) else {
        return c.err("values", "expected tensors");
    };
    let interleave = c.opt_const_bool("interleave", false)?;
    let axis = c.axis("axis", c.const_int("axis")?, s0.len())?;
    let mut out = s0.to_vec();
    let mut total = Some(0usize);
    for (k, it) in items.iter().enumerate() {
        let (Some(dk), Some(sk)) = (it.ty.dtype(), it.ty.shape()) else {
            return c.err("values", format!("item {k} is not a tensor"));
        };
        if dk != d {
            return c.err("values", format!("item {k} has dtype {dk}, item 0 has {d}"));
        }
        if sk.len() != s0.len() {
            return c.err(
                "values",
                format!("item {k} has rank {}, item 0 has {}", sk.len(), s0.len()),
            );
        }
        for i in 0..sk.len() {
            if i != axis && !sk[i].compatible(out[i]) {
                return c.err(
                    "values",
                    format!(
                        "item {k} has shape {}, incompatible with {} outside axis {axis}",
                        fmt_shape(sk),
                        fmt_shape(s0)
                    ),
                );
            }
            if i != axis && out[i] == Dim::Unknown {
                out[i] = sk[i];
            }
        }
        if interleave && !sk[axis].compatible(s0[axis]) {
            return c.err("values", "interleaved tensors must have equal shapes");
        }
        total = match (total, sk[axis]) {
            (Some(t), Dim::Known(n)) => match t.checked_add(n) {
                Some(t) => Some(t),
                None => return c.err("values", "the concatenated extent overflows"),
            },
            _ => None,
        };
    }
    out[axis] = total.map_or(Dim::Unknown, Dim::Known);
    Ok(vec![tensor(d, out)])
}

/// Most results a `split` may have (a bound on memory, far above any real program).
const MAX_SPLITS: i64 = 1 << 16;

pub(in crate::infer) fn infer_split(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let axis = c.axis("axis", c.const_int("axis")?, s.len())?;
    let sizes: Vec<Dim> = match (c.has("num_splits"), c.has("split_sizes")) {
        (true, false) => {
            let n = c.const_int("num_splits")?;
            if n <= 0 {
                return c.err("num_splits", "must be positive");
            }
            if n > MAX_SPLITS {
                return c.err(
                    "num_splits",
                    format!("{n} parts are more than the {MAX_SPLITS} allowed"),
                );
            }
            match s[axis] {
                Dim::Known(dim) if dim % n as usize != 0 => {
                    return c.err("num_splits", format!("{n} does not divide the extent {dim}"));
                }
                Dim::Known(dim) => vec![Dim::Known(dim / n as usize); n as usize],
                Dim::Unknown => vec![Dim::Unknown; n as usize],
            }
        }
        (false, true) => {
            let v = c.const_ints("split_sizes")?;
            if v.is_empty() {
                return c.err("split_sizes", "needs at least one size");
            }
            if v.iter().any(|&x| x < 0) {
                return c.err("split_sizes", "sizes must be non-negative");
            }
            if let Dim::Known(dim) = s[axis] {
                if v.iter().map(|&x| x as i128).sum::<i128>() != dim as i128 {
                    return c.err(
                        "split_sizes",
                        format!("sizes {v:?} do not sum to the extent {dim}"),
                    );
                }
            }
            v.iter().map(|&x| Dim::Known(x as usize)).collect()
        }
        _ => return c.err("num_splits", "give exactly one of num_splits and split_sizes"),
    };
    Ok(sizes
        .into_iter()
        .map(|n| {
            let mut o = s.to_vec();
            o[axis] = n;
            tensor(d, o)
        })
        .collect())
}

pub(in crate::infer) fn infer_expand_dims(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let axes = c.const_ints("axes")?;
    let out_rank = s.len() + axes.len();
    let axes = c.axes_mask("axes", &axes, out_rank)?;
    let mut it = s.iter();
    let out = (0..out_rank)
        .map(|i| {
            if axes[i] {
                Dim::Known(1)
            } else {
                *it.next().unwrap_or(&Dim::Unknown)
            }
        })
        .collect();
    Ok(vec![tensor(d, out)])
}

pub(in crate::infer) fn infer_squeeze(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let axes = match c.opt_const_ints("axes")? {
        Some(a) => {
            let axes = c.axes("axes", &a, s.len())?;
            for &a in &axes {
                if let Dim::Known(n) = s[a] {
                    if n != 1 {
                        return c.err("axes", format!("axis {a} has extent {n}, not 1"));
                    }
                }
            }
            axes
        }
        None => (0..s.len()).filter(|&i| s[i] == Dim::Known(1)).collect(),
    };
    let mut squeezed = vec![false; s.len()];
    for &a in &axes {
        squeezed[a] = true;
    }
    let out = (0..s.len()).filter(|&i| !squeezed[i]).map(|i| s[i]).collect();
    Ok(vec![tensor(d, out)])
}
