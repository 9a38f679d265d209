#!/usr/bin/env bash
# test_transcribe.sh - end-to-end tests of earshot-transcribe in local mode.
#
# Usage: test_transcribe.sh BIN MODEL CASE_DIR
#   BIN       the earshot-transcribe binary
#   MODEL     a model file the engine loads (e.g. the golden case converted by earshot-convert)
#   CASE_DIR  a golden case directory; its audio.wav (16 kHz mono) is the input
#
# Makes copies of audio.wav with sox (FLAC, 48 kHz stereo, 44.1 kHz, Ogg Vorbis, 8 kHz, a
# 13 s concatenation) and odd files (missing, text named .wav, zero samples, a file name with
# quotes and non-ASCII letters) in a temporary directory, runs BIN on them and checks the exit
# codes, the agreement of the text across lossless copies, the JSON, SRT and WebVTT outputs,
# and the command line's error handling. Prints "N passed, N failed" last; exits 1 on any
# failure, 77 (skipped) without sox or python3.

set -u

if [ $# -ne 3 ]; then
    echo "usage: $0 BIN MODEL CASE_DIR" >&2
    exit 2
fi
BIN=$1
MODEL=$2
CASE=$3
AUDIO=$CASE/audio.wav

for tool in sox python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool is not installed"
        exit 77
    fi
done
if [ ! -x "$BIN" ] || [ ! -f "$MODEL" ] || [ ! -f "$AUDIO" ]; then
    echo "missing: $BIN (executable), $MODEL or $AUDIO" >&2
    exit 2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/test_transcribe.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
unset EARSHOT_MODEL

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL  $1"
    [ -n "${2:-}" ] && printf '      %s\n' "$2"
    if [ -s "$T/err" ]; then sed 's/^/      stderr: /' "$T/err" | head -5; fi
    return 0
}
# COND; verdict NAME [DETAIL]: pass when the command just before succeeded.
verdict() {
    local s=$?
    if [ "$s" -eq 0 ]; then pass "$1"; else fail "$1" "${2:-}"; fi
}
# t ARGS...: runs BIN with ARGS; stdout in $T/out, stderr in $T/err, status in $rc.
t() {
    "$BIN" "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
}
lines() { wc -l <"$1" | tr -d ' '; }

# ---- test audio ----
mk() { # mk NAME SOX-OUTPUT-OPTIONS... : a copy of audio.wav
    local name=$1
    shift
    sox -q "$AUDIO" "$@" "$T/$name" || { echo "sox failed making $name" >&2; exit 1; }
}
mk m16.flac
mk s48.wav -r 48000 -c 2
mk m44.flac -r 44100
mk s48.ogg -r 48000 -c 2
mk m8.wav -r 8000
sox -q "$AUDIO" "$AUDIO" "$AUDIO" "$T/long.wav" || exit 1
printf 'This is a text file, not audio.\nIt only has a .wav name.\n' >"$T/text.wav"
python3 - "$T/empty.wav" <<'EOF' || exit 1
import sys, wave
w = wave.open(sys.argv[1], "wb")
w.setnchannels(1)
w.setsampwidth(2)
w.setframerate(16000)
w.close()
EOF
WEIRD="$T/we\"ird \\ ünïcode name.wav"
cp "$AUDIO" "$WEIRD"
cp "$AUDIO" "$T/-dash.wav"
printf 'not a model\n' >"$T/garbage.model"

# ---- text ----
t --model "$MODEL" "$AUDIO"
TEXT=$(cat "$T/out")
[ "$rc" -eq 0 ]; verdict "text: exit 0" "rc=$rc"
[ "$(lines "$T/out")" -eq 1 ]; verdict "text: one line"
[ -n "$(printf '%s' "$TEXT" | tr -d '[:space:]')" ]; verdict "text: not empty"
echo "      text: $TEXT"

t --model "$MODEL" "$T/m16.flac"
[ "$rc" -eq 0 ]; verdict "16 kHz FLAC: exit 0" "rc=$rc"
if [ "$(cat "$T/out")" = "$TEXT" ]; then pass "16 kHz FLAC: same text as the WAV"
else fail "16 kHz FLAC: same text as the WAV" "got: $(cat "$T/out")"; fi

for v in s48.wav m44.flac s48.ogg m8.wav; do
    t --model "$MODEL" --quiet "$T/$v"
    [ "$rc" -eq 0 ] && [ "$(lines "$T/out")" -eq 1 ]; verdict "$v: exit 0, one line" "rc=$rc"
    echo "      $v: $(cat "$T/out")"
