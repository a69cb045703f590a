#!/usr/bin/env bash
# Builds the browser page's wasm module: web/ for wasm32-unknown-unknown (wgpu's WebGPU
# backend), then wasm-bindgen's JS glue into web/pkg/ (gitignored). Serve web/ afterwards:
#   python3 -m http.server -d web 8080   and open http://localhost:8080/
# Needs: rustup target add wasm32-unknown-unknown, and the wasm-bindgen CLI at exactly the
# version of the wasm-bindgen crate in Cargo.lock (tools/install-web-test.sh installs both).
# Builds into target/wasm, never the main target dir, so it can run beside other cargo
# commands (and from a test) without waiting on their lock.
# Usage: tools/build-web.sh [--dev]   (--dev: unoptimised, quicker to build)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
[ "${1:-}" = "--dev" ] && profile=dev

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null; then
  echo "build-web: wasm-bindgen not found; install it with tools/install-web-test.sh" \
       "(or: cargo install wasm-bindgen-cli --version $want)" >&2
  exit 1
fi
have=$(wasm-bindgen --version | awk '{ print $2 }')
if [ "$have" != "$want" ]; then
  echo "build-web: wasm-bindgen CLI is $have but Cargo.lock has the crate at $want;" \
       "install the matching CLI: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi

cargo build -p fer-cbam-web --profile "$profile" --target wasm32-unknown-unknown --target-dir target/wasm
dir=$profile
[ "$profile" = dev ] && dir=debug
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
  "target/wasm/wasm32-unknown-unknown/$dir/fer_cbam_web.wasm"
echo "build-web: web/pkg/ written ($(du -h web/pkg/fer_cbam_web_bg.wasm | cut -f1) of wasm)"
