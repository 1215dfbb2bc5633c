//! Inference rules, one function per op (or op family).

use super::{Arg, ArgVal, Ctx};
use crate::error::InferError;
use crate::shapes::{self, fmt_shape};
use crate::types::{DType, Dim, Shape, Type};

pub(super) fn tensor(dtype: DType, shape: Shape) -> Type {
    Type::Tensor { dtype, shape }
}

pub(super) fn infer_cast(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (_, s) = c.tensor("x")?;
    let name = c.const_str("dtype")?;
    let d = DType::from_name(&name)
        .filter(|d| *d != DType::String)
        .map_or_else(|| c.err("dtype", format!("unknown target dtype {name:?}")), Ok)?;
    Ok(vec![tensor(d, s.to_vec())])
}

pub(super) fn unary_float(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    if c.has("epsilon") {
        let (ed, es) = c.tensor("epsilon")?;
        if ed != d || !es.is_empty() {
            return c.err("epsilon", format!("expected a {d} scalar"));
        }
    }
    Ok(vec![tensor(d, s.to_vec())])
}

pub(super) fn infer_gelu(c: &Ctx) -> Result<Vec<Type>, InferError> {
    if c.has("mode") {
        let m = c.const_str("mode")?;
        if !["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"].contains(&m.as_str()) {
            return c.err("mode", format!("unknown gelu mode {m:?}"));
        }
    }
    unary_float(c)
}

pub(super) fn binary(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (dx, sx) = c.tensor("x")?;
    let (dy, sy) = c.tensor("y")?;
    if dx != dy {
        return c.err("y", format!("dtype {dy} differs from x's {dx}"));
    }
    if dx == DType::String || dx == DType::Bool {
        return c.err("x", format!("{dx} is not a numeric dtype"));
    }
    let s = shapes::broadcast(sx, sy).or_else(|m| c.err("y", m))?;
    Ok(vec![tensor(dx, s)])
}

pub(super) fn infer_softmax(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    let axis = c.opt_const_int("axis", -1)?;
    c.axis("axis", axis, s.len())?;
    Ok(vec![tensor(d, s.to_vec())])
}

