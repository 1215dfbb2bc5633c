//! Known bugs, skipped when `MALUS_FUZZ_SKIP_KNOWN=1` so that a long run (or `smoke.sh`) looks
//! past them instead of stopping at the first: each skip names the input class of
//! `regressions/README.md` it hides. Without the variable every input runs, so the regression
//! inputs crash. Delete a skip when its bug is fixed.

// Each target uses the part it needs.
#![allow(dead_code)]

use std::sync::OnceLock;

use malus::Config;

pub fn skip_known() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var("MALUS_FUZZ_SKIP_KNOWN").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// More f32 elements than any fuzz input can hold (inputs are at most 16 KB).
const MAX_ELEMS: u64 = 1 << 24;

/// The number of f32 elements `Params::zeros(c)` allocates; `None` when it overflows.
fn param_elems(c: &Config) -> Option<u64> {
    let [d, h, v, l] = [c.dim, c.hidden, c.vocab, c.layers].map(|x| x as u64);
    let hd = c.head_dim as u64;
    let q = (c.heads as u64).checked_mul(hd)?;
    let kv = (c.kv_heads as u64).checked_mul(hd)?;
    let attn = q.checked_add(kv)?.checked_mul(2)?.checked_mul(d)?;
    let ffn = d.checked_mul(h)?.checked_mul(3)?;
    let per_layer = attn
        .checked_add(ffn)?
        .checked_add(d.checked_mul(2)?)?
        .checked_add(hd * 2)?;
    let embed = v.checked_mul(d)?.checked_mul(2)?;
    l.checked_mul(per_layer)?.checked_add(embed)?.checked_add(d)
}

/// `Params::zeros` allocates what the config says before any tensor is read: a config claiming
/// billions of parameters is an OOM, and sizes whose product overflows a multiply panic
/// (regressions `*/huge-vocab*`, `*/overflow-dims*`).
pub fn config_too_big(c: &Config) -> bool {
    param_elems(c).is_none_or(|n| n > MAX_ELEMS)
}
