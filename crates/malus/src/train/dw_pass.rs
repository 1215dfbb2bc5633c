//! One block's weight gradients after its backward kernel ran: on the device through the dW
//! kernel, or on the host as f32 GEMMs over the same taps (`--dw host`).

use anyhow::Result;

use super::grads::LayerAcc;
use super::kernels::Kernels;
use crate::device::Packed;
use crate::kernels::dw::{self, Term};
use crate::kernels::{Block, KernelId, Shape};

/// One block's weight gradients: the dW kernel `id` and the terms it computes.
pub(super) struct DwPass<'t> {
    pub(super) id: KernelId,
    pub(super) terms: &'t [Term],
}

impl DwPass<'_> {
    /// Adds the gradients of the last run of `bwd` (on `input`) into `acc`: on the device, the
    /// dW kernel over the backward's taps (its output, with the outgoing gradient replaced by
    /// the incoming one from `input`); on the host, the same terms as f32 GEMMs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &self,
        kernels: &mut Kernels,
        bwd: KernelId,
        input: &Packed,
        dw_in: &mut Packed,
        acc: &mut LayerAcc,
        s: &Shape,
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let taps = kernels.output(bwd)?;
        if kernels.has(self.id) {
            dw_in.copy_from(taps)?;
            let incoming = dw_in.packing().slots[0].block;
            input.send(incoming, dw_in, incoming)?;
            let out = kernels.run(self.id, dw_in)?;
            for t in self.terms {
                out.add_to(t.out(), acc.get_mut(t.out())?, scratch)?;
            }
        } else {
            let mut tap = |b: Block| {
                if taps.packing().has(b) {
                    taps.read_vec(b)
                } else {
                    input.read_vec(b)
                }
            };
            for t in self.terms {
                dw::add_on_host(t, s, &mut tap, acc.get_mut(t.out())?)?;
            }
        }
        Ok(())
    }
}
