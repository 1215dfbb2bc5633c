//! Convolution as GEMM: per batch and group, `out[Cout/g, P] = W[Cout/g, Cin/g·K] · cols`, where
//! `cols` is the input itself for 1×1 kernels with stride 1 and no padding, and an im2col copy
//! otherwise.

use gemm::Parallelism;

use crate::kernels::matmul::{Mat, gemm_f32};
use crate::layout::Slot;
use crate::storage::{Ctx, Storage};
use crate::walk::MAX_RANK;

/// A planned convolution; x, weight and bias are contiguous.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    pub x: Slot,
    pub x_off: usize,
    pub w: Slot,
    pub w_off: usize,
    pub bias: Option<(Slot, usize)>,
    pub out: Slot,
    /// im2col scratch; `None` for the direct 1×1 case.
    pub cols: Option<Slot>,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub in_sp: Vec<usize>,
    pub k_sp: Vec<usize>,
    pub out_sp: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pad_begin: Vec<usize>,
}

pub(crate) fn conv(c: &Conv, st: &mut Storage, ctx: &Ctx) {
    let mut cols = c.cols.map(|s| std::mem::take(&mut st.f[s.idx]));
    let in_p: usize = c.in_sp.iter().product();
    let out_p: usize = c.out_sp.iter().product();
    let kp: usize = c.k_sp.iter().product();
    let (cin_g, cout_g) = (c.cin / c.groups, c.cout / c.groups);
    let kk = cin_g * kp;
    let par = if ctx.parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let total = c.batch * c.cout * out_p;
    st.with_out::<f32, _>(c.out, |out, st| {
        let x = st.get::<f32>(c.x);
        let w = st.get::<f32>(c.w);
        let bias = c.bias.map(|(s, off)| &st.get::<f32>(s)[off..off + c.cout]);
        for b in 0..c.batch {
            for g in 0..c.groups {
                let x_at = c.x_off + (b * c.cin + g * cin_g) * in_p;
                let o_at = (b * c.cout + g * cout_g) * out_p;
                if let Some(bias) = bias {
                    for o in 0..cout_g {
                        out[o_at + o * out_p..o_at + (o + 1) * out_p].fill(bias[g * cout_g + o]);
                    }
                }
                let dst = Mat {
                    off: o_at,
                    rs: out_p as isize,
                    cs: 1,
                };
                let wm = Mat {
                    off: c.w_off + g * cout_g * kk,
                    rs: kk as isize,
                    cs: 1,
                };
                let dims = (cout_g, out_p, kk);
                let rhs = Mat {
                    off: 0,
                    rs: out_p as isize,
                    cs: 1,
                };
                match cols.as_mut() {
                    None => {
                        let xm = Mat { off: x_at, ..rhs };
                        gemm_f32(out, dst, w, wm, x, xm, dims, bias.is_some(), par);
                    }
                    Some(cols) => {
                        im2col(c, &x[x_at..x_at + cin_g * in_p], &mut cols[..kk * out_p], cin_g);
                        gemm_f32(out, dst, w, wm, cols, rhs, dims, bias.is_some(), par);
                    }
                }
            }
        }
        ctx.round_all(&mut out[..total]);
    });
    if let (Some(s), Some(v)) = (c.cols, cols) {
        st.f[s.idx] = v;
    }
}

/// Fills `cols[(ci·K + kk), p]` with the input under kernel tap `kk` at output position `p`
/// (zero where the tap falls in the padding).
fn im2col(c: &Conv, x: &[f32], cols: &mut [f32], cin_g: usize) {
    let nsp = c.in_sp.len();
    let out_p: usize = c.out_sp.iter().product();
    let kp: usize = c.k_sp.iter().product();
    let mut kidx = [0usize; MAX_RANK];
    for t in 0..kp {
        let mut rem = t;
        for d in (0..nsp).rev() {
            kidx[d] = rem % c.k_sp[d];
            rem /= c.k_sp[d];
        }
        let mut oidx = [0usize; MAX_RANK];
        for p in 0..out_p {
            // Input position of this tap, as a flat index, or None in the padding.
            let mut flat = Some(0usize);
            for d in 0..nsp {
                let pos =
                    (oidx[d] * c.strides[d] + kidx[d] * c.dilations[d]) as isize - c.pad_begin[d] as isize;
                flat = match flat {
                    Some(f) if pos >= 0 && (pos as usize) < c.in_sp[d] => Some(f * c.in_sp[d] + pos as usize),
                    _ => None,
                };
            }
            let in_p = x.len() / cin_g;
            for ci in 0..cin_g {
                cols[(ci * kp + t) * out_p + p] = flat.map_or(0.0, |f| x[ci * in_p + f]);
            }
            let mut d = nsp;
            while d > 0 {
                d -= 1;
                oidx[d] += 1;
                if oidx[d] < c.out_sp[d] {
                    break;
                }
                oidx[d] = 0;
            }
        }
    }
}
