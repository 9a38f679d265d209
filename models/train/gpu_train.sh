#!/usr/bin/env bash
# gpu_train.sh - train Earshot's English model on a GPU machine, from data packed on a CPU one.
#
# A CPU machine here trains the ~5M-parameter model at about 30 audio-seconds per second: far
# too slow to leave the CTC plateau inside a working session (models/README.md). The GPU
# machines lent to some sessions have PyTorch and a GPU but no TTS voices, no libsndfile and
# no network, and at most 64 MiB travels to them, so:
#
#   here (CPU):   bash models/train/gpu_train.sh --prepare      # data -> build-train/ (Opus packs)
#   there (GPU):  device run, carry ["build-train"], timeout_s 600:
#                 bash models/train/gpu_train.sh --minutes 8
#   here again:   bash models/train/gpu_train.sh --collect FILES_AT   # -> build-train/model.nemo
#
# Training runs train.py on the packs (decoded into memory at the start) with the GPU settings
# below, for --minutes, then exports a .nemo. Files that come back from a device run are at most
# 16 MiB each, so the .nemo comes back in pieces (model.nemo.part-NN) with train.log and
# history.json; --collect joins them. Anything after the options is passed on to train.py (a
# later option wins), e.g. --init-from build-train/model.nemo to continue an earlier run.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=build-train
py=${PYTHON:-python3}

prepare() {
  # Data: the recipe's own synthetic speech (make_data.py), two sets of 6000 utterances
  # (seeds 1 and 2), packed as 10 kbit/s Opus with their token ids: about 45 MB for 10 hours.
  local data1=${EARSHOT_DATA:-/tmp/earshot-data} data2=${EARSHOT_DATA2:-/tmp/earshot-data2}
  local py_deb=/usr/bin/python3
  [ -f "$data1/train.json" ] || $py_deb models/train/make_data.py --out "$data1" --train 6000 --dev 200 --test 200 --jobs "$(nproc)"
  [ -f "$data2/train.json" ] || $py_deb models/train/make_data.py --out "$data2" --train 6000 --dev 0 --test 0 --jobs "$(nproc)" --seed 2
  mkdir -p "$here"
  # 32 pieces (letters, apostrophe and a few word starts) at 4x subsampling: what leaves the CTC
  # plateau fastest (models/README.md); packs made with an older tokenizer must be remade.
  [ -f "$here/tokenizer/tokenizer.model" ] && [ "$(wc -l < "$here/tokenizer/tokenizer.vocab")" = 32 ] ||
    { rm -rf "$here/tokenizer"
      $py_deb models/train/tokenizer.py --manifest "$data1/train.json" "$data2/train.json" --vocab-size 32 --out "$here/tokenizer"; }
  cat "$data1/train.json" "$data2/train.json" > "$here/train-all.json"
  rm -rf "$here/train" "$here/dev"
  $py_deb models/train/opus_pack.py --manifest "$here/train-all.json" --tokenizer "$here/tokenizer" \
    --out "$here/train" --bitrate 10000 --max-duration 16
  $py_deb models/train/opus_pack.py --manifest "$data1/dev.json" --tokenizer "$here/tokenizer" --out "$here/dev" \
    --bitrate 10000
  rm -f "$here/train-all.json"
  du -sh "$here"
  echo "carry [\"$here\"] (under 64 MiB with the repository) and run: bash models/train/gpu_train.sh --minutes 8"
}

collect() {
  local from=$1
  cat "$from"/model.nemo.part-* > "$here/model.nemo"
  cp "$from/train.log" "$from/history.json" "$here/" 2>/dev/null || true
  build/earshot-convert "$here/model.nemo" "$here/model.safetensors"
  echo "joined $here/model.nemo and converted it to $here/model.safetensors"
}

train() {
  local minutes=$1
  shift
  local out=${OUT:-/tmp/gpu_train_out} run=/tmp/earshot-gpu-run
  mkdir -p "$out"
  [ -d "$here/train" ] || { echo "gpu_train.sh: $here/train is missing: run --prepare on the CPU machine and carry $here"; exit 2; }
  nvidia-smi -L 2>/dev/null || true
  $py -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  # Settings for a GPU: large batches (~400 s of audio), NeMo's Noam schedule (peak ~2.4e-3 at
  # step 1000 for d_model 176, then 1/sqrt(step): no total length needed for a timed run).
  PYTHONUNBUFFERED=1 $py models/train/train.py --train-manifest "$here/train" --dev-manifest "$here/dev" \
    --tokenizer "$here/tokenizer" --out "$run" --device cuda --threads 16 \
    --d-model 176 --n-layers 8 --subsampling-factor 4 --lookaheads "84,13;84,3;84,1" \
    --schedule noam --lr 1.0 --warmup 1000 --batch-seconds 400 --max-batch 256 --max-duration 16 \
    --freq-masks 2 --time-masks 5 --dropout 0.1 --max-steps 1000000 --minutes "$minutes" \
    --log-every 100 --eval-every 1000 --eval-limit 200 --save-every 2000 "$@" 2>&1 | tee "$out/train.log"
  cp "$run/history.json" "$out/" 2>/dev/null || true
  if [ -f "$run/model.nemo" ]; then
    split -b 15M -d "$run/model.nemo" "$out/model.nemo.part-"
    ls -l "$out"
  else
    echo "gpu_train.sh: no model.nemo was exported"
    exit 1
  fi
}

case "${1:-}" in
  --prepare) prepare ;;
  --collect) collect "${2:?usage: gpu_train.sh --collect FOLDER}" ;;
  --minutes) shift; m=${1:?usage: gpu_train.sh --minutes N [train.py options]}; shift; train "$m" "$@" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