done

t --model "$MODEL" "$AUDIO" "$T/m16.flac"
expect=$(printf '%s: %s\n%s: %s' "$AUDIO" "$TEXT" "$T/m16.flac" "$TEXT")
if [ "$rc" -eq 0 ] && [ "$(cat "$T/out")" = "$expect" ]; then pass "two files: 'FILE: text' lines"
else fail "two files: 'FILE: text' lines" "got: $(cat "$T/out")"; fi

EARSHOT_MODEL=$MODEL "$BIN" "$AUDIO" >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(cat "$T/out")" = "$TEXT" ]; verdict "EARSHOT_MODEL instead of --model" "rc=$rc"

(cd "$T" && "$BIN" --model "$MODEL" -- -dash.wav >"$T/out" 2>"$T/err")
rc=$?
[ "$rc" -eq 0 ] && [ "$(cat "$T/out")" = "$TEXT" ]; verdict "'--' ends the options (file named -dash.wav)" "rc=$rc"

# A 13 s file: no progress bar when stderr is not a terminal.
t --model "$MODEL" "$T/long.wav"
[ "$rc" -eq 0 ] && [ ! -s "$T/err" ]; verdict "13 s file: exit 0, nothing on stderr when it is not a terminal" "rc=$rc"
if command -v script >/dev/null 2>&1; then
    # Under a pseudo-terminal the bar appears (percent and RTF) and is erased afterwards.
    script -qec "'$BIN' --model '$MODEL' '$T/long.wav' >'$T/out'" /dev/null >"$T/tty" 2>&1 </dev/null
    if grep -q 'RTF' "$T/tty" && grep -q '%' "$T/tty" && [ "$(lines "$T/out")" -eq 1 ]; then
        pass "13 s file on a terminal: progress bar on stderr, text on stdout"
    else fail "13 s file on a terminal: progress bar on stderr, text on stdout" "tty: $(tr '\r' '\n' <"$T/tty" | tail -2)"; fi
    script -qec "'$BIN' --quiet --model '$MODEL' '$T/long.wav' >'$T/out'" /dev/null >"$T/tty" 2>&1 </dev/null
    [ ! -s "$T/tty" ]; verdict "--quiet: no progress bar on a terminal"
fi

# ---- json ----
t --model "$MODEL" --format json "$AUDIO"
[ "$rc" -eq 0 ]; verdict "json: exit 0" "rc=$rc"
DUR=$(soxi -D "$AUDIO")
if python3 - "$T/out" "$AUDIO" "$TEXT" "$DUR" <<'EOF'; then
import json, sys
path, audio, text, dur = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with open(path, encoding="utf-8") as f:
    o = json.load(f)
problems = []
for k, typ in (("file", str), ("text", str), ("duration", (int, float)), ("words", list),
               ("model", str), ("chunk_ms", int), ("decoder", str)):
    if not isinstance(o.get(k), typ):
        problems.append("%s missing or of the wrong type" % k)
if not problems:
    if o["file"] != audio: problems.append("file %r" % o["file"])
    if o["text"] != text: problems.append("text %r differs from the text output" % o["text"])
    if abs(o["duration"] - dur) > 0.01: problems.append("duration %r, file has %r" % (o["duration"], dur))
    if o["chunk_ms"] <= 0: problems.append("chunk_ms %r" % o["chunk_ms"])
    if o["decoder"] not in ("ctc", "rnnt"): problems.append("decoder %r" % o["decoder"])
    if not o["model"]: problems.append("empty model")
    w = o["words"]
    if not w: problems.append("no words")
    for i, x in enumerate(w):
        if set(x) != {"word", "start", "end"} or not isinstance(x["word"], str) or not x["word"]:
            problems.append("word %d malformed: %r" % (i, x)); break
        if not (0 <= x["start"] <= x["end"] <= dur + 0.5):
            problems.append("word %d times %r..%r" % (i, x["start"], x["end"]))
        if i and (x["start"] < w[i-1]["start"] or x["end"] < w[i-1]["end"]):
            problems.append("word %d goes back in time" % i)
if problems:
    print("      " + "; ".join(problems[:5]))
    sys.exit(1)
print("      %d words, %.3f s, chunk %d ms, %s" % (len(o["words"]), o["duration"], o["chunk_ms"], o["decoder"]))
EOF
    pass "json: parses; fields, text, duration, words start<=end and in order"
else fail "json: parses; fields, text, duration, words start<=end and in order"; fi

