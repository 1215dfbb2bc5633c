#!/usr/bin/env bash
# LoRA fine-tuning speed, malus (CPU executor, f32) against PyTorch + Hugging Face PEFT (pip
# wheels, CPU, f32, eager), side by side on the same random-weight model of SmolLM2-135M's
# shape (bf16 on disk), the same data (the shipped corpus in the model's tokenizer) and the
# same step: one sequence of 256 tokens per update, rank 8, alpha 16, every linear layer,
# AdamW, clipping at 1. The two alternate for R rounds; tokens/s is the mean over rounds
# (first update of each run excluded), peak RSS the maximum.
# Needs a venv with torch, transformers and peft: PY=~/peer/bin/python (the default).
# usage: bench/lora_vs_peft.sh [N=12] [R=2]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12}
ROUNDS=${2:-2}
PY=${PY:-$HOME/peer/bin/python}
SEQ=256
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p malus --bin malus --example random_hf_model
./target/release/examples/random_hf_model smollm2-135m "$work/model" 2> /dev/null
./target/release/malus data prepare --tokenizer "$work/model/tokenizer.json" \
    -o "$work/austen.bin" data/austen.txt > /dev/null
for r in $(seq "$ROUNDS"); do
    /usr/bin/time -f "peak_rss_kb %M" "$PY" bench/peft_train.py "$work/model" "$work/austen.bin" \
        $SEQ "$STEPS" 2> "$work/peft.time" > "$work/peft.out" || { cat "$work/peft.time"; exit 1; }
    peft_tps=$(awk '{print $3}' "$work/peft.out")
    peft_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/peft.time")
    echo "round $r PEFT $(cat "$work/peft.out"), peak RSS $((peft_rss / 1024)) MiB"
    echo "peft $peft_tps $peft_rss" >> "$work/results"

    rm -rf "$work/run"
    /usr/bin/time -f "peak_rss_kb %M" ./target/release/malus train --init "$work/model" --lora \
        --data "$work/austen.bin" --seq $SEQ --accum 1 --steps "$STEPS" --lr 2e-4 --warmup 0 \
        --eval-every 100000 --ckpt-every 100000 --sample-tokens 0 --device cpu --out "$work/run" \
        2> "$work/malus.time" > /dev/null || { cat "$work/malus.time"; exit 1; }
    malus_tps=$(python3 bench/summary.py tps "$work/run/metrics.jsonl")
    malus_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/malus.time")
    echo "round $r malus tokens_per_s $malus_tps, peak RSS $((malus_rss / 1024)) MiB"
    echo "malus $malus_tps $malus_rss" >> "$work/results"
done
echo "== result ($STEPS updates x $ROUNDS rounds)"
python3 bench/summary.py compare "$work/results" peft PEFT
