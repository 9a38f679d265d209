#!/usr/bin/env python3
"""test_web.py - the browser page (clients/web/) in a real, headless Chromium, driven by Playwright.

Usage: test_web.py --server BIN --model MODEL.safetensors --audio FILE.wav --out DIR
                   [--chromium /usr/bin/chromium] [--venv DIR]

Starts earshot-server on free ports and checks, in Chromium with a fake microphone that plays
FILE.wav once (a copy at the browser's capture rate, made by sox without dither, when it can:
then nothing resamples the audio on its way to the page):
  live      Start, the file is captured through the AudioWorklet and streamed, Stop. The samples
            the page sent are the file's, bit for bit (energy envelopes correlate, without sox);
            the finals on the page are exactly the server's text for the file streamed from
            Python at that rate, and for the very messages the page sent (recorded from the
            browser's WebSocket). Partials show on their own line in italics, and only the
            server's; the latency mode chosen is the one used; a latency figure is shown; the
            transcript downloads as text, SRT and VTT.
  opus      the same with Opus from WebCodecs: the page shows the server's text for its packets.
  upload    a file picked in the page is transcribed by POST /v1/audio/transcriptions and the
            page shows the server's segments.
  auth      --auth-token: with ?token= a session runs; without it, or with a wrong one, the page
            says a token is needed.
  full      with --max-sessions 1 and one session held, Start shows the "server is full" message.
  refused   without the fake permission prompt (the microphone is denied), Start says so.
  offline   with the server gone, Start says it cannot be reached.
The random-weights model's text changes with the least change to the audio, which is why the
expected text is computed, not fixed, and why the audio is kept bit-exact.
Screenshots go to DIR (web-*.png). Prints "N passed, N failed" last; exits 1 on failure.
Exits 77 after printing "skipped: no chromium" when Chromium or Playwright is not installed.
"""
import argparse, http.client, json, os, shutil, subprocess, sys, tempfile, time, uuid, wave

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
import test_server as ts  # its WebSocket client (standard library only)

SKIP = 77
NO_NETWORK = ["--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--metrics-recording-only", "--no-default-browser-check",
              "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
              "--disable-client-side-phishing-detection", "--no-pings", "--disable-breakpad"]


def import_playwright(venv):
    """Playwright's sync API, re-running this script under VENV's Python when only it has it."""
    try:
        from playwright.sync_api import sync_playwright
        return sync_playwright
    except ImportError:
        py = os.path.join(venv, "bin", "python") if venv else ""
        if py and os.path.exists(py) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(py, [py] + sys.argv)
        return None


check = ts.check  # counts in ts.passed / ts.failed


class Server(ts.Server):
    def __init__(self, binary, model, *extra):
        super().__init__(binary, model, "--web-root", os.path.join(HERE, "..", "..", "clients", "web"), *extra)
        self.url = "http://127.0.0.1:%d/" % self.port


def replay(port, start, frames):
    """Streams the recorded start message and binary messages again: the finals' joined text."""
    ws = ts.WS(port)
    ws.send_text(start)
    kind, ready = ws.recv()
    for f in frames:
        ws.send_binary(f)
    ws.send_text({"type": "end"})
    msgs, code = ts.collect(ws)
    ws.close()
    return ts.finals_text(msgs), code


def post_file(port, path):
    """POST /v1/audio/transcriptions from Python: the verbose_json answer."""
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        data = f.read()
    body = (("--%s\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n"
             "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: audio/wav\r\n\r\n") % (boundary, boundary, os.path.basename(path))).encode()
    body += data + ("\r\n--%s--\r\n" % boundary).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/audio/transcriptions", body,
              {"Content-Type": "multipart/form-data; boundary=" + boundary})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    return out


def envelope(samples, rate, ms=10):
    n = int(rate * ms / 1000)
    return [sum(x * x for x in samples[i:i + n]) ** 0.5 for i in range(0, len(samples) - n + 1, n)]


