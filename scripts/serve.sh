#!/usr/bin/env bash
# The main job: build Earshot and run earshot-server on localhost.
#
#   scripts/serve.sh [MODEL.nemo|MODEL.safetensors] [earshot-server options...]
#
# Without a model this serves Earshot's own small English model (models/earshot-en-small,
# trained on synthetic speech: see models/README.md for what it can and cannot do). Give it a
# converted NVIDIA cache-aware streaming model for production accuracy. Stop with Ctrl-C (the
# server drains its sessions first).
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/earshot-en-small.safetensors
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  model=$1
  shift
fi
. scripts/build_model.sh
build_model "$model" serve-model
exec build/server/earshot-server --model "$model" "$@"
