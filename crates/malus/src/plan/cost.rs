//! Predicted Neural Engine step time of a plan: the cost model of docs/cost-model.md (dispatch
//! overhead, compute, surface I/O, host work) with its per-chip constants, fitted to published
//! runs of other projects (held-out error ~±15 %). A prediction, not a measurement: no malus
//! kernel has run on an ANE, and plans that put every matmul on the device lie outside the
//! fitted range (docs/cost-model.md §1: treat as ±30 %). Used to choose where dW runs (`--dw auto`).

use std::fmt;

use anyhow::{Result, bail};
use malus_ane::ChipFamily;

use malus_mil::DType;

use super::Plan;
use super::report::PlanReport;
use crate::model::Config;
use crate::settings::Dw;

/// One row of the constants table (docs/cost-model.md §3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chip {
    pub key: &'static str,
    pub name: &'static str,
    /// Dispatch overhead per evaluation, ms.
    pub t_d_ms: f64,
    /// fp16 peak for baked-weight convolutions, TFLOP/s.
    pub p_tflops: f64,
    /// Efficiency of matmuls on runtime operands relative to `p_tflops`.
    pub e_mm: f64,
    /// What the ANE streams from DRAM, GB/s.
    pub b_ane_gbs: f64,
    /// Host writes/reads of IOSurfaces, GB/s.
    pub b_s_gbs: f64,
    /// Host fp32↔fp16 conversions, G elements/s.
    pub r_e_gels: f64,
    /// Host f32 GEMM, TFLOP/s.
    pub p_cpu_tflops: f64,
    /// Host elementwise speed relative to the op-cost table (measured on M3 Ultra).
    pub s_cpu: f64,
    /// GEMM on a background queue, TFLOP/s.
    pub p_async_tflops: f64,
}

const fn chip(key: &'static str, name: &'static str, k: [f64; 9]) -> Chip {
    Chip {
        key,
        name,
        t_d_ms: k[0],
        p_tflops: k[1],
        e_mm: k[2],
        b_ane_gbs: k[3],
        b_s_gbs: k[4],
        r_e_gels: k[5],
        p_cpu_tflops: k[6],
        s_cpu: k[7],
        p_async_tflops: k[8],
    }
}

/// The rows of docs/cost-model.md §3 (macOS 26 where a row exists for it).
pub const CHIPS: [Chip; 7] = [
    chip(
        "m1",
        "M1 Pro/Max (macOS 26)",
        [0.23, 4.0, 0.47, 50.0, 70.0, 16.3, 2.03, 1.18, 2.03],
    ),
    chip(
        "m2",
        "M2 (no data: extrapolated)",
        [0.2, 5.0, 0.47, 60.0, 70.0, 16.0, 2.0, 1.1, 1.0],
    ),
    chip(
        "m3-ultra",
        "M3 Ultra (macOS 26.3)",
        [0.10, 4.8, 0.47, 60.0, 94.0, 22.0, 2.73, 1.00, 2.73],
    ),
    chip("m4", "M4", [0.16, 9.0, 0.47, 80.0, 67.0, 15.7, 2.0, 1.10, 0.75]),
    chip(
        "m4-max",
        "M4 Pro/Max",
        [0.16, 9.0, 0.47, 80.0, 67.0, 15.7, 2.0, 1.00, 2.0],
    ),
    chip(
        "m5",
        "M5 (macOS 26.3)",
        [0.07, 6.5, 0.47, 100.0, 94.0, 22.0, 1.49, 1.07, 0.75],
    ),
    chip(
        "m5-max",
        "M5 Max (macOS 26.4.1)",
        [0.077, 7.7, 0.47, 100.0, 94.0, 22.0, 1.49, 0.90, 1.0],
    ),
];

/// Host op costs in ns per element (maderix's vDSP code on M3 Ultra,
/// docs/cost-model.md §4), scaled by `s_cpu`.
const NS_CE_CONTIGUOUS: f64 = 1.40;
const NS_ELEMENTWISE: f64 = 0.30;
const NS_MEMCPY_PER_BYTE: f64 = 0.0204;
/// AdamW reads and writes the weight, two moments and the gradient: about four elementwise passes.
const ADAMW_PASSES: f64 = 4.0;

