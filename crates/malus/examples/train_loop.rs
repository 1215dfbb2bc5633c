//! The training loop every ML user knows, with malus as a library: load a model, make an
//! optimizer over its parameters, then per batch forward → loss, backward, step.
//!
//! Run: `cargo run --release --example train_loop`

use malus::{AdamWConfig, CompiledModel, Config, Device, Dw, Numerics, Optimizer, Params, Plan, Tok};

fn main() -> anyhow::Result<()> {
    // A tiny Llama and some text to learn.
    let tok = Tok::load("data/tokenizer.json".as_ref())?;
    let text = std::fs::read_to_string("data/austen.txt")?;
    let ids = tok.encode(&text[..50_000])?;
    let config = Config {
        vocab: tok.vocab_size(),
        ..Config::preset("tiny")?
    };

    // Parameters, the kernels compiled once on a device (the CPU executor here;
    // `Device::open(DeviceChoice::Auto, …)` takes the Neural Engine on a Mac), AdamW.
    let mut params = Params::init(&config, 0);
    let device = Device::cpu(Numerics::F32);
    let mut model = CompiledModel::new(&Plan::for_device(&config, &device, Dw::Auto)?, &device)?;
    model.stage(&params)?;
    let mut opt = Optimizer::adamw(&params.tensors, AdamWConfig::default());

    for (i, batch) in ids.chunks_exact(config.seq + 1).take(60).enumerate() {
        let loss = model.forward(&params, batch)?; // forward → loss
        model.backward(1.0)?; // backward (loss scale 1)
        let grads = model.take_grads(&params, 1.0)?;
        let changed = opt.step(&mut params.tensors, &grads.tensors, 3e-3); // optimizer step on f32 master weights
        model.restage(&params, &changed)?; // re-stage the changed weights into the kernel inputs
        if i % 10 == 0 {
            println!("batch {i:>3}  loss {loss:.3}");
        }
    }
    Ok(())
}
