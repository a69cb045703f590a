#!/usr/bin/env bash
# Regenerates the browser page's default model, web/model/: trains a small network on the
# embedded synthetic faces with the batch-norm recipe (a few minutes on a 2-core CPU with
# lavapipe), then writes the checkpoint, one example face per class from the test side, and
# the manifest the page reads (examples/web_model.rs). The run is seeded: on the same device
# it gives the same bytes again; another device's float rounding may give others.
# Usage: tools/train-web-model.sh [EPOCHS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=${1:-30}
synthetic=3500
synthetic_seed=2026
work=target/web-model
mkdir -p "$work"
flags=(--norm batch --init he --flip --shift 2 --lr-schedule cosine --occlusion-mix 0.5
       --image-size 48 --widths 8,16,32,64 --epochs "$epochs" --batch-size 32 --lr 0.001 --seed 1
       --synthetic "$synthetic" --synthetic-seed "$synthetic_seed")
cargo build --release --quiet
cargo build --release --quiet --example web_model
echo "train-web-model: training (${flags[*]})"
target/release/fer-cbam train "${flags[@]}" --out "$work/model.safetensors" --json --quiet \
  > "$work/train.json"
rm -rf web/model
target/release/examples/web_model "$work/train.json" "$work/model.safetensors" web/model \
  "$synthetic" "$synthetic_seed" "fer-cbam train ${flags[*]} --out model.safetensors"
du -sh web/model
