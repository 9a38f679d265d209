#!/usr/bin/env python3
"""How many live sessions earshot-server holds in real time, and at what partial latency.

    bench/server_capacity.py --server build/server/earshot-server --model M.safetensors \
        --audio A.wav [--chunk-ms 160] [--sessions 4,8,16,24,32] [--seconds 10] [--threads 2]

Starts the server on a free loopback port, then for each session count N opens N sessions at
once, each streaming the 16 kHz WAV (looped) in 20 ms messages paced at real time for --seconds,
then `end`. Partial latency is the wall time from sending the last audio sample a partial
covers to receiving the partial. A partial whose text ends at encoder frame f covers the audio
up to the end of the chunk that encoded frame f (its look-ahead included): with the latency mode
that `ready` reports, chunk 0 ends at chunk_size[0] mel columns and each later chunk
shift_size[1] columns further, plus the 12.5 ms the feature window reaches past its centre.
Finals are left out: an endpoint final comes endpointing_ms after its last word on purpose.

It prints p50/p95/max partial latency, sessions that fell behind, errors, and the largest N whose
p95 stays under 2 x chunk duration: the number an operator sizes servers by. The client is
Python, one thread per session, and on a small machine it shares the CPU with the server, so the
figure is a lower bound of the server's capacity.
"""
import argparse, importlib.util, json, math, os, sys, threading, time, wave

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("ts", os.path.join(here, "..", "tests", "server", "test_server.py"))
ts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ts)

BLOCK_S = 0.02


def covered_audio_s(end_s, ready, frame_s, subsampling):
    """Seconds of audio the chunk that produced a token ending at end_s had to wait for."""
    left, right = ready["att_context_size"]
    f = max(0, round(end_s / frame_s) - 1)  # the token's encoder frame
    first_cols = 1 + subsampling * right      # NeMo's chunk_size[0] (chunked_limited)
    later_cols = subsampling * (1 + right)    # shift_size[1]
    per_chunk = right + 1                     # valid_out_len: frames a chunk adds
    first_frames = first_cols // subsampling + 1 if first_cols > 1 else 1
    k = 0 if f < first_frames else math.ceil((f + 1 - first_frames) / per_chunk)
    cols = first_cols + k * later_cols
    return cols * 0.01 + 0.0125


def session(port, pcm, args, out):
    lat, errors, behind = [], [], 0
    try:
        ws = ts.WS(port)
        ws.send_text({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "chunk_ms": args.chunk_ms,
                      "endpointing_ms": 800})
        kind, ready = ws.recv()
        if kind != "text" or ready.get("type") != "ready":
            raise RuntimeError("no ready: %r" % (ready,))
        sent_at = []
        done = threading.Event()

        def reader():
            while True:
                try:
                    kind, msg = ws.recv()
                except Exception:
                    break
                now = time.monotonic()
                if kind == "close":
                    break
                if kind == "text" and msg.get("type") == "partial":
                    need = covered_audio_s(msg["end"], ready, args.frame_ms / 1000, args.subsampling)
                    block = min(int(math.ceil(need / BLOCK_S)) - 1, len(sent_at) - 1)
                    if block >= 0:
                        lat.append(now - sent_at[block])
                elif kind == "text" and msg.get("type") == "error":
                    errors.append(msg.get("code"))
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        start = time.monotonic()
        block_bytes = int(16000 * BLOCK_S) * 2
        for i in range(int(args.seconds / BLOCK_S)):
            off = (i * block_bytes) % (len(pcm) - block_bytes)
            ws.send_binary(pcm[off:off + block_bytes])
            sent_at.append(time.monotonic())
            wait = start + (i + 1) * BLOCK_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.5:
                behind += 1  # the client itself could not keep real time
        ws.send_text({"type": "end"})
        done.wait(60)
        ws.close()
    except Exception as e:  # a refused or broken session is a result, not a crash
        errors.append(str(e))
    out.append((lat, errors, behind))


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", required=True, help="16 kHz mono 16-bit WAV, looped")
    ap.add_argument("--chunk-ms", type=int, default=160)
    ap.add_argument("--sessions", default="4,8,16,24,32")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frame-ms", type=int, default=80, help="encoder frame (hop x subsampling)")
    ap.add_argument("--subsampling", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    with wave.open(args.audio) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit("server_capacity.py: --audio must be 16 kHz mono 16-bit WAV")
        pcm = w.readframes(w.getnframes())
    ts.TMP = os.environ.get("TMPDIR", "/tmp")
    counts = [int(x) for x in args.sessions.split(",")]
    srv = ts.Server(args.server, args.model, "--threads", str(args.threads), "--max-sessions",
                    str(max(counts) + 8), "--max-batch", "64", "--idle-timeout-s", "0")
    bound = 2 * args.chunk_ms / 1000
    rows, best = [], 0
    print("earshot-server capacity: chunk %d ms, %.0f s per session, p95 bound %.0f ms (2 x chunk)"
          % (args.chunk_ms, args.seconds, bound * 1000))
    print("%8s | %8s %8s %8s | %8s %6s %6s | %s" % ("sessions", "p50 ms", "p95 ms", "max ms", "partials", "behind",
                                                  "errors", "holds"))
    try:
        for n in counts:
            out, threads = [], []
            for _ in range(n):
                t = threading.Thread(target=session, args=(srv.port, pcm, args, out))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            lat = [x for r in out for x in r[0]]
            errors = sum(len(r[1]) for r in out)
            behind = sum(1 for r in out if r[2] > 0)
            p50, p95, mx = pct(lat, 50), pct(lat, 95), max(lat) if lat else float("nan")
            holds = errors == 0 and behind == 0 and p95 <= bound
            if holds:
                best = n
            rows.append(dict(sessions=n, p50_ms=p50 * 1e3, p95_ms=p95 * 1e3, max_ms=mx * 1e3, partials=len(lat),
                             behind=behind, errors=errors, holds=holds))
            print("%8d | %8.0f %8.0f %8.0f | %8d %6d %6d | %s" % (n, p50 * 1e3, p95 * 1e3, mx * 1e3, len(lat),
                                                                 behind, errors, "yes" if holds else "no"))
    finally:
        srv.stop()
    print("holds %d concurrent real-time sessions with p95 partial latency under %.0f ms" % (best, bound * 1000))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"chunk_ms": args.chunk_ms, "bound_ms": bound * 1e3, "rows": rows, "capacity": best}, f,
                      indent=1)


if __name__ == "__main__":
    main()
