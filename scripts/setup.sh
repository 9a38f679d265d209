#!/usr/bin/env bash
# Installs the Debian packages Earshot builds and tests with. Safe to run again.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev libcjson-dev libsndfile1-dev libsamplerate0-dev libwebsockets-dev libopus-dev zlib1g-dev
  python3 python3-yaml
  sox libsox-fmt-all
  clang-14 libclang-rt-14-dev libomp-14-dev
  haproxy
  chromium python3-venv openssl
  python3-torch python3-sentencepiece python3-numpy python3-soundfile espeak-ng
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
