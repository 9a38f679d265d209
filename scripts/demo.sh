#!/usr/bin/env bash
# The main job until the server lands: build Earshot, convert a model and transcribe a file
# through the cache-aware streaming path.
#
#   scripts/demo.sh [MODEL.nemo|MODEL.safetensors] [AUDIO...]
#
# Earshot's own English model is not trained yet (issue 7), so without arguments this uses the
# NeMo golden test model (random weights: its text is gibberish, but every step is real) and a
# speech sample from ../shared. Give it a converted NVIDIA streaming model for real transcripts.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/golden/hybrid_multi/model.nemo}
shift || true
audio=("$@")
[ ${#audio[@]} -gt 0 ] || audio=(../shared/eval-real/librispeech_1089-134686-0002.wav)

. scripts/build_model.sh
build_model "$model" demo-model
build/clients/earshot-transcribe --model "$model" --chunk-ms 160 --format json "${audio[@]}"
