#!/usr/bin/env python3
"""test_file_api.py - POST /v1/audio/transcriptions end to end (Python 3 standard library only).

Usage: test_file_api.py --server BIN --transcribe BIN --model MODEL.safetensors --case GOLDEN_CASE_DIR

Starts earshot-server on loopback and checks that a file uploaded as multipart (as OpenAI's API
takes it) is transcribed exactly as earshot-transcribe transcribes it locally, in every response
format; that a live session streaming beside a long file job keeps its exact transcript; and
that bad uploads get their status and code: 405, 400 (no file part, bad response_format, not
multipart), 411 (no Content-Length), 413 (too large), 415 (not audio), 401 (no token), 503 (too many jobs), and that
clients vanishing mid-upload or mid-job leave the server serving.
"""
import argparse, http.client, json, os, shutil, socket, subprocess, sys, tempfile, threading, time, wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (the WebSocket client, Server and check helpers)
from test_server import check, finals_text  # noqa: E402


def multipart(fields, file_bytes=None, filename="audio.wav"):
    """(body, content type) of a multipart/form-data request."""
    boundary = "----earshot-test-boundary-7f3a9c"
    parts = []
    for k, v in fields:
        parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, k, v)).encode())
    if file_bytes is not None:
        parts.append(('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                      'Content-Type: application/octet-stream\r\n\r\n' % (boundary, filename)).encode()
                     + file_bytes + b"\r\n")
    parts.append(("--%s--\r\n" % boundary).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


def post(port, fields, file_bytes=None, headers=None, path="/v1/audio/transcriptions", timeout=120):
    body, ctype = multipart(fields, file_bytes)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": ctype}
    h.update(headers or {})
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    out = r.status, r.getheader("Content-Type") or "", r.read().decode("utf-8", "replace")
    c.close()
    return out


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def transcribe_local(binary, model, path, chunk_ms, decoder, fmt):
    r = subprocess.run([binary, "-q", "-m", model, "-c", str(chunk_ms), "-d", decoder, "-f", fmt, path],
                       capture_output=True, text=True, timeout=300)
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--transcribe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    a = ap.parse_args()
    ts.TMP = tmp = tempfile.mkdtemp(prefix="test_file_api.")
    wav_path = os.path.join(a.case, "audio.wav")
    audio = open(wav_path, "rb").read()
    with wave.open(wav_path) as w:
        pcm = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    man = json.load(open(os.path.join(a.case, "manifest.json")))
    chunks = [la["streaming_cfg"]["shift_size"][1] * 10 for la in man["lookaheads"]]
    decoders = [d for d in ("rnnt", "ctc") if man["lookaheads"][0].get("stream_%s_text" % d) is not None]

    # A long file: the case's audio eight times over.
    long_wav = os.path.join(tmp, "long.wav")
    with wave.open(long_wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm * 8)

    srv = ts.Server(a.server, a.model, "--max-upload-mb", "2", "--max-file-jobs", "2")
    s2 = None
    try:
        # Each format, two latency modes and each decoder: the same as the local CLI.
        for chunk_ms in (chunks[0], chunks[-1]):
            for dec in decoders:
                want_text = transcribe_local(a.transcribe, a.model, wav_path, chunk_ms, dec, "text").strip()
                st, ctype, body = post(srv.port, [("model", "whatever"), ("response_format", "json"),
                                                  ("chunk_ms", chunk_ms), ("decoder", dec)], audio)
                got = json.loads(body).get("text") if st == 200 else None
                check("json %d ms %s: the text earshot-transcribe gives" % (chunk_ms, dec),
                      st == 200 and ctype.startswith("application/json") and got == want_text,
                      (st, body[:200], want_text))
                for fmt in ("srt", "vtt"):
                    want = transcribe_local(a.transcribe, a.model, wav_path, chunk_ms, dec, fmt)
                    st, ctype, body = post(srv.port, [("response_format", fmt), ("chunk_ms", chunk_ms),
                                                      ("decoder", dec)], audio)
                    check("%s %d ms %s: identical to earshot-transcribe's" % (fmt, chunk_ms, dec),
                          st == 200 and body == want and len(want) > 0, (st, body[:300], want[:300]))
        dec = decoders[0]
        want_text = transcribe_local(a.transcribe, a.model, wav_path, max(chunks), dec, "text").strip()
        st, ctype, body = post(srv.port, [("response_format", "text"), ("decoder", dec)], audio)
        check("text, no chunk_ms: the largest chunk's text, text/plain",
              st == 200 and ctype.startswith("text/plain") and body == want_text + "\n", (st, ctype, body[:200]))
        st, ctype, body = post(srv.port, [("response_format", "verbose_json"), ("decoder", dec),
                                          ("timestamp_granularities[]", "word")], audio)
        v = json.loads(body) if st == 200 else {}
        segs, words = v.get("segments", []), v.get("words", [])
        check("verbose_json: duration, segments joined give the text, words in order",
              abs(v.get("duration", 0) - seconds) < 0.01 and " ".join(s["text"] for s in segs if s["text"]) == v["text"]
              and v["text"] == want_text and len(words) == len(want_text.split())
              and all(words[i]["start"] <= words[i + 1]["start"] for i in range(len(words) - 1))
              and all(s["start"] <= s["end"] for s in segs), body[:400])

        # A long file job beside a live session: the live one keeps its exact transcript.
        want_live = transcribe_local(a.transcribe, a.model, wav_path, chunks[0], dec, "text").strip()
        result = {}

        def long_job():
            result["r"] = post(srv.port, [("response_format", "verbose_json"), ("decoder", dec)],
                               open(long_wav, "rb").read())

        t = threading.Thread(target=long_job)
        t.start()
        time.sleep(0.1)
        ready, msgs, code = ts.stream(srv.port, pcm, chunks[0], dec, pace=0.02,
                                      extra={"endpointing_ms": 0})
        t.join()
        st, _, body = result["r"]
        v = json.loads(body) if st == 200 else {}
        check("live session beside a file job: its exact text, close 1000",
              finals_text(msgs) == want_live and code == 1000, (finals_text(msgs), want_live, code))
        check("the long file job: 200 and the whole duration",
              st == 200 and abs(v.get("duration", 0) - 8 * seconds) < 0.01, (st, body[:200]))

        # Bad requests.
        st, _, body = post(srv.port, [("response_format", "json")], b"this is not audio at all " * 40)
        check("not audio: 415 bad_audio", st == 415 and error_code(body) == "bad_audio", (st, body))
        st, _, body = post(srv.port, [("response_format", "json")], None)
        check("no file part: 400 bad_request", st == 400 and error_code(body) == "bad_request", (st, body))
        st, _, body = post(srv.port, [("response_format", "docx")], audio)
        check("unknown response_format: 400 naming it", st == 400 and "docx" in body, (st, body))
        st, _, body = post(srv.port, [("decoder", "beam")], audio)
        check("unknown decoder: 400", st == 400 and error_code(body) == "bad_request", (st, body))
        st, _, body = post(srv.port, [("chunk_ms", "soon")], audio)
        check("chunk_ms not a number: 400", st == 400, (st, body))
        for size, name in ((3 << 20, "3 MB with --max-upload-mb 2"), (10 << 30, "10 GB")):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            c.putrequest("POST", "/v1/audio/transcriptions")
            c.putheader("Content-Type", "multipart/form-data; boundary=x")
            c.putheader("Content-Length", str(size))
            c.endheaders()
            r = c.getresponse()
            check("Content-Length of %s: 413 too_large at once, before any body" % name,
                  r.status == 413 and error_code(r.read().decode()) == "too_large", r.status)
            c.close()
        sk = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sk.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n")
        head = sk.recv(4096).decode("latin-1")
        check("chunked upload (no Content-Length): 411", head.startswith("HTTP/1.1 411"), head[:80])
        sk.close()
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("POST", "/v1/audio/transcriptions", body=b'{"file": 1}', headers={"Content-Type": "application/json"})
        r = c.getresponse()
        check("JSON body instead of multipart: 400", r.status == 400 and error_code(r.read().decode()) == "bad_request",
              r.status)
        c.close()
        st, _ = ts.http_get(srv.port, "/v1/audio/transcriptions")
        check("GET: 405", st == 405, st)
        # A body with a broken multipart structure.
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("POST", "/v1/audio/transcriptions", body=b"--b\r\ngarbage without headers\r\n\r\n--b--\r\n",
                  headers={"Content-Type": "multipart/form-data; boundary=b"})
        r = c.getresponse()
        check("broken multipart: 400", r.status == 400, r.status)
        c.close()

        # --max-file-jobs 2: two uploads held open mid-body, the third is refused with 503.
        body, ctype = multipart([], audio)
        held = []
        for _ in range(2):
            sk = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sk.sendall(("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                        "Content-Length: %d\r\n\r\n" % (ctype, len(body))).encode() + body[:1000])
            held.append(sk)
        time.sleep(0.3)
        st, _, rb = post(srv.port, [], audio)
        check("third file job with --max-file-jobs 2: 503 over_capacity",
              st == 503 and error_code(rb) == "over_capacity", (st, rb))
        for sk in held:  # vanish mid-upload
            sk.close()
        time.sleep(0.3)
        st, _, rb = post(srv.port, [], audio)
        check("after two clients vanished mid-upload: uploads work again", st == 200, (st, rb[:200]))
        # vanish mid-job: the long file, then hang up at once
        body, ctype = multipart([], open(long_wav, "rb").read())
        sk = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sk.sendall(("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                    "Content-Length: %d\r\n\r\n" % (ctype, len(body))).encode() + body)
        time.sleep(0.2)
        sk.close()
        time.sleep(0.5)
        st, _, rb = post(srv.port, [("response_format", "text"), ("decoder", dec)], audio)
        check("after a client vanished mid-job: the next job is right", st == 200 and rb == want_text + "\n", (st, rb))
        st, mbody = ts.http_get(srv.port, "/metrics")
        jobs = [ln for ln in mbody.splitlines() if ln.startswith("earshot_file_jobs_total ")]
        check("/metrics counts file jobs", jobs and int(jobs[0].split()[1]) >= 10, jobs)

        # Auth.
        s2 = ts.Server(a.server, a.model, "--auth-token", "sekrit")
        st, _, body = post(s2.port, [], audio)
        check("auth: no token 401", st == 401 and error_code(body) == "unauthorized", (st, body))
        st, _, body = post(s2.port, [("decoder", dec)], audio, headers={"Authorization": "Bearer sekrit"})
        check("auth: with the token 200", st == 200, (st, body))
        st, _, body = post(s2.port, [("decoder", dec)], audio, path="/v1/audio/transcriptions?token=sekrit")
        check("auth: ?token= 200", st == 200, (st, body))
        s2.proc.terminate()
        check("auth server: exits 0 on SIGTERM", s2.proc.wait(timeout=30) == 0)
        # SIGTERM while a long job runs: it is finished and answered, then the server exits 0.
        t = threading.Thread(target=long_job)
        t.start()
        time.sleep(0.3)
        srv.proc.terminate()
        t.join()
        st, _, body = result["r"]
        v = json.loads(body) if st == 200 else {}
        check("SIGTERM during a file job: the job is answered whole",
              st == 200 and abs(v.get("duration", 0) - 8 * seconds) < 0.01, (st, body[:200]))
        check("server: exits 0 on SIGTERM", srv.proc.wait(timeout=30) == 0)
    finally:
        for s in (srv, s2):
            if s:
                s.stop()
                if ts.failed:
                    s.print_log_tail()
                s.log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