impl Chip {
    /// A row by key (`m1`, `m2`, `m3-ultra`, `m4`, `m4-max`, `m5`, `m5-max`).
    pub fn by_key(key: &str) -> Result<&'static Chip> {
        match CHIPS.iter().find(|c| c.key == key.to_ascii_lowercase()) {
            Some(c) => Ok(c),
            None => bail!(
                "unknown chip `{key}` (known: {})",
                CHIPS.iter().map(|c| c.key).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The row for a detected chip family (base chips; M3 has only Ultra data, M2 none).
    pub fn for_family(f: ChipFamily) -> Option<&'static Chip> {
        let key = match f {
            ChipFamily::M1 => "m1",
            ChipFamily::M2 => "m2",
            ChipFamily::M3 => "m3-ultra",
            ChipFamily::M4 => "m4",
            ChipFamily::M5 => "m5",
            ChipFamily::Unknown => return None,
        };
        Chip::by_key(key).ok()
    }
}

/// One kernel's evaluations: FLOPs of matmuls on runtime operands, whole-surface bytes in and
/// out, baked weight bytes, host conversions per evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelCost {
    pub evals: f64,
    pub f_mm: f64,
    pub s_in: f64,
    pub s_out: f64,
    pub w_baked: f64,
}

/// Host work of one step (docs/cost-model.md §1): GEMM FLOPs on the critical path and on a background queue,
/// the window the latter may hide in, and element counts per op class.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostWork {
    pub gemm_sync: f64,
    pub gemm_async: f64,
    pub async_window: f64,
    /// Elements converted fp32↔fp16 for the surfaces.
    pub converted: f64,
    /// Weighted host op cost in ns (Σ c_op·N_op), before the chip's `s_cpu`.
    pub op_ns: f64,
}

/// Predicted milliseconds by component.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Breakdown {
    pub ane: f64,
    pub io: f64,
    pub gemm: f64,
    pub ops: f64,
    pub exposed_async: f64,
}

impl Breakdown {
    pub fn total(&self) -> f64 {
        self.ane + self.io + self.gemm + self.ops + self.exposed_async
    }
}

/// The six lines of docs/cost-model.md §2.
pub fn predict(c: &Chip, kernels: &[KernelCost], h: &HostWork) -> Breakdown {
    let ms = 1e3;
    let mut ane = 0.0;
    let mut io = 0.0;
    for k in kernels {
        let compute = k.f_mm / c.e_mm / (c.p_tflops * 1e12);
        let stream = (k.s_in + k.s_out + k.w_baked) / (c.b_ane_gbs * 1e9);
        ane += k.evals * (c.t_d_ms / ms + compute.max(stream));
        io += k.evals * (k.s_in + k.s_out) / (c.b_s_gbs * 1e9);
    }
    io += h.converted / (c.r_e_gels * 1e9);
    let gemm = h.gemm_sync / (c.p_cpu_tflops * 1e12);
    let ops = c.s_cpu * h.op_ns * 1e-9;
    let bg = h.gemm_async / (c.p_async_tflops * 1e12);
    let exposed = (bg - h.async_window * (ane + io + ops)).max(0.0);
    Breakdown {
        ane: ane * ms,
        io: io * ms,
        gemm: gemm * ms,
        ops: ops * ms,
        exposed_async: exposed * ms,
    }
}

/// A plan's predicted time on one chip: per micro-step (one sequence) and per optimizer update
/// (AdamW, norm-weight unfolding and re-staging, once per `accum` micro-steps).
#[derive(Clone, Copy, Debug)]
pub struct Prediction {
    pub chip: &'static Chip,
    pub dw: Dw,
    pub micro: Breakdown,
    pub update_ms: f64,
    pub seq: usize,
}

