#!/usr/bin/env bash
# gpu_check.sh - the one script to run ON a GPU machine, from the repository root, with the
# build-gpu/ folder that bench/gpu_prepare.sh made on a CPU machine carried along (the GPU machine
# has the CUDA runtime, cuBLAS and cuDNN, but no compiler setup for Earshot and no Debian
# libraries; nothing can be installed there). About 5 minutes; every part has its own timeout,
# so one that hangs costs its share and the rest still runs.
#
#   bash bench/gpu_check.sh        (with the device tool: carry ["build-gpu"], timeout_s 540)
#
#   1. the card (nvidia-smi) and whether the carried binaries load;
#   2. earshot-golden --backend cuda on every golden case: $EARSHOT_GOLDEN_DIR, else
#      ../shared/golden, else shared/golden, else the copy in build-gpu/golden;
#   3. earshot-server --backend cuda on a random 17 x 512 model with 1000 paced live sessions
#      (earshot-loadtest, 160 ms mode): latency, and the batch limit and GPU memory in /metrics;
#   4. earshot-bench --backend cuda for 17 x 512 and 24 x 1024 models (random weights) at every
#      chunk mode and batches 1, 64, 256, 1024, 4096: step time p50/p99, real-time streams,
#      memory per session; the tables come last.
# Everything printed also goes to $OUT/gpu_check.txt when OUT is set (the device tool's folder
# of files that come back), with the benchmarks' JSON beside it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
g=build-gpu
out_dir=${OUT:-}
scratch=$(mktemp -d /tmp/gpu_check.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Runs a part under a time limit; says when the limit cut it off.
part() {
  local limit=$1
  shift
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "!! timed out after ${limit}s: $*"
  fi
  return "$rc"
}

main() {
  local t_start=$SECONDS summary=""
  echo "# gpu_check.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
  echo
  echo "## 1. The card"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    nvidia-smi | grep -E 'NVIDIA|MiB' | head -4
  else
    echo "no nvidia-smi here"
  fi
  ldd --version 2>&1 | head -1
  if [ ! -x "$g/bin/earshot-bench" ]; then
    echo "!! $g/bin is missing: run bench/gpu_prepare.sh on the CPU machine first and carry build-gpu"
    return 2
  fi
  # the carried libraries, unpacked outside the carried folder (which stays as it came)
  local deps=$PWD/$g/deps
  if [ ! -d "$deps" ] && [ -f "$g/deps.tar.xz" ]; then
    deps=$scratch/deps
    if command -v xz >/dev/null; then
      tar -C "$scratch" -xJf "$g/deps.tar.xz"
    else # Python's tarfile reads xz without the xz program
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$g/deps.tar.xz" "$scratch"
    fi
  fi
  export LD_LIBRARY_PATH="$deps${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! "$g/bin/earshot-bench" --help >/dev/null 2>"$scratch/load.txt"; then
    echo "the binaries do not load with this machine's libstdc++/libgcc_s ($(head -c 300 "$scratch/load.txt")); using the carried ones"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$deps/fallback"
  fi
  local nf
  nf=$(ldd "$g"/bin/earshot-* 2>/dev/null | grep 'not found' | sort -u)
  if [ -n "$nf" ]; then
    echo "!! libraries not found:"
    echo "$nf"
  else
    echo "all libraries of the carried binaries resolve"
  fi

  echo
  echo "## 2. Golden cases, --backend cuda"
  local gd=${EARSHOT_GOLDEN_DIR:-}
  if [ -z "$gd" ]; then
    if [ -d ../shared/golden ]; then
      gd=../shared/golden
    else
      echo "../shared is not here (the device tool carries the repository only)"
      if [ -d shared/golden ]; then gd=shared/golden; else gd=$g/golden; fi
    fi
  fi
  echo "golden cases from $gd"
  local n_cases=0 n_pass=0 n_skip=0
  for d in "$gd"/*/; do
    [ -f "$d/manifest.json" ] || continue
    local name
    name=$(basename "$d")
    n_cases=$((n_cases + 1))
    echo "### $name"
    part 60 "$g/bin/earshot-golden" "$d" --backend cuda --converter "$g/bin/golden-converter"
    local rc=$?
    case $rc in
      0) n_pass=$((n_pass + 1)); summary+="golden $name: pass"$'\n' ;;
      77) n_skip=$((n_skip + 1)); summary+="golden $name: skipped (no usable GPU)"$'\n' ;;
      *) summary+="golden $name: FAIL (exit $rc)"$'\n' ;;
    esac
  done
  [ "$n_cases" -eq 0 ] && summary+="golden: no cases found in $gd"$'\n'
  summary+="golden: $n_pass of $n_cases passed, $n_skip skipped"$'\n'

  echo
  echo "## 2b. test_cuda_backend: the GPU against the CPU encoder"
  echo "(a ragged batch of every look-ahead over three steps, padded steps and graph replay, GPU RNNT"
  echo "tokens against the host's; the host-side checks run too)"
  part 180 "$g/bin/test_cuda_backend" "$g/golden_models" > "$scratch/cuda_backend.txt" 2>&1
  local trc=$?
  grep -v '^ok' "$scratch/cuda_backend.txt" | tail -40
  if [ "$trc" -eq 0 ]; then
    summary+="test_cuda_backend: pass"$'\n'
  else
    summary+="test_cuda_backend: FAIL (exit $trc)"$'\n'
  fi

  echo
  echo "## 3. earshot-server --backend cuda, 1000 live sessions (17 x 512, 160 ms mode)"
  local m17=$scratch/m17x512.safetensors m24=$scratch/m24x1024.safetensors
  local shape17="--layers 17 --d-model 512 --heads 8 --ff 2048 --conv-kernel 9 --sub-channels 256 --vocab 1024"
  local shape24="--layers 24 --d-model 1024 --heads 8 --ff 4096 --conv-kernel 9 --sub-channels 256 --vocab 1024"
  # writes the model (kept for part 4) with a one-row benchmark
  # shellcheck disable=SC2086
  part 60 "$g/bin/earshot-bench" --backend cuda --model "$m17" $shape17 --modes 160 --batch 1 --seconds 0.2 \
    --steps 10 >/dev/null
  local audio
  audio=$(ls "$gd"/*/audio.wav "$g"/golden/*/audio.wav 2>/dev/null | head -1)
  if [ -f "$m17" ] && [ -n "$audio" ]; then
    local port=18080
    "$g/bin/earshot-server" --model "$m17" --backend cuda --port "$port" --idle-timeout-s 0 \
      >"$scratch/server.log" 2>&1 &
    local spid=$!
    local up=0
    for _ in $(seq 1 300); do
      if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" \
        2>/dev/null; then
        up=1
        break
      fi
      kill -0 "$spid" 2>/dev/null || break
      sleep 0.1
    done
    if [ "$up" -eq 1 ]; then
      part 60 "$g/bin/earshot-loadtest" --url "ws://127.0.0.1:$port/v1/listen" --audio "$audio" --sessions 1000 \
        --ramp-s 5 --duration-s 10 --chunk-ms 160 --decoder ctc --report-s 0 \
        ${out_dir:+--json "$out_dir/loadtest.json"} | tail -25
      summary+="server: loadtest exit ${PIPESTATUS[0]} (0: every session went well)"$'\n'
      echo "/metrics after the run:"
      python3 - "$port" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("earshot_batch_limit", "earshot_device", "earshot_sessions_behind ",
                        "earshot_sessions_fell_behind_total", "earshot_step_seconds_sum", "earshot_step_seconds_count",
                        "earshot_batch_size_sum", "earshot_batch_size_count")):
        print(line)
PY
    else
      echo "!! the server did not come up:"
      summary+="server: did not start"$'\n'
    fi
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    tail -5 "$scratch/server.log"
  else
    echo "!! no model or no audio for the server check"
    summary+="server: not run"$'\n'
  fi

  echo
  echo "## 4. earshot-bench --backend cuda (random weights)"
  local rc17 rc24
  # shellcheck disable=SC2086
  part 100 "$g/bin/earshot-bench" --backend cuda --model "$m17" $shape17 --batch 1,64,256,1024,4096 --seconds 1 \
    --steps 300 --no-buffered ${out_dir:+--json "$out_dir/bench_17x512.json"}
  rc17=$?
  rm -f "$m17"
  # shellcheck disable=SC2086
  part 140 "$g/bin/earshot-bench" --backend cuda --model "$m24" $shape24 --batch 1,64,256,1024,4096 --seconds 1 \
    --steps 300 --no-buffered ${out_dir:+--json "$out_dir/bench_24x1024.json"}
  rc24=$?
  summary+="bench 17 x 512: exit $rc17; bench 24 x 1024: exit $rc24"$'\n'

  echo
  echo "## Summary ($((SECONDS - t_start)) s)"
  printf '%s' "$summary"
  # exit 1 when something ran and failed (a skip for want of a GPU is no failure)
  if [[ $summary == *FAIL* || $rc17 -ne 0 || $rc24 -ne 0 ]]; then
    return 1
  fi
}

if [ -n "$out_dir" ]; then
  mkdir -p "$out_dir"
  main "$@" 2>&1 | tee "$out_dir/gpu_check.txt"
  exit "${PIPESTATUS[0]}"
fi
main "$@"