t --model "$MODEL" --format json "$AUDIO" "$WEIRD" "$T/empty.wav"
if [ "$rc" -eq 0 ] && python3 - "$T/out" "$WEIRD" <<'EOF'; then
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert len(lines) == 3, "%d lines" % len(lines)
objs = [json.loads(l) for l in lines]
assert objs[1]["file"] == sys.argv[2], "file name came back as %r" % objs[1]["file"]
assert objs[1]["text"] == objs[0]["text"]
e = objs[2]
assert e["text"] == "" and e["words"] == [] and e["duration"] == 0, "empty file: %r" % e
EOF
    pass "json: one object per line; odd file name escaped; empty file gives empty text"
else fail "json: one object per line; odd file name escaped; empty file gives empty text"; fi

# ---- subtitles ----
cat >"$T/subs.py" <<'EOF'
import json, re, sys
kind, path, jpath = sys.argv[1], sys.argv[2], sys.argv[3]
words = [w["word"] for w in json.load(open(jpath, encoding="utf-8"))["words"]]
text = open(path, encoding="utf-8").read()
sep = "," if kind == "srt" else "."
ts = r"(\d{2,}):([0-5]\d):([0-5]\d)" + re.escape(sep) + r"(\d{3})"
if kind == "vtt":
    assert text.startswith("WEBVTT\n\n"), "no WEBVTT header"
    text = text[len("WEBVTT\n\n"):]
blocks = [b for b in text.split("\n\n") if b.strip()]
assert blocks, "no cues"
got, last = [], -1.0
for n, b in enumerate(blocks, 1):
    lines = b.split("\n")
    if kind == "srt":
        assert lines[0] == str(n), "cue %d numbered %r" % (n, lines[0])
        lines = lines[1:]
    m = re.fullmatch(ts + " --> " + ts, lines[0])
    assert m, "cue %d timing line %r" % (n, lines[0])
    g = [int(x) for x in m.groups()]
    start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
    end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
    assert start < end and start >= last, "cue %d times %s" % (n, lines[0])
    last = start
    cw = " ".join(lines[1:]).split()
    assert 1 <= len(cw) <= 7, "cue %d has %d words" % (n, len(cw))
    assert len(cw) == 1 or end - start <= 3.5 + 1e-3, "cue %d lasts %.3f s" % (n, end - start)
    got += cw
if kind == "vtt":
    got = [w.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for w in got]
assert got == words, "cue words differ from the JSON words"
print("      %d cues" % len(blocks))
EOF
t --model "$MODEL" --format json "$AUDIO"
cp "$T/out" "$T/words.json"
for kind in srt vtt; do
    t --model "$MODEL" --format "$kind" "$AUDIO"
    if [ "$rc" -eq 0 ] && python3 "$T/subs.py" "$kind" "$T/out" "$T/words.json"; then
        pass "$kind: header, numbering, timestamps, <=7 words and <=3.5 s per cue, all words"
    else fail "$kind: header, numbering, timestamps, <=7 words and <=3.5 s per cue, all words" \
        "$(head -4 "$T/out" | tr '\n' '|')"; fi
done

# ---- files that fail ----
t --model "$MODEL" "$T/missing.wav"
if [ "$rc" -eq 1 ] && grep -q "missing.wav" "$T/err"; then pass "missing file: exit 1, named on stderr"
else fail "missing file: exit 1, named on stderr" "rc=$rc"; fi

t --model "$MODEL" "$T/missing.wav" "$AUDIO"
if [ "$rc" -eq 1 ] && [ "$(cat "$T/out")" = "$AUDIO: $TEXT" ]; then
    pass "missing file then a good one: exit 1, the good one still transcribed"
else fail "missing file then a good one: exit 1, the good one still transcribed" "rc=$rc"; fi

t --model "$MODEL" "$T/text.wav"
if [ "$rc" -eq 1 ] && grep -q "text.wav" "$T/err" && grep -qiE "audio|format" "$T/err" && [ ! -s "$T/out" ]; then
    pass "text file named .wav: exit 1, clear message"
else fail "text file named .wav: exit 1, clear message" "rc=$rc"; fi
echo "      $(head -1 "$T/err")"

t --model "$MODEL" "$T"
[ "$rc" -eq 1 ]; verdict "a directory: exit 1" "rc=$rc"

t --model "$MODEL" "$T/empty.wav"
if [ "$rc" -eq 0 ] && [ "$(cat "$T/out")" = "" ] && [ "$(lines "$T/out")" -eq 1 ]; then
    pass "zero-sample WAV: exit 0, empty text"