pub(super) fn infer_reduce(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let keep = c.opt_const_bool("keep_dims", false)?;
    let axes = match c.opt_const_ints("axes")? {
        Some(a) => c.axes_mask("axes", &a, s.len())?,
        None => vec![true; s.len()],
    };
    let out = s
        .iter()
        .enumerate()
        .filter_map(|(i, &dim)| match (axes[i], keep) {
            (false, _) => Some(dim),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect();
    Ok(vec![tensor(d, out)])
}

pub(super) fn infer_slice_by_size(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_slice_by_index(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_reshape(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_transpose(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_concat(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_split(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_expand_dims(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_squeeze(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(super) fn infer_layer_norm(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    let axes = match c.opt_const_ints("axes")? {
        Some(a) => c.axes("axes", &a, s.len())?,
        None => (0..s.len()).collect(),
    };
    let norm_shape: Vec<Dim> = axes.iter().map(|&a| s[a]).collect();
    for p in ["gamma", "beta"] {
        if c.has(p) {
            let (pd, ps) = c.tensor(p)?;
            if pd != d {
                return c.err(p, format!("dtype {pd} differs from x's {d}"));
            }
            if ps.len() != norm_shape.len() || ps.iter().zip(&norm_shape).any(|(a, b)| !a.compatible(*b)) {
                return c.err(
                    p,
                    format!(
                        "shape {} must equal the normalised shape {}",
                        fmt_shape(ps),
                        fmt_shape(&norm_shape)
                    ),
                );
            }
        }
    }
    if c.has("epsilon") {
        let (_, es) = c.tensor("epsilon")?;
        if !es.is_empty() {
            return c.err("epsilon", "must be a scalar");
        }
    }
    Ok(vec![tensor(d, s.to_vec())])
}

pub(super) fn infer_linear(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let (wd, ws) = c.tensor("weight")?;
    if wd != d {
        return c.err("weight", format!("dtype {wd} differs from x's {d}"));
    }
    let Some(&k) = s.last() else {
        return c.err("x", "expected a tensor of rank ≥ 1, found a scalar");
    };
    let [o, wk] = ws else {
        return c.err("weight", format!("expected [out, in], found {}", fmt_shape(ws)));
    };
    if !k.compatible(*wk) {
        return c.err("weight", format!("weight has {wk} input features, x has {k}"));
    }
    if c.has("bias") {
        let (bd, bs) = c.tensor("bias")?;
        if bd != d || bs.len() != 1 || !bs[0].compatible(*o) {
            return c.err(
                "bias",
                format!("expected {d} [{o}], found {bd} {}", fmt_shape(bs)),
            );
        }
    }
    let mut out = s.to_vec();
    *out.last_mut().expect("rank checked") = *o;
    Ok(vec![tensor(d, out)])
}

pub(super) fn infer_matmul(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (dx, sx) = c.tensor("x")?;
    let (dy, sy) = c.tensor("y")?;
    if dx != dy {
        return c.err("y", format!("dtype {dy} differs from x's {dx}"));
    }
    if sx.is_empty() || sy.is_empty() {
        return c.err(
            if sx.is_empty() { "x" } else { "y" },
            "matmul needs tensors of rank ≥ 1",
        );
    }
    let tx = c.opt_const_bool("transpose_x", false)?;
    let ty = c.opt_const_bool("transpose_y", false)?;
    let mut x = sx.to_vec();
    let mut y = sy.to_vec();
    let x_vec = x.len() == 1;
    let y_vec = y.len() == 1;
    if x_vec {
        x.insert(0, Dim::Known(1));
    } else if tx {
        let n = x.len();
        x.swap(n - 1, n - 2);
    }
    if y_vec {
        y.push(Dim::Known(1));
    } else if ty {
        let n = y.len();
        y.swap(n - 1, n - 2);
    }
    let (m, kx) = (x[x.len() - 2], x[x.len() - 1]);
    let (ky, n) = (y[y.len() - 2], y[y.len() - 1]);
    if !kx.compatible(ky) {
        return c.err(
            "y",
            format!(
                "inner dimensions differ: x {} (transpose_x = {tx}) has K = {kx}, y {} (transpose_y = {ty}) has K = {ky}",
                fmt_shape(sx),
                fmt_shape(sy)
            ),
        );
    }
    let mut out = shapes::broadcast(&x[..x.len() - 2], &y[..y.len() - 2])
        .or_else(|m| c.err("y", format!("batch dimensions: {m}")))?;
    if !x_vec {
        out.push(m);
    }
    if !y_vec {
        out.push(n);
    }
    Ok(vec![tensor(dx, out)])
}

pub(super) fn infer_conv(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let (wd, ws) = c.tensor("weight")?;
    if s.len() < 3 {
        return c.err(
            "x",
            format!("expected [N, C_in, spatial…], found {}", fmt_shape(s)),
        );
    }
    if wd != d {
        return c.err("weight", format!("dtype {wd} differs from x's {d}"));
    }
    if ws.len() != s.len() {
        return c.err(
            "weight",
            format!("rank {} differs from x's rank {}", ws.len(), s.len()),
        );
    }
    let nsp = s.len() - 2;
    let groups = c.opt_const_int("groups", 1)?;
    if groups <= 0 {
        return c.err("groups", "must be positive");
    }
    let groups = groups as usize;
    let spatial_param = |name: &str, default: i64| -> Result<Vec<i64>, InferError> {
        let v = c.opt_const_ints(name)?.unwrap_or(vec![default; nsp]);
        if v.len() != nsp {
            return c.err(name, format!("has {} entries, expected {nsp}", v.len()));
        }
        if v.iter().any(|&x| x < (if default == 0 { 0 } else { 1 })) {
            return c.err(name, format!("invalid values {v:?}"));
        }
        Ok(v)
    };
    let strides = spatial_param("strides", 1)?;
    let dilations = spatial_param("dilations", 1)?;
    let pad_type = if c.has("pad_type") {
        c.const_str("pad_type")?
    } else {
        "valid".into()
    };
    if !["valid", "custom", "same", "same_lower"].contains(&pad_type.as_str()) {
        return c.err(
            "pad_type",
            format!("unknown pad_type {pad_type:?} (valid, custom, same, same_lower)"),
        );
    }
    let pad = c.opt_const_ints("pad")?.unwrap_or(vec![0; 2 * nsp]);
    if pad.len() != 2 * nsp || pad.iter().any(|&p| p < 0) {
        return c.err(
            "pad",
            format!("expected {} non-negative values, found {pad:?}", 2 * nsp),
        );
    }
    if let (Dim::Known(cin), Dim::Known(wcin)) = (s[1], ws[1]) {
        if wcin.checked_mul(groups) != Some(cin) {
            return c.err(
                "weight",
                format!("weight has {wcin} input channels per group × {groups} groups, x has {cin} channels"),
            );
        }
    }
    if let Dim::Known(cout) = ws[0] {
        if cout % groups != 0 {
            return c.err(
                "groups",
                format!("{groups} groups do not divide {cout} output channels"),
            );
        }
    }
    if c.has("bias") {
        let (bd, bs) = c.tensor("bias")?;
        if bd != d || bs.len() != 1 || !bs[0].compatible(ws[0]) {
            return c.err(
                "bias",
                format!("expected {d} [{}], found {bd} {}", ws[0], fmt_shape(bs)),
            );
        }
    }
    let mut out = vec![s[0], ws[0]];
    for i in 0..nsp {
        out.push(match (s[2 + i], ws[2 + i]) {
            (Dim::Known(inp), Dim::Known(k)) => {
                let ax = shapes::conv_axis(
                    inp,
                    k,
                    strides[i] as usize,
                    dilations[i] as usize,
                    &pad_type,
                    (pad[2 * i] as usize, pad[2 * i + 1] as usize),
                )
                .or_else(|m| c.err("weight", format!("spatial axis {i}: {m}")))?;
                Dim::Known(ax.out)
            }
            _ => Dim::Unknown,
        });
    }
    Ok(vec![tensor(d, out)])
}

pub(super) fn infer_select(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (cd, cs) = c.tensor("cond")?;
    let (ad, as_) = c.tensor("a")?;
    let (bd, bs) = c.tensor("b")?;
    if cd != DType::Bool {
        return c.err("cond", format!("expected bool, found {cd}"));
    }
    if ad != bd {
        return c.err("b", format!("dtype {bd} differs from a's {ad}"));
    }
    let s = shapes::broadcast(as_, bs).or_else(|m| c.err("b", m))?;
    let s = shapes::broadcast(cs, &s).or_else(|m| c.err("cond", m))?;
    Ok(vec![tensor(ad, s)])
}

/// Checks a per-tensor or per-axis quantization parameter against the data shape.
pub(super) fn check_qparam(
    c: &Ctx,
    name: &str,
    data: &[Dim],
    axis: Option<usize>,
) -> Result<DType, InferError> {
    let (d, s) = c.tensor(name)?;
    let ok = match (s, axis) {
        ([], _) => true,
        ([n], Some(a)) => n.compatible(data[a]),
        _ => false,
    };
    if !ok {
        return c.err(
            name,
            format!(
                "must be a scalar or a vector along the axis, found {}",
                fmt_shape(s)
            ),
        );
    }
    Ok(d)
}

pub(super) fn opt_axis(c: &Ctx, rank: usize) -> Result<Option<usize>, InferError> {
    if c.has("axis") {
        Ok(Some(c.axis("axis", c.const_int("axis")?, rank)?))
    } else {
        Ok(None)
    }
}

pub(super) fn infer_quantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (_, s) = c.float_tensor("input")?;
    let axis = opt_axis(c, s.len())?;
    let out = c.const_str("output_dtype")?;
    let od = match out.as_str() {
        "int8" => DType::Int8,
        "uint8" => DType::Uint8,
        o => {
            return c.err(
                "output_dtype",
                format!("must be \"int8\" or \"uint8\", found {o:?}"),
            );
        }
    };
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if c.has("zero_point") && check_qparam(c, "zero_point", s, axis)? != od {
        return c.err("zero_point", format!("must have dtype {od}"));
    }
    Ok(vec![tensor(od, s.to_vec())])
}

pub(super) fn infer_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("input")?;
    if !matches!(d, DType::Int8 | DType::Uint8) {
        return c.err("input", format!("expected int8 or uint8, found {d}"));
    }
    let axis = opt_axis(c, s.len())?;
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if c.has("zero_point") && check_qparam(c, "zero_point", s, axis)? != d {
        return c.err("zero_point", format!("must have dtype {d}"));
    }
    Ok(vec![tensor(sd, s.to_vec())])
}

pub(super) fn infer_affine_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("quantized_data")?;
    if !matches!(d, DType::Int8 | DType::Uint8) {
        return c.err("quantized_data", format!("expected int8 or uint8, found {d}"));
    }
    let axis = Some(c.axis("axis", c.const_int("axis")?, s.len())?);
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if check_qparam(c, "zero_point", s, axis)? != d {
        return c.err("zero_point", format!("must have dtype {d}"));
    }
    Ok(vec![tensor(sd, s.to_vec())])
}
