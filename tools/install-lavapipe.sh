#!/usr/bin/env bash
# Installs Mesa's lavapipe (a conformant CPU Vulkan driver) from Debian bookworm-backports, for
# machines without a GPU. Mesa 25 from backports runs our compute kernels several times faster
# than bookworm's own Mesa 22.3. Idempotent: does nothing when Mesa >= 25 with lavapipe is there.
# Needs root (apt-get). Used by .ci/run.
set -euo pipefail

mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }

v=$(mesa_version)
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
