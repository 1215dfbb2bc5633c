//! The executor on the three kernels malus trains with, against the raw gemm calls of the same
//! shapes: (a) the dynamic-weight (packed) matmul, (b) an attention block, (c) a SwiGLU FFN.
//! Throughput is reported in elements/s where one element is one FLOP of the products.
//!
//!     cargo bench -p malus-cpu --bench blocks -- --warm-up-time 1 --measurement-time 3

#[path = "../tests/common/blocks.rs"]
mod blocks;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use malus_cpu::{CompileOptions, CpuKernel, Numerics, compile, gemm_f32_row_major};
use malus_mil::{DType, FunctionBuilder, Program, Type, Weights};

const D: usize = 768;
const S: usize = 256;
const F: usize = 2048;
const H: usize = 12;

fn kernel(p: &Program, w: &Weights, n: Numerics) -> CpuKernel {
    let mut k = compile(p, w, &CompileOptions::default().numerics(n)).unwrap();
    for t in k.inputs().to_vec() {
        k.write_input_f32(&t.name, &blocks::values(9, t.len(), 1.0))
            .unwrap();
    }
    k
}

fn packed() -> (Program, Weights) {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, D, 1, S + F]));
    let y = blocks::packed_matmul(&mut b, &x, D, S, F);
    let y = b.name("y").identity(&y).unwrap();
    (Program::new(vec![b.build(&[&y])]), Weights::new())
}

fn attention() -> (Program, Weights) {
    let a = blocks::Attn {
        dim: D,
        heads: H,
        seq: S,
    };
    let mut w = Weights::new();
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, D, 1, S]));
    let y = blocks::attention(&mut b, &mut w, &x, a, &blocks::AttnWeights::new(a, 1));
    (Program::new(vec![b.build(&[&y])]), w)
}

fn ffn() -> (Program, Weights) {
    let mut w = Weights::new();
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, D, 1, S]));
    let y = blocks::swiglu(&mut b, &mut w, &x, D, F, &blocks::ffn_weights(D, F, 2));
    (Program::new(vec![b.build(&[&y])]), w)
}

/// The products of a block as `(count, m, n, k)`.
fn raw_gemm(c: &mut Criterion, name: &str, shapes: &[(usize, usize, usize, usize)]) {
    let flops: usize = shapes.iter().map(|&(c, m, n, k)| 2 * c * m * n * k).sum();
    let bufs: Vec<_> = shapes
        .iter()
        .map(|&(_, m, n, k)| {
            (
                vec![0f32; m * n],
                blocks::values(1, m * k, 1.0),
                blocks::values(2, k * n, 1.0),
            )
        })
        .collect();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(flops as u64));
    let mut bufs = bufs;
    g.bench_function("raw gemm", |bench| {
        bench.iter(|| {
            for (&(count, m, n, k), (out, a, b)) in shapes.iter().zip(bufs.iter_mut()) {
                for _ in 0..count {
                    gemm_f32_row_major(m, n, k, out, a, b, true);
                }
            }
        })
    });
    g.finish();
}

fn executor(c: &mut Criterion, name: &str, flops: usize, (p, w): (Program, Weights)) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(flops as u64));
    for n in [Numerics::F32, Numerics::Fp16] {
        let mut k = kernel(&p, &w, n);
        g.bench_function(format!("executor {n:?}"), |bench| bench.iter(|| k.run().unwrap()));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let packed_shapes = [(1, S, F, D)];
    let attn_shapes = [(4, D, S, D), (H, S, S, D / H), (H, S, D / H, S)];
    let ffn_shapes = [(2, F, S, D), (1, D, S, F)];
    let flops = |s: &[(usize, usize, usize, usize)]| s.iter().map(|&(c, m, n, k)| 2 * c * m * n * k).sum();
    raw_gemm(c, "a_packed_matmul", &packed_shapes);
    executor(c, "a_packed_matmul", flops(&packed_shapes), packed());
    raw_gemm(c, "b_attention", &attn_shapes);
    executor(c, "b_attention", flops(&attn_shapes), attention());
    raw_gemm(c, "c_ffn", &ffn_shapes);
    executor(c, "c_ffn", flops(&ffn_shapes), ffn());
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
