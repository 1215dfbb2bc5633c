#!/usr/bin/env bash
# Smoke run of every fuzz target, for CI: builds them with cargo-fuzz (stable toolchain with
# RUSTC_BOOTSTRAP=1) and runs each one briefly from its seeds; exits non-zero when any target
# crashes (panic, overflow, OOM over 2 GB, timeout) or does not build. Needs only crates.io.
#
#   fuzz/smoke.sh                     # 30 s a target, AddressSanitizer
#   FUZZ_SMOKE_SECS=10 FUZZ_SMOKE_SANITIZER=none fuzz/smoke.sh
#
# Builds into $CARGO_TARGET_DIR (default fuzz/target). New corpus entries go to a temporary
# directory, so seeds/ is left as it is; a crashing input is kept in $FUZZ_SMOKE_ARTIFACTS
# (default fuzz/artifacts/smoke/) and named in the summary.
#
# Every input that once crashed a target (regressions/<target>/) is run first. With
# FUZZ_SMOKE_SANITIZER=none panics and overflows are still caught, but a huge calloc that is
# never touched may stay under the RSS limit unnoticed (libFuzzer's malloc limit needs the
# sanitizer's allocator hooks).
set -euo pipefail
cd "$(dirname "$0")"

secs=${FUZZ_SMOKE_SECS:-30}
sanitizer=${FUZZ_SMOKE_SANITIZER:-address}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
artifacts=${FUZZ_SMOKE_ARTIFACTS:-$PWD/artifacts/smoke}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

start=$(date +%s)
cargo fuzz build -s "$sanitizer" --target-dir "$target_dir"
built=$(date +%s)
host=$(rustc -vV | sed -n 's/^host: //p')
bin=$target_dir/$host/release

# target | extra libFuzzer flags
targets=(
    "parse|-max_len=8192 -dict=mil.dict"
    "blob_read|-max_len=4096"
    "checkpoint_read|-max_len=16384 -dict=checkpoint.dict"
    "token_shard|-max_len=4096"
    "hf_import|-max_len=16384 -dict=hf.dict"
    "tokenizer_load|-max_len=16384 -dict=tokenizer.dict"
)

mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for entry in "${targets[@]}"; do
    t=${entry%%|*}
    flags=${entry#*|}
    mkdir -p "$work/$t"
    if [[ -d regressions/$t ]]; then
        echo "== $t: the inputs in regressions/$t"
        if ! "$bin/$t" regressions/$t/* -rss_limit_mb=2048 -timeout=10 >"$work/$t.log" 2>&1; then
            grep -m1 -A12 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$work/$t.log" || true
            failed+=("$t")
            continue
        fi
    fi
    echo "== $t: ${secs}s from seeds/$t"
    # shellcheck disable=SC2086 # flags are words
    if "$bin/$t" "$work/$t" "seeds/$t" $flags -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$artifacts/$t-" -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done' "$work/$t.log" | tr '\n' ' '
        echo
    else
        # The panic message or sanitizer report, the first frames, and libFuzzer's summary.
        grep -m1 -A12 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$work/$t.log" || true
        tail -n 4 "$work/$t.log"
        failed+=("$t")
    fi
done

end=$(date +%s)
echo "fuzz smoke: build $((built - start)) s, runs $((end - built)) s"
if ((${#failed[@]})); then
    echo "fuzz smoke: crashes in ${failed[*]} (inputs in $artifacts)" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, no crash"
