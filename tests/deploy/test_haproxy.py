#!/usr/bin/env python3
"""test_haproxy.py - two earshot-servers behind a real HAProxy (deploy/haproxy.cfg) on loopback.

Usage: test_haproxy.py --server BIN --model M --case GOLDEN_CASE_DIR [--haproxy BIN] [--loadtest BIN]

Checks the scale-out story end to end: sessions through HAProxy are spread over both servers
(least connections); when one server is stopped mid-run (SIGTERM) its sessions end with a clean
close after their finals, the other server's sessions keep their exact transcripts, HAProxy sees
the stopped server's /healthz turn 503 and sends every new session to the healthy one. With
--loadtest, earshot-loadtest runs through HAProxy across the stop too: its sessions on the
stopped server are closed early with 1000, the others run to their end, and nothing else fails.
Prints "skipped: no haproxy" and exits 77 when HAProxy is not installed.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, wave

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
import test_server as ts  # noqa: E402
from test_server import check, finals_text  # noqa: E402

CONFIG = os.path.join(HERE, "..", "..", "deploy", "haproxy.cfg")


def wait_http(port, path="/healthz", want=200, seconds=10):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if ts.http_get(port, path)[0] == want:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def live_session(port, audio, chunk_ms, decoder):
    """A client as meeting apps write them: it sends audio in real time while a second thread
    reads, so finals and a close that come while it is still sending (a draining server) are
    received. Returns (messages, close code, whether all the audio was sent)."""
    ws = ts.WS(port)
    lock = threading.Lock()
    send = ws.send_frame

    def locked_send(*args, **kw):
        with lock:
            send(*args, **kw)
    ws.send_frame = locked_send
    ws.send_text({"type": "start", "sample_rate": 16000, "chunk_ms": chunk_ms, "decoder": decoder,
                  "endpointing_ms": 0})
    out = {}

    def reader():
        try:
            out["r"] = ts.collect(ws)
        except (EOFError, OSError) as e:
            out["r"] = ([], repr(e))
    t = threading.Thread(target=reader)
    t.start()
    sent_all = False
    try:
        for i in range(0, len(audio), 640):
            if not t.is_alive():
                break  # the server closed the session
            ws.send_binary(audio[i:i + 640])
            time.sleep(0.02)
        else:
            sent_all = True
            ws.send_text({"type": "end"})
    except OSError:
        pass
    t.join(timeout=60)
    ws.sock.close()
    msgs, code = out.get("r", ([], "no close"))
    return [m for m in msgs if m.get("type") != "ready"], code, sent_all


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--loadtest")
    a = ap.parse_args()
    if not os.access(a.haproxy, os.X_OK):
        print("skipped: no haproxy (Debian: apt install haproxy)")
        return 77
    ts.TMP = tmp = tempfile.mkdtemp(prefix="test_haproxy.")
    with wave.open(os.path.join(a.case, "audio.wav")) as w:
        pcm = w.readframes(w.getnframes())
    man = json.load(open(os.path.join(a.case, "manifest.json")))
    la = man["lookaheads"][0]
    chunk_ms = la["streaming_cfg"]["shift_size"][1] * 10
    dec = "rnnt" if la.get("stream_rnnt_text") is not None else "ctc"
    want = la["stream_%s_text" % dec]
    audio = pcm * 2  # about 8 s, streamed in real time

    s1 = ts.Server(a.server, a.model, "--drain-timeout-s", "20")
    s2 = ts.Server(a.server, a.model)
    lb_port = ts.free_port()
    env = dict(os.environ, EARSHOT_LB_BIND="127.0.0.1:%d" % lb_port,
               EARSHOT_SERVER_1="127.0.0.1:%d" % s1.port, EARSHOT_SERVER_2="127.0.0.1:%d" % s2.port)
    hlog = open(os.path.join(tmp, "haproxy.log"), "w+")
    lb = subprocess.Popen([a.haproxy, "-db", "-f", CONFIG], env=env, stdout=hlog, stderr=subprocess.STDOUT)
    try:
        check("HAProxy starts with deploy/haproxy.cfg and passes /healthz through", wait_http(lb_port))
        time.sleep(2.5)  # both servers seen UP (rise 2 at 1 s)
        _, ref, _ = ts.stream(s2.port, audio, chunk_ms, dec)  # the reference, straight to a server

        # Eight live sessions through HAProxy, in real time.
        results = [None] * 8

        def session(i):
            try:
                results[i] = (None,) + live_session(lb_port, audio, chunk_ms, dec)
            except Exception as e:  # noqa: BLE001  (reported by the checks below)
                results[i] = (None, [], repr(e), False)

        # earshot-loadtest runs through HAProxy at the same time, across the stop.
        lt = None
        if a.loadtest:
            report = os.path.join(tmp, "loadtest.json")
            lt = subprocess.Popen([a.loadtest, "--url", "ws://127.0.0.1:%d/v1/listen" % lb_port, "--sessions", "6",
                                   "--ramp-s", "0.5", "--duration-s", "6", "--audio", os.path.join(a.case, "audio.wav"),
                                   "--chunk-ms", str(chunk_ms), "--report-s", "0", "--json", report],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(1.0)
        open1 = ts.metric(s1.port, "earshot_sessions_open")
        open2 = ts.metric(s2.port, "earshot_sessions_open")
        n = 8 + (6 if lt else 0)
        check("least connections: the %d sessions are spread over both servers (%s + %s)" % (n, open1, open2),
              open1 and open2 and open1 + open2 == n and abs(open1 - open2) <= 2)
        open1 = ts.metric(s1.port, "earshot_sessions_open")
        # Stop server 1 mid-run.
        s1.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        rc1 = s1.proc.wait(timeout=30)
        total1 = sum(1 for r in results if not r[3])  # the Python sessions that were on server 1
        # The stopped server's sessions are closed before their audio is all sent, after a
        # final with reason "end" for what it received; the others run to the end.
        ended = [r for r in results if not r[3] and r[2] == 1000 and r[1]
                 and all(m.get("reason") == "end" for m in r[1] if m["type"] == "final")]
        kept = [r for r in results if r[3] and finals_text(r[1]) == finals_text(ref) and r[2] == 1000]
        check("the stopped server's %d sessions end early with their finals and close 1000 (%d)" % (total1, len(ended)),
              total1 >= 1 and len(ended) == total1, [(finals_text(r[1])[:40], r[2], r[3]) for r in results])
        check("the other server's %d sessions keep their exact transcripts (%d)" % (8 - total1, len(kept)),
              len(kept) == 8 - total1, [(finals_text(r[1])[:40], r[2], r[3]) for r in results])
        check("the stopped server exits 0", rc1 == 0, rc1)

        # New sessions now all go to the healthy server.
        time.sleep(1.5)
        before = ts.metric(s2.port, "earshot_sessions_total")
        fresh = [ts.stream(lb_port, pcm, chunk_ms, dec) for _ in range(4)]
        after = ts.metric(s2.port, "earshot_sessions_total")
        check("new sessions through HAProxy go to the healthy server (%s -> %s)" % (before, after),
              after - before == 4 and all(finals_text(r[1]) == want and r[2] == 1000 for r in fresh),
              [(finals_text(r[1])[:40], r[2]) for r in fresh])

        if lt:
            text, _ = lt.communicate(timeout=120)
            print("\n".join("      " + ln for ln in text.splitlines()[-12:]))
            rep = json.load(open(report))
            # Sessions on the stopped server are closed by its drain before their `end` (the load
            # tester counts that as "closed_1000"); the healthy server's run to their end. Every
            # close is a clean 1000 and there is no other error.
            ses = rep["sessions"]
            check("earshot-loadtest through HAProxy across the stop: %d ran to their end, %d closed early by the "
                  "drain, every close 1000, no other error" % (ses["ok"], ses["failed"]),
                  rep["closes"] == {"1000": 6} and set(rep["errors"]) <= {"closed_1000"} and ses["ok"] >= 1
                  and ses["ok"] + rep["errors"].get("closed_1000", 0) == 6, (rep["closes"], rep["errors"], ses))
        lb.terminate()
        lb.wait(timeout=10)
        s2.proc.terminate()
        check("the healthy server exits 0", s2.proc.wait(timeout=30) == 0)
    finally:
        if lb.poll() is None:
            lb.kill()
        for s in (s1, s2):
            s.stop()
            if ts.failed:
                s.print_log_tail(8)
            s.log.close()
        if ts.failed:
            hlog.seek(0)
            print("      haproxy log tail:\n        " + "\n        ".join(hlog.read().splitlines()[-15:]))
        hlog.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