else fail "zero-sample WAV: exit 0, empty text" "rc=$rc out=$(cat "$T/out")"; fi

t --model "$MODEL" --format srt "$T/empty.wav"
[ "$rc" -eq 0 ] && [ ! -s "$T/out" ]; verdict "zero-sample WAV as srt: exit 0, no cues" "rc=$rc"

if [ -w /dev/full ]; then
    "$BIN" --model "$MODEL" "$AUDIO" >/dev/full 2>"$T/err"
    rc=$?
    [ "$rc" -eq 1 ] && [ -s "$T/err" ]; verdict "stdout that cannot be written: exit 1" "rc=$rc"
fi

# ---- the command line ----
usage() { # usage NAME ARGS...: must exit 2 with a message
    local name=$1
    shift
    t "$@"
    if [ "$rc" -eq 2 ] && [ -s "$T/err" ] && [ ! -s "$T/out" ]; then pass "$name: exit 2"
    else fail "$name: exit 2" "rc=$rc"; fi
}
usage "--format xml" --model "$MODEL" --format xml "$AUDIO"
usage "unknown option" --model "$MODEL" --frobnicate "$AUDIO"
usage "unknown short option" --model "$MODEL" -z "$AUDIO"
usage "--chunk-ms abc" --model "$MODEL" --chunk-ms abc "$AUDIO"
usage "--chunk-ms 12x" --model "$MODEL" --chunk-ms 12x "$AUDIO"
usage "--chunk-ms ''" --model "$MODEL" --chunk-ms "" "$AUDIO"
usage "--chunk-ms 0" --model "$MODEL" --chunk-ms 0 "$AUDIO"
usage "--chunk-ms -80" --model "$MODEL" --chunk-ms -80 "$AUDIO"
usage "--chunk-ms ' 80'" --model "$MODEL" --chunk-ms " 80" "$AUDIO"
usage "--chunk-ms 99999999999999999999" --model "$MODEL" --chunk-ms 99999999999999999999 "$AUDIO"
usage "--threads two" --model "$MODEL" --threads two "$AUDIO"
usage "--threads -1" --model "$MODEL" --threads -1 "$AUDIO"
usage "--decoder beam" --model "$MODEL" --decoder beam "$AUDIO"
usage "--quiet=yes" --model "$MODEL" --quiet=yes "$AUDIO"
usage "--format without its argument" --model "$MODEL" "$AUDIO" --format
usage "no file" --model "$MODEL"
# Without --model or EARSHOT_MODEL the shipped English model is used: the one --help names.
t --help
default_model=$(grep -o '/[^ ]*earshot-en-small.safetensors' "$T/out" | head -1)
[ -n "$default_model" ]; verdict "--help names the default model" "$(head -c 300 "$T/out")"
t "$AUDIO"
if [ -f "$default_model" ]; then
    [ "$rc" -eq 0 ] && [ -s "$T/out" ]; verdict "no --model: transcribes with the shipped model" "rc=$rc"
else
    [ "$rc" -eq 3 ] && grep -q "earshot-en-small" "$T/err"; verdict "no --model, shipped model missing: exit 3 naming it" "rc=$rc"
fi

t --model "$T/no-such-model.safetensors" "$AUDIO"
[ "$rc" -eq 3 ] && [ -s "$T/err" ] && [ ! -s "$T/out" ]; verdict "model file missing: exit 3 with a message" "rc=$rc"
t --model "$T/garbage.model" "$AUDIO"
[ "$rc" -eq 3 ] && [ -s "$T/err" ]; verdict "model file not a model: exit 3 with a message" "rc=$rc"

t --help
[ "$rc" -eq 0 ] && grep -q "Usage" "$T/out"; verdict "--help: exit 0, usage on stdout" "rc=$rc"
t --version
[ "$rc" -eq 0 ] && [ -s "$T/out" ]; verdict "--version: exit 0" "rc=$rc"

t --model="$MODEL" --chunk-ms=100000 --format=json --quiet "$AUDIO"
if [ "$rc" -eq 0 ] && python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["chunk_ms"] > 0' "$T/out"; then
    pass "--opt=value forms, a large --chunk-ms picks the model's largest chunk"
else fail "--opt=value forms, a large --chunk-ms picks the model's largest chunk" "rc=$rc"; fi

t --model "$MODEL" --threads 1 "$AUDIO"
[ "$rc" -eq 0 ] && [ "$(cat "$T/out")" = "$TEXT" ]; verdict "--threads 1: same text" "rc=$rc"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
