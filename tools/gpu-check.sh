#!/usr/bin/env bash
# The prepared check for a machine with a real GPU, in under 5 minutes, with no network:
#   1. builds the release binary and the whole-network test (cargo --offline), unless
#      FER_CBAM_BIN and FER_CBAM_NETWORK_TEST name prebuilt ones;
#   2. `fer-cbam info` (adapter, limits, and which kernel set runs and why);
#   3. the full-size step test: one training step at 128x128, batch 2, every attention variant,
#      both kernel sets, against the f64 reference (tests/network.rs, `the_spec_step_*`);
#   4. `fer-cbam profile --batch-size 64 --image-size 128 --json` (the auto kernel set), then
#      the same as a table, and the tables with `--kernels cpu` and with Winograd (`--conv v3`)
#      for comparison, while time is left.
#
# Usage: tools/gpu-check.sh [OUT_DIR]     (default: $OUT, else ./gpu-check-out)
# Everything goes to OUT_DIR: log.txt (what ran, exit codes, seconds), info.txt, network.txt,
# profile.json, profile.txt, profile-cpu.txt, profile-v3.txt, nvidia-smi.txt when present, summary.txt.
# Exit status: 0 when the build, info, the step test and the JSON profile all passed.
set -uo pipefail

cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: >"$out/log.txt"
start=$(date +%s)
budget=290 # seconds for everything, a little under 5 minutes
status=0

log() { echo "[$(($(date +%s) - start))s] $*" | tee -a "$out/log.txt"; }
left() { echo $((budget - ($(date +%s) - start))); }

# run NAME LIMIT_S FILE CMD...: runs CMD with stdout to FILE (stderr to FILE.err) under a
# timeout of at most LIMIT_S and at most the time left; logs its exit code.
run() {
    local name=$1 limit=$2 file=$3
    shift 3
    local l
    l=$(left)
    if ((l < 10)); then
        log "$name: skipped, ${l}s left of the ${budget}s budget"
        return 124
    fi
    ((limit > l)) && limit=$l
    local t0 rc
    t0=$(date +%s)
    timeout "$limit" "$@" >"$file" 2>"$file.err"
    rc=$?
    log "$name: exit $rc after $(($(date +%s) - t0))s (limit ${limit}s) -> $(basename "$file")"
    return $rc
}

export CARGO_NET_OFFLINE=true
log "gpu-check in $(pwd), outputs in $out"
command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1
{ uname -a; command -v lscpu >/dev/null && lscpu | head -20; } >"$out/host.txt" 2>&1

bin="${FER_CBAM_BIN:-}"
test_bin="${FER_CBAM_NETWORK_TEST:-}"
if [[ -z "$bin" || -z "$test_bin" ]]; then
    if ! command -v cargo >/dev/null; then
        log "build: no cargo, and FER_CBAM_BIN / FER_CBAM_NETWORK_TEST are not both set"
        exit 1
    fi
    if run "build (release binary and tests/network.rs)" 200 "$out/build.txt" \
        cargo test --release --offline --test network --no-run --message-format=json; then
        bin="$(pwd)/target/release/fer-cbam"
        # The test executable's path, from cargo's JSON messages.
        test_bin=$(grep -o '"executable":"[^"]*network-[^"]*"' "$out/build.txt" |
            tail -1 | sed 's/"executable":"//; s/"$//')
        log "binary $bin; test $test_bin"
    else
        tail -20 "$out/build.txt.err" | tee -a "$out/log.txt"
        log "build failed: nothing else can run"
        exit 1
    fi
fi

run "info" 30 "$out/info.txt" "$bin" info || status=1
cat "$out/info.txt" | tee -a "$out/log.txt"

# The reference side is f64 on the host CPU (a few seconds per variant); 4 threads, one per
# attention variant.
run "full-size step test" 120 "$out/network.txt" \
    "$test_bin" the_spec_step --nocapture --test-threads 4 || status=1
grep -E "kernels: worst|^test |test result" "$out/network.txt.err" "$out/network.txt" |
    sed 's/^[^:]*://' | tee -a "$out/log.txt"

run "profile --json (auto kernels)" 60 "$out/profile.json" \
    "$bin" profile --batch-size 64 --image-size 128 --json || status=1
run "profile table (auto kernels)" 60 "$out/profile.txt" \
    "$bin" profile --batch-size 64 --image-size 128 --steps 2
run "profile table (--kernels cpu)" 60 "$out/profile-cpu.txt" \
    "$bin" --kernels cpu profile --batch-size 64 --image-size 128 --steps 2
run "profile table (gpu set, --conv v3: Winograd)" 60 "$out/profile-v3.txt" \
    "$bin" --kernels gpu --conv v3 profile --batch-size 64 --image-size 128 --steps 2

{
    echo "gpu-check: exit $status after $(($(date +%s) - start))s"
    grep -E "^(adapter|kernels):" "$out/info.txt"
    grep -E "test result" "$out/network.txt"
    for f in profile.txt profile-cpu.txt profile-v3.txt; do
        [[ -s "$out/$f" ]] && echo "$f: $(grep -E '^kernels:|images/s' "$out/$f" | tr '\n' ' ')"
    done
} >"$out/summary.txt" 2>&1
cat "$out/summary.txt" | tee -a "$out/log.txt"
exit $status
