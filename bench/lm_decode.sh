#!/usr/bin/env bash
# lm_decode.sh - what the language model buys and costs: greedy CTC (the baseline) against the
# CTC beam search with an LM at several beam widths, on one labelled set, in one run.
#
#   bench/lm_decode.sh [--model M] [--lm LM.arpa.gz] [--manifest FILE] [--chunk-ms N] [--beams 16,64,128,256]
#
# Defaults: the shipped model and its LM, the synthetic dev set /tmp/earshot-data/dev.json (from
# models/train/make_data.py; tune on dev, report on test), the 560 ms mode, beams 16, 64, 128, 256.
# Prints a markdown table: WER, CER, the real-time factor of the whole streaming decode on one
# thread, and the memory the LM holds (as the engine counts it; the search adds ~0.7 MB a stream at beam 128).
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/earshot-en-small.safetensors
lm=models/earshot-en-small.arpa.gz
manifest=/tmp/earshot-data/dev.json
chunk=560
beams=16,64,128,256
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --lm) lm=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --chunk-ms) chunk=$2; shift 2 ;;
    --beams) beams=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lm_decode.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
eval_bin=build/clients/earshot-eval
for f in "$eval_bin" "$model" "$lm" "$manifest"; do
  [ -e "$f" ] || { echo "lm_decode.sh: $f is missing (build first; make the data with make_data.py)" >&2; exit 2; }
done

# one row: the decoder's name, then earshot-eval's options
row() {
  local name=$1; shift
  local out mem
  out=$(OMP_NUM_THREADS=1 "$eval_bin" --model "$model" --manifest "$manifest" --chunk-ms "$chunk" --quiet "$@" 2>&1)
  mem=$(printf '%s\n' "$out" | sed -n 's/^decoder:.*(\([0-9.]* MB\) in memory).*/\1/p')
  printf '%s\n' "$out" | sed -n 's/^mode.*WER \([0-9.]*%\).*CER \([0-9.]*%\).*RTF \([0-9.]*\).*/\1 \2 \3/p' |
    while read -r wer cer rtf; do
      printf '| %s | %s | %s | %s | %s |\n' "$name" "$wer" "$cer" "$rtf" "${mem:-0 MB}"
    done
}

echo "model $model, LM $lm, $(grep -c . "$manifest") utterances of $manifest, ${chunk} ms mode, 1 thread"
echo
echo "| decoder | WER | CER | RTF | LM memory |"
echo "| --- | --- | --- | --- | --- |"
row "greedy CTC (baseline)" --no-lm
for b in ${beams//,/ }; do
  row "beam $b + LM" --lm "$lm" --beam "$b"
done
