//! ANE lint: the published Neural Engine restrictions, checked on Linux before a program ever
//! reaches Apple's compiler.
//!
//! Every rule names its evidence; sources, chips and OS versions are in `docs/ane-restrictions.md`.
//! Severity per chip family: **error** = reported to fail on that family and not contradicted;
//! **warning** = reported on some chips only, disputed, unverified, or a performance cliff.
//! [`Target::Strictest`] takes the worst severity over all families.

mod ctx;
mod io;
mod ops;
mod results;
mod target;

use std::collections::HashMap;

use crate::error::Diagnostic;
use crate::ir::{Function, Operation, Program, Span};
use crate::printer::Spelling;
use crate::types::Type;

use ctx::Ctx;
pub use target::Target;
use target::{N, PerChip, W};

/// Runs every rule on every function of the program.
pub fn lint(p: &Program, target: Target) -> Vec<Diagnostic> {
    let mut out = Linter {
        target,
        out: Vec::new(),
    };
    if Spelling::for_version(&p.version) == Spelling::BareScalars {
        // [PR] maderix 709b602/ef6dce3 (M1 Pro, macOS 26.3): short scalar syntax and
        // program(1.3) fail on M1/M2; program(1.0) with rank-0 tensors works. Unverified.
        let span = p.functions.first().map(|f| f.span).unwrap_or_default();
        out.emit(
            PerChip { m12: W, m3: N, m4: N },
            span,
            "ane-scalar-spelling",
            format!(
                "program({}) spells scalars bare; M1/M2 are reported to need program(1.0)",
                p.version
            ),
        );
    }
    for f in &p.functions {
        out.function(f);
    }
    out.out.sort_by_key(|d| (d.span.line, d.span.col));
    out.out
}

struct Linter {
    target: Target,
    out: Vec<Diagnostic>,
}

impl Linter {
    fn emit(&mut self, sev: PerChip, span: Span, code: &'static str, message: String) {
        if let Some(severity) = sev.for_target(self.target) {
            self.out.push(Diagnostic {
                severity,
                span,
                code,
                message: format!("{message} [target {}]", self.target.name()),
            });
        }
    }

    fn function(&mut self, f: &Function) {
        let types: HashMap<&str, &Type> = f
            .inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t))
            .chain(
                f.body
                    .iter()
                    .flat_map(|o| o.outputs.iter().map(|(n, t)| (n.as_str(), t))),
            )
            .collect();
        let producers: HashMap<&str, &Operation> = f
            .body
            .iter()
            .flat_map(|o| o.outputs.iter().map(move |(n, _)| (n.as_str(), o)))
            .collect();
        let ctx = Ctx { types, producers };
        self.io(f);
        self.dead_ops(f);
        let mut weight_bytes = 0usize;
        let mut has_anchor = false;
        for op in &f.body {
            has_anchor |= matches!(op.op.as_str(), "conv" | "matmul" | "linear");
            if op.op == "const" || op.op.starts_with("constexpr_") {
                weight_bytes += op.outputs.iter().map(|(_, t)| bytes_of(t)).sum::<usize>();
            }
            self.shapes(op);
            self.op(op, &ctx);
        }
        if !has_anchor && !f.body.is_empty() {
            // ane-bridge (M5): a purely elementwise program may be refused or left on the CPU.
            self.emit(
                PerChip::all(W),
                f.span,
                "ane-elementwise-only",
                format!(
                    "function `{}` has no conv/matmul/linear; it may not be placed on the ANE",
                    f.name
                ),
            );
        }
        let io_bytes: usize = f.inputs.iter().map(|(_, t)| bytes_of(t)).sum::<usize>()
            + f.outputs
                .iter()
                .filter_map(|o| ctx.types.get(o.as_str()))
                .map(|t| bytes_of(t))
                .sum::<usize>();
        if weight_bytes + io_bytes > 32 << 20 {
            // maderix/Orion: ~30% throughput drop past ~32 MB of working set (M4); 2 MB on M1 per
            // ane-guide. A performance cliff, not a failure.
            self.emit(
                PerChip::all(W),
                f.span,
                "ane-sram",
                format!(
                    "function `{}` touches {:.1} MB of constants and I/O, past the ~32 MB on-chip budget",
                    f.name,
                    (weight_bytes + io_bytes) as f64 / 1048576.0
                ),
            );
        }
    }
}

fn bytes_of(t: &Type) -> usize {
    match t {
        Type::Tensor { dtype, .. } => t.num_elements().unwrap_or(0) * dtype.size_bytes(),
        _ => 0,
    }
}