impl Prediction {
    pub fn new(chip: &'static Chip, r: &PlanReport, seq: usize) -> Prediction {
        let e = r.elem_bytes as f64;
        let kernels: Vec<KernelCost> = r
            .kernels
            .iter()
            .map(|k| KernelCost {
                evals: k.calls as f64,
                f_mm: k.flops as f64,
                // The step copies each kernel's whole staged input into its surface per call.
                s_in: k.in_bytes as f64,
                s_out: k.out_bytes as f64,
                // Baked constants (RoPE tables, masks) are small next to the surfaces.
                w_baked: 0.0,
            })
            .collect();
        let host = HostWork {
            gemm_sync: r.host_gemm_flops as f64,
            converted: r.converted as f64,
            op_ns: NS_CE_CONTIGUOUS * r.ce_elements as f64
                + NS_ELEMENTWISE * r.elementwise_elements as f64
                + NS_MEMCPY_PER_BYTE * r.memcpy_bytes as f64,
            ..HostWork::default()
        };
        let micro = predict(chip, &kernels, &host);
        let staged = r.staged_weight_elems as f64;
        let update_ns = chip.s_cpu
            * (NS_ELEMENTWISE * (ADAMW_PASSES * r.params as f64 + r.unfold_elements as f64 + staged)
                + NS_MEMCPY_PER_BYTE * staged * e);
        let update_ms = update_ns * 1e-6 + staged / (chip.r_e_gels * 1e9) * 1e3;
        Prediction {
            chip,
            dw: r.dw,
            micro,
            update_ms,
            seq,
        }
    }

    /// Milliseconds per optimizer update of `accum` sequences.
    pub fn update_total(&self, accum: usize) -> f64 {
        accum as f64 * self.micro.total() + self.update_ms
    }

    pub fn tokens_per_s(&self, accum: usize) -> f64 {
        (accum * self.seq) as f64 / (self.update_total(accum) / 1e3)
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.micro;
        writeln!(
            f,
            "predicted on {} (cost model v1 of docs/cost-model.md, constants of that row; not a measurement):",
            self.chip.name
        )?;
        writeln!(
            f,
            "  per micro-step {:.1} ms = ANE {:.1} + surface I/O {:.1} + host GEMM {:.1} + host ops {:.1}",
            m.total(),
            m.ane,
            m.io,
            m.gemm,
            m.ops
        )?;
        write!(
            f,
            "  per update of 4 sequences {:.1} ms (optimizer and re-staging {:.1} ms): {:.0} tokens/s",
            self.update_total(4),
            self.update_ms,
            self.tokens_per_s(4)
        )
    }
}

