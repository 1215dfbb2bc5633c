//! Optimizers over f32 master weights (AdamW, SGD with momentum), gradient clipping, the
//! learning-rate schedule and dynamic loss scaling.

use crate::model::Tensor;

/// AdamW hyper-parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay, applied to matrices only (not to norm weights).
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// An optimizer with its state (one or two f32 moments per parameter).
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    AdamW {
        cfg: AdamWConfig,
        step: u64,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
    },
    Sgd {
        momentum: f32,
        weight_decay: f32,
        buf: Vec<Vec<f32>>,
    },
}

fn zeros_like(p: &[Tensor]) -> Vec<Vec<f32>> {
    p.iter().map(|t| vec![0.0; t.data.len()]).collect()
}

impl Optimizer {
    pub fn adamw(p: &[Tensor], cfg: AdamWConfig) -> Optimizer {
        Optimizer::AdamW {
            cfg,
            step: 0,
            m: zeros_like(p),
            v: zeros_like(p),
        }
    }

    pub fn sgd(p: &[Tensor], momentum: f32, weight_decay: f32) -> Optimizer {
        Optimizer::Sgd {
            momentum,
            weight_decay,
            buf: zeros_like(p),
        }
    }

    /// The per-parameter state tensors with their checkpoint prefixes.
    pub fn moments(&self) -> Vec<(&'static str, &Vec<Vec<f32>>)> {
        match self {
            Optimizer::AdamW { m, v, .. } => vec![("adam_m", m), ("adam_v", v)],
            Optimizer::Sgd { buf, .. } => vec![("sgd_buf", buf)],
        }
    }

    /// Applies one update of the tensors `p` (a model's parameters or a run's adapters) with
    /// gradients `g` and learning rate `lr`. Returns, per tensor, whether any of its values
    /// changed, so only those are re-staged into kernel inputs.
    pub fn step(&mut self, p: &mut [Tensor], g: &[Tensor], lr: f32) -> Vec<bool> {
        let mut changed = vec![false; p.len()];
        match self {
            Optimizer::AdamW { cfg, step, m, v } => {
                *step += 1;
                let b1c = 1.0 - cfg.beta1.powi(*step as i32);
                let b2c = 1.0 - cfg.beta2.powi(*step as i32);
                for (i, (t, gt)) in p.iter_mut().zip(g).enumerate() {
                    let wd = if t.shape.len() >= 2 { cfg.weight_decay } else { 0.0 };
                    for ((w, &gr), (mi, vi)) in t
                        .data
                        .iter_mut()
                        .zip(&gt.data)
                        .zip(m[i].iter_mut().zip(v[i].iter_mut()))
                    {
                        *mi = cfg.beta1 * *mi + (1.0 - cfg.beta1) * gr;
                        *vi = cfg.beta2 * *vi + (1.0 - cfg.beta2) * gr * gr;
                        let mh = *mi / b1c;
                        let vh = *vi / b2c;
                        let old = *w;
                        *w -= lr * (mh / (vh.sqrt() + cfg.eps) + wd * *w);
                        changed[i] |= *w != old;
                    }
                }
            }
            Optimizer::Sgd {
                momentum,
                weight_decay,
                buf,
            } => {
                for (i, (t, gt)) in p.iter_mut().zip(g).enumerate() {
                    let wd = if t.shape.len() >= 2 { *weight_decay } else { 0.0 };
                    for ((w, &gr), b) in t.data.iter_mut().zip(&gt.data).zip(buf[i].iter_mut()) {
                        *b = *momentum * *b + gr;
                        let old = *w;
                        *w -= lr * (*b + wd * *w);
                        changed[i] |= *w != old;
                    }
                }
            }
        }
        changed
    }
}

/// Global L2 norm of all gradients (f64 accumulation).
pub fn global_norm(g: &[Tensor]) -> f64 {
    g.iter()
        .flat_map(|t| t.data.iter())
        .map(|&x| x as f64 * x as f64)
        .sum::<f64>()
        .sqrt()
}

/// Scales gradients so their global norm is at most `max_norm`; returns the norm before.
pub fn clip(g: &mut [Tensor], max_norm: f64) -> f64 {
    let n = global_norm(g);
    if max_norm > 0.0 && n > max_norm {
        let k = (max_norm / n) as f32;
        g.iter_mut().for_each(|t| t.data.iter_mut().for_each(|x| *x *= k));
    }
    n
}

/// Linear warm-up to `max_lr`, then cosine decay to `min_ratio·max_lr` at `total` steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub max_lr: f64,
    pub warmup: u64,
    pub total: u64,
    pub min_ratio: f64,
}

