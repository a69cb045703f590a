#!/usr/bin/env bash
# Training-step speed of conv2d versions against each other, alternating in one run (the order
# flips every round, so a slow spell of a shared machine falls on both), with the roofline matmul
# measured between rounds (its plain and its subgroup variant). One line per run: the unprofiled step time and images/s, the conv2d
# kernels' direct-equivalent GFLOP/s and share, and the CPU seconds the process used (user, sys).
#
#   tools/conv-versions.sh [ROUNDS] [VERSION...]     defaults: 4 rounds, v2 v3
#
# Uses target/release/fer-cbam (FER_CBAM_BIN to point elsewhere); build it first with
# `cargo build --release`. Batch 64 at 128x128 (1 profiled + 1 timed step) and 48x48 (3 + 3).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
shift || true
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(v2 v3)
bin=${FER_CBAM_BIN:-target/release/fer-cbam}
[ -x "$bin" ] || { echo "conv-versions.sh: $bin is missing: run cargo build --release" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "conv-versions.sh: /usr/bin/time is missing" >&2; exit 1; }
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  order=("${versions[@]}")
  if [ $((round % 2)) = 0 ]; then
    order=()
    for ((i = ${#versions[@]} - 1; i >= 0; i--)); do order+=("${versions[i]}"); done
  fi
  for size in 128 48; do
    steps=1; [ "$size" = 48 ] && steps=3
    for v in "${order[@]}"; do
      out=$({ /usr/bin/time -f "CPU %U %S" "$bin" --conv "$v" profile --batch-size 64 \
        --image-size "$size" --steps "$steps"; } 2>&1)
      echo "round $round size $size $v :: $(echo "$out" | grep -E 'step \(unprofiled|conv2d kernels|^CPU' | tr '\n' ' ')"
    done
  done
  # The roofline's plain and subgroup variants (each "name ... thrpt: [low mid high]").
  echo "round $round roofline :: $(cargo bench --bench roofline -- wg16x4 --warm-up-time 1 \
    --measurement-time 3 2>&1 | grep -E '^roofline/|thrpt: +\[[0-9.]+ G' | tr -s ' ' | tr '\n' ' ')"
done
