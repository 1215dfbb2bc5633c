//! `run()` allocates nothing: a counting global allocator watches the whole process while a
//! kernel runs. The only allocations left are inside the gemm crate (its packing buffers), so
//! programs without products allocate exactly zero bytes per run, and programs with products
//! allocate the same small amount on every run.

#[path = "common/blocks.rs"]
mod blocks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use malus_cpu::{CompileOptions, CpuKernel, compile};
use malus_mil::{ConvParams, DType, FunctionBuilder, Program, Type, Weights};

struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(l.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(n, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// (allocations, bytes) during one `run()`.
fn measure(k: &mut CpuKernel) -> (usize, usize) {
    COUNT.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    k.run().unwrap();
    ON.store(false, Ordering::SeqCst);
    (COUNT.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

/// Everything but products (which call gemm): fused elementwise ops on a transposed view,
/// softmax, layer norm, a reduction, a slice, concat, select and casts.
fn no_product_program() -> Program {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, 64, 1, 128]));
    let t = b.transpose(&x, &[0, 3, 2, 1]).unwrap();
    let s = b.silu(&t).unwrap();
    let m = b.mul(&s, &t).unwrap();
    let sm = b.softmax(&m, -1).unwrap();
    let ln = b.layer_norm(&sm, &[1], None, None, 1e-5).unwrap();
    let r = b.reduce_mean(&ln, &[3], true).unwrap();
    let half = b.slice_by_size(&ln, &[0, 0, 0, 0], &[1, 128, 1, 32]).unwrap();
    let c = b.concat(&[&half, &half], 3).unwrap();
    let cond = b.cast(&c, DType::Bool).unwrap();
    let sel = b.select(&cond, &c, &r).unwrap();
    let out = b.name("out").cast(&sel, DType::Fp32).unwrap();
    Program::new(vec![b.build(&[&out])])
}

fn block_program() -> (Program, Weights) {
    let a = blocks::Attn {
        dim: 128,
        heads: 4,
        seq: 64,
    };
    let mut w = Weights::new();
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, 128, 1, 64]));
    let at = blocks::attention(&mut b, &mut w, &x, a, &blocks::AttnWeights::new(a, 1));
    let ff = blocks::swiglu(&mut b, &mut w, &at, 128, 256, &blocks::ffn_weights(128, 256, 2));
    let wc = blocks::blob(
        &mut b,
        &mut w,
        "c3",
        &[128, 1, 3, 1],
        &blocks::values(3, 384, 0.5),
    );
    let params = ConvParams {
        pad_type: "same".into(),
        groups: 128,
        ..ConvParams::default()
    };
    let out = b.name("out").conv(&ff, &wc, &params, None).unwrap();
    (Program::new(vec![b.build(&[&out])]), w)
}

#[test]
fn run_does_not_allocate() {
    // 1. No products, single thread: not one allocation.
    let p = no_product_program();
    let mut k = compile(&p, &Weights::new(), &CompileOptions::default().threads(1)).unwrap();
    k.write_input_f32("x", &blocks::values(5, 64 * 128, 2.0)).unwrap();
    k.run().unwrap();
    assert_eq!(measure(&mut k), (0, 0), "{:?}", k.stats());

    // 1b. On the caller's buffers: nothing either, from the very first run (the kernel's own
    //     I/O buffers are never allocated).
    let mut k = compile(&p, &Weights::new(), &CompileOptions::default().threads(1)).unwrap();
    let input: Vec<u8> = blocks::values(5, 64 * 128, 2.0)
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let mut output = vec![0u8; k.outputs()[0].byte_len()];
    COUNT.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    k.run_with(&[&input], &mut [&mut output]).unwrap();
    ON.store(false, Ordering::SeqCst);
    assert_eq!(COUNT.load(Ordering::SeqCst), 0);

    // 2. A transformer block, single thread: only gemm's packing buffers, the same every run,
    //    and far smaller than the block's activations.
    let (p, w) = block_program();
    let mut k = compile(&p, &w, &CompileOptions::default().threads(1)).unwrap();
    k.write_input_f32("x", &blocks::values(6, 128 * 64, 1.0)).unwrap();
    k.run().unwrap();
    let first = measure(&mut k);
    let second = measure(&mut k);
    let gemm_calls = 7 + 2 * 4 + 128; // projections, per-head products, depthwise groups
    println!(
        "single thread: {first:?} per run, {} steps, {} runtime bytes",
        k.stats().steps,
        k.stats().runtime_bytes
    );
    assert_eq!(first.0, second.0);
    assert!(first.0 <= 4 * gemm_calls, "{first:?}");

    // 3. The same on the thread pool: still bounded (gemm and rayon's job queue only).
    let mut k = compile(&p, &w, &CompileOptions::default()).unwrap();
    k.write_input_f32("x", &blocks::values(6, 128 * 64, 1.0)).unwrap();
    k.run().unwrap();
    let par = measure(&mut k);
    println!("thread pool: {par:?} per run");
    assert!(par.0 <= 8 * gemm_calls, "{par:?}");
}
