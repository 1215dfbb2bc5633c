#!/usr/bin/env bash
# Trains the same model (Stories15M shape: dim 288, 6 layers, 6 heads, hidden 768, vocab 32000,
# seq 256, one sequence per micro-step, accumulation 4, AdamW) for N updates in PyTorch (CPU, f32)
# and in malus on the CPU executor (f32), and prints tokens/s, peak memory and their ratio.
# The two alternate for R rounds (so a noisy neighbour on a shared machine hits both alike);
# tokens/s is the mean over rounds (first update of each run excluded), peak RSS the maximum.
# Needs Debian's python3-torch and libopenblas0-pthread (so PyTorch does not fall back to the
# reference BLAS): apt-get install -y python3-torch python3-numpy libopenblas0-pthread
# usage: bench/torch_vs_malus.sh [N=20] [R=2]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
ROUNDS=${2:-2}
DIM=288 LAYERS=6 HEADS=6 HIDDEN=768 VOCAB=32000 SEQ=256 ACCUM=4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p malus
./target/release/malus data prepare -o "$work/austen.bin" data/austen.txt > /dev/null

for r in $(seq "$ROUNDS"); do
    /usr/bin/time -f "peak_rss_kb %M" /usr/bin/python3 bench/torch_train.py "$work/austen.bin" \
        $DIM $LAYERS $HEADS $HIDDEN $VOCAB $SEQ $ACCUM "$STEPS" 2> "$work/torch.time" > "$work/torch.out"
    torch_tps=$(awk '{print $4}' "$work/torch.out")
    torch_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/torch.time")
    echo "round $r PyTorch $(cat "$work/torch.out"), peak RSS $((torch_rss / 1024)) MiB"
    echo "torch $torch_tps $torch_rss" >> "$work/results"

    rm -rf "$work/run"
    /usr/bin/time -f "peak_rss_kb %M" ./target/release/malus train --model stories15m --vocab $VOCAB \
        --seq $SEQ --accum $ACCUM --steps "$STEPS" --eval-every 100000 --ckpt-every 100000 \
        --sample-tokens 0 --device cpu --data "$work/austen.bin" --out "$work/run" \
        2> "$work/malus.time" > /dev/null
    malus_tps=$(python3 bench/summary.py tps "$work/run/metrics.jsonl")
    malus_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/malus.time")
    echo "round $r malus tokens_per_s $malus_tps, peak RSS $((malus_rss / 1024)) MiB"
    echo "malus $malus_tps $malus_rss" >> "$work/results"
done

echo "== result ($STEPS updates x $ROUNDS rounds)"
python3 bench/summary.py compare "$work/results" torch PyTorch
