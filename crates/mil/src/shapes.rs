//! Shape arithmetic shared by type inference and the executors, so both agree on what an op means.

use crate::types::{Dim, Shape};

/// Normalises a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Numpy broadcasting of two shapes (`?` is compatible with any extent).
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Shape, String> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            Dim::Known(1)
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            Dim::Known(1)
        };
        out.push(match (da, db) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d,
            (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(x),
            (Dim::Known(x), Dim::Known(y)) => {
                return Err(format!(
                    "shapes {} and {} cannot be broadcast (dimension {x} vs {y})",
                    fmt_shape(a),
                    fmt_shape(b)
                ));
            }
            (Dim::Unknown, Dim::Known(x)) | (Dim::Known(x), Dim::Unknown) => {
                if x == 1 {
                    Dim::Unknown
                } else {
                    Dim::Known(x)
                }
            }
            (Dim::Unknown, Dim::Unknown) => Dim::Unknown,
        });
    }
    Ok(out)
}

/// The product of extents, `None` when it overflows.
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// `[1, 64, ?]`
pub fn fmt_shape(s: &[Dim]) -> String {
    let d: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", d.join(", "))
}

/// Resolves a `reshape` target: `-1` is inferred, `0` copies the input extent at that index.
pub fn reshape_target(input: &[Dim], target: &[i64]) -> Result<Shape, String> {
    if target.iter().filter(|&&t| t == -1).count() > 1 {
        return Err("at most one target dimension may be -1".into());
    }
    let mut out = Vec::with_capacity(target.len());
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            -1 => Dim::Unknown,
            0 => *input
                .get(i)
                .ok_or_else(|| format!("target dimension {i} is 0 but the input has rank {}", input.len()))?,
            t if t > 0 => Dim::Known(t as usize),
            t => return Err(format!("invalid target dimension {t}")),
        });
    }
    let too_big =
        |what: &str, s: &[Dim]| format!("{what} {} has more elements than fit in memory", fmt_shape(s));
    let in_total = match input.iter().map(|d| d.known()).collect::<Option<Vec<usize>>>() {
        Some(dims) => Some(checked_product(&dims).ok_or_else(|| too_big("input", input))?),
        None => None,
    };
    let known_out_dims: Vec<usize> = out.iter().filter_map(|d| d.known()).collect();
    let known_out = checked_product(&known_out_dims).ok_or_else(|| too_big("target", &out))?;
    if let Some(total) = in_total {
        if let Some(pos) = target.iter().position(|&t| t == -1) {
            if known_out == 0 || total % known_out != 0 {
                return Err(format!("cannot reshape {total} elements into {:?}", target));
            }
            out[pos] = Dim::Known(total / known_out);
        } else if out.iter().all(|d| d.known().is_some()) && known_out != total {
            return Err(format!(
                "cannot reshape {} ({total} elements) into {} ({known_out} elements)",
                fmt_shape(input),
                fmt_shape(&out)
            ));
        }
    }
    Ok(out)
}

/// One axis of a `slice_by_index`: first index, step and number of elements taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisSlice {
    pub start: i64,
    pub stride: i64,
    pub len: usize,
}

/// The per-axis selection of `slice_by_index` (Core ML semantics: negative indices count from
/// the end, masks select the full range, indices are clamped like Python slices).
pub fn slice_by_index_axis(
    dim: usize,
    begin: i64,
    end: i64,
    stride: i64,
    begin_mask: bool,
    end_mask: bool,
) -> Result<AxisSlice, String> {
    if stride == 0 {
        return Err("stride must not be 0".into());
    }
    // In i128 so that no index or step of i64 range can overflow.
    let d = dim as i128;
    let norm = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
    let (b, e) = if stride > 0 {
        let b = if begin_mask { 0 } else { norm(begin).clamp(0, d) };
        let e = if end_mask { d } else { norm(end).clamp(0, d) };
        (b, e)
    } else {
        let b = if begin_mask {
            d - 1
        } else {
            norm(begin).clamp(-1, d - 1)
        };
        let e = if end_mask { -1 } else { norm(end).clamp(-1, d - 1) };
        (b, e)
    };
    let span = if stride > 0 { e - b } else { b - e };
    let step = stride.unsigned_abs() as i128;
    let len = if span <= 0 { 0 } else { (span + step - 1) / step };
    Ok(AxisSlice {
        start: b as i64,
        stride,
        len: len as usize,
    })
}

/// Output extent and leading/trailing padding of one spatial axis of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvAxis {
    pub out: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
}

