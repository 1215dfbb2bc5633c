//! The `--lora-*` flags `malus train` and `malus plan` share.

use clap::Args;
use malus::model::{Lora, Target};

#[derive(Args)]
pub struct LoraArgs {
    /// Train LoRA adapters on the frozen --init model instead of every weight.
    #[arg(long)]
    pub lora: bool,
    /// Rank r of the adapters.
    #[arg(long, default_value_t = 8, requires = "lora")]
    pub lora_rank: usize,
    /// α of the adapters: the low-rank path is scaled by α/r (α/√r with --rslora).
    #[arg(long, default_value_t = 16.0, requires = "lora")]
    pub lora_alpha: f64,
    /// Scale by α/√r (rank-stabilised LoRA).
    #[arg(long, requires = "lora")]
    pub rslora: bool,
    /// Dropout on the adapters' input (only 0 is supported yet).
    #[arg(long, default_value_t = 0.0, requires = "lora")]
    pub lora_dropout: f64,
    /// The layers to adapt, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "q,k,v,o,gate,up,down",
        requires = "lora"
    )]
    pub lora_targets: Vec<Target>,
    /// Adapt only the last N layers (default: all).
    #[arg(long, requires = "lora")]
    pub lora_layers: Option<usize>,
}

impl LoraArgs {
    /// The adapter settings, when `--lora` is given.
    pub fn settings(&self) -> Option<Lora> {
        self.lora.then(|| {
            let mut l = Lora::new(self.lora_rank, self.lora_alpha, &self.lora_targets);
            (l.rslora, l.dropout, l.layers) = (self.rslora, self.lora_dropout, self.lora_layers);
            l
        })
    }
}
