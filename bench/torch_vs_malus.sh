#!/usr/bin/env bash
# Trains the same model (Stories15M shape: dim 288, 6 layers, 6 heads, hidden 768, vocab 32000,
# seq 256, one sequence per micro-step, accumulation 4, AdamW) for N updates in PyTorch (CPU, f32)
# and in malus on the CPU executor (f32), and prints tokens/s, peak memory and their ratio.
# Needs Debian's python3-torch and libopenblas0-pthread (so PyTorch does not fall back to the
# reference BLAS): apt-get install -y python3-torch python3-numpy libopenblas0-pthread
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-6}
DIM=288 LAYERS=6 HEADS=6 HIDDEN=768 VOCAB=32000 SEQ=256 ACCUM=4
work=$(mktemp -d)
cargo build --release -q -p malus
./target/release/malus data prepare -o "$work/austen.bin" data/austen.txt > /dev/null

echo "== PyTorch"
/usr/bin/time -f "peak_rss_kb %M" /usr/bin/python3 bench/torch_train.py "$work/austen.bin" \
    $DIM $LAYERS $HEADS $HIDDEN $VOCAB $SEQ $ACCUM "$STEPS" 2> "$work/torch.time" | tee "$work/torch.out"
torch_tps=$(awk '{print $4}' "$work/torch.out"); torch_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/torch.time")

echo "== malus (CPU executor, f32)"
/usr/bin/time -f "peak_rss_kb %M" ./target/release/malus train --model stories15m --vocab $VOCAB --seq $SEQ \
    --accum $ACCUM --steps "$STEPS" --eval-every 100000 --ckpt-every 100000 --sample-tokens 0 \
    --device cpu --data "$work/austen.bin" --out "$work/run" 2> "$work/malus.time" > /dev/null
malus_tps=$(python3 -c "import json,sys; r=[json.loads(l) for l in open('$work/run/metrics.jsonl')][1:]; print(sum(x['tokens_per_s'] for x in r)/len(r))")
malus_rss=$(awk '/peak_rss_kb/ {print $2}' "$work/malus.time")
echo "malus tokens_per_s $malus_tps"
echo "== result"
python3 - <<PY
t, m = $torch_tps, $malus_tps
print(f"tokens/s: PyTorch {t:.0f}, malus {m:.0f}, ratio malus/PyTorch {m / t:.2f}")
print(f"peak RSS: PyTorch {$torch_rss/1024:.0f} MiB, malus {$malus_rss/1024:.0f} MiB")
PY
rm -rf "$work"
