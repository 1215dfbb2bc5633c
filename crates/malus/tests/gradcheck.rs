//! The device step (kernels on the CPU executor) against a separately written f64 reference of
//! the same model: the loss agrees, and gradients match central finite differences.

mod common;

use common::{check_against_fd, loss_and_grads, params_off_one, tokens};
use malus::reference;
use malus::rng::Rng;
use malus::{Config, Device, Dw, Numerics, Params};

/// Loss and gradients of the device step on the CPU executor in f32.
fn device_grads(c: &Config, p: &Params, toks: &[u32], dw: Dw) -> (f64, Params) {
    loss_and_grads(c, p, toks, &Device::cpu(Numerics::F32), dw, 1.0)
}

/// Indices to probe in a tensor: the largest-gradient entries and a few random ones.
fn probes(g: &[f32], r: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..g.len()).collect();
    idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    let mut out: Vec<usize> = idx.into_iter().take(3).collect();
    out.extend((0..2).map(|_| r.below(g.len() as u64) as usize));
    out
}

fn check(c: &Config) {
    let p = params_off_one(c);
    let toks = tokens(c, 3);
    let (loss, g) = device_grads(c, &p, &toks, Dw::Device);
    let want = reference::loss(c, &p, &toks);
    assert!(
        (loss - want).abs() < 1e-5 * want,
        "loss {loss} vs reference {want}"
    );
    let mut r = Rng::new(9);
    let mut worst = 0.0f64;
    for (ti, t) in p.tensors.iter().enumerate() {
        for i in probes(&g.tensors[ti].data, &mut r) {
            let rel = check_against_fd(&t.name, &t.data, i, g.tensors[ti].data[i], |v| {
                let mut q = p.clone();
                q.tensors[ti].data[i] = v;
                reference::loss(c, &q, &toks)
            });
            worst = worst.max(rel);
        }
    }
    eprintln!(
        "{}{}: loss {loss:.6}, worst relative gradient error {worst:.2e}",
        if c.kv_heads < c.heads { "gqa" } else { "mha" },
        if c.qk_norm { " + q/k norm" } else { "" }
    );
}

#[test]
fn mha_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.residual_scale = 0.7;
    check(&c);
}

#[test]
fn gqa_untied_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32; // independent of dim / heads
    c.tied = false;
    check(&c);
}

/// Qwen3's per-head q/k RMSNorm (norm weights ≠ 1, GQA, head_dim ≠ dim / heads).
#[test]
fn qk_norm_gqa_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32;
    c.qk_norm = true;
    c.residual_scale = 0.9;
    check(&c);
}

#[test]
fn host_dw_placement_gives_the_same_gradients() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.residual_scale = 0.8;
    c.qk_norm = true;
    let p = params_off_one(&c);
    let toks = tokens(&c, 8);
    let (_, dev) = device_grads(&c, &p, &toks, Dw::Device);
    let (_, host) = device_grads(&c, &p, &toks, Dw::Host);
    for (a, b) in dev.tensors.iter().zip(&host.tensors) {
        let scale = b.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!(
                (x - y).abs() <= 1e-5 * scale,
                "{}: device {x} vs host {y}",
                a.name
            );
        }
    }
}
