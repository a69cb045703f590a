#!/usr/bin/env bash
# Installs Mesa's lavapipe (a conformant CPU Vulkan driver) for machines without a GPU. On
# Debian bookworm it comes from bookworm-backports: Mesa 25 runs our compute kernels several
# times faster than bookworm's own Mesa 22.3; elsewhere (newer Debian, Ubuntu) from the
# distribution. Idempotent: does nothing when lavapipe is there (on bookworm: from Mesa 25 on).
# Needs root (apt-get). Used by ./demo and ./check when no Vulkan driver is found.
set -euo pipefail
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")

mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }

v=$(mesa_version)
if [ "$codename" != bookworm ]; then
  if [ -n "$v" ] && ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    echo "lavapipe: mesa-vulkan-drivers $v already installed"
    exit 0
  fi
  echo "lavapipe: installing mesa-vulkan-drivers (found: ${v:-none})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  echo "lavapipe: mesa-vulkan-drivers $(mesa_version) installed"
  exit 0
fi
if [ -n "$v" ] && dpkg --compare-versions "$v" ge 25 && ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "lavapipe: mesa-vulkan-drivers $v already installed"
  exit 0
fi
echo "lavapipe: installing mesa-vulkan-drivers from bookworm-backports (found: ${v:-none})"
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<EOT
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports \
  mesa-vulkan-drivers libvulkan1 >/dev/null
echo "lavapipe: mesa-vulkan-drivers $(mesa_version) installed"
