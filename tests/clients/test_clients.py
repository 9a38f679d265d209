#!/usr/bin/env python3
"""test_clients.py - earshot-loadtest and earshot-transcribe --server against a real earshot-server
on loopback (Python 3 standard library only).

Usage: test_clients.py SUITE --server BIN --loadtest BIN --transcribe BIN --model M --case DIR

SUITE is one of
  loadtest    100 sessions of the golden audio (reference .txt = the manifest's streaming text):
              every session gets WER 0 on at least one full pass, latencies are there and
              positive, nothing fails; an Opus run; Ctrl-C mid-run; a tiny --find-capacity
              search.
  transcribe  --server prints exactly what local mode prints (text, json, srt, vtt; two latency
              modes and both decoders; several files; a 40 s file; --realtime; --token).
  errors      a server that is down, a bad URL, a missing token (401), a full server (1013),
              missing audio, a self-signed wss:// server: clear messages and the documented
              exit codes.
Each suite starts its own servers on free ports and kills them. Prints "N passed, N failed" last.
"""
import argparse, http.client, json, os, re, shutil, signal, socket, ssl, subprocess, sys, tempfile, time, wave

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (the shared check, counting in ts.passed / ts.failed)

check = ts.check


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, binary, model, tmp, *extra):
        tls = "--tls-cert" in extra
        self.port = free_port()
        self.log = open(os.path.join(tmp, "server-%d.log" % self.port), "w+")
        self.proc = subprocess.Popen([binary, "--model", model, "--port", str(self.port)] + list(extra),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(400):
            try:
                c = (http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                 context=ssl._create_unverified_context()) if tls
                     else http.client.HTTPConnection("127.0.0.1", self.port, timeout=2))
                c.request("GET", "/healthz")
                c.getresponse().read()
                c.close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("earshot-server did not start")

    @property
    def url(self):
        return "ws://127.0.0.1:%d/v1/listen" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run(cmd, timeout=300):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def modes(case):
    """[(chunk_ms, {decoder: streaming text})] from the golden manifest."""
    man = json.load(open(os.path.join(case, "manifest.json")))
    out = []
    for la in man["lookaheads"]:
        texts = {d: la["stream_%s_text" % d] for d in ("rnnt", "ctc") if la.get("stream_%s_text" % d) is not None}
        out.append((la["streaming_cfg"]["shift_size"][1] * 10, texts))
    return out


# ---- loadtest ----