impl Schedule {
    /// Learning rate of update `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.max_lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let t = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let min = self.min_ratio * self.max_lr;
        min + 0.5 * (self.max_lr - min) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// Loss scaling: dynamic (halve and skip on inf/nan, double after `interval` good steps) or
/// fixed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f32,
    pub dynamic: bool,
    pub interval: u32,
    pub good_steps: u32,
}

impl LossScaler {
    pub fn dynamic(initial: f32, interval: u32) -> LossScaler {
        LossScaler {
            scale: initial,
            dynamic: true,
            interval,
            good_steps: 0,
        }
    }

    pub fn fixed(scale: f32) -> LossScaler {
        LossScaler {
            scale,
            dynamic: false,
            interval: 0,
            good_steps: 0,
        }
    }

    /// Records whether the unscaled gradients were finite; returns whether to apply the step.
    pub fn update(&mut self, finite: bool) -> bool {
        if !self.dynamic {
            return finite;
        }
        if !finite {
            self.scale = (self.scale / 2.0).max(1.0 / 65536.0);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= self.interval {
            self.scale = (self.scale * 2.0).min(65536.0 * 256.0);
            self.good_steps = 0;
        }
        true
    }

    /// One update's decision: records whether the loss and the unscaled gradients `g` were
    /// finite, and when the step applies clips `g` to `max_norm`. Returns whether to apply it
    /// and the gradient norm before clipping (NaN when skipped).
    pub fn apply(&mut self, loss: f64, g: &mut [Tensor], max_norm: f64) -> (bool, f64) {
        let finite = loss.is_finite() && g.iter().all(|t| t.data.iter().all(|v| v.is_finite()));
        if self.update(finite) {
            (true, clip(g, max_norm))
        } else {
            (false, f64::NAN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Config, Params};

    fn one(v: f32) -> Params {
        let mut p = Params::zeros(&Config::preset("tiny").unwrap());
        p.tensors.truncate(2);
        p.tensors[0].data = vec![v];
        p.tensors[0].shape = vec![1, 1];
        p.tensors[1].data = vec![v];
        p.tensors[1].shape = vec![1];
        p
    }

    #[test]
    fn adamw_first_step_is_lr_times_sign_plus_decay() {
        let mut p = one(1.0);
        let g = one(0.5);
        let mut o = Optimizer::adamw(&p.tensors, AdamWConfig::default());
        o.step(&mut p.tensors, &g.tensors, 0.01);
        // m̂ = g, v̂ = g² → update = lr·(1 + wd·w) for the matrix, lr·1 for the vector.
        assert!((p.tensors[0].data[0] - (1.0 - 0.01 * (1.0 + 0.1))).abs() < 1e-6);
        assert!((p.tensors[1].data[0] - 0.99).abs() < 1e-6);
    }

    #[test]
    fn step_reports_which_tensors_changed() {
        let mut p = one(1.0);
        let mut g = one(0.5);
        g.tensors[1].data = vec![0.0];
        // SGD without decay: a zero gradient leaves the tensor as it was.
        let mut o = Optimizer::sgd(&p.tensors, 0.0, 0.0);
        assert_eq!(o.step(&mut p.tensors, &g.tensors, 0.1), [true, false]);
        assert_eq!(p.tensors[1].data, [1.0]);
        // AdamW: the first moment keeps moving a tensor after its gradient falls to zero.
        let mut o = Optimizer::adamw(&p.tensors, AdamWConfig::default());
        assert_eq!(o.step(&mut p.tensors, &g.tensors, 0.1), [true, false]);
        g.tensors[0].data = vec![0.0];
        assert_eq!(o.step(&mut p.tensors, &g.tensors, 0.1), [true, false]);
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let mut p = one(0.0);
        let g = one(1.0);
        let mut o = Optimizer::sgd(&p.tensors, 0.9, 0.0);
        o.step(&mut p.tensors, &g.tensors, 0.1);
        o.step(&mut p.tensors, &g.tensors, 0.1);
        assert!((p.tensors[0].data[0] - (-0.1 - 0.19)).abs() < 1e-6);
    }

    #[test]
    fn clipping_and_schedule() {
        let mut g = one(3.0);
        g.tensors[1].data = vec![4.0];
        assert!((clip(&mut g.tensors, 1.0) - 5.0).abs() < 1e-9);
        assert!((global_norm(&g.tensors) - 1.0).abs() < 1e-6);
        let s = Schedule {
            max_lr: 1.0,
            warmup: 10,
            total: 110,
            min_ratio: 0.1,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn dynamic_loss_scale_backs_off_and_grows() {
        let mut s = LossScaler::dynamic(1024.0, 2);
        assert!(!s.update(false));
        assert_eq!(s.scale, 512.0);
        assert!(s.update(true));
        assert!(s.update(true));
        assert_eq!(s.scale, 1024.0);
        let mut f = LossScaler::fixed(256.0);
        assert!(!f.update(false));
        assert_eq!(f.scale, 256.0);
    }
}