def best_correlation(ref, got, max_lag):
    """Highest Pearson correlation of ref[i] against got[i + lag], |lag| <= max_lag frames, over
    at least half of ref: (r, lag). A negative lag: the capture began after the file had."""
    best = (-1.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        a = ref[max(0, -lag):]
        seg = got[max(0, lag):max(0, lag) + len(a)]
        a = a[:len(seg)]
        if len(seg) < len(ref) // 2:
            continue
        ma, mb = sum(a) / len(a), sum(seg) / len(seg)
        cov = sum((x - ma) * (y - mb) for x, y in zip(a, seg))
        va = sum((x - ma) ** 2 for x in a) ** 0.5
        vb = sum((y - mb) ** 2 for y in seg) ** 0.5
        r = cov / (va * vb) if va and vb else 0.0
        best = max(best, (r, lag))
    return best


def align(got, want, n=64):
    """off such that got[i] == want[i + off]: the first non-zero run of got found in want."""
    i0 = next((i for i, v in enumerate(got) if v), None)
    if i0 is None or i0 + n > len(got):
        return None
    pat = got[i0:i0 + n]
    for j in range(len(want) - n + 1):
        if want[j] == pat[0] and want[j:j + n] == pat:
            return j - i0
    return None


def file_runs(got, want, max_runs=8, n=64):
    """Accounts for every captured sample as one of the file's (got[i] == want[i + off]) or as
    silence outside it, letting the offset jump where the browser's own audio pipeline dropped a
    block or filled one with silence (Chromium does under CPU load, before the page sees the
    audio). Returns [(index, offset)] where each run starts, or None when some sample is not the
    file's: resampled, dithered or altered audio matches nowhere."""
    off = align(got, want, n)
    if off is None:
        return None
    runs, i = [(0, off)], 0
    while i < len(got):
        j = i + off
        if got[i] == (want[j] if 0 <= j < len(want) else 0):
            i += 1
            continue
        if len(runs) == max_runs:
            return None
        rest = got[i:]
        new = align(rest, want, n)
        if new is None or new - i == off:
            return None
        off = new - i
        runs.append((i, off))
        i += next(k for k, v in enumerate(rest) if v)  # zeros before it: the filled block
    return runs


def s16(data):
    import array
    a = array.array("h")
    a.frombytes(data[:len(data) // 2 * 2])
    if sys.byteorder != "little":
        a.byteswap()
    return a


# ---- the browser ----

class Browser:
    def __init__(self, pw, chromium, audio, fake_ui=True):
        args = NO_NETWORK + ["--use-fake-device-for-media-stream",
                             "--use-file-for-fake-audio-capture=%s%%noloop" % audio]
        if fake_ui:
            args.append("--use-fake-ui-for-media-stream")
        self.browser = pw.chromium.launch(executable_path=chromium, args=args)
        self.errors = []

    def page(self, url):
        pg = self.browser.new_page(viewport={"width": 900, "height": 700}, accept_downloads=True)
        pg.on("pageerror", lambda e: self.errors.append(str(e)))
        # network errors are expected (the offline case); violations of the server's CSP are not
        pg.on("console", lambda m: ("Content Security Policy" in m.text or "Refused to" in m.text)
              and self.errors.append(m.text))
        pg.goto(url)
        wait_state(pg, "idle")
        return pg

    def close(self):
        self.browser.close()


def wait_state(pg, state, timeout=15000):
    """Waits for what the page is doing (body's data-state). Selectors, not script: the server's
    CSP has no 'unsafe-eval', which Playwright's wait_for_function needs."""
    pg.wait_for_selector("body[data-state=%s]" % state, state="attached", timeout=timeout)


def wait_message(pg):
    """Waits for the session to be over with a message shown; returns the message."""
    wait_state(pg, "idle")
    pg.wait_for_selector("#message:not([hidden])", timeout=15000)
    return pg.inner_text("#message")


def page_finals(pg):
    return " ".join(t.strip() for t in pg.locator("#transcript .text").all_inner_texts() if t.strip())


def test_live(br, srv, audio, out, chunk_ms, exact_rate):
    pg = br.page(srv.url)
    pg.wait_for_selector("#mode option", state="attached")
    modes = pg.eval_on_selector_all("#mode option", "os => os.map(o => +o.value)")
    check("latency modes from /v1/models", chunk_ms in modes, modes)
    pg.select_option("#mode", str(chunk_ms))
    sent, received = [], []
    pg.on("websocket", lambda ws: (ws.on("framesent", lambda data: sent.append(data)),
                                   ws.on("framereceived", lambda data: received.append(json.loads(data)))))
    # what the partial line shows, as it changes (a MutationObserver in the page)
    pg.evaluate("""() => { const el = document.getElementById('partial'); window.shownPartials = [];
        new MutationObserver(() => el.textContent && window.shownPartials.push(el.textContent))
            .observe(el, { childList: true, characterData: true, subtree: true }); }""")
    with wave.open(audio) as w:
        duration = w.getnframes() / w.getframerate()
        ref = envelope(s16(w.readframes(w.getnframes())), w.getframerate())
    pg.click("#start")
    wait_state(pg, "live")
    start = next((json.loads(s) for s in sent if isinstance(s, str)), {})
    rate = start.get("sample_rate", 0)
    check("start message: pcm_s16le at the capture rate", start.get("encoding") == "pcm_s16le" and 8000 <= rate <= 48000
          and start.get("chunk_ms") == chunk_ms, start)
    check("ready: the chosen latency mode", ("%d ms" % chunk_ms) in pg.inner_text("#transcript-title"),
          pg.inner_text("#transcript-title"))
    # the fake microphone plays the file once, then silence: stop a second after its end
    deadline = time.time() + duration + 20
    while time.time() < deadline:
        seconds = sum(len(b) for b in sent if isinstance(b, bytes)) / 2 / max(rate, 1)
        if seconds >= duration + 1.0:
            break
        pg.wait_for_timeout(100)
    pg.screenshot(path=os.path.join(out, "web-live-running.png"), full_page=True)
    pg.click("#stop")
    wait_state(pg, "idle", 30000)
    shown = page_finals(pg)
    pg.screenshot(path=os.path.join(out, "web-live.png"), full_page=True)
    frames = [b for b in sent if isinstance(b, bytes)]
    texts = [json.loads(s) for s in sent if isinstance(s, str)]
    check("control messages: start then end", [t.get("type") for t in texts] == ["start", "end"], texts)
    check("audio messages: whole s16 samples, about 20 ms each",
          frames and all(len(b) % 2 == 0 for b in frames) and
          abs(sorted(len(b) for b in frames)[len(frames) // 2] / 2 / rate - 0.02) < 0.002,
          sorted(set(len(b) for b in frames))[:8])
    got = s16(b"".join(frames))
    r, lag = best_correlation(ref, envelope(got, rate), 150)
    check("captured audio is the file at %d Hz (envelope r=%.3f, offset %d ms)" % (rate, r, lag * 10), r > 0.95,
          "r=%.3f" % r)
    expected, code = replay(srv.port, start, frames)
    check("the same messages streamed again from Python end with 1000", code == 1000, code)
    check("finals on the page are exactly the server's text for what the page sent",
          shown == expected and expected != "", "page %r\n      replay %r" % (shown, expected))
    print("      text: %r" % shown)
    if exact_rate == rate:
        # The fake microphone played a copy of the file at the capture rate, so nothing was
        # resampled on the way: the page must have sent the file's very samples (after the few
        # that came before the page listened, or the silence before the file began).
        with wave.open(audio) as w:
            want = s16(w.readframes(w.getnframes()))
        runs = file_runs(got, want)
        off = runs[0][1] if runs else None
        # A jump or two in a long capture is the browser's audio thread missing a deadline, not
        # the page: the finals were checked above against exactly what the page sent.
        check("captured audio is the file's samples exactly (offset %s samples)" % off,
              runs is not None and len(runs) <= 3, "runs (index, offset): %s" % runs)
        if runs and len(runs) > 1:
            print("      (the browser's audio jumped at %s: not replayed from the file)" % runs[1:])
        if runs and len(runs) == 1:  # the file itself, streamed from Python in messages of the page's sizes
            pcm = bytearray(len(got) * 2)
            lo, hi = max(0, -off), min(len(got), len(want) - off)
            pcm[lo * 2:hi * 2] = want[lo + off:hi + off].tobytes()
            msgs, i = [], 0
            for f in frames:
                msgs.append(bytes(pcm[i:i + len(f)]))
                i += len(f)
            from_file, _ = replay(srv.port, start, msgs)
            check("finals on the page are exactly the server's text for the file streamed at %d Hz" % rate,
                  shown == from_file, "page %r\n      file %r" % (shown, from_file))
    else:
        print("      (no copy of the file at %d Hz: exactness against the file not checked)" % rate)
    partials = [m["text"] for m in received if m.get("type") == "partial" and m.get("text")]
    shown_partials = pg.evaluate("window.shownPartials")
    styles = [pg.eval_on_selector_all(sel, "els => els.map(e => getComputedStyle(e).fontStyle)")
              for sel in ("#partial", "#transcript .text")]
    check("partials shown on their own line, in their own style",
          bool(partials) and shown_partials and set(shown_partials) <= set(partials) and
          pg.inner_text("#partial") == "" and styles[0] == ["italic"] and "italic" not in styles[1],
          (partials, shown_partials, styles))
    lat = pg.inner_text("#latency")
    check("a latency figure is shown", lat.endswith(" ms") and lat[:-3].isdigit(), lat)
    check("no message shown after a normal session", pg.locator("#message").is_hidden(), pg.inner_text("#message"))
    n = pg.locator("#transcript li").count()
    for button, ext, must in (("#dl-txt", "txt", shown.split(" ")[0]), ("#dl-srt", "srt", "1\n00:00:"),
                              ("#dl-vtt", "vtt", "WEBVTT\n\n00:00:")):
        with pg.expect_download() as dl:
            pg.click(button)
        path = os.path.join(out, "web-transcript." + ext)
        dl.value.save_as(path)
        with open(path, encoding="utf-8") as f:
            body = f.read()
        cues = body.count(" --> ")
        check("download %s" % ext, must in body and (ext == "txt" or cues == n) and
              dl.value.suggested_filename.endswith("." + ext), body[:300])
    pg.close()


def probe_rate(pw, chromium, audio, url):
    """The rate the page will capture at: its AudioContext's, when the fake microphone's is the same."""
    br = Browser(pw, chromium, audio)
    try:
        pg = br.page(url)
        ctx, mic = pg.evaluate("""async () => {
            const s = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false,
                noiseSuppression: false, autoGainControl: false } });
            const c = new AudioContext(), rates = [c.sampleRate, s.getAudioTracks()[0].getSettings().sampleRate];
            s.getTracks().forEach((t) => t.stop());
            await c.close();
            return rates; }""")
        return ctx if ctx == mic else 0
    finally:
        br.close()


def copy_at_rate(audio, rate, folder):
    """A copy of the file at `rate` (sox, no dither), or None without sox."""
    sox = shutil.which("sox")
    if not sox or not rate:
        return None
    out = os.path.join(folder, "audio-%d.wav" % rate)
    subprocess.run([sox, "-D", audio, "-r", str(rate), "-b", "16", out], check=True)
    return out


def test_opus(br, srv, audio, out, chunk_ms):
    """Opus through WebCodecs: one packet per message; the page shows the server's text for them."""
    pg = br.page(srv.url)
    if pg.locator("#encoding option[value=opus]").is_disabled():
        print("      (this Chromium has no WebCodecs Opus encoder: Opus not checked)")
        pg.close()
        return
    pg.wait_for_selector("#mode option", state="attached")
    pg.select_option("#mode", str(chunk_ms))
    pg.select_option("#encoding", "opus")
    sent = []
    pg.on("websocket", lambda ws: ws.on("framesent", lambda data: sent.append(data)))
    with wave.open(audio) as w:
        duration = w.getnframes() / w.getframerate()
    pg.click("#start")
    wait_state(pg, "live")
    pg.wait_for_timeout(int((duration + 1.0) * 1000))
    pg.click("#stop")
    wait_state(pg, "idle", 30000)
    shown = page_finals(pg)
    pg.screenshot(path=os.path.join(out, "web-opus.png"), full_page=True)
    start = next((json.loads(t) for t in sent if isinstance(t, str)), {})
    packets = [b for b in sent if isinstance(b, bytes)]
    check("opus: start message asks for opus at 48 kHz", start.get("encoding") == "opus" and
          start.get("sample_rate") == 48000, start)
    check("opus: about one 20 ms packet per message", len(packets) >= duration / 0.02 * 0.9 and
          max(len(b) for b in packets) < 1500, (len(packets), duration))
    expected, code = replay(srv.port, start, packets)
    check("opus: finals on the page are exactly the server's text for the packets sent",
          code == 1000 and shown == expected, "page %r\n      replay %r" % (shown, expected))
    print("      text: %r" % shown)
    check("opus: no message shown", pg.locator("#message").is_hidden(), pg.inner_text("#message"))
    pg.close()


def test_upload(br, srv, audio, out):
    pg = br.page(srv.url)
    want = post_file(srv.port, audio)
    pg.set_input_files("#file", audio)
    pg.wait_for_selector("#upload-status:has-text('Done')", timeout=60000)
    wait_state(pg, "idle")
    shown = page_finals(pg)
    pg.screenshot(path=os.path.join(out, "web-upload.png"), full_page=True)
    expected = " ".join(s["text"].strip() for s in want.get("segments", []) if s["text"].strip())
    check("upload: the page shows the server's verbose_json segments", shown == expected and expected,
          "page %r\n      server %r" % (shown, expected))
    check("upload: titled with the file's name", os.path.basename(audio) in pg.inner_text("#transcript-title"))
    pg.close()


def test_auth(br, binary, model, out):
    """--auth-token: the page passes ?token= on to its fetches and its WebSocket, and says when
    the token is missing or wrong. The server asks the token of the page's own files too, which a
    browser fetches without it, so those requests get it added here (Playwright routing)."""
    token = "web-test-token"
    srv = Server(binary, model, "--auth-token", token)
    try:
        for query, works in (("?token=" + token, True), ("", False), ("?token=wrong", False)):
            pg = br.browser.new_page(viewport={"width": 900, "height": 700})
            pg.on("pageerror", lambda e: br.errors.append(str(e)))
            pg.route(lambda url: "/v1/" not in url, lambda route: route.continue_(
                headers=dict(route.request.headers, authorization="Bearer " + token)))
            pg.goto(srv.url + query)
            wait_state(pg, "idle")
            if works:
                pg.wait_for_selector("#mode option", state="attached")
                pg.click("#start")
                wait_state(pg, "live")
                pg.click("#stop")
                wait_state(pg, "idle", 30000)
                check("auth: with ?token= the page's live session runs", pg.locator("#message").is_hidden(),
                      pg.inner_text("#message"))
            else:
                pg.wait_for_selector("#message:not([hidden])", timeout=15000)
                msg = pg.inner_text("#message")
                check("auth: %s token: the page asks for one" % ("a wrong" if query else "no"),
                      "needs an access token" in msg, msg)
                if not query:
                    pg.screenshot(path=os.path.join(out, "web-auth.png"), full_page=True)
            pg.close()
    finally:
        srv.stop()


def test_full(br, binary, model, out):
    srv = Server(binary, model, "--max-sessions", "1")
    held = None
    try:
        held = ts.WS(srv.port)
        held.send_text({"type": "start"})
        held.recv()
        pg = br.page(srv.url)
        pg.click("#start")
        msg = wait_message(pg)
        pg.screenshot(path=os.path.join(out, "web-full.png"), full_page=True)
        check("server full (1013): the page says so", "server is full" in msg, msg)
        pg.close()
    finally:
        if held:
            held.close()
        srv.stop()


def test_refused(pw, chromium, audio, url, out):
    br = Browser(pw, chromium, audio, fake_ui=False)
    try:
        pg = br.page(url)
        pg.context.clear_permissions()
        pg.click("#start")
        msg = wait_message(pg)
        pg.screenshot(path=os.path.join(out, "web-mic-refused.png"), full_page=True)
        check("microphone refused: the page says so", "Microphone access was refused" in msg, msg)
    finally:
        br.close()


def test_offline(br, srv, out):
    pg = br.page(srv.url)
    srv.stop()
    pg.click("#start")
    msg = wait_message(pg)
    pg.screenshot(path=os.path.join(out, "web-unreachable.png"), full_page=True)
    check("server unreachable: the page says so", "Cannot reach" in msg, msg)
    pg.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True, help="folder for the screenshots and downloads")
    ap.add_argument("--chromium", default=os.environ.get("EARSHOT_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--venv", default="", help="a virtual environment with playwright, used when this Python lacks it")
    ap.add_argument("--chunk-ms", type=int, default=160)
    a = ap.parse_args()

    sync_playwright = import_playwright(a.venv)
    if sync_playwright is None or not os.access(a.chromium, os.X_OK):
        print("skipped: no chromium" + (" (playwright is not installed)" if sync_playwright is None else
                                        " (%s not found)" % a.chromium))
        return SKIP
    os.makedirs(a.out, exist_ok=True)
    audio = os.path.abspath(a.audio)
    ts.TMP = tempfile.mkdtemp(prefix="test_web.")
    srv = None
    try:
        srv = Server(a.server, a.model)
        with sync_playwright() as pw:
            # The fake microphone plays the file at the capture rate when sox can make such a copy
            # (then the page's audio can be compared sample for sample); else the file as it is.
            original = audio
            exact_rate = probe_rate(pw, a.chromium, audio, srv.url)
            copy = copy_at_rate(audio, exact_rate, ts.TMP)
            if copy:
                audio = copy
            else:
                exact_rate = 0
            br = Browser(pw, a.chromium, audio)
            try:
                for name, fn in (("live", lambda: test_live(br, srv, audio, a.out, a.chunk_ms, exact_rate)),
                                 ("opus", lambda: test_opus(br, srv, audio, a.out, a.chunk_ms)),
                                 ("upload", lambda: test_upload(br, srv, original, a.out)),
                                 ("auth", lambda: test_auth(br, a.server, a.model, a.out)),
                                 ("full", lambda: test_full(br, a.server, a.model, a.out)),
                                 ("refused", lambda: test_refused(pw, a.chromium, audio, srv.url, a.out)),
                                 ("offline", lambda: test_offline(br, srv, a.out))):
                    try:
                        fn()
                    except Exception as e:  # a timeout or a crash fails that scenario, not the rest
                        check(name + ": ran to the end", False, "%s: %s" % (type(e).__name__, e))
                check("no script errors in the page", not br.errors, br.errors)
            finally:
                br.close()
    finally:
        if srv:
            srv.stop()
        if ts.failed:
            print("server log kept in " + ts.TMP)
        else:
            shutil.rmtree(ts.TMP, ignore_errors=True)
    print("screenshots in " + os.path.abspath(a.out))
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
