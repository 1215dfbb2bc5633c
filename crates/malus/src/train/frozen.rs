//! The frozen base of a LoRA run, staged straight from the model's files a tensor at a time:
//! each matrix is read, folded and written into its kernel input, then dropped, so the base
//! exists once — staged, at the device's precision (2 bytes per weight in fp16) — and never as
//! an f32 copy. What the host keeps is small: the RMSNorm weights (LoRA folds them into `Ã`)
//! and the embedding table at its stored precision.

use std::collections::HashMap;

use anyhow::{Result, ensure};

use super::staging::{Fold, Inputs, LAYER_FOLDS};
use crate::checkpoint::Fingerprint;
use crate::kernels::Shape;
use crate::model::hf_weights::WeightReader;
use crate::model::{Params, Stored};

/// What the host keeps of a staged frozen base.
pub struct FrozenBase {
    /// The base's layout with only its RMSNorm weights filled in (its matrices live in the
    /// kernel inputs).
    pub norms: Params,
    pub embedding: Stored,
    /// [`crate::checkpoint::fingerprint`] of the base's parameters, computed as they stream by.
    pub fingerprint: String,
}

/// Values hashed or copied a piece at a time (f32 elements).
const PIECE: usize = 1 << 20;

/// Stages every weight of the model `r` reads into `inputs`.
pub fn stage(inputs: &mut Inputs, s: &Shape, r: &WeightReader) -> Result<FrozenBase> {
    let mut p = r.layout().clone();
    let folds: HashMap<usize, (usize, &Fold)> = p
        .layers
        .iter()
        .enumerate()
        .flat_map(|(l, ids)| LAYER_FOLDS.iter().map(move |f| ((f.param)(ids), (l, f))))
        .collect();
    let mut fp = Fingerprint::default();
    let mut embedding = None;
    // In the parameters' order, which the fingerprint follows; each RMSNorm weight comes before
    // the matrices it folds into, the final norm before an untied classifier.
    for i in 0..p.tensors.len() {
        fp.tensor(&p.tensors[i].name, &p.tensors[i].shape);
        if i == p.embed {
            let e = r.embedding()?;
            let mut piece = vec![0.0f32; PIECE.min(e.len())];
            for start in (0..e.len()).step_by(PIECE) {
                let n = PIECE.min(e.len() - start);
                e.read_into(start, &mut piece[..n]);
                fp.values(&piece[..n]);
            }
            embedding = Some(e);
        } else if Some(i) == p.cls {
            let fp = &mut fp;
            let rows = |start: usize, out: &mut [f32]| {
                let v = r.read_part(i, start, out.len())?;
                fp.values(&v);
                out.copy_from_slice(&v);
                Ok(())
            };
            inputs.stage_classifier(s, rows, &p.tensors[p.final_norm].data)?;
        } else if let Some(&(l, f)) = folds.get(&i) {
            let w = r.read(i)?;
            fp.values(&w);
            let norm = match f.norm.map(|n| n(&p.layers[l])) {
                Some(n) => {
                    ensure!(n < i, "{} is read before its norm weight", p.tensors[i].name);
                    Some(p.tensors[n].data.as_slice())
                }
                None => None,
            };
            inputs.stage_fold(l, f, &w, p.tensors[i].shape[1], norm)?;
        } else {
            let v = r.read(i)?;
            fp.values(&v);
            p.tensors[i].data = v;
            let ids = &p.layers;
            if let Some(l) = ids.iter().position(|l| l.k_norm == Some(i)) {
                let q = ids[l].q_norm.expect("q_norm beside k_norm");
                ensure!(q < i, "k_norm is read before q_norm");
                inputs.stage_qk_norm(s, l, &p.tensors[q].data, &p.tensors[i].data)?;
            }
        }
    }
    let embedding = embedding.expect("every layout has an embedding");
    if p.cls.is_none() {
        let rows = |start: usize, out: &mut [f32]| {
            embedding.read_into(start, out);
            Ok(())
        };
        inputs.stage_classifier(s, rows, &p.tensors[p.final_norm].data)?;
    }
    Ok(FrozenBase {
        norms: p,
        embedding,
        fingerprint: fp.finish(),
    })
}
