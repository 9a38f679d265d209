#!/usr/bin/env bash
# The main job until the server lands: build Earshot, convert a model and transcribe a file
# through the cache-aware streaming path.
#
#   scripts/demo.sh [MODEL.nemo|MODEL.safetensors] [AUDIO...]
#
# Without arguments this uses Earshot's own small English model (trained on synthetic speech:
# models/README.md says what it can do) on a speech sample from ../shared. Give it a converted
# NVIDIA streaming model for production accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/earshot-en-small.safetensors}
shift || true
audio=("$@")
[ ${#audio[@]} -gt 0 ] || audio=(../shared/eval-real/librispeech_1089-134686-0002.wav)

. scripts/build_model.sh
build_model "$model" demo-model
build/clients/earshot-transcribe --model "$model" --chunk-ms 160 --format json "${audio[@]}"
