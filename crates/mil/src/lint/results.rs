//! Rules on every op's results: results nothing uses, rank, extents, unknown dimensions.

use std::collections::HashSet;

use super::Linter;
use super::target::{E, N, PerChip, W};
use crate::ir::{Function, Operation};
use crate::types::{Dim, Type};
use crate::value::Value;

impl Linter {
    /// Results that nothing uses: Orion #17/#19 report dead outputs failing to compile.
    pub(super) fn dead_ops(&mut self, f: &Function) {
        let mut used: HashSet<&str> = f.outputs.iter().map(String::as_str).collect();
        for op in &f.body {
            for (_, v) in op.operands() {
                collect_vars(v, &mut used);
            }
        }
        for op in &f.body {
            if op.outputs.iter().all(|(n, _)| !used.contains(n.as_str())) {
                self.emit(
                    PerChip::all(W),
                    op.span,
                    "ane-dead-op",
                    format!("{} result `{}` is never used", op.op, op.outputs[0].0),
                );
            }
        }
    }

    /// Rank, extent and unknown-dimension rules on every result.
    pub(super) fn shapes(&mut self, op: &Operation) {
        let cap = self.target.max_extent();
        for (name, ty) in &op.outputs {
            let Type::Tensor { shape, .. } = ty else { continue };
            if shape.len() > 5 {
                // ANEForge; ane-bridge: rank ≤ 5.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-rank",
                    format!("`{name}` has rank {} > 5", shape.len()),
                );
            }
            if shape.contains(&Dim::Unknown) {
                // All sources: static shapes only.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-unknown-dim",
                    format!("`{name}` has an unknown dimension; the ANE needs static shapes"),
                );
            }
            if op.op == "const" || op.op.starts_with("constexpr_") {
                continue; // weights are not activations; the caps are on computed tensors
            }
            // ANEForge: W/H/K ≤ 16384 on A13–A15, 65536 on A16, channels ≤ 65536 everywhere;
            // rustane splits at 16384. Axis 1 of a 4-D tensor is the channel axis.
            let over = |(i, d): (usize, &Dim)| {
                let limit = if shape.len() == 4 && i == 1 { 65536 } else { cap };
                d.known().filter(|&n| n > limit)
            };
            if let Some(big) = shape.iter().enumerate().find_map(over) {
                self.emit(
                    PerChip::past_limit(big, 65536, PerChip { m12: E, m3: E, m4: N }),
                    op.span,
                    "ane-extent",
                    format!("`{name}` has an axis of {big}, over the cap {cap}"),
                );
            }
        }
    }
}

fn collect_vars<'a>(v: &'a Value, out: &mut HashSet<&'a str>) {
    match v {
        Value::Var(n) => {
            out.insert(n);
        }
        Value::Tuple(items) => items.iter().for_each(|i| collect_vars(i, out)),
        Value::Literal(_) => {}
    }
}
