//! Where tensors sit inside a kernel's single input or output `[1, C, 1, W]`: named blocks
//! along one axis. A kernel declares its packings once; the MIL builder cuts its inputs out of
//! them and checks its outputs against them, and the step reads and writes the same blocks.

use anyhow::{Result, anyhow, ensure};

/// The axis blocks are stacked along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Blocks stacked along channels (all share the width).
    Channel,
    /// Blocks side by side along the width (all share the channel count): the spatial packing
    /// that carries weights inside the input (docs/ane-restrictions.md, dynamic weights).
    Spatial,
}

/// What a block holds: staged weights are written once per optimizer update, activations and
/// gradients once per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Weight,
    Activation,
}

/// A named block of a kernel's input or output. The names are constants of [`block`], so a
/// typo is a compile error and a reader can find every use of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub name: &'static str,
    pub role: Role,
}

impl Block {
    const fn weight(name: &'static str) -> Block {
        Block {
            name,
            role: Role::Weight,
        }
    }

    const fn act(name: &'static str) -> Block {
        Block {
            name,
            role: Role::Activation,
        }
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every block of every kernel. The shapes are stated where kernels declare their packings.
pub mod block {
    use super::Block;

    // Activations and their gradients.
    pub const X: Block = Block::act("x");
    pub const X2: Block = Block::act("x2");
    pub const X_NEXT: Block = Block::act("x_next");
    pub const XHAT: Block = Block::act("xhat");
    pub const DX: Block = Block::act("dx");
    pub const DX2: Block = Block::act("dx2");
    pub const DY: Block = Block::act("dy");
    pub const DXHAT: Block = Block::act("dxhat");
    pub const LOGITS: Block = Block::act("logits");
    pub const DLOGITS: Block = Block::act("dlogits");
    // Taps of the backward kernels for the weight gradients.
    pub const DQ: Block = Block::act("dq");
    pub const DK: Block = Block::act("dk");
    pub const DV: Block = Block::act("dv");
    pub const O: Block = Block::act("o");
    pub const GQ: Block = Block::act("gq");
    pub const GK: Block = Block::act("gk");
    pub const G: Block = Block::act("g");
    pub const DH1: Block = Block::act("dh1");
    pub const DH3: Block = Block::act("dh3");
    // Staged weights.
    pub const WQ: Block = Block::weight("wq");
    pub const WK: Block = Block::weight("wk");
    pub const WV: Block = Block::weight("wv");
    pub const WO: Block = Block::weight("wo");
    pub const QK_NORM: Block = Block::weight("qk_norm");
    pub const W1: Block = Block::weight("w1");
    pub const W2: Block = Block::weight("w2");
    pub const W3: Block = Block::weight("w3");
    pub const E: Block = Block::weight("e");
    // LoRA adapters (`kernels::lora`): Ãᵀ and B of each target.
    pub const LORA_A_Q: Block = Block::weight("lora_a_q");
    pub const LORA_B_Q: Block = Block::weight("lora_b_q");
    pub const LORA_A_K: Block = Block::weight("lora_a_k");
    pub const LORA_B_K: Block = Block::weight("lora_b_k");
    pub const LORA_A_V: Block = Block::weight("lora_a_v");
    pub const LORA_B_V: Block = Block::weight("lora_b_v");
    pub const LORA_A_O: Block = Block::weight("lora_a_o");
    pub const LORA_B_O: Block = Block::weight("lora_b_o");
    pub const LORA_A_GATE: Block = Block::weight("lora_a_gate");
    pub const LORA_B_GATE: Block = Block::weight("lora_b_gate");
    pub const LORA_A_UP: Block = Block::weight("lora_a_up");
    pub const LORA_B_UP: Block = Block::weight("lora_b_up");
    pub const LORA_A_DOWN: Block = Block::weight("lora_a_down");
    pub const LORA_B_DOWN: Block = Block::weight("lora_b_down");
    // Weight gradients, as the dW kernels emit them.
    pub const DWQ: Block = Block::act("dwq");
    pub const DWK: Block = Block::act("dwk");
    pub const DWV: Block = Block::act("dwv");
    pub const DWO_T: Block = Block::act("dwo_t");
    pub const DQ_NORM: Block = Block::act("dq_norm");
    pub const DK_NORM: Block = Block::act("dk_norm");
    pub const DW1_T: Block = Block::act("dw1_t");
    pub const DW2: Block = Block::act("dw2");
    pub const DW3_T: Block = Block::act("dw3_t");
    pub const DE: Block = Block::act("de");
}

/// One block's place in a packing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub block: Block,
    pub offset: usize,
    pub len: usize,
}

/// A `[1, channels, 1, width]` tensor split into named blocks along one axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packing {
    pub channels: usize,
    pub width: usize,
    pub axis: Axis,
    pub slots: Vec<Slot>,
}

