#!/usr/bin/env bash
# Installs everything certgate and its test suite need on Debian 12: system packages
# (OpenSSH, QEMU, PostgreSQL, BouncyCastle, Java, nftables/iptables/iproute2) and, in the
# virtual environment .venv, the certgate package with its test extras. Other scripts use .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(openssh-client openssh-server qemu-system-x86 busybox-static cpio socat tmux
          postgresql libbcprov-java libbcpkix-java openssl util-linux
          chromium fonts-dejavu-core nftables iptables iproute2)
# npm fetches the review site's player; systemd-analyze checks the unit file in the tests.
command -v npm >/dev/null 2>&1 || packages+=(npm)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
command -v javac >/dev/null 2>&1 || packages+=(default-jdk-headless)
# Debian's own python3 needs its venv module packaged separately.
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The QEMU demo/test guest downloads a Debian cloud kernel package: that needs package lists.
if ! apt-cache policy linux-image-cloud-amd64 2>/dev/null | grep -q "Candidate: [0-9]"; then
  $SUDO apt-get update -qq
fi
# The Debian postgresql package starts a cluster of its own; certgate's tests start their own.

# A virtual environment keeps certgate's packages apart from the system's (Debian's python3
# refuses system-wide pip installs); it may reuse packages the system already has.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres,x509ssh,web]'
# Bytecode for our own packages, as pip writes it for an installed wheel: an editable install
# gets none, and where PYTHONDONTWRITEBYTECODE is set (this machine) every `certgate` command
# would compile them again (~50 ms; docs/benchmarks.md "CLI start-up"). A stale file is
# noticed by its source's mtime and ignored.
.venv/bin/python -m compileall -q ca certgate migrations

# The review site's session player comes from npm, pinned, into .web-vendor (not committed).
PLAYER_VERSION=3.18.0
if [ ! -f .web-vendor/node_modules/asciinema-player/package.json ] ||
   ! grep -q "\"version\": \"$PLAYER_VERSION\"" .web-vendor/node_modules/asciinema-player/package.json; then
  mkdir -p .web-vendor
  npm install --prefix .web-vendor --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "asciinema-player@$PLAYER_VERSION"
fi
