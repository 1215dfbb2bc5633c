//! Fused elementwise groups: a run of float unary/binary ops evaluated in one pass over the
//! output, 256 elements at a time in stack registers. Each op is rounded to fp16 on its own in
//! fp16 numerics, so fusing never changes results.

use crate::kernels::math::{self, Arg, Bin, Un};
use crate::layout::Slot;
use crate::storage::{Ctx, Storage};
use crate::walk::{MAX_OPS, Walk, gather};

/// Elements per register.
pub(crate) const CH: usize = 256;
/// Registers per group; a group needing more is split.
pub(crate) const MAX_REGS: usize = 12;
/// External inputs per group (the walk also drives the output).
pub(crate) const MAX_INPUTS: usize = MAX_OPS - 1;

/// An operand: a register or an immediate (a constant scalar input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Src {
    Reg(u8),
    Imm(f32),
}

/// One instruction of a group. Destination registers never equal a source register.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ins {
    Load { input: u8, dst: u8 },
    Un { op: Un, a: u8, dst: u8 },
    Bin { op: Bin, a: Src, b: Src, dst: u8 },
}

/// A planned group: its program, its inputs and a walk over output (operand 0) and inputs.
#[derive(Clone, Debug)]
pub(crate) struct Fused {
    pub ins: Vec<Ins>,
    pub result: u8,
    pub out: Slot,
    pub inputs: Vec<Slot>,
    pub walk: Walk,
}

/// Evaluates a group into its (contiguous) output buffer.
pub(crate) fn run(f: &Fused, st: &Storage, out: &mut [f32], ctx: &Ctx) {
    let total = f.walk.len();
    ctx.chunks(&mut out[..total], CH, 32, |first, chunk| {
        eval(f, st, chunk, first * CH, ctx, &mut regs())
    });
}

/// The register file of one task.
pub(crate) type Regs = [Reg; MAX_REGS];

pub(crate) fn regs() -> Regs {
    [[0f32; CH]; MAX_REGS]
}

/// Evaluates output elements `[start, start + chunk.len())` of a group into `chunk`.
pub(crate) fn eval(f: &Fused, st: &Storage, chunk: &mut [f32], start: usize, ctx: &Ctx, regs: &mut Regs) {
    let mut srcs: [&[f32]; MAX_INPUTS] = [&[]; MAX_INPUTS];
    let mut strides = [0isize; MAX_INPUTS];
    for (k, s) in f.inputs.iter().enumerate() {
        srcs[k] = st.get(*s);
        strides[k] = f.walk.inner_stride(k + 1);
    }
    f.walk.runs(start, start + chunk.len(), |offs, n| {
        let mut done = 0;
        while done < n {
            let m = (n - done).min(CH);
            for ins in &f.ins {
                match *ins {
                    Ins::Load { input, dst } => {
                        let k = input as usize;
                        let at = (offs[k + 1] as isize + done as isize * strides[k]) as usize;
                        gather(&mut regs[dst as usize][..m], srcs[k], at, strides[k]);
                    }
                    Ins::Un { op, a, dst } => {
                        let (d, r) = split(regs, dst);
                        math::unary(op, &r(a)[..m], &mut d[..m]);
                        ctx.round(&mut d[..m]);
                    }
                    Ins::Bin { op, a, b, dst } => {
                        let (d, r) = split(regs, dst);
                        let arg = |s: Src| match s {
                            Src::Reg(i) => Arg::Run(&r(i)[..m]),
                            Src::Imm(v) => Arg::Scalar(v),
                        };
                        math::binary(op, arg(a), arg(b), &mut d[..m]);
                        ctx.round(&mut d[..m]);
                    }
                }
            }
            let o = offs[0] - start + done;
            chunk[o..o + m].copy_from_slice(&regs[f.result as usize][..m]);
            done += m;
        }
    });
}

type Reg = [f32; CH];

/// Borrows register `d` mutably and gives a reader for every other register.
#[inline(always)]
fn split<'r>(regs: &'r mut [Reg; MAX_REGS], d: u8) -> (&'r mut Reg, impl Fn(u8) -> &'r Reg + 'r) {
    let d = d as usize;
    let (lo, rest) = regs.split_at_mut(d);
    let (dst, hi) = rest.split_first_mut().expect("register index in range");
    let (lo, hi) = (&*lo, &*hi);
    (dst, move |i: u8| {
        let i = i as usize;
        if i < d { &lo[i] } else { &hi[i - d - 1] }
    })
}
