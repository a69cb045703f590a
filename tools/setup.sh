# Shared by ./demo and ./check (sourced, not run): each `need_*` makes sure one thing the two
# commands need is there, installs it when it is missing and can be installed (as root, through
# sudo when not root), and otherwise stops with one line naming what to run.

# Runs a command as root: directly when root, through sudo when it works without a password
# prompt, else prints one line naming what to run and exits.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    echo "error: this step needs root: run \`sudo $*\` (or as root), then run $0 again" >&2
    exit 1
  fi
}

# cargo (Rust 1.87 or newer): not installed here, because rustup installs into the user's home
# and edits their shell profile, which a script should not do unasked.
need_cargo() {
  if ! command -v cargo >/dev/null; then
    echo "error: cargo not found: install Rust from https://rustup.rs" \
         "(curl --proto '=https' -sSf https://sh.rustup.rs | sh), then run $0 again" >&2
    exit 1
  fi
}

# A C linker: Rust links native binaries through the system's `cc`.
need_cc() {
  if command -v cc >/dev/null; then
    return
  fi
  if command -v apt-get >/dev/null; then
    echo "setup: no C linker (cc) found; installing gcc"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
  else
    echo "error: no C linker (cc) found: install gcc or clang, then run $0 again" >&2
    exit 1
  fi
}

# Whether a Vulkan loader and at least one driver (ICD) are installed.
# (No pipe into `grep -q`: under pipefail its early exit fails the pipe. No `ls` of both ICD
# folders at once: one empty folder fails it.)
have_vulkan() {
  local libs
  libs=$(ldconfig -p 2>/dev/null || true)
  [[ $libs == *libvulkan.so.1* ]] || return 1
  compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null ||
    compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null
}

# A Vulkan driver on Linux: Mesa's lavapipe (a CPU Vulkan driver) when none is found. Other
# systems use Metal or DX12 and need nothing here.
need_vulkan() {
  [ "$(uname -s)" = Linux ] || return 0
  if have_vulkan; then
    return
  fi
  if ! command -v apt-get >/dev/null; then
    echo "error: no Vulkan driver found: install your GPU's Vulkan driver, or Mesa's lavapipe" \
         "(the mesa-vulkan-drivers package on Debian and Ubuntu), then run $0 again" >&2
    exit 1
  fi
  echo "setup: no Vulkan driver found; installing Mesa's lavapipe (tools/install-lavapipe.sh)"
  as_root bash tools/install-lavapipe.sh
}
