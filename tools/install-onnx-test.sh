#!/usr/bin/env bash
# Installs what the ONNX export's parity test (tests/onnx.rs) needs: onnxruntime and numpy from
# PyPI in a venv at target/onnx-venv (inside the build folder, so `cargo clean` removes it and
# it is never committed). Idempotent: when both import already, nothing is downloaded. Used by
# ./check. Needs python3 with its venv module: on Debian without it, python3-venv is installed
# with apt-get (root), as tools/install-web-test.sh does for chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh

venv=target/onnx-venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import onnxruntime, numpy' 2>/dev/null; then
  echo "onnx-test: onnxruntime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') already installed in $venv"
  exit 0
fi
# Debian splits ensurepip (which venv needs for pip) into python3-venv.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "onnx-test: installing python3-venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "onnx-test: python3 with its venv module is needed" >&2
    exit 1
  fi
fi
echo "onnx-test: installing onnxruntime and numpy into $venv"
mkdir -p target
rm -rf "$venv" # a venv left half-made by an interrupted run
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime numpy
echo "onnx-test: onnxruntime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') installed in $venv"
