#!/usr/bin/env bash
# Peak memory of LoRA fine-tuning a large model on the CPU executor: writes a random-weight
# Hugging Face directory of a preset's shape (bf16, the shipped tokenizer), then runs 2 LoRA
# updates (rank 8, every target, seq 256, one sequence each, fp16 numerics: the Neural
# Engine's, whose kernels hold the base at 2 bytes a weight) on the shipped corpus, and prints
# the peak RSS beside the base's bytes, the target 1.15 × base + 1 GB, and what
# `malus plan --lora` estimates. Needs ~4 bytes per parameter of memory to write the model and
# 2 of disk (Llama-3.2-3B: 13 GB and 6.4 GB; Llama-2-7B: 27 GB and 13.5 GB).
# usage: bench/lora_memory.sh [PRESET=llama3.2-3b] [WORK_DIR=/tmp/malus-lora-memory]
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-llama3.2-3b}
WORK=${2:-/tmp/malus-lora-memory}
mkdir -p "$WORK"
cargo build --release -q -p malus --bin malus --example random_hf_model
MODEL="$WORK/$PRESET"
[ -f "$MODEL/model.safetensors" ] || ./target/release/examples/random_hf_model "$PRESET" "$MODEL"
base=$(stat -c %s "$MODEL/model.safetensors")
rm -rf "$WORK/run"
/usr/bin/time -f "peak_rss_kb %M elapsed_s %e" ./target/release/malus train --init "$MODEL" --lora \
    --data data/austen.txt --out "$WORK/run" --steps 2 --accum 1 --warmup 0 --eval-every 100000 \
    --ckpt-every 100000 --sample-tokens 0 --device cpu --numerics fp16 \
    > "$WORK/train.out" 2> "$WORK/train.time" || { cat "$WORK/train.out" "$WORK/train.time"; exit 1; }
rss_kb=$(awk '/peak_rss_kb/ {print $2}' "$WORK/train.time")
secs=$(awk '/peak_rss_kb/ {print $4}' "$WORK/train.time")
estimate=$(./target/release/malus plan --init "$MODEL" --lora | grep "CPU executor in fp16")
python3 - "$base" "$rss_kb" "$secs" <<PY
import sys
base, rss, secs = int(sys.argv[1]), int(sys.argv[2]) * 1024, float(sys.argv[3])
target = 1.15 * base + 1e9
print(f"$PRESET: base weights {base / 1e9:.2f} GB (bf16), peak RSS {rss / 1e9:.2f} GB "
      f"= {rss / base:.3f} x base, target 1.15 x base + 1 GB = {target / 1e9:.2f} GB: "
      f"{'met' if rss <= target else 'NOT met'}; {secs:.0f} s for start-up and 2 updates")
PY
echo "plan estimate: $estimate"