impl Packing {
    /// Blocks laid out in order along `axis`; the other extent is `across`.
    pub fn new(axis: Axis, across: usize, blocks: &[(Block, usize)]) -> Packing {
        let mut offset = 0;
        let slots = blocks
            .iter()
            .map(|&(block, len)| {
                let s = Slot { block, offset, len };
                offset += len;
                s
            })
            .collect();
        let (channels, width) = match axis {
            Axis::Channel => (offset, across),
            Axis::Spatial => (across, offset),
        };
        Packing {
            channels,
            width,
            axis,
            slots,
        }
    }

    /// The same packing with the first block renamed: a dW kernel reads its backward's output
    /// with the outgoing gradient replaced by the incoming one.
    pub fn with_first(&self, block: Block) -> Packing {
        let mut p = self.clone();
        p.slots[0].block = block;
        p
    }

    pub fn slot(&self, b: Block) -> Result<&Slot> {
        self.slots
            .iter()
            .find(|s| s.block == b)
            .ok_or_else(|| anyhow!("packing has no block `{b}`"))
    }

    pub fn has(&self, b: Block) -> bool {
        self.slots.iter().any(|s| s.block == b)
    }

    pub fn shape(&self) -> [usize; 4] {
        [1, self.channels, 1, self.width]
    }

    pub fn elements(&self) -> usize {
        self.channels * self.width
    }

    /// Elements of the blocks with `role`.
    pub fn elements_of(&self, role: Role) -> usize {
        self.slots
            .iter()
            .filter(|s| s.block.role == role)
            .map(|s| self.dims(s).0 * self.dims(s).1)
            .sum()
    }

    fn dims(&self, s: &Slot) -> (usize, usize) {
        match self.axis {
            Axis::Channel => (s.len, self.width),
            Axis::Spatial => (self.channels, s.len),
        }
    }

    /// `(channels, width)` of a block.
    pub fn block_dims(&self, b: Block) -> Result<(usize, usize)> {
        Ok(self.dims(self.slot(b)?))
    }

    /// Copies a row-major `[channels, width]` block into its place in a packed buffer.
    pub fn write_block<T: Copy>(&self, buf: &mut [T], b: Block, block: &[T]) -> Result<()> {
        let s = self.slot(b)?;
        let (c, w) = self.dims(s);
        ensure!(
            block.len() == c * w,
            "block `{b}` needs {c}×{w} values, got {}",
            block.len()
        );
        ensure!(buf.len() == self.elements(), "packed buffer has the wrong length");
        match self.axis {
            Axis::Channel => buf[s.offset * w..(s.offset + c) * w].copy_from_slice(block),
            Axis::Spatial => {
                for (r, row) in block.chunks_exact(w).enumerate() {
                    let at = r * self.width + s.offset;
                    buf[at..at + w].copy_from_slice(row);
                }
            }
        }
        Ok(())
    }

    /// Copies a block out of a packed buffer as row-major `[channels, width]`.
    pub fn read_block<T: Copy>(&self, buf: &[T], b: Block, out: &mut [T]) -> Result<()> {
        let s = self.slot(b)?;
        let (c, w) = self.dims(s);
        ensure!(
            out.len() == c * w,
            "block `{b}` has {c}×{w} values, buffer {}",
            out.len()
        );
        ensure!(buf.len() == self.elements(), "packed buffer has the wrong length");
        match self.axis {
            Axis::Channel => out.copy_from_slice(&buf[s.offset * w..(s.offset + c) * w]),
            Axis::Spatial => {
                for (r, row) in out.chunks_exact_mut(w).enumerate() {
                    let at = r * self.width + s.offset;
                    row.copy_from_slice(&buf[at..at + w]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::block::{DX, E, X};
    use super::*;

    #[test]
    fn spatial_and_channel_blocks_round_trip() {
        let l = Packing::new(Axis::Spatial, 2, &[(X, 3), (E, 2)]);
        assert_eq!((l.channels, l.width), (2, 5));
        assert_eq!(
            (l.elements_of(Role::Weight), l.elements_of(Role::Activation)),
            (4, 6)
        );
        let mut buf = vec![0; 10];
        l.write_block(&mut buf, X, &[1, 2, 3, 4, 5, 6]).unwrap();
        l.write_block(&mut buf, E, &[7, 8, 9, 10]).unwrap();
        assert_eq!(buf, [1, 2, 3, 7, 8, 4, 5, 6, 9, 10]);
        let mut out = vec![0; 4];
        l.read_block(&buf, E, &mut out).unwrap();
        assert_eq!(out, [7, 8, 9, 10]);
        let c = Packing::new(Axis::Channel, 2, &[(X, 1), (E, 2)]);
        let mut buf = vec![0; 6];
        c.write_block(&mut buf, E, &[1, 2, 3, 4]).unwrap();
        assert_eq!(buf, [0, 0, 1, 2, 3, 4]);
        assert!(c.write_block(&mut buf, X, &[1]).is_err());
        assert!(c.slot(DX).is_err());
        assert_eq!(c.with_first(DX).slots[0].block, DX);
    }
}