def suite_loadtest(a, tmp):
    all_modes = modes(a.case)
    # The largest chunk whose text is not empty: the cheapest per second of audio, so that 100
    # real-time sessions fit on a 2-core machine even under the sanitizers.
    chunk, texts = max((m for m in all_modes if any(m[1].values())), key=lambda m: m[0])
    dec = "rnnt" if texts.get("rnnt") else next(iter(texts))
    aud = os.path.join(tmp, "audio")
    os.mkdir(aud)
    shutil.copy(os.path.join(a.case, "audio.wav"), os.path.join(aud, "golden.wav"))
    with open(os.path.join(aud, "golden.txt"), "w") as f:
        f.write(texts[dec] + "\n")
    with open(os.path.join(aud, "README"), "w") as f:
        f.write("not audio: skipped\n")
    srv = Server(a.server, a.model, tmp, "--max-sessions", "128", "--max-batch", "128")
    try:
        report = os.path.join(tmp, "report.json")
        n = 100  # the issue asks for 100 sessions with zero errors
        rc, out, err = run([a.loadtest, "--url", srv.url, "--audio", aud, "--sessions", str(n), "--ramp-s", "2",
                            "--duration-s", "6", "--chunk-ms", str(chunk), "--decoder", dec, "--endpointing-ms", "0",
                            "--report-s", "2", "--json", report])
        print(out)
        check("loadtest: %d sessions, exit 0" % n, rc == 0, err)
        r = json.load(open(report)) if os.path.exists(report) else {}
        ss = r.get("sessions", {})
        check("loadtest: every session ok, no errors, every close 1000",
              ss.get("ok") == n and ss.get("failed") == 0 and r.get("errors") == {} and r.get("closes") == {"1000": n},
              (ss, r.get("errors"), r.get("closes")))
        per = r.get("per_session", [])
        check("loadtest: every session has WER 0 on at least one full pass",
              len(per) == n and all(s["passes_exact"] >= 1 and s["reference_words"] > 0 for s in per),
              [(s["id"], s["passes_scored"], s["passes_exact"], s["edits"]) for s in per])
        lat = r.get("latency_ms", {})
        check("loadtest: connect, ready, partial and final latencies present and positive",
              all(lat.get(k, {}).get("count", 0) > 0 and lat[k]["min"] > 0 and lat[k]["p50"] > 0 and lat[k]["max"] >= lat[k]["p99"]
                  for k in ("connect", "ready", "partial", "final"))
              and lat["connect"]["count"] == n and lat["ready"]["count"] == n and lat["final"]["count"] == n
              and all(s["latencies"] > 0 and s["partial_latency_ms_mean"] > 0 and s["final_latency_ms"] > 0 for s in per),
              lat)
        check("loadtest: the chunk the server chose is reported", r.get("config", {}).get("chunk_ms") == chunk, r.get("config"))
        sm = r.get("server_metrics", {})
        check("loadtest: /metrics scraped: batch size and step time means",
              sm.get("scraped") and sm.get("batch_size_mean", 0) >= 1 and sm.get("step_ms_mean", 0) > 0, sm)
        check("loadtest: the table has the figures",
              all(k in out for k in ("partial latency", "final latency", "p50", "p99", "WER 0.00%", "batch size mean")), out)

        # Opus, one packet per message
        rc, out, err = run([a.loadtest, "--url", srv.url, "--audio", aud, "--sessions", "4", "--ramp-s", "0.5",
                            "--duration-s", "3", "--encoding", "opus", "--decoder", "ctc", "--report-s", "0",
                            "--json", report])
        r = json.load(open(report)) if os.path.exists(report) else {}
        check("loadtest: Opus sessions run clean with latencies",
              rc == 0 and r.get("sessions", {}).get("failed") == 0 and r["latency_ms"]["partial"]["count"] > 0
              and r["config"]["encoding"] == "opus", (rc, err, r.get("sessions"), r.get("errors")))

        # Ctrl-C: the sessions end now, the report still comes, exit 0
        t0 = time.time()
        p = subprocess.Popen([a.loadtest, "--url", srv.url, "--audio", aud, "--sessions", "4", "--ramp-s", "0.2",
                              "--duration-s", "60", "--report-s", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2.5)
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        out = out.decode("utf-8", "replace")
        check("loadtest: SIGINT ends every session with end/1000 and prints the report, exit 0",
              p.returncode == 0 and re.search(r"closes: 1000 x[1-4]\n", out) and " 0 failed" in out
              and "partial latency" in out and time.time() - t0 < 30,
              (p.returncode, out, err))

        # --find-capacity: 2 then 4 sessions, both hold under a generous bound
        rc, out, err = run([a.loadtest, "--url", srv.url, "--audio", aud, "--sessions", "2", "--ramp-s", "0.2",
                            "--duration-s", "1.5", "--find-capacity", "--max-sessions", "4", "--latency-bound-ms",
                            "100000", "--quiet", "--json", report])
        r = json.load(open(report)) if os.path.exists(report) else {}
        check("loadtest --find-capacity: steps 2 and 4 held, capacity 4",
              rc == 0 and r.get("capacity") == 4 and [s["config"]["sessions"] for s in r.get("steps", [])] == [2, 4]
              and "capacity: 4 sessions held" in out, (rc, out, err))
        rc, out, err = run([a.loadtest, "--url", srv.url, "--audio", aud, "--sessions", "2", "--ramp-s", "0",
                            "--duration-s", "1", "--find-capacity", "--latency-bound-ms", "0.001", "--quiet"])
        check("loadtest --find-capacity: an impossible bound holds nothing, exit 1",
              rc == 1 and "capacity: not even" in out, (rc, out, err))
    finally:
        srv.stop()


# ---- transcribe --server ----

def suite_transcribe(a, tmp):
    all_modes = modes(a.case)
    wav = os.path.join(a.case, "audio.wav")
    srv = Server(a.server, a.model, tmp)
    srv2 = Server(a.server, a.model, tmp, "--auth-token", "sekrit")
    try:
        variants = [[]]
        for chunk, texts in (all_modes[2:3] or all_modes[:1]):
            for dec in texts:
                variants.append(["--chunk-ms", str(chunk), "--decoder", dec])
        for extra in variants:
            for fmt in ("text", "json", "srt", "vtt"):
                lrc, lout, lerr = run([a.transcribe, "--model", a.model, "--format", fmt] + extra + [wav])
                rrc, rout, rerr = run([a.transcribe, "--server", srv.url, "--format", fmt] + extra + [wav])
                name = "transcribe --server %s %s: same output as local mode" % (fmt, " ".join(extra) or "(defaults)")
                if fmt == "json":
                    try:
                        lj, rj = json.loads(lout), json.loads(rout)
                        same = (lj["text"] == rj["text"] and lj["words"] == rj["words"]
                                and all(lj.get(k) == rj.get(k) for k in ("file", "duration", "model", "chunk_ms", "decoder")))
                    except (ValueError, KeyError) as e:
                        same = False
                        rerr += repr(e)
                else:
                    same = lout == rout
                check(name, lrc == 0 and rrc == 0 and same and lout.strip() != "",
                      "local rc %d %r\nserver rc %d %r %s" % (lrc, lout[:300], rrc, rout[:300], rerr))
        # text must also be the manifest's streaming text for the default mode
        chunk, texts = all_modes[0]
        dec = "rnnt" if "rnnt" in texts else "ctc"
        rc, out, err = run([a.transcribe, "--server", srv.url, wav])
        check("transcribe --server: the golden streaming text", rc == 0 and out == texts[dec] + "\n", (out, texts[dec], err))
        # several files: FILE: prefixes, as local mode
        two = os.path.join(tmp, "copy.wav")
        shutil.copy(wav, two)
        lrc, lout, _ = run([a.transcribe, "--model", a.model, wav, two])
        rrc, rout, rerr = run([a.transcribe, "--server", srv.url, wav, two])
        check("transcribe --server: two files, same output as local mode", lrc == rrc == 0 and lout == rout,
              (lout, rout, rerr))
        # 40 s: many messages, segments cut at the server's maximum length, one transcript all the same
        long_wav = os.path.join(tmp, "long.wav")
        with wave.open(wav) as r:
            params, frames = r.getparams(), r.readframes(r.getnframes())
        with wave.open(long_wav, "wb") as w:
            w.setparams(params)
            w.writeframes(frames * 10)
        for fmt in ("text", "json"):
            extra = ["--chunk-ms", "160", "--decoder", "ctc", "--format", fmt]
            lrc, lout, _ = run([a.transcribe, "--model", a.model] + extra + [long_wav])
            rrc, rout, rerr = run([a.transcribe, "--server", srv.url] + extra + [long_wav])
            check("transcribe --server, a 40 s file, %s: same output as local mode" % fmt,
                  lrc == rrc == 0 and lout == rout and len(lout) > 100, (lout[:300], rout[:300], rerr))
        # a missing file among good ones: reported, the others transcribed, exit 1
        rrc, rout, rerr = run([a.transcribe, "--server", srv.url, os.path.join(tmp, "missing.wav"), wav])
        check("transcribe --server: a missing file is reported, the other transcribed, exit 1",
              rrc == 1 and "missing.wav" in rerr and rout.strip().endswith(texts[dec]), (rrc, rout, rerr))
        # real-time pacing takes about the audio's length and gives the same text
        t0 = time.time()
        rrc, rout, rerr = run([a.transcribe, "--server", srv.url, "--realtime", wav])
        took = time.time() - t0
        check("transcribe --server --realtime: same text, paced (took %.1f s for 4 s)" % took,
              rrc == 0 and rout == texts[dec] + "\n" and took > 3.5, (rout, rerr))
        rrc, rout, rerr = run([a.transcribe, "--server", srv2.url, "--token", "sekrit", wav])
        check("transcribe --server --token: works on a server with --auth-token",
              rrc == 0 and rout == texts[dec] + "\n", (rrc, rout, rerr))
    finally:
        srv.stop()
        srv2.stop()


# ---- errors ----

def suite_errors(a, tmp):
    wav = os.path.join(a.case, "audio.wav")
    down = "ws://127.0.0.1:%d/v1/listen" % free_port()
    rc, out, err = run([a.transcribe, "--server", down, wav])
    check("transcribe --server, nothing listening: exit 3, 'cannot reach'", rc == 3 and "cannot reach" in err
          and "Connection refused" in err, (rc, err))
    rc, out, err = run([a.loadtest, "--url", down, "--audio", wav, "--sessions", "2"])
    check("loadtest, nothing listening: exit 4, 'cannot reach'", rc == 4 and "cannot reach" in err, (rc, err))
    for bad in ("http//127.0.0.1:1/v1/listen", "ws://:80/x", "ws://127.0.0.1:99999/v1/listen", "ftp://x/y", ""):
        rc, out, err = run([a.transcribe, "--server", bad, wav])
        rc2, out2, err2 = run([a.loadtest, "--url", bad, "--audio", wav])
        check("bad URL %r: exit 2 and 'bad URL' from both tools" % bad,
              rc == 2 and rc2 == 2 and "bad URL" in err and "bad URL" in err2, (rc, err, rc2, err2))
    rc, out, err = run([a.transcribe, "--server", "ws://no-such-host.invalid:8080/v1/listen", wav])
    check("transcribe --server, unknown host: exit 3 and a sentence", rc == 3 and "cannot reach" in err, (rc, err))
    rc, out, err = run([a.transcribe, "--server", down, "--model", a.model, wav])
    check("transcribe --server with --model: usage error, exit 2", rc == 2 and "exclude" in err, (rc, err))
    rc, out, err = run([a.loadtest, "--url", down, "--audio", os.path.join(tmp, "nothing-here")])
    check("loadtest, missing audio: exit 3, named", rc == 3 and "nothing-here" in err, (rc, err))
    rc, out, err = run([a.loadtest, "--help"])
    check("loadtest --help: exit 0, usage", rc == 0 and "--find-capacity" in out and "--url" in out, (rc, out))
    rc, out, err = run([a.loadtest, "--url", down, "--audio", wav, "--sessions", "x"])
    check("loadtest, bad number: exit 2", rc == 2 and "--sessions" in err, (rc, err))

    # wss:// with a self-signed certificate: refused with a hint, accepted with --insecure
    if shutil.which("openssl"):
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        tls = Server(a.server, a.model, tmp, "--tls-cert", cert, "--tls-key", key)
        try:
            wss = "wss://127.0.0.1:%d/v1/listen" % tls.port
            rc, out, err = run([a.transcribe, "--server", wss, wav])
            check("transcribe --server wss:// with a self-signed certificate: exit 3, suggests --insecure",
                  rc == 3 and "--insecure" in err, (rc, err))
            lrc, lout, _ = run([a.transcribe, "--model", a.model, wav])
            rc, out, err = run([a.transcribe, "--server", wss, "--insecure", wav])
            check("transcribe --server wss:// --insecure: the local text", rc == 0 and out == lout, (rc, out, lout, err))
            rc, out, err = run([a.loadtest, "--url", wss, "--insecure", "--audio", wav, "--sessions", "2",
                                "--duration-s", "1", "--report-s", "0"])
            check("loadtest wss:// --insecure: sessions close 1000", rc == 0 and "closes: 1000 x2" in out, (rc, out, err))
        finally:
            tls.stop()
    else:
        print("skip  wss:// checks: no openssl command")

    srv = Server(a.server, a.model, tmp, "--auth-token", "sekrit", "--max-sessions", "2")
    try:
        rc, out, err = run([a.transcribe, "--server", srv.url, wav])
        check("transcribe --server without the token: exit 3, says 401 and --token",
              rc == 3 and "401" in err and "--token" in err, (rc, err))
        rc, out, err = run([a.loadtest, "--url", srv.url, "--audio", wav, "--sessions", "2", "--duration-s", "1",
                            "--report-s", "0"])
        check("loadtest without the token: exit 1, says 401 and --token", rc == 1 and "401" in err + out
              and "--token" in err + out, (rc, out, err))
        report = os.path.join(tmp, "full.json")
        rc, out, err = run([a.loadtest, "--url", srv.url, "--token", "sekrit", "--audio", wav, "--sessions", "4",
                            "--ramp-s", "0.3", "--duration-s", "2", "--report-s", "0", "--json", report])
        r = json.load(open(report)) if os.path.exists(report) else {}
        check("loadtest over --max-sessions: refused sessions counted as over_capacity with close 1013, exit 1",
              rc == 1 and r.get("sessions", {}).get("over_capacity", 0) >= 1 and r.get("closes", {}).get("1013", 0) >= 1
              and r.get("closes", {}).get("1000", 0) >= 1 and "1013" in out, (rc, out, err, r.get("closes")))
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("suite", choices=("loadtest", "transcribe", "errors"))
    ap.add_argument("--server", required=True)
    ap.add_argument("--loadtest", required=True)
    ap.add_argument("--transcribe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="test_clients.")
    try:
        {"loadtest": suite_loadtest, "transcribe": suite_transcribe, "errors": suite_errors}[a.suite](a, tmp)
    except Exception as e:  # noqa: a crash of the suite is a failure, not a traceback alone
        check("suite %s ran to its end" % a.suite, False, repr(e))
        for name in sorted(os.listdir(tmp)):
            if name.startswith("server-"):
                print("      %s: %s" % (name, open(os.path.join(tmp, name)).read()[-800:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