/// Geometry of one conv spatial axis for `pad_type` valid / custom / same / same_lower.
pub fn conv_axis(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_type: &str,
    custom: (usize, usize),
) -> Result<ConvAxis, String> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return Err("kernel size, stride and dilation must be positive".into());
    }
    let overflow = || "the convolution geometry overflows".to_string();
    let k_eff = dilation
        .checked_mul(kernel - 1)
        .and_then(|k| k.checked_add(1))
        .ok_or_else(overflow)?;
    let (pb, pe) = match pad_type {
        "valid" => (0, 0),
        "custom" => custom,
        "same" | "same_lower" => {
            let out = input.div_ceil(stride);
            let total = match out.checked_sub(1) {
                Some(o) => o
                    .checked_mul(stride)
                    .and_then(|v| v.checked_add(k_eff))
                    .ok_or_else(overflow)?
                    .saturating_sub(input),
                None => 0,
            };
            let small = total / 2;
            if pad_type == "same" {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }
        other => {
            return Err(format!(
                "unknown pad_type {other:?} (valid, custom, same, same_lower)"
            ));
        }
    };
    let padded = input
        .checked_add(pb)
        .and_then(|v| v.checked_add(pe))
        .ok_or_else(overflow)?;
    if padded < k_eff {
        return Err(format!(
            "the kernel (effective extent {k_eff}) is larger than the padded input ({padded})"
        ));
    }
    Ok(ConvAxis {
        out: (padded - k_eff) / stride + 1,
        pad_begin: pb,
        pad_end: pe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::shape;

    #[test]
    fn broadcast_rules() {
        assert_eq!(
            broadcast(&shape(&[1, 4, 1]), &shape(&[3, 1, 5])).unwrap(),
            shape(&[3, 4, 5])
        );
        assert_eq!(broadcast(&shape(&[]), &shape(&[2, 3])).unwrap(), shape(&[2, 3]));
        assert!(broadcast(&shape(&[2, 3]), &shape(&[4, 3])).is_err());
    }

    #[test]
    fn slice_axes_match_python() {
        // x[1:7:2] over 10 → 1,3,5
        assert_eq!(
            slice_by_index_axis(10, 1, 7, 2, false, false).unwrap(),
            AxisSlice {
                start: 1,
                stride: 2,
                len: 3
            }
        );
        // x[::-1] over 4 → 3,2,1,0
        assert_eq!(
            slice_by_index_axis(4, 0, 0, -1, true, true).unwrap(),
            AxisSlice {
                start: 3,
                stride: -1,
                len: 4
            }
        );
        // x[-3:-1] over 5 → 2,3
        assert_eq!(slice_by_index_axis(5, -3, -1, 1, false, false).unwrap().len, 2);
        // out of range end is clamped
        assert_eq!(slice_by_index_axis(5, 2, 100, 1, false, false).unwrap().len, 3);
        assert!(slice_by_index_axis(5, 0, 1, 0, false, false).is_err());
    }

    #[test]
    fn conv_geometry() {
        assert_eq!(conv_axis(10, 3, 1, 1, "valid", (0, 0)).unwrap().out, 8);
        assert_eq!(conv_axis(10, 3, 2, 1, "valid", (0, 0)).unwrap().out, 4);
        assert_eq!(conv_axis(10, 3, 1, 2, "valid", (0, 0)).unwrap().out, 6);
        let s = conv_axis(10, 4, 3, 1, "same", (0, 0)).unwrap();
        assert_eq!((s.out, s.pad_begin, s.pad_end), (4, 1, 2));
        let s = conv_axis(10, 4, 3, 1, "same_lower", (0, 0)).unwrap();
        assert_eq!((s.pad_begin, s.pad_end), (2, 1));
        assert_eq!(conv_axis(5, 3, 1, 1, "custom", (1, 1)).unwrap().out, 5);
        assert!(conv_axis(2, 3, 1, 1, "valid", (0, 0)).is_err());
    }

    #[test]
    fn reshape_resolution() {
        assert_eq!(
            reshape_target(&shape(&[2, 3, 4]), &[6, -1]).unwrap(),
            shape(&[6, 4])
        );
        assert_eq!(
            reshape_target(&shape(&[2, 3, 4]), &[0, 12]).unwrap(),
            shape(&[2, 12])
        );
        assert!(reshape_target(&shape(&[2, 3, 4]), &[5, -1]).is_err());
        assert!(reshape_target(&shape(&[2, 3, 4]), &[-1, -1]).is_err());
        assert!(reshape_target(&shape(&[2, 3, 4]), &[2, 3, 5]).is_err());
    }
}
