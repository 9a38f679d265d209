#!/usr/bin/env python3
"""test_hostile.py - hostile clients against one earshot-server, with a healthy session beside them.

Usage: test_hostile.py --server BIN --model MODEL.safetensors --case GOLDEN_CASE_DIR

While one well-behaved session streams the golden case in real time, other clients send what a
server on the internet receives: oversized and empty messages, a 16 MB frame, non-UTF-8 text,
unsupported rates, truncated Opus, handshakes that never finish (slowloris), and
two thousand connections opened and dropped. Each must get its documented error or close; the
server must not crash, its memory must come back down, and the healthy session must get exactly
its transcript. At the end the server exits 0 on SIGTERM (under LeakSanitizer: no leak).
"""
import argparse, json, os, shutil, socket, struct, sys, tempfile, threading, time, wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (WebSocket client, Server, check)
from test_server import WS, check, collect, finals_text  # noqa: E402


def close_or_error(ws):
    """(messages, close code or the exception's name) of a connection the server may cut."""
    try:
        return collect(ws)
    except (EOFError, OSError) as e:
        return [], type(e).__name__


def expect(port, sends, code, close, name):
    ws = WS(port)
    try:
        for s in sends:
            if isinstance(s, bytes):
                ws.send_binary(s)
            elif isinstance(s, tuple):  # (opcode, payload) for raw frames
                ws.send_frame(*s)
            else:
                ws.send_text(s)
    except OSError:
        pass  # the server may close before the client finished sending
    msgs, got = close_or_error(ws)
    errs = [m for m in msgs if m.get("type") == "error"]
    ok = got == close and (code is None or (errs and errs[-1]["code"] == code))
    check(name, ok, "messages %r close %r" % (msgs[-2:], got))
    ws.sock.close()


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    a = ap.parse_args()
    ts.TMP = tmp = tempfile.mkdtemp(prefix="test_hostile.")
    with wave.open(os.path.join(a.case, "audio.wav")) as w:
        pcm = w.readframes(w.getnframes())
    man = json.load(open(os.path.join(a.case, "manifest.json")))
    la = man["lookaheads"][0]
    chunk_ms = la["streaming_cfg"]["shift_size"][1] * 10
    dec = "rnnt" if la.get("stream_rnnt_text") is not None else "ctc"
    want = la["stream_%s_text" % dec]

    # Under AddressSanitizer freed memory waits in a quarantine (256 MB by default) that would
    # read as growth; a small one keeps the memory check meaningful in both builds.
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"
    srv = ts.Server(a.server, a.model, "--http-timeout-s", "2", "--max-sessions", "3000")
    try:
        # The healthy session: first alone (its reference), then in real time beside everything.
        _, ref, _ = ts.stream(srv.port, pcm * 3, chunk_ms, dec)
        healthy = {}

        def run_healthy():
            healthy["r"] = ts.stream(srv.port, pcm * 3, chunk_ms, dec, pace=0.02)

        t = threading.Thread(target=run_healthy)
        t.start()
        start = {"type": "start", "sample_rate": 16000}

        expect(srv.port, [start, "{" + " " * 2000000 + "}"], "message_too_big", 1009,
               "2 MB text message: message_too_big, 1009")
        expect(srv.port, [start, b"\0" * (16 << 20)], "message_too_big", 1009,
               "16 MB binary message: message_too_big, 1009 (refused from its header)")
        expect(srv.port, [""], "bad_json", 1008, "zero-byte text message: bad_json, 1008")
        ws = WS(srv.port)
        ws.send_text(start)
        ws.recv()
        ws.send_binary(b"")
        ws.send_binary(b"\0\0" * 160)
        ws.send_text({"type": "end"})
        msgs, code = close_or_error(ws)
        check("zero-byte binary messages are no error: close 1000", code == 1000, (msgs, code))
        expect(srv.port, [(1, b'{"type": "\xff\xfe"}')], None, 1007, "text that is not UTF-8: close 1007")
        expect(srv.port, [{"type": "start", "sample_rate": 96000}], "unsupported", 1008,
               "96 kHz: unsupported, 1008")
        expect(srv.port, [{"type": "start", "sample_rate": 44100, "encoding": "opus"}], "unsupported", 1008,
               "Opus at 44.1 kHz: unsupported, 1008")
        expect(srv.port, [{"type": "start", "channels": 6}], "unsupported", 1008, "six channels: unsupported, 1008")
        expect(srv.port, [{"type": "start", "sample_rate": "fast"}], "bad_message", 1008,
               "sample_rate a string: bad_message, 1008")
        # Opus decodes almost any bytes as some sound; these are packets it must refuse: a
        # code-3 packet cut before its frame count, and one that declares no frames.
        for pkt in (b"\x03", b"\x03\x00"):
            expect(srv.port, [{"type": "start", "encoding": "opus", "sample_rate": 16000}, pkt], "bad_audio", 1008,
                   "truncated Opus packet %r: bad_audio, 1008" % pkt)
        expect(srv.port, ['{"type":"start"}{"type":"end"}'], "bad_json", 1008, "two JSON values in one message: bad_json")
        expect(srv.port, ["[" * 100000], "bad_json", 1008, "100000 nested brackets: bad_json, 1008")

        # Slowloris: handshakes that never finish are dropped after --http-timeout-s.
        slow = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"GET /v1/listen HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            slow.append(s)
        time.sleep(4)
        dropped = 0
        for s in slow:
            try:
                s.settimeout(1)
                dropped += s.recv(1) == b""
            except OSError:
                dropped += 1
            s.close()
        check("slowloris: %d of 20 unfinished handshakes dropped after --http-timeout-s 2" % dropped, dropped == 20)

        # Two thousand connections opened and dropped: upgrades, some started, none ended.
        rss0 = rss_kb(srv.proc.pid)
        for i in range(2000):
            try:
                ws = WS(srv.port, timeout=10)
                if i % 2:
                    ws.send_text(start)
                    ws.send_binary(b"\0\0" * 320)
                ws.sock.close()
            except OSError:
                pass
        for _ in range(100):
            if ts.metric(srv.port, "earshot_sessions_open") == 1:
                break
            time.sleep(0.1)
        open_now = ts.metric(srv.port, "earshot_sessions_open")
        t.join()
        time.sleep(0.5)
        rss1 = rss_kb(srv.proc.pid)
        check("2000 connections opened and dropped: all closed again (open sessions %s)" % open_now,
              open_now in (0, 1))
        print("      server RSS %d kB before, %d kB after" % (rss0, rss1))
        check("2000 dropped connections: server memory grew by under 64 MB (%d kB)" % (rss1 - rss0),
              rss1 - rss0 < 65536)
        _, hmsgs, hcode = healthy["r"]
        check("the healthy session beside all of it: its exact transcript, close 1000",
              finals_text(hmsgs) == finals_text(ref) and hcode == 1000, (finals_text(hmsgs)[:200], hcode))
        _, msgs, code = ts.stream(srv.port, pcm, chunk_ms, dec)
        check("a new session after it all: the golden text", finals_text(msgs) == want and code == 1000,
              (finals_text(msgs), code))
        srv.proc.terminate()
        check("server exits 0 on SIGTERM (no leak under LeakSanitizer)", srv.proc.wait(timeout=30) == 0)
    finally:
        srv.stop()
        if ts.failed:
            srv.print_log_tail()
        srv.log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
