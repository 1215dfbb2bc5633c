//! The memory of a LoRA run: the peak heap allocation of starting a run on a bf16 model and
//! training one update stays within the plan's estimate (base staged once at 2 bytes a
//! weight in fp16, adapters and moments, kernel buffers, logits) plus a stated working set —
//! well below what one f32 copy of the base would add. One test in this binary, so nothing
//! else allocates while it measures.

mod common;

use malus::kernels::Shape;
use malus::model::hf_out::{self, StoreDtype};
use malus::model::{Lora, Target};
use malus::plan::memory::{Executor, MemoryEstimate};
use malus::{Config, DeviceChoice, Numerics, OptimizerKind, Settings, Trainer};
use malus_mil::DType;
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

#[test]
fn a_lora_run_allocates_no_f32_copy_of_its_base() {
    let mut c = Config::preset("tiny").unwrap();
    (c.dim, c.hidden, c.layers, c.heads, c.kv_heads) = (256, 768, 8, 4, 4);
    (c.head_dim, c.vocab, c.seq, c.residual_scale, c.tied) = (64, 2048, 64, 1.0, false);
    let base = common::params_off_one(&c);
    let d = std::env::temp_dir().join(format!("malus-lora-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let tok = d.join("tok.json");
    common::word_tokenizer(&tok, c.vocab);
    let model = d.join("model");
    let config = hf_out::config_json(&c, StoreDtype::Bf16).unwrap();
    hf_out::write_model_dir(&model, &c, &base, StoreDtype::Bf16, &config, &tok).unwrap();
    let ids: Vec<u32> = (0..20_000u32)
        .map(|i| (i * 31 + i / 7) % c.vocab as u32)
        .collect();
    malus::data::shards::write_tokens(&d.join("data.bin"), &ids).unwrap();
    let f32_base = 4 * c.num_params();
    drop(base);

    let mut s = Settings::default_run();
    s.model = c.clone();
    s.init = Some(model);
    (s.tokenizer, s.data, s.out) = (tok, d.join("data.bin"), d.join("run"));
    (s.device, s.numerics) = (DeviceChoice::Cpu, Numerics::Fp16);
    (s.steps, s.accum, s.eval_every, s.eval_batches, s.ckpt_every) = (1, 1, 1000, 1, 1000);
    let lora = Lora::new(8, 16.0, &Target::ALL);
    s.lora = Some(lora.clone());

    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let mut t = Trainer::new(s, false).unwrap();
    t.update().unwrap();
    let peak = HEAP.peak_usage() - before;
    drop(t);

    let shape = Shape::new(&c, DType::Fp16).unwrap().with_lora(&lora);
    let cpu = Executor::Cpu { fp16: true };
    let estimate = MemoryEstimate::lora(&c, &shape, cpu, &lora, OptimizerKind::AdamW, 2);
    let est = estimate.total() as usize;
    eprintln!("peak {peak} B, estimate {est} B ({estimate}), an f32 base {f32_base} B");
    // Transients the estimate leaves out: a tensor being read and staged, a micro-step's
    // activations on the host.
    assert!(
        peak <= est + (4 << 20),
        "peak {peak} B exceeds the estimate {est} B + 4 MB"
    );
    assert!(
        peak + f32_base / 2 > est,
        "the estimate {est} B is far above the peak {peak} B: it no longer says what a run needs"
    );
    assert!(
        estimate.params < f32_base as u128 / 8,
        "the host holds no f32 copy of the base"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