/// `--dw auto` on `chip`: builds the plan both ways and keeps the one predicted faster, with
/// the predictions of both (dW on the device first).
pub fn auto_plan(c: &Config, dtype: DType, chip: &'static Chip) -> Result<(Plan, [Prediction; 2])> {
    let (d, h) = (Plan::new(c, dtype, Dw::Device)?, Plan::new(c, dtype, Dw::Host)?);
    let (rd, rh) = (PlanReport::new(&d, ""), PlanReport::new(&h, ""));
    let preds = [
        Prediction::new(chip, &rd, c.seq),
        Prediction::new(chip, &rh, c.seq),
    ];
    let host_faster = preds[1].micro.total() < preds[0].micro.total();
    Ok((if host_faster { h } else { d }, preds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/cost-model.md §6 prints components to 0.1 ms from slightly rounder constants: within
    /// 0.15 ms or 0.5 % (a missing term or factor would be off by far more).
    fn close(got: f64, want: f64, what: &str) {
        let tol = 0.15f64.max(0.005 * want);
        assert!(
            (got - want).abs() <= tol,
            "{what}: {got:.2} ms, docs/cost-model.md §6 says {want}"
        );
    }

    /// One validation row of docs/cost-model.md: its plan quantities (§5) and predicted
    /// components (§6).
    struct DocRow {
        id: &'static str,
        chip: &'static str,
        evals: f64,
        gflop: f64,
        surfaces_mb: f64,
        converted_m: f64,
        sgemm_sync_g: f64,
        sgemm_async_g: f64,
        /// Millions of elements: RMSNorm fwd, RMSNorm bwd, SiLU-gate bwd, strided CE,
        /// elementwise; then memcpy MB.
        ops: [f64; 6],
        /// ANE, I/O, sgemm, ops, exposed async, total (ms).
        want: [f64; 6],
    }

    /// The formula reproduces docs/cost-model.md's own predictions (§6) from its plan quantities (§5): V12,
    /// maderix's dynamic 10k fp16 Stories110M pipeline on M4, and V15, its Qwen3-0.6B pipeline on
    /// M5 Max — both compute-bound, so one aggregate kernel stands for all evaluations.
    #[test]
    fn reproduces_the_documents_predictions() {
        let rows = [
            DocRow {
                id: "V12",
                chip: "m4",
                evals: 120.0,
                gflop: 95.4,
                surfaces_mb: 628.0,
                converted_m: 123.0,
                sgemm_sync_g: 7.2,
                sgemm_async_g: 47.1,
                ops: [4.9, 4.9, 6.3, 2.36, 18.9, 151.0],
                want: [41.9, 17.2, 3.6, 35.2, 0.0, 97.9],
            },
            DocRow {
                id: "V15",
                chip: "m5-max",
                evals: 280.0,
                gflop: 503.6,
                surfaces_mb: 2892.0,
                converted_m: 499.0,
                sgemm_sync_g: 9.7,
                sgemm_async_g: 230.3,
                ops: [14.9, 14.9, 22.0, 2.36, 132.0, 558.0],
                want: [160.7, 53.5, 6.5, 90.7, 0.0, 311.4],
            },
        ];
        // ns per element of RMSNorm fwd/bwd, SiLU-gate bwd, strided CE (docs/cost-model.md §4).
        let ns = [0.37, 0.79, 0.95, 4.9, NS_ELEMENTWISE];
        for r in &rows {
            let k = KernelCost {
                evals: r.evals,
                f_mm: r.gflop * 1e9 / r.evals,
                s_in: r.surfaces_mb * 1e6 / r.evals,
                ..KernelCost::default()
            };
            let op_ns = ns.iter().zip(&r.ops).map(|(c, m)| c * m * 1e6).sum::<f64>()
                + r.ops[5] * 1e6 * NS_MEMCPY_PER_BYTE;
            let h = HostWork {
                gemm_sync: r.sgemm_sync_g * 1e9,
                gemm_async: r.sgemm_async_g * 1e9,
                async_window: 1.0,
                converted: r.converted_m * 1e6,
                op_ns,
            };
            let b = predict(Chip::by_key(r.chip).unwrap(), &[k], &h);
            let got = [b.ane, b.io, b.gemm, b.ops, b.exposed_async, b.total()];
            let names = ["ANE", "I/O", "sgemm", "ops", "exposed async", "total"];
            for ((g, w), n) in got.iter().zip(&r.want).zip(names) {
                close(*g, *w, &format!("{} {n}", r.id));
            }
        }
    }

    #[test]
    fn bandwidth_bound_kernels_take_the_streaming_time() {
        let c = Chip::by_key("m4").unwrap();
        // 1 MFLOP over 80 MB in: streaming (1 ms) dominates compute (~0.2 µs).
        let k = KernelCost {
            evals: 1.0,
            f_mm: 1e6,
            s_in: 80e6,
            ..KernelCost::default()
        };
        let b = predict(c, &[k], &HostWork::default());
        assert!((b.ane - (0.16 + 1.0)).abs() < 1e-3, "{b:?}");
    }

    /// `--dw auto` takes the placement with the lower predicted micro-step, which depends on the
    /// chip: on M1 (slow ANE relative to its CPU) host GEMMs win for Stories110M, on M5 Max the
    /// device does.
    #[test]
    fn dw_placement_follows_the_chip() {
        let c = Config::preset("stories110m").unwrap();
        let auto = |chip| auto_plan(&c, DType::Fp16, chip).unwrap();
        for chip in &CHIPS {
            let (plan, [pd, ph]) = auto(chip);
            assert_eq!((pd.dw, ph.dw), (Dw::Device, Dw::Host));
            assert!(ph.micro.gemm > 0.0, "{}: host dW costs host GEMM time", chip.key);
            assert_eq!(pd.micro.gemm, 0.0);
            assert!(
                pd.micro.ane > ph.micro.ane,
                "{}: device dW adds ANE time",
                chip.key
            );
            let want = if ph.micro.total() < pd.micro.total() {
                Dw::Host
            } else {
                Dw::Device
            };
            assert_eq!(plan.dw, want, "{}", chip.key);
        }
        assert_eq!(auto(Chip::by_key("m1").unwrap()).0.dw, Dw::Host);
        assert_eq!(auto(Chip::by_key("m5-max").unwrap()).0.dw, Dw::Device);
    }

    #[test]
    fn chips_are_found_by_key_and_family() {
        assert_eq!(Chip::by_key("M4").unwrap().key, "m4");
        assert!(Chip::by_key("m9").unwrap_err().to_string().contains("m5-max"));
        assert_eq!(Chip::for_family(ChipFamily::M3).unwrap().key, "m3-ultra");
        assert!(Chip::for_family(ChipFamily::Unknown).is_none());
    }
}
