//! ANE lint: the published Neural Engine restrictions, checked on Linux before a program ever
//! reaches Apple's compiler.
//!
//! Every rule names its evidence; sources, chips and OS versions are in `docs/ane-restrictions.md`.
//! Severity per chip family: **error** = reported to fail on that family and not contradicted;
//! **warning** = reported on some chips only, disputed, unverified, or a performance cliff.
//! [`Target::Strictest`] takes the worst severity over all families.

use std::collections::{HashMap, HashSet};

use crate::error::{Diagnostic, Severity};
use crate::ir::{Function, Operation, Program, Span};
use crate::printer::Spelling;
use crate::types::{DType, Dim, Type};
use crate::value::{Lit, Value};

/// A chip family (ANE generation) to lint for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// M1 and M2 (ANE families A13/A14, H13/H14).
    M1M2,
    /// M3 (A15, H15).
    M3,
    /// M4, M5 and later (A16+, H16/H17).
    M4Plus,
    /// The worst case over every family: what the default plan must pass.
    Strictest,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::M1M2, Target::M3, Target::M4Plus, Target::Strictest];

    pub fn name(self) -> &'static str {
        match self {
            Target::M1M2 => "m1-m2",
            Target::M3 => "m3",
            Target::M4Plus => "m4+",
            Target::Strictest => "strictest",
        }
    }

    pub fn from_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Largest extent of any axis (ANEForge: 16384 on A13–A15, 65536 on A16).
    fn max_extent(self) -> usize {
        match self {
            Target::M4Plus => 65536,
            _ => 16384,
        }
    }

    /// Largest conv kernel width (ANEForge: ≤ 13 on M1, ≤ 15 on M5).
    fn max_conv_kernel_width(self) -> usize {
        match self {
            Target::M4Plus | Target::M3 => 15,
            _ => 13,
        }
    }
}

/// Severity of a finding per family; `None` = not a problem there.
#[derive(Clone, Copy)]
struct PerChip {
    m12: Option<Severity>,
    m3: Option<Severity>,
    m4: Option<Severity>,
}

const E: Option<Severity> = Some(Severity::Error);
const W: Option<Severity> = Some(Severity::Warning);
const N: Option<Severity> = None;

impl PerChip {
    const fn all(s: Option<Severity>) -> PerChip {
        PerChip { m12: s, m3: s, m4: s }
    }

    fn for_target(self, t: Target) -> Option<Severity> {
        match t {
            Target::M1M2 => self.m12,
            Target::M3 => self.m3,
            Target::M4Plus => self.m4,
            Target::Strictest => self.m12.max(self.m3).max(self.m4),
        }
    }
}

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

/// Ops reported unsupported on every family (ANEForge "walled everywhere"; ane-bridge for the
/// state ops).
const WALLED: &[&str] = &[
    "reduce_prod",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "mod",
    "band_part",
    "lstm",
    "rnn",
    "gru",
    "nan_to_num",
    "read_state",
    "write_state",
];

