//! Linear algebra: `linear`, `matmul`, `conv`.

use super::tensor;
use crate::error::InferError;
use crate::infer::Ctx;
use crate::shapes::{self, fmt_shape};
use crate::types::{Dim, Type};

pub(in crate::infer) fn infer_linear(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(in crate::infer) fn infer_matmul(c: &Ctx) -> Result<Vec<Type>, InferError> {
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

pub(in crate::infer) fn infer_conv(c: &Ctx) -> Result<Vec<Type>, InferError> {
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
