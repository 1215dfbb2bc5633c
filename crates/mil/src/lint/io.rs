//! Rules on a function's inputs and outputs (the IOSurfaces the ANE binds).

use std::collections::HashSet;

use super::target::{E, PerChip, W};
use super::{Linter, bytes_of};
use crate::ir::Function;
use crate::types::{DType, Dim, Type};

impl Linter {
    /// Rules on the function's inputs and outputs (the IOSurfaces).
    pub(super) fn io(&mut self, f: &Function) {
        let outs: Vec<(&str, Option<&Type>)> =
            f.outputs.iter().map(|o| (o.as_str(), f.var_type(o))).collect();
        let ins: Vec<(&str, Option<&Type>)> = f.inputs.iter().map(|(n, t)| (n.as_str(), Some(t))).collect();
        for (kind, list) in [("input", &ins), ("output", &outs)] {
            for (name, ty) in list.iter() {
                let Some(Type::Tensor { dtype, shape }) = ty else {
                    continue;
                };
                if !matches!(dtype, DType::Fp16 | DType::Fp32) {
                    // All sources: fp16 compute, fp32 only as a boundary cast; no int32/bf16 I/O.
                    self.emit(
                        PerChip::all(E),
                        f.span,
                        "ane-io-dtype",
                        format!("{kind} `{name}` is {dtype}; ANE surfaces are fp16 or fp32"),
                    );
                }
                if shape.len() != 4 {
                    // ANEForge, ane-bridge: I/O is canonicalised to 4-D NCHW; keep [1, C, 1, S].
                    self.emit(
                        PerChip::all(W),
                        f.span,
                        "ane-io-rank",
                        format!(
                            "{kind} `{name}` has rank {}; the ANE works on 4-D [1, C, 1, S]",
                            shape.len()
                        ),
                    );
                }
                if let Some(Dim::Known(w)) = shape.last() {
                    let w = *w;
                    if w % 16 != 0 {
                        // rustane (M4 Max): width not a multiple of 16 silently corrupts;
                        // ane-bridge (M5): rows are strided to 32.
                        self.emit(
                            PerChip::all(E),
                            f.span,
                            "ane-width-align",
                            format!("{kind} `{name}` has last-axis width {w}, not a multiple of 16"),
                        );
                    } else if w % 32 != 0 {
                        // ane-bridge (M5, macOS 26.5.2): in/out widths must be multiples of 32;
                        // no source shows a ×16-but-not-×32 width working.
                        self.emit(
                            PerChip { m12: W, m3: W, m4: E },
                            f.span,
                            "ane-width-align",
                            format!("{kind} `{name}` has last-axis width {w}, not a multiple of 32"),
                        );
                    }
                    if w < 64 {
                        // `ane` crate: W < 64 fails with status 0x1d on M1–M5; Orion's seq-16
                        // decode contradicts it.
                        self.emit(
                            PerChip::all(W),
                            f.span,
                            "ane-min-width",
                            format!("{kind} `{name}` has last-axis width {w} < 64 (reported 0x1d failures)"),
                        );
                    }
                }
                let bytes = bytes_of(ty.expect("matched"));
                if bytes > 0 && bytes < 49152 {
                    // Orion (M4 Max): surfaces under ~49 KB fail at eval with 0x1d; the `ane`
                    // crate's 32 KB decode mask is reported working.
                    self.emit(
                        PerChip::all(W),
                        f.span,
                        "ane-min-surface",
                        format!("{kind} `{name}` is {bytes} bytes, under the ~49 KB minimum Orion reports"),
                    );
                }
            }
            if list.len() > 1 {
                if kind == "input" {
                    // maderix README: multi-input requests fail with 0x1d; the `ane` crate binds
                    // four inputs successfully. Disputed.
                    self.emit(
                        PerChip::all(W),
                        f.span,
                        "ane-multi-input",
                        format!(
                            "function `{}` has {} inputs; one packed input is the safe rule",
                            f.name,
                            list.len()
                        ),
                    );
                }
                let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
                let mut sorted = names.clone();
                sorted.sort_unstable();
                if names != sorted {
                    // Orion (all 6 permutations tested): surfaces bind in alphabetical order of
                    // MIL names, not declaration order.
                    self.emit(
                        PerChip::all(W),
                        f.span,
                        "ane-io-order",
                        format!("{kind}s {names:?} are not in alphabetical order; the ANE binds them alphabetically"),
                    );
                }
                let sizes: HashSet<usize> = list.iter().filter_map(|(_, t)| t.map(bytes_of)).collect();
                if sizes.len() > 1 {
                    // Orion #2/#12: unequal allocation sizes → 0x1d; the `ane` crate's decode
                    // binds unequal inputs. Disputed.
                    self.emit(
                        PerChip::all(W),
                        f.span,
                        "ane-io-equal-size",
                        format!("{kind}s have unequal byte sizes; Orion reports 0x1d unless they are equal"),
                    );
                }
            }
        }
    }
}