/// Ops rejected by code generation on M1 (ANEForge; docs/ane-restrictions.md, other lint rules).
const WALLED_M1: &[&str] = &["topk", "sort", "dynamic_slice"];

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

    /// Rules on the function's inputs and outputs (the IOSurfaces).
    fn io(&mut self, f: &Function) {
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

    /// Results that nothing uses: Orion #17/#19 report dead outputs failing to compile.
    fn dead_ops(&mut self, f: &Function) {
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
    fn shapes(&mut self, op: &Operation) {
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
                let sev = if big > 65536 {
                    PerChip::all(E)
                } else {
                    PerChip { m12: E, m3: E, m4: N }
                };
                self.emit(
                    sev,
                    op.span,
                    "ane-extent",
                    format!("`{name}` has an axis of {big}, over the cap {cap}"),
                );
            }
        }
    }

    /// Op-specific rules.
    fn op(&mut self, op: &Operation, ctx: &Ctx) {
        let out_name = op.outputs.first().map(|(n, _)| n.as_str()).unwrap_or("");
        if WALLED.contains(&op.op.as_str()) {
            self.emit(
                PerChip::all(E),
                op.span,
                "ane-unsupported-op",
                format!("`{}` is not supported by the ANE", op.op),
            );
        }
        if WALLED_M1.contains(&op.op.as_str()) {
            self.emit(
                PerChip { m12: E, m3: N, m4: N },
                op.span,
                "ane-unsupported-op",
                format!("`{}` is rejected by code generation on M1", op.op),
            );
        }
        let fp32_compute = !matches!(op.op.as_str(), "const" | "cast" | "identity")
            && !op.op.starts_with("constexpr_")
            && op.outputs.iter().any(|(_, t)| t.dtype() == Some(DType::Fp32));
        if fp32_compute {
            // All sources: the ANE computes in fp16; fp32 appears only as a boundary cast.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-fp32-compute",
                format!(
                    "{} `{out_name}` computes in fp32; the ANE computes in fp16",
                    op.op
                ),
            );
        }
        match op.op.as_str() {
            "gelu" => {
                // Orion (M4 Max, macOS 15): gelu rejected; ANEForge: native LUT gelu on M1.
                self.emit(
                    PerChip { m12: W, m3: W, m4: E },
                    op.span,
                    "ane-gelu",
                    "gelu is reported rejected; use the tanh approximation built from tanh/mul/add".into(),
                );
            }
            "sqrt" | "rsqrt" => {
                if let Some(x) = op.arg("x").and_then(Value::as_var) {
                    if ctx.follows_reduce(x, 3) {
                        // rustane (M4 Max): sqrt/rsqrt after a reduce fails to compile;
                        // ANEForge lists both native on M1+.
                        self.emit(
                            PerChip { m12: W, m3: W, m4: E },
                            op.span,
                            "ane-rsqrt-after-reduce",
                            format!(
                                "{} of a reduction fails to compile on some chips; use pow(x, -0.5)",
                                op.op
                            ),
                        );
                    }
                }
            }
            "reduce_mean" => {
                // ane-bridge (M5, 26.5.2): compiles, fails at dispatch; ANEForge: native.
                self.emit(
                    PerChip::all(W),
                    op.span,
                    "ane-reduce-mean",
                    "reduce_mean is reported to fail at dispatch on M5; use reduce_sum and a scale".into(),
                );
            }
            "scaled_dot_product_attention" if op.arg("attn_mask").is_some() => {
                // maderix test_ane_sdpa5.m; Orion #6: the mask is ignored.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-sdpa-mask",
                    "the ANE ignores scaled_dot_product_attention's attn_mask; decompose the attention"
                        .into(),
                );
            }
            "conv" => self.conv(op, ctx),
            "matmul" => {
                for flag in ["transpose_x", "transpose_y"] {
                    if matches!(op.arg(flag), Some(Value::Literal(_))) {
                        // Orion #15: inline true/false is rejected; use named consts.
                        self.emit(
                            PerChip::all(E),
                            op.span,
                            "ane-inline-flag",
                            format!(
                                "matmul `{flag}` is an inline literal; the ANE compiler needs a named const"
                            ),
                        );
                    }
                }
                // [PR] 709b602: matmul fails on M1/M2; the report trains with matmul on M1.
                self.emit(
                    PerChip { m12: W, m3: N, m4: N },
                    op.span,
                    "ane-matmul-m1",
                    "matmul is reported (unverified) to fail on M1/M2".into(),
                );
            }
            "cast" => {
                let to_int = ctx
                    .literal_str(op.arg("dtype"))
                    .is_some_and(|d| d.starts_with("int"));
                // [PR] M1/M2 reject cast (unverified); ANEForge: cast→int32 walled on M1.
                let sev = PerChip {
                    m12: if to_int { E } else { W },
                    m3: N,
                    m4: N,
                };
                self.emit(
                    sev,
                    op.span,
                    "ane-cast",
                    "cast is reported to fail on M1/M2; prefer fp16 I/O".into(),
                );
            }
            "concat" => self.concat(op, ctx),
            "softmax" => {
                let axis = ctx.literal_int(op.arg("axis")).unwrap_or(-1);
                if let Some(Type::Tensor { shape, .. }) = op.arg("x").and_then(|v| ctx.type_of(v)) {
                    let r = shape.len() as i64;
                    let a = if axis < 0 { axis + r } else { axis };
                    if r == 4 && a == 1 {
                        if let Some(Dim::Known(c)) = shape.get(1) {
                            if !c.is_power_of_two() {
                                // Espresso validation pass (a rule, no measurement cited).
                                self.emit(
                                    PerChip::all(W),
                                    op.span,
                                    "ane-softmax-channels",
                                    format!("softmax over {c} channels; Espresso requires a power of two"),
                                );
                            }
                        }
                    }
                }
            }
            "slice_by_size" | "slice_by_index" => {
                let begin = ctx.literal_ints(op.arg("begin"));
                if begin.as_ref().and_then(|b| b.last()).is_some_and(|&b| b != 0) {
                    // ANEForge numeric-cliffs (M2 Pro): a width-offset slice turns |x| > 4094
                    // into ±inf before A16; rustane PR #9: width slices rejected on M3 Ultra.
                    self.emit(
                        PerChip { m12: W, m3: W, m4: N },
                        op.span,
                        "ane-width-slice",
                        "slice at a non-zero last-axis offset: values above 4094 saturate to inf on pre-M4 chips"
                            .into(),
                    );
                }
            }
            "mul" => {
                let zero = |v: Option<&Value>| {
                    ctx.literal_f64s(v)
                        .is_some_and(|vals| !vals.is_empty() && vals.iter().all(|&x| x == 0.0))
                };
                let reduced = |v: Option<&Value>| {
                    v.and_then(Value::as_var)
                        .is_some_and(|x| ctx.follows_reduce(x, 0))
                };
                let (x, y) = (op.arg("x"), op.arg("y"));
                if (reduced(x) && zero(y)) || (reduced(y) && zero(x)) {
                    // ANEForge: mul(reduce_output, 0.0) fails to compile.
                    self.emit(
                        PerChip::all(E),
                        op.span,
                        "ane-mul-reduce-zero",
                        "multiplying a reduction by 0 fails to compile".into(),
                    );
                }
            }
            _ => {}
        }
    }

    fn conv(&mut self, op: &Operation, ctx: &Ctx) {
        if let Some(w) = op.arg("weight").and_then(Value::as_var) {
            let is_const = ctx
                .producers
                .get(w)
                .is_some_and(|p| p.op == "const" || p.op.starts_with("constexpr_"));
            if !is_const {
                // maderix test_weight_patch.m: a conv weight must be a compile-time constant.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-conv-weight",
                    format!("conv weight `{w}` is not a constant; use matmul for weights that change"),
                );
            }
        }
        if op.arg("bias").is_some() {
            // Orion #16: conv has no bias=; the `ane` crate emits one. Disputed.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-conv-bias",
                "conv bias is reported unsupported; add it separately".into(),
            );
        }
        if let Some(Type::Tensor { shape, .. }) = op.arg("weight").and_then(|v| ctx.type_of(v)) {
            if shape.len() >= 3 {
                if let Some(Dim::Known(kw)) = shape.last() {
                    let cap = self.target.max_conv_kernel_width();
                    if *kw > 13 {
                        // ANEForge; ane-bridge (M5): kernel width ≤ 13 on M1, ≤ 15 on M5.
                        let sev = if *kw > 15 {
                            PerChip::all(E)
                        } else {
                            PerChip { m12: E, m3: W, m4: N }
                        };
                        self.emit(
                            sev,
                            op.span,
                            "ane-conv-kernel",
                            format!("conv kernel width {kw} exceeds {cap}"),
                        );
                    }
                }
            }
        }
    }

    fn concat(&mut self, op: &Operation, ctx: &Ctx) {
        let n = match op.arg("values") {
            Some(Value::Tuple(items)) => items.len(),
            _ => 1,
        };
        if n > 2 {
            // ANEForge (e5rt path): concat takes exactly 2 inputs; maderix trains with 2–6 on
            // M4/M5; Orion: concat rejected on M4 Max. Disputed.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-concat-inputs",
                format!("concat of {n} tensors; some paths accept exactly 2"),
            );
        }
        let axis = ctx.literal_int(op.arg("axis"));
        let rank = op.outputs.first().and_then(|(_, t)| t.rank());
        if let (Some(a), Some(r)) = (axis, rank) {
            if a == -1 || a == r as i64 - 1 {
                // rustane PR #9 (M3 Ultra, 26.3.1): width-axis concat rejected.
                self.emit(
                    PerChip { m12: N, m3: W, m4: N },
                    op.span,
                    "ane-width-concat",
                    "concat along the last axis is reported rejected on M3".into(),
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

fn bytes_of(t: &Type) -> usize {
    match t {
        Type::Tensor { dtype, .. } => t.num_elements().unwrap_or(0) * dtype.size_bytes(),
        _ => 0,
    }
}

/// Lookups over one function.
struct Ctx<'a> {
    types: HashMap<&'a str, &'a Type>,
    producers: HashMap<&'a str, &'a Operation>,
}

impl<'a> Ctx<'a> {
    fn type_of(&self, v: &'a Value) -> Option<&'a Type> {
        match v {
            Value::Var(n) => self.types.get(n.as_str()).copied(),
            Value::Literal(l) => Some(&l.ty),
            Value::Tuple(_) => None,
        }
    }

    /// The literal behind a value: inline, or the `val` of the const op that defines it.
    fn literal(&self, v: Option<&'a Value>) -> Option<&'a crate::value::Literal> {
        match v? {
            Value::Literal(l) => Some(l),
            Value::Var(n) => self.producers.get(n.as_str())?.const_value(),
            Value::Tuple(_) => None,
        }
    }

    fn literal_ints(&self, v: Option<&'a Value>) -> Option<Vec<i64>> {
        self.literal(v)?.to_i64s()
    }

    fn literal_int(&self, v: Option<&'a Value>) -> Option<i64> {
        self.literal(v)?.as_scalar_i64()
    }

    fn literal_f64s(&self, v: Option<&'a Value>) -> Option<Vec<f64>> {
        self.literal(v)?.to_f64s()
    }

    fn literal_str(&self, v: Option<&'a Value>) -> Option<&'a str> {
        match &self.literal(v)?.lit {
            Lit::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether `var` is a reduction's result, possibly through up to `depth` elementwise ops
    /// with a constant other operand (e.g. `reduce_sum → mul(1/D) → add(eps)`).
    fn follows_reduce(&self, var: &str, depth: usize) -> bool {
        let Some(op) = self.producers.get(var) else {
            return false;
        };
        if op.op.starts_with("reduce_") {
            return true;
        }
        if depth == 0 || !matches!(op.op.as_str(), "add" | "sub" | "mul" | "real_div") {
            return false;
        }
        let (x, y) = (op.arg("x"), op.arg("y"));
        let is_const = |v: Option<&'a Value>| self.literal(v).is_some();
        let next = match (x.and_then(Value::as_var), y.and_then(Value::as_var)) {
            (Some(a), _) if is_const(y) => a,
            (_, Some(b)) if is_const(x) => b,
            _ => return false,
        };
        self.follows_reduce(next, depth - 1)
    }
}
