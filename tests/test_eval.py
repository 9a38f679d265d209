#!/usr/bin/env python3
"""test_eval.py - earshot-eval on the golden case: WER 0 when the reference is the text NeMo's
streaming gives (after normalisation: case and punctuation do not count), the exact number of
edits when words are added, both manifest formats, and clear refusals of bad manifests.

Usage: test_eval.py --eval BIN --model MODEL.safetensors --case GOLDEN_CASE_DIR
"""
import argparse, json, os, subprocess, sys, tempfile

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok or not detail else "\n      " + str(detail)[:600]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True)
    a = ap.parse_args()
    man = json.load(open(os.path.join(a.case, "manifest.json")))
    la = man["lookaheads"][0]
    chunk = la["streaming_cfg"]["shift_size"][1] * 10
    dec = "ctc" if la.get("stream_ctc_text") else "rnnt"
    text = la["stream_%s_text" % dec]
    words = text.split()
    wav = os.path.abspath(os.path.join(a.case, "audio.wav"))
    with tempfile.TemporaryDirectory() as tmp:
        jl = os.path.join(tmp, "set.jsonl")
        with open(jl, "w") as f:
            shouted = (text[:1].upper() + text[1:] + ".").replace(" ", ", ", 1)
            f.write(json.dumps({"audio_filepath": wav, "duration": 4.0, "text": shouted}) + "\n")
            f.write(json.dumps({"audio_filepath": wav, "duration": 4.0, "text": "alpha " + text + " omega"}) + "\n")
        out = os.path.join(tmp, "r.json")
        r = subprocess.run([a.eval, "--model", a.model, "--manifest", jl, "--chunk-ms", str(chunk), "--decoder", dec,
                            "--json", out], capture_output=True, text=True, timeout=300)
        rep = json.load(open(out)) if r.returncode == 0 else {}
        m = (rep.get("modes") or [{}])[0]
        u = m.get("utterances", [])
        check("the streaming text as reference, capitalised and punctuated: WER 0",
              len(u) == 2 and u[0]["word_edits"] == 0 and u[0]["hypothesis"] == text, (r.stderr, u[:1]))
        check("two words added to the reference: 2 edits, WER 2/(n+2) overall",
              len(u) == 2 and u[1]["word_edits"] == 2 and abs(m["wer"] - 100.0 * 2 / (2 * len(words) + 2)) < 1e-9,
              (m.get("wer"), u[1:] if u else None))
        check("summary line printed with WER, CER and RTF",
              "mode %4d ms" % chunk in r.stdout and "CER" in r.stdout and "RTF" in r.stdout, r.stdout[-300:])
        tsv = os.path.join(tmp, "set.tsv")
        with open(tsv, "w") as f:
            f.write("file\tduration_s\treference\n%s\t4.0\t%s\n" % (wav, text))
        r = subprocess.run([a.eval, "--model", a.model, "--manifest", tsv, "--chunk-ms", str(chunk), "--decoder", dec,
                            "--quiet"], capture_output=True, text=True, timeout=300)
        check("TSV manifest (file, reference): WER 0.00%", r.returncode == 0 and "WER 0.00%" in r.stdout, r.stdout)
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"audio_filepath": 3}\n')
        r = subprocess.run([a.eval, "--model", a.model, "--manifest", bad], capture_output=True, text=True)
        check("malformed manifest: exit 2 naming the line", r.returncode == 2 and "bad.jsonl:1" in r.stderr, r.stderr)
        with open(bad, "w") as f:
            f.write(json.dumps({"audio_filepath": "missing.wav", "text": "x"}) + "\n")
        r = subprocess.run([a.eval, "--model", a.model, "--manifest", bad, "--chunk-ms", str(chunk)],
                           capture_output=True, text=True)
        check("missing audio file: exit 1 with its name", r.returncode == 1 and "missing.wav" in r.stderr, r.stderr)
        r = subprocess.run([a.eval, "--model", "/nonexistent.safetensors", "--manifest", jl], capture_output=True,
                           text=True)
        check("missing model: exit 3", r.returncode == 3 and "nonexistent" in r.stderr, r.stderr)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
