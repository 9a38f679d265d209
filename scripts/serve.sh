#!/usr/bin/env bash
# The main job: build Earshot and run earshot-server on localhost.
#
#   scripts/serve.sh [MODEL.nemo|MODEL.safetensors] [earshot-server options...]
#
# Earshot's own English model is not trained yet (issue 7), so without a model this serves the
# NeMo golden test model (random weights: its text is gibberish, but every step is real). Give it
# a converted NVIDIA cache-aware streaming model for real transcripts. Stop with Ctrl-C (the
# server drains its sessions first).
set -euo pipefail
cd "$(dirname "$0")/.."
model=../shared/golden/hybrid_multi/model.nemo
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  model=$1
  shift
fi
. scripts/build_model.sh
build_model "$model" serve-model
exec build/server/earshot-server --model "$model" "$@"
