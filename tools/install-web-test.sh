#!/usr/bin/env bash
# Installs what the browser build and its test (tests/web.rs) need, for Debian bookworm:
#   - the wasm32-unknown-unknown target (rustup),
#   - Debian's chromium (the test drives it headless with WebGPU on SwiftShader; it reads the
#     page's result from a loopback server, so no WebDriver/chromium-driver is needed),
#   - the wasm-bindgen CLI at exactly the version of the wasm-bindgen crate in Cargo.lock
#     (the two must match; only the `wasm-bindgen` binary, without the TLS stack its test
#     runner needs, which halves the compile).
# Idempotent: each part is skipped when already there. Installing chromium needs root: through
# sudo when not root, or one line naming what to run. Used by ./check.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "web-test: wasm32-unknown-unknown target already installed"
else
  rustup target add wasm32-unknown-unknown
fi

if command -v chromium >/dev/null; then
  echo "web-test: $(chromium --version 2>/dev/null | head -1) already installed"
else
  echo "web-test: installing chromium"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  echo "web-test: $(chromium --version 2>/dev/null | head -1) installed"
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" = "$want" ]; then
  echo "web-test: wasm-bindgen $want already installed"
else
  echo "web-test: installing wasm-bindgen-cli $want (found: ${have:-none})"
  args=(wasm-bindgen-cli --version "$want" --no-default-features --bin wasm-bindgen --force)
  # --locked first (the versions the CLI was released with); it fails when the registry lacks
  # one of them (seen here: webpki-roots 1.0.11), then the newest compatible ones are used.
  cargo install --locked "${args[@]}" || cargo install "${args[@]}"
fi
