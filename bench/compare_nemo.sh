#!/usr/bin/env bash
# Earshot against NeMo's own PyTorch streaming step, on this machine, in one run.
#
#   bench/compare_nemo.sh [--threads 2] [--modes 160] [--batch 1,16,64] [--seconds 3]
#
# Needs the NeMo reference environment (bench/requirements-nemo.txt, installed into bench/.venv;
# about 4 minutes and 7 GB) and a built tree (build/bench/earshot-bench). Both sides run the
# same model size (17 x 512, random weights), the same steady-state chunks with full caches,
# and the same thread count, one after the other. It prints step times, real-time streams and
# the ratio per mode and batch, and the ratio of the best throughput each side reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 modes=160 batch=1,16,64 seconds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "compare_nemo.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
py=bench/.venv/bin/python
[ -x "$py" ] || { echo "compare_nemo.sh: no NeMo environment in bench/.venv (see bench/requirements-nemo.txt)" >&2; exit 2; }
[ -x build/bench/earshot-bench ] || { echo "compare_nemo.sh: build first (cmake --build build)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
model=$out/model.safetensors
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
build/bench/earshot-bench --model "$model" --threads "$threads" --modes "$modes" --batch "$batch" \
  --seconds "$seconds" --no-buffered --json "$out/earshot.json" >/dev/null
"$py" bench/nemo_step.py --threads "$threads" --modes "$modes" --batch "$batch" \
  --seconds-per-case "$seconds" --json "$out/nemo.json" >/dev/null 2>&1
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/earshot.json" "$out/nemo.json" "$threads" <<'PY'
import json, sys
es = {(r["chunk_ms"], r["batch"]): r for r in json.load(open(sys.argv[1]))["results"]}
nm = {(r["mode_ms"], r["batch"]): r for r in json.load(open(sys.argv[2]))["results"]}
print(f"17 x 512 FastConformer, steady-state streaming step, {sys.argv[3]} threads, this CPU")
print(f"{'mode':>7} {'B':>4} | {'NeMo ms':>9} {'streams':>8} | {'Earshot ms':>10} {'streams':>8} | {'speed-up':>8}")
best = {}
for key in sorted(set(es) & set(nm)):
    e, n = es[key], nm[key]
    ratio = n["median_step_ms"] / e["cache_aware_p50_ms"]
    print(f"{key[0]:>4} ms {key[1]:>4} | {n['median_step_ms']:>9.2f} {n['streams_per_wall_second']:>8.1f} | "
          f"{e['cache_aware_p50_ms']:>10.2f} {e['cache_aware_streams']:>8.1f} | {ratio:>7.2f}x")
    b = best.setdefault(key[0], [0, 0])
    b[0] = max(b[0], n["streams_per_wall_second"])
    b[1] = max(b[1], e["cache_aware_streams"])
for mode, (n, e) in sorted(best.items()):
    print(f"{mode} ms mode, best over the batches tried: NeMo {n:.1f} real-time streams, Earshot {e:.1f}: {e / n:.2f}x")
PY
