#!/usr/bin/env bash
# soak.sh - N live sessions for M minutes against one earshot-server: does it stay healthy?
#
#   bench/soak.sh [--sessions N] [--minutes M] [--model MODEL] [--audio FILE|DIR] [--chunk-ms N]
#                 [--sample-s S] [--build DIR] [--out DIR]
#
# Starts earshot-server (from --build, default build/) on a free loopback port, drives it with
# earshot-loadtest for M minutes (sessions loop over the audio, every one checked against the
# reference .txt beside its file when there is one), and samples the server's resident memory
# every S seconds. Prints RSS over time, the load tester's summary (latency, errors, WER) and a
# verdict: memory is flat when the last quarter of the run peaks no higher above the first
# sample after the ramp than 10 % of it or 8 MB, whichever is larger. Files: OUT/rss.csv, OUT/loadtest.json, OUT/server.log.
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=16 minutes=5 chunk_ms=160 sample_s=5 build=build out=""
model=${EARSHOT_MODEL:-}
audio=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sessions) sessions=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --audio) audio=$2; shift 2 ;;
    --chunk-ms) chunk_ms=$2; shift 2 ;;
    --sample-s) sample_s=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
golden=${EARSHOT_GOLDEN_DIR:-$(pwd)/../shared/golden}
[ -n "$model" ] || model=$build/golden_models/hybrid_multi.safetensors
[ -n "$audio" ] || audio=$golden/hybrid_multi/audio.wav
server=$build/server/earshot-server
loadtest=$build/clients/loadtest/earshot-loadtest
for f in "$server" "$loadtest" "$model"; do
  [ -e "$f" ] || { echo "soak.sh: $f is missing (build first: cmake --build $build; ctest -R convert_golden_models)" >&2; exit 2; }
done
out=${out:-$(mktemp -d /tmp/earshot-soak.XXXXXX)}
mkdir -p "$out"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" --model "$model" --port "$port" --max-sessions $((sessions + 8)) > "$out/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true; kill $sampler 2>/dev/null || true' EXIT
python3 - "$port" <<'EOF'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=1)
        break
    except OSError:
        time.sleep(0.05)
EOF

# Resident memory of the server every sample_s seconds, while it runs.
echo "seconds,rss_kb" > "$out/rss.csv"
(
  t0=$(date +%s)
  while kill -0 $spid 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/$spid/status 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(( $(date +%s) - t0 )),$rss" >> "$out/rss.csv"
    sleep "$sample_s"
  done
) &
sampler=$!

echo "soak: $sessions sessions x $minutes min, $chunk_ms ms chunks, model $(basename "$model"), server pid $spid on port $port"
set +e
"$loadtest" --url "ws://127.0.0.1:$port/v1/listen" --sessions "$sessions" --ramp-s 5 \
  --duration-s $((minutes * 60)) --audio "$audio" --chunk-ms "$chunk_ms" --endpointing-ms 0 \
  --report-s 30 --json "$out/loadtest.json"
lt_rc=$?
set -e
sleep "$sample_s"
kill -TERM $spid
wait $spid; srv_rc=$?
kill $sampler 2>/dev/null || true

python3 - "$out" "$lt_rc" "$srv_rc" "$minutes" <<'EOF'
import csv, json, os, sys
out, lt_rc, srv_rc, minutes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rows = [(int(r["seconds"]), int(r["rss_kb"])) for r in csv.DictReader(open(os.path.join(out, "rss.csv")))]
print("\nserver RSS over time (MB):")
step = max(1, len(rows) // 12)
for t, kb in rows[::step] + ([rows[-1]] if rows and rows[-1] not in rows[::step] else []):
    print("  %6d s  %8.1f" % (t, kb / 1024))
ramp = [kb for t, kb in rows if t >= 10] or [kb for _, kb in rows]
base = ramp[0] if ramp else 0
tail = ramp[len(ramp) * 3 // 4:] if ramp else []
peak_tail = max(tail) if tail else 0
flat = bool(ramp) and peak_tail - base <= max(0.10 * base, 8 * 1024)
print("after the ramp %.1f MB, last quarter's peak %.1f MB, growth %+.1f MB: memory %s"
      % (base / 1024, peak_tail / 1024, (peak_tail - base) / 1024, "flat" if flat else "GROWING"))
print("load tester exit %d, server exit on SIGTERM %d" % (lt_rc, srv_rc))
print("files: %s/{rss.csv,loadtest.json,server.log}" % out)
sys.exit(0 if flat and lt_rc == 0 and srv_rc == 0 else 1)
EOF
