#!/usr/bin/env python3
"""test_server.py - earshot-server end to end on loopback (Python 3 standard library only).

Usage: test_server.py --server BIN --model MODEL.safetensors --case GOLDEN_CASE_DIR

Starts earshot-server on free ports and checks: /healthz, /v1/models, a golden case streamed in
20 ms messages gives the manifest's streaming text (each decoder, two look-aheads), 50 concurrent
sessions (batches > 1 in /metrics), end -> finals then close 1000, --max-sessions (over_capacity,
1013, /healthz 503), bad inputs (their error codes) beside a healthy session, auth (401), and
SIGTERM (finals, close 1000, exit 0); --backend cuda without a usable GPU exits 2 at once with the
reason (with a GPU it serves and reports its memory), and /metrics' batch limit and device gauges. Prints "N passed, N failed" last; exits 1 on failure.
"""
import argparse, base64, contextlib, http.client, json, os, shutil, signal, socket, ssl, struct, subprocess, sys, tempfile
import threading, time, wave

# ---- a minimal WebSocket client (RFC 6455) ----

class WS:
    def __init__(self, port, path="/v1/listen", headers=None, timeout=30, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:  # the test's self-signed certificate: encryption without verification
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        key = base64.b64encode(os.urandom(16)).decode()
        req = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
               "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        req += ["%s: %s" % kv for kv in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        line = head.split(b"\r\n")[0].split()
        self.status = int(line[1]) if len(line) > 1 else 0

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload, fin=True):
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        body = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
        self.sock.sendall(head + mask + body)

    def send_text(self, obj):
        self.send_frame(1, (obj if isinstance(obj, str) else json.dumps(obj)).encode())

    def send_binary(self, data):
        self.send_frame(2, data)

    def recv(self):
        """('text', obj) | ('binary', bytes) | ('close', code); pings are answered."""
        parts, op0 = [], None
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 15, b1 & 127
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data = self._read(n)
            if op == 9:
                self.send_frame(10, data)
                continue
            if op == 10:
                continue
            if op == 8:
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                try:
                    self.send_frame(8, data[:2])
                except OSError:
                    pass
                return ("close", code)
            if op != 0:
                op0 = op
            parts.append(data)
            if b0 & 0x80:
                data = b"".join(parts)
                return ("text", json.loads(data)) if op0 == 1 else ("binary", data)

    def close(self):
        try:
            self.send_frame(8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.sock.close()


def collect(ws):
    """Reads until close: (messages, close code)."""
    msgs = []
    while True:
        kind, v = ws.recv()
        if kind == "close":
            return msgs, v
        if kind == "text":
            msgs.append(v)


def finals_text(msgs):
    return " ".join(m["text"] for m in msgs if m["type"] == "final" and m["text"])


def http_get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body

# ---- the server ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, binary, model, *extra):
        self.port = free_port()
        self.log = open(os.path.join(TMP, "server-%d.log" % self.port), "w+")
        self.proc = subprocess.Popen([binary, "--model", model, "--port", str(self.port)] + list(extra),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                http_get(self.port, "/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def print_log_tail(self, lines=15):
        """After a failure: the last lines the server logged."""
        self.log.seek(0)
        tail = self.log.read().splitlines()[-lines:]
        print("      server on port %d, last lines of its log:\n        " % self.port + "\n        ".join(tail))


# ---- checks ----

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok    " + name)
    else:
        failed += 1
        print("FAIL  " + name + ("\n      " + str(detail)[:1500] if detail else ""))
    sys.stdout.flush()


def stream(port, pcm, chunk_ms=160, decoder="rnnt", pace=0.0, end=True, extra=None):
    """One session: start, 20 ms messages, end; returns (ready, messages, close code)."""
    ws = WS(port)
    start = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "chunk_ms": chunk_ms, "decoder": decoder,
             "endpointing_ms": 0}
    start.update(extra or {})
    ws.send_text(start)
    kind, ready = ws.recv()
    for i in range(0, len(pcm), 640):
        ws.send_binary(pcm[i:i + 640])
        if pace:
            time.sleep(pace)
    if not end:
        return ws, ready
    ws.send_text({"type": "end"})
    msgs, code = collect(ws)
    ws.close()
    return ready, msgs, code


def expect_error(port, sends, code, close, name):
    ws = WS(port)
    for s in sends:
        if isinstance(s, bytes):
            ws.send_binary(s)
        else:
            ws.send_text(s)
    try:
        msgs, got = collect(ws)
    except (EOFError, OSError) as e:
        msgs, got = [], repr(e)
    errs = [m for m in msgs if m.get("type") == "error"]
    check(name, errs and errs[-1]["code"] == code and got == close, "messages %r close %r" % (msgs[-3:], got))
    ws.close()


def check_opus(port, tool, wav_path):
    """Opus packets and, in another session, the exact floats a fresh decoder makes of them,
    must give one transcript: the server's Opus path then loses, adds and reorders nothing."""
    packets_path, f32_path = os.path.join(TMP, "packets.bin"), os.path.join(TMP, "decoded.f32")
    subprocess.run([tool, wav_path, packets_path, f32_path], check=True, stdout=subprocess.DEVNULL)
    data, packets = open(packets_path, "rb").read(), []
    while data:
        n = struct.unpack("<H", data[:2])[0]
        packets.append(data[2:2 + n])
        data = data[2 + n:]
    f32 = open(f32_path, "rb").read()

    def session(encoding, messages):
        ws = WS(port)
        ws.send_text({"type": "start", "sample_rate": 16000, "encoding": encoding, "endpointing_ms": 0})
        ws.recv()
        for m in messages:
            ws.send_binary(m)
        ws.send_text({"type": "end"})
        msgs, code = collect(ws)
        ws.close()
        return finals_text(msgs), code, [m for m in msgs if m["type"] == "error"]

    got, code, errs = session("opus", packets)
    want, code2, errs2 = session("pcm_f32le", [f32[i:i + 1280] for i in range(0, len(f32), 1280)])
    check("opus: %d packets give the transcript of their decoded samples" % len(packets),
          got == want and got and code == code2 == 1000 and not errs and not errs2,
          "opus %r (close %r %r) vs f32 %r (close %r %r)" % (got, code, errs, want, code2, errs2))


def check_behind(port, pcm):
    """A minute of audio sent at once leaves most of it waiting: the session is told it is
    behind real time, still gets everything transcribed, and /metrics counts it."""
    ws = WS(port)
    ws.send_text({"type": "start", "sample_rate": 16000, "chunk_ms": 160, "endpointing_ms": 0})
    ws.recv()
    big = pcm * (60 * 32000 // len(pcm) + 1)
    for i in range(0, len(big), 64000):
        ws.send_binary(big[i:i + 64000])
    ws.send_text({"type": "end"})
    msgs, code = collect(ws)
    ws.close()
    warnings = [m for m in msgs if m["type"] == "warning"]
    finals = [m for m in msgs if m["type"] == "final"]
    # once per fall: more than one if the worker caught up between two of the 2 s messages
    check("behind real time: a warning with behind_s, then every final and close 1000",
          warnings and all(w.get("code") == "behind_realtime" and w.get("behind_s", 0) > 0 for w in warnings)
          and finals and code == 1000, (warnings, code, finals[-1:] if finals else None))
    st, body = http_get(port, "/metrics")
    counted = [l for l in body.splitlines() if l.startswith("earshot_sessions_fell_behind_total ")]
    now = [l for l in body.splitlines() if l.startswith("earshot_sessions_behind ")]
    check("/metrics: the session counted as fallen behind, none behind once it closed",
          counted and float(counted[0].split()[-1]) >= 1 and now and float(now[0].split()[-1]) == 0, (counted, now))


def small_rcvbuf_ws(port, start):
    """A WebSocket whose socket has a 4 KB receive buffer, so a client that does not read fills
    up quickly; started with `start`, the ready message read."""
    orig = socket.create_connection

    def connect(addr, timeout=None):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    socket.create_connection = connect
    try:
        ws = WS(port)
    finally:
        socket.create_connection = orig
    ws.send_text(start)
    ws.recv()
    return ws


def check_tls(binary, model, pcm, chunk_ms, decoder, want):
    """--tls-cert/--tls-key with a self-signed certificate made by openssl: https and wss."""
    openssl = shutil.which("openssl")
    if not openssl:
        print("skipped: TLS checks (no openssl)")
        return
    cert, key = os.path.join(TMP, "cert.pem"), os.path.join(TMP, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    port = free_port()
    log = open(os.path.join(TMP, "server-tls.log"), "w+")
    proc = subprocess.Popen([binary, "--model", model, "--port", str(port), "--tls-cert", cert, "--tls-key", key],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        status = None
        for _ in range(100):
            try:
                c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
                c.request("GET", "/healthz")
                status = c.getresponse().status
                c.close()
                break
            except OSError:
                time.sleep(0.05)
        check("TLS: https /healthz 200", status == 200, status)
        ws = WS(port, tls=True)
        ws.send_text({"type": "start", "chunk_ms": chunk_ms, "decoder": decoder, "endpointing_ms": 0})
        ws.recv()
        for i in range(0, len(pcm), 640):
            ws.send_binary(pcm[i:i + 640])
        ws.send_text({"type": "end"})
        msgs, code = collect(ws)
        check("TLS: a wss:// session gets the golden text, close 1000", finals_text(msgs) == want and code == 1000,
              (finals_text(msgs), code))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = raw.recv(100)
        except OSError:
            answer = b""
        raw.close()
        check("TLS: plain HTTP to the TLS port gets no plain answer", not answer.startswith(b"HTTP/1.1 200"), answer)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def metric(port, name):
    st, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def check_backend_cuda(binary, model):
    """--backend cuda: without a GPU (or in a build without CUDA) the server must refuse to start
    with exit 2 and a sentence that says why, promptly; it must never hang or fall back to the
    CPU. With a GPU it serves, and /metrics reports the GPU memory it holds. Also: a bad
    --step-budget is refused like any bad option."""
    for bad in ("0", "1.5", "half"):
        r = subprocess.run([binary, "--model", model, "--step-budget", bad], capture_output=True, text=True, timeout=30)
        check("--step-budget %s refused with exit 2 and a reason" % bad,
              r.returncode == 2 and "--step-budget" in r.stderr, (r.returncode, r.stderr[-300:]))
    port = free_port()
    log_path = os.path.join(TMP, "server-cuda.log")
    with open(log_path, "w+") as log:
        proc = subprocess.Popen([binary, "--model", model, "--port", str(port), "--backend", "cuda",
                                 "--max-sessions", "8"], stdout=log, stderr=subprocess.STDOUT)
        t0, serving = time.time(), False
        while proc.poll() is None and time.time() - t0 < 60:
            try:
                serving = http_get(port, "/healthz")[0] == 200
                break
            except OSError:
                time.sleep(0.1)
        if serving:
            total = metric(port, "earshot_device_bytes")
            per = metric(port, "earshot_device_bytes_per_session")
            print("      note: a usable GPU here; --backend cuda serves")
            check("--backend cuda with a GPU: /metrics reports device memory (%s B, %s B per session)" % (total, per),
                  total and per and 0 < per * 8 < total, (total, per))
            proc.terminate()
            proc.wait(timeout=30)
            return
        if proc.poll() is None:  # neither serving nor gone within a minute: a hang
            proc.kill()
            proc.wait()
            check("--backend cuda without a GPU exits within 60 s", False, "still running after 60 s")
            return
        log.seek(0)
        text = log.read()
        elapsed = time.time() - t0
    print("skipped: no GPU")  # serving with cuda; its refusal is checked instead
    check("--backend cuda without a GPU: exit 2 within 60 s (%.1f s)" % elapsed, proc.returncode == 2,
          (proc.returncode, text[-500:]))
    check("--backend cuda without a GPU: one line says the backend is not available and why",
          "--backend cuda is not available: " in text and len(text.split("not available: ", 1)[1].strip()) > 5,
          text[-500:])


def check_gauges(port, modes):
    """The CPU server's /metrics: device memory gauges at 0, a batch limit per latency mode
    within 1..--max-batch (32 by default)."""
    st, body = http_get(port, "/metrics")
    lines = body.splitlines()
    value = lambda name: next((float(l.split()[-1]) for l in lines if l.startswith(name + " ")), None)
    check("/metrics: earshot_device_bytes and earshot_device_bytes_per_session, 0 on the CPU",
          value("earshot_device_bytes") == 0 and value("earshot_device_bytes_per_session") == 0
          and "# TYPE earshot_device_bytes gauge" in body, [l for l in lines if "device" in l])
    limits = {}
    for l in lines:
        if l.startswith('earshot_batch_limit{chunk_ms="'):
            limits[int(l.split('"')[1])] = float(l.split()[-1])
    want = sorted(m[0] for m in modes)
    check("/metrics: earshot_batch_limit for each latency mode %s, each within 1..32" % want,
          sorted(limits) == want and all(1 <= v <= 32 for v in limits.values()), limits)


@contextlib.contextmanager
def patient_sends(ws):
    """Sends on ws wait up to 5 minutes instead of the socket's timeout. The server stops reading
    a session that is 20 s of audio ahead of the engine; under sanitizers on a busy machine
    catching up can take longer than 30 s. A send that timed out would leave half a frame behind,
    the server would wait for the rest, and the audio after it would never be decoded."""
    before = ws.sock.gettimeout()
    ws.sock.settimeout(300)
    try:
        yield
    finally:
        ws.sock.settimeout(before)


def check_slow_readers(binary, model, pcm):
    """Clients that stop reading, against servers with a 4 KB socket send buffer. The model is
    one whose random weights write a lot (ctc_tiny), so messages pile up within seconds."""
    start = {"type": "start", "chunk_ms": 80, "endpointing_ms": 160}
    long_pcm = pcm * 40
    ref_ready, ref, _ = None, None, None
    # No idle timeout here: on a slow machine (sanitizers) the client must be closed for not
    # reading, however long the engine takes to write enough for it.
    srv = Server(binary, model, "--socket-sndbuf-kb", "4", "--max-send-queue-kb", "4", "--idle-timeout-s", "0")
    try:
        _, ref, code = stream(srv.port, pcm, 80, "ctc", extra={"endpointing_ms": 160})
        # A reader that never reads, beside a healthy session.
        ws = small_rcvbuf_ws(srv.port, start)
        healthy = {}
        t = threading.Thread(target=lambda: healthy.update(r=stream(srv.port, pcm, 80, "ctc", pace=0.005,
                                                                    extra={"endpointing_ms": 160})))
        t.start()
        peak = 0
        try:
            with patient_sends(ws):
                for i in range(0, len(long_pcm), 32000):
                    ws.send_binary(long_pcm[i:i + 32000])
                    if i % (32000 * 20) == 0:
                        peak = max(peak, metric(srv.port, "earshot_send_queue_bytes") or 0)
        except OSError:
            pass  # the server closed it
        for _ in range(1200):  # at most 2 minutes; a second or two without sanitizers
            peak = max(peak, metric(srv.port, "earshot_send_queue_bytes") or 0)
            if metric(srv.port, 'earshot_errors_total{code="slow_reader"}'):
                break
            time.sleep(0.1)
        t.join()
        try:
            msgs, code = collect(ws)
        except (EOFError, OSError) as e:
            msgs, code = [], repr(e)
        check("never-reading client: closed with slow_reader and 1008 (or cut), counted in /metrics",
              metric(srv.port, 'earshot_errors_total{code="slow_reader"}') == 1
              and ((msgs and msgs[-1].get("code") == "slow_reader" and code == 1008) or not msgs),
              (msgs[-1:], code))
        check("never-reading client: the server's queue for it stays under --max-send-queue-kb (peak %d B)" % peak,
              peak <= 4096 + 2048, peak)
        _, hmsgs, hcode = healthy["r"]
        check("a session beside the never-reading one: its exact finals",
              finals_text(hmsgs) == finals_text(ref) and hcode == 1000, (finals_text(hmsgs), finals_text(ref)))
    finally:
        srv.stop()
    # A client that stops reading for a while and then reads: every final arrives, partials
    # that waited behind newer ones were dropped.
    srv = Server(binary, model, "--socket-sndbuf-kb", "4")
    try:
        late_pcm = pcm * 8
        _, ref, _ = stream(srv.port, late_pcm, 80, "ctc", extra={"endpointing_ms": 160})
        ws = small_rcvbuf_ws(srv.port, start)
        with patient_sends(ws):
            for i in range(0, len(late_pcm), 32000):
                ws.send_binary(late_pcm[i:i + 32000])
            ws.send_text({"type": "end"})
        time.sleep(3)
        msgs, code = collect(ws)
        n_ref = sum(m["type"] == "partial" for m in ref)
        n_got = sum(m["type"] == "partial" for m in msgs)
        check("late reader: every final (%d), fewer partials (%d of %d), close 1000"
              % (sum(m["type"] == "final" for m in msgs), n_got, n_ref),
              finals_text(msgs) == finals_text(ref) and code == 1000 and n_got < n_ref, (finals_text(msgs)[:200], code))
    finally:
        srv.stop()


def check_lm(binary, model, pcm, lm, transcribe, audio, chunk_ms):
    """A server with --lm decodes CTC sessions with the beam search: the same finals as
    earshot-transcribe --lm on the same audio; partials on the way; finalize closes a segment;
    a missing LM file stops the server at start with a message."""
    want = subprocess.run([transcribe, "--model", model, "--decoder", "ctc", "--chunk-ms", str(chunk_ms), "-q",
                           "--lm", lm, audio], capture_output=True, text=True).stdout.strip()
    srv = Server(binary, model, "--lm", lm)
    try:
        srv.log.seek(0)
        named = "language model " + lm in srv.log.read()
        ready, msgs, code = stream(srv.port, pcm, chunk_ms, "ctc", extra={"interim_results": True})
        # stripped like `want`, which is earshot-transcribe's output line: a final cut at a pause
        # mid-stream may end on a bare word-start piece, which reads as a trailing space
        got = finals_text(msgs).strip()
        check("--lm: the server names its LM, and a CTC session's text is earshot-transcribe --lm's",
              named and want and got == want and code == 1000, "got %r want %r close %r" % (got, want, code))
        check("--lm: partials arrive before the final", any(m["type"] == "partial" for m in msgs),
              [m["type"] for m in msgs])
        ws, _ = stream(srv.port, pcm[:len(pcm) // 4 * 2], chunk_ms, "ctc", end=False)  # whole samples
        ws.send_text({"type": "finalize"})
        ws.send_text({"type": "end"})
        msgs, code = collect(ws)
        ws.close()
        finals = [m for m in msgs if m["type"] == "final"]
        check("--lm: finalize closes the segment with what was heard",
              code == 1000 and finals and finals[0]["reason"] == "finalize" and finals[0]["text"],
              (code, finals))
    finally:
        srv.stop()
    r = subprocess.run([binary, "--model", model, "--lm", os.path.join(TMP, "missing.arpa")],
                       capture_output=True, text=True, timeout=30)
    check("--lm with a missing file: exit 3, the file named",
          r.returncode == 3 and "missing.arpa" in r.stderr, (r.returncode, r.stderr))


def main():
    global TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--opus-tool", help="tests/server/opus_packets binary: enables the Opus check")
    ap.add_argument("--chatty-model", help="a model that writes a lot (ctc_tiny): enables the slow-reader checks")
    ap.add_argument("--lm", help="an ARPA LM: enables the language-model checks (with --transcribe)")
    ap.add_argument("--transcribe", help="earshot-transcribe, the reference for the LM checks")
    a = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="test_server.")
    man = json.load(open(os.path.join(a.case, "manifest.json")))
    with wave.open(os.path.join(a.case, "audio.wav")) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = w.readframes(w.getnframes())
    modes = []  # (chunk_ms, att_context_size, {decoder: text})
    for la in man["lookaheads"]:
        texts = {d: la.get("stream_%s_text" % d) for d in ("rnnt", "ctc") if la.get("stream_%s_text" % d) is not None}
        modes.append((la["streaming_cfg"]["shift_size"][1] * 10, la["att_context_size"], texts))

    srv = Server(a.server, a.model, "--max-message-bytes", "65536")
    servers = [srv]
    try:
        st, body = http_get(srv.port, "/healthz")
        check("/healthz 200", st == 200, (st, body))
        st, body = http_get(srv.port, "/v1/models")
        models = json.loads(body) if st == 200 else {}
        m0 = (models.get("data") or [{}])[0]
        las = [tuple(x["att_context_size"]) for x in m0.get("lookaheads", [])]
        check("/v1/models lists the model and its look-aheads",
              m0.get("id") and las == [tuple(m[1]) for m in modes], body)
        check_gauges(srv.port, modes)
        check_backend_cuda(a.server, a.model)

        if a.opus_tool:
            check_opus(srv.port, a.opus_tool, os.path.join(a.case, "audio.wav"))
        check_behind(srv.port, pcm)
        if a.chatty_model:
            check_slow_readers(a.server, a.chatty_model, pcm)
        if a.lm and a.transcribe and "ctc" in modes[0][2]:
            check_lm(a.server, a.model, pcm, a.lm, a.transcribe, os.path.join(a.case, "audio.wav"), modes[0][0])
        tls_dec = next(iter(modes[0][2]))
        check_tls(a.server, a.model, pcm, modes[0][0], tls_dec, modes[0][2][tls_dec])

        # golden text, each decoder, two look-aheads
        for chunk_ms, att, texts in modes[:2] + modes[2:][-1:]:
            for dec, want in texts.items():
                ready, msgs, code = stream(srv.port, pcm, chunk_ms, dec)
                got = finals_text(msgs)
                check("golden %s %d ms %s: text, ready, close 1000" % (dec, chunk_ms, att),
                      got == want and code == 1000 and ready.get("att_context_size") == att
                      and ready.get("decoder") == dec and ready.get("model") == m0.get("id")
                      and all(m["reason"] == "end" for m in msgs if m["type"] == "final"),
                      "got %r want %r close %r ready %r" % (got, want, code, ready))

        # default endpointing: segments may split the text, but never change its letters
        chunk_ms, att, texts = modes[-1]
        for dec, want in texts.items():
            ready, msgs, code = stream(srv.port, pcm, chunk_ms, dec, extra={"endpointing_ms": 800})
            finals = [m for m in msgs if m["type"] == "final"]
            got = finals_text(msgs)
            check("endpointing on, %s: finals numbered 0.., reasons endpoint|end, same letters" % dec,
                  got.replace(" ", "") == want.replace(" ", "") and code == 1000
                  and [m["segment"] for m in finals] == list(range(len(finals)))
                  and all(m["reason"] in ("endpoint", "end") for m in finals),
                  "got %r want %r close %r" % (got, want, code))
            if got != want:
                print("      note: finals joined with spaces %r differ from the one-segment text %r" % (got, want))

        # 50 concurrent sessions, mixed decoders
        N = 50
        chunk_ms, att, texts = modes[-2] if len(modes) > 1 else modes[0]
        decs = list(texts)
        results = [None] * N

        def one(i):
            try:
                dec = decs[i % len(decs)]
                results[i] = (dec, stream(srv.port, pcm, chunk_ms, dec))
            except Exception as e:  # noqa
                results[i] = ("?", (None, [], repr(e)))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        bad = [(i, r[0], finals_text(r[1][1]), r[1][2]) for i, r in enumerate(results)
               if finals_text(r[1][1]) != texts[r[0]] or r[1][2] != 1000]
        check("%d concurrent sessions: each its own correct text" % N, not bad, bad[:3])
        st, body = http_get(srv.port, "/metrics")
        le1 = total = 0
        for line in body.splitlines():
            if line.startswith('earshot_batch_size_bucket{le="1"}'):
                le1 = float(line.split()[-1])
            if line.startswith("earshot_batch_size_count"):
                total = float(line.split()[-1])
        check("/metrics: batches larger than one", st == 200 and total > le1, "count %s, le=1 %s" % (total, le1))

        # bad inputs, with a healthy session beside them
        side = {}
        sd = "ctc" if "ctc" in modes[0][2] else "rnnt"
        t = threading.Thread(target=lambda: side.update(r=stream(srv.port, pcm, modes[0][0], sd, pace=0.002)))
        t.start()
        start = {"type": "start", "encoding": "pcm_s16le", "sample_rate": 16000}
        expect_error(srv.port, [b"\0\0" * 160], "not_started", 1008, "binary before start: not_started, 1008")
        expect_error(srv.port, ['{"type": "start", '], "bad_json", 1008, "malformed JSON: bad_json, 1008")
        expect_error(srv.port, [{"type": "start", "encoding": "mp3"}], "unsupported", 1008,
                     "unknown encoding: unsupported, 1008")
        expect_error(srv.port, [start, b"\0\0\0"], "bad_audio", 1008, "odd-length PCM: bad_audio, 1008")
        expect_error(srv.port, [{"type": "dance"}], "bad_message", 1008, "unknown type: bad_message, 1008")
        expect_error(srv.port, [start, start], "already_started", 1008, "second start: already_started, 1008")
        expect_error(srv.port, [{"type": "end"}], "not_started", 1008, "end before start: not_started, 1008")
        expect_error(srv.port, [start, b"\0\0" * 40000], "message_too_big", 1009,
                     "message over --max-message-bytes: message_too_big, 1009")
        t.join()
        r = side.get("r") or (None, [], None)
        check("the session beside the bad inputs gets its text", finals_text(r[1]) == modes[0][2][sd] and r[2] == 1000,
              (finals_text(r[1]), r[2]))
        st, body = http_get(srv.port, "/metrics")
        check("/metrics counts errors by code", 'earshot_errors_total{code="bad_audio"} 1' in body, body[-400:])
        st, _ = http_get(srv.port, "/nope")
        check("unknown path: 404", st == 404, st)
        ws = WS(srv.port, "/elsewhere")
        check("WebSocket upgrade on another path refused", ws.status == 404, ws.status)

        # finalize, fragmented and control frames, a client that vanishes
        chunk_ms, att, texts = modes[-1]
        dec = next(iter(texts))
        ws = WS(srv.port)
        ws.send_frame(1, b'{"type": "sta', fin=False)
        ws.send_frame(9, b"ping")  # a ping between fragments
        ws.send_frame(0, ('rt", "chunk_ms": %d, "decoder": "%s", "endpointing_ms": 0}' % (chunk_ms, dec)).encode())
        kind, ready = ws.recv()
        check("start sent in two fragments with a ping between: ready",
              kind == "text" and ready.get("type") == "ready", ready)
        half = len(pcm) // 2 // 640 * 640
        for i in range(0, half, 640):
            ws.send_binary(pcm[i:i + 640])
        ws.send_text({"type": "finalize"})
        ws.send_text({"type": "keepalive"})
        for i in range(half, len(pcm), 640):
            ws.send_binary(pcm[i:i + 640])
        ws.send_text({"type": "end"})
        msgs, code = collect(ws)
        ws.close()
        finals = [m for m in msgs if m["type"] == "final"]
        check("finalize: a final with reason finalize, then the rest with reason end, same letters",
              [m["reason"] for m in finals][:1] == ["finalize"] and finals[-1]["reason"] == "end" and code == 1000
              and finals_text(msgs).replace(" ", "") == texts[dec].replace(" ", ""), (finals, code))
        ws = WS(srv.port)
        ws.send_text({"type": "start", "chunk_ms": chunk_ms})
        ws.recv()
        for i in range(0, half, 640):
            ws.send_binary(pcm[i:i + 640])
        ws.sock.close()  # no close frame, no end
        ready, msgs, code = stream(srv.port, pcm, chunk_ms, dec)
        check("after a client vanished mid-stream, the next session works",
              finals_text(msgs) == texts[dec] and code == 1000, (finals_text(msgs), code))

        # idle timeout, on a server of its own
        s3 = Server(a.server, a.model, "--idle-timeout-s", "1")
        servers.append(s3)
        ws = WS(s3.port)
        ws.send_text({"type": "start"})
        t0 = time.time()
        msgs, code = collect(ws)
        check("idle session: idle_timeout and 1008 after about --idle-timeout-s",
              msgs[-1].get("code") == "idle_timeout" and code == 1008 and 0.8 < time.time() - t0 < 3, (msgs, code))
        ws = WS(s3.port)
        ws.send_text({"type": "start"})
        ws.recv()
        for _ in range(4):
            time.sleep(0.5)
            ws.send_text({"type": "keepalive"})
        ws.send_text({"type": "end"})
        msgs, code = collect(ws)
        check("keepalive keeps a session past the idle timeout", code == 1000, (msgs, code))

        # capacity and auth, on a second server
        s2 = Server(a.server, a.model, "--max-sessions", "2", "--auth-token", "sekrit")
        servers.append(s2)
        auth = {"Authorization": "Bearer sekrit"}
        check("auth: /healthz needs no token", http_get(s2.port, "/healthz")[0] == 200)
        check("auth: /metrics without token 401", http_get(s2.port, "/metrics")[0] == 401)
        check("auth: /v1/models without token 401", http_get(s2.port, "/v1/models")[0] == 401)
        check("auth: the web page needs no token", http_get(s2.port, "/")[0] == 200)
        check("auth: /metrics with Bearer 200", http_get(s2.port, "/metrics", auth)[0] == 200)
        check("auth: /v1/models?token= 200", http_get(s2.port, "/v1/models?token=sekrit")[0] == 200)
        check("auth: upgrade without token 401", WS(s2.port).status == 401)
        check("auth: upgrade with wrong token 401", WS(s2.port, headers={"Authorization": "Bearer nope"}).status == 401)
        held = []
        for i in range(2):
            ws = WS(s2.port, "/v1/listen?token=sekrit")
            ws.send_text(start)
            held.append((ws, ws.recv()))
        check("capacity: two sessions ready", all(h[1][0] == "text" and h[1][1]["type"] == "ready" for h in held), held)
        check("capacity: /healthz 503 when full", http_get(s2.port, "/healthz")[0] == 503)
        ws = WS(s2.port, headers=auth)
        msgs, code = collect(ws)
        check("capacity: third session gets over_capacity and 1013",
              msgs and msgs[-1].get("code") == "over_capacity" and code == 1013, (msgs, code))
        held[0][0].send_text({"type": "end"})
        collect(held[0][0])
        time.sleep(0.3)
        check("capacity: /healthz 200 again after a session ends", http_get(s2.port, "/healthz")[0] == 200)

        # SIGTERM: the open session gets its finals and 1000, the server exits 0
        ws = WS(s2.port, headers=auth)
        ws.send_text({"type": "start", "chunk_ms": modes[0][0], "decoder": sd, "endpointing_ms": 0})
        ws.recv()
        for i in range(0, len(pcm), 640):
            ws.send_binary(pcm[i:i + 640])
        time.sleep(0.2)
        s2.proc.send_signal(signal.SIGTERM)
        msgs, code = collect(ws)
        rc = s2.proc.wait(timeout=30)
        check("SIGTERM: open session gets its full text with reason end, close 1000",
              finals_text(msgs) == modes[0][2][sd] and code == 1000
              and all(m["reason"] == "end" for m in msgs if m["type"] == "final"), (finals_text(msgs), code))
        check("SIGTERM: idle started session closed 1000", collect(held[1][0])[1] == 1000)
        check("SIGTERM: server exits 0", rc == 0, rc)
        # Drain under load: 12 sessions have sent all their audio (no end yet) when SIGTERM
        # comes; each still gets the finals of all of it, then 1000; the server exits 0.
        s5 = Server(a.server, a.model)
        servers.append(s5)
        audio2 = pcm * 2
        _, ref, _ = stream(s5.port, audio2, modes[0][0], sd)
        load = []
        for _ in range(12):
            ws = WS(s5.port)
            ws.send_text({"type": "start", "chunk_ms": modes[0][0], "decoder": sd, "endpointing_ms": 0})
            ws.recv()
            for i in range(0, len(audio2), 3200):
                ws.send_binary(audio2[i:i + 3200])
            load.append(ws)
        s5.proc.send_signal(signal.SIGTERM)
        results = [collect(ws) for ws in load]
        rc = s5.proc.wait(timeout=30)
        bad = [(finals_text(m)[:60], c) for m, c in results if finals_text(m) != finals_text(ref) or c != 1000]
        check("SIGTERM under load: 12 sessions each get the finals of all the audio they sent, close 1000",
              not bad, bad[:3])
        check("SIGTERM under load: server exits 0", rc == 0, rc)

        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=30)
        check("main server: exits 0 on SIGTERM with no session open", rc == 0, rc)
    finally:
        for s in servers:
            s.stop()
            if failed:
                s.print_log_tail()
            s.log.close()
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
