#!/usr/bin/env python3
# make_data.py - synthetic English speech for training, from Debian's voices and texts.
#
# Text: sentences from Debian packages (fortune files of fortunes/fortunes-min, WordNet glosses
# and examples of wordnet-base, or any text files given), kept only when a voice reads exactly
# what is written: ASCII letters, spaces, apostrophes and plain punctuation; no digits, symbols,
# abbreviations, acronyms or stray single letters; 3..20 words.  The reference is the sentence
# lower-cased with punctuation dropped (hyphens become spaces, apostrophes inside words stay).
# Sentences are deduplicated and split by a hash of the reference: train 90 %, dev 5 %,
# test 5 %, so the splits are disjoint and stable whatever else changes.
#
# Voices (weights favour flite and festival's slt HTS): flite slt, awb, rms, kal16; festival
# cmu_us_slt_arctic_hts and kal_diphone; espeak-ng en-us / en / en-gb-x-rp variants.
#
# Augmentation (train only, each with a probability): tempo 0.85..1.15, pitch +-300 cents, a
# telephone channel (300..3400 Hz band, through 8 kHz), noise (white, pink or brown) at
# 5..30 dB SNR, random level.  Output: 16 kHz mono 16-bit FLAC (or Ogg Opus with --format opus),
# one file per utterance, and NeMo manifests (JSON lines: audio_filepath, duration, text, plus
# voice and aug for bookkeeping).  Dev and test are clean (no augmentation).
#
# Caveat on "reads exactly": the filters remove what voices expand (numbers, abbreviations,
# acronyms); what remains is read word for word, but rare words may be mispronounced by a voice's
# letter-to-sound rules.  No speech recogniser checks the audio.
#
#   /usr/bin/python3 models/train/make_data.py --out /tmp/earshot-data --train 20000 --dev 300 --test 300 --jobs 2
#
# Needs: espeak-ng, flite, festival festvox-kallpc16k festvox-us-slt-hts, sox, fortunes-min (or
# fortunes), wordnet-base, python3-numpy, python3-soundfile.  Never point it at evaluation sets.

import argparse
import glob
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile

SR = 16000

VOICES = [  # (name, weight)
    ("flite:slt", 0.20),
    ("festival:cmu_us_slt_arctic_hts", 0.22),
    ("flite:awb", 0.09),
    ("flite:rms", 0.09),
    ("flite:kal16", 0.07),
    ("festival:kal_diphone", 0.08),
    ("espeak:en-us", 0.10),
    ("espeak:en", 0.08),
    ("espeak:en-gb-x-rp", 0.07),
]

# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------

_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\"-]+$")
_ABBREV = re.compile(r"\b(mr|mrs|ms|dr|st|jr|sr|vs|etc|eg|ie|no|vol|co|inc|ltd|mt|ft|gen|gov|sgt|lt|col|capt|rev|prof)\.", re.I)


def reference_of(sentence):
    """The normalised reference text of a sentence, or None when a voice might not read it
    exactly as written."""
    s = sentence.strip().strip('"').strip()
    if not s or not _ALLOWED.match(s) or _ABBREV.search(s):
        return None
    if re.search(r"\b[A-Za-z]\.", s):  # initials: J. R. R.
        return None
    if "--" in s or "''" in s:
        return None
    words = []
    for raw in re.split(r"\s+", s.replace("-", " ")):
        w = raw.strip(",.;:!?\"")
        if not w:
            continue
        if w.startswith("'") or w.endswith("'") or w.count("'") > 1:
            return None
        if len(w) > 1 and w.isupper():  # acronym: voices spell it
            return None
        if len(w) > 1 and any(c.isupper() for c in w[1:]):  # McDonald, iPhone
            return None
        lw = w.lower()
        if len(lw) == 1 and lw not in ("a", "i"):
            return None
        if len(lw) > 18:
            return None
        words.append(lw)
    if not 3 <= len(words) <= 20:
        return None
    return " ".join(words)


def tts_text_of(sentence):
    """What the voice is given: the sentence with only plain punctuation (for prosody)."""
    s = sentence.strip().strip('"').replace('"', "").replace("-", " ")
    s = re.sub(r"[;:]", ",", s)
    return re.sub(r"\s+", " ", s).strip()


def _sentences(text):
    text = re.sub(r"\s+", " ", text)
    for part in re.split(r"(?<=[.!?])\s+", text):
        yield part


def fortune_sentences(folder="/usr/share/games/fortunes"):
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        if path.endswith((".dat", ".u8")) or os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            data = open(path, encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        for fortune in data.split("\n%\n"):
            # attributions ("-- Mark Twain") and dialogue markers are dropped
            lines = [ln for ln in fortune.split("\n") if not ln.strip().startswith("--")]
            for s in _sentences(" ".join(lines)):
                yield s


def wordnet_sentences(folder="/usr/share/wordnet"):
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(folder, "data." + pos)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1].strip()
                for part in gloss.split(";"):
                    part = part.strip()
                    if part.startswith('"'):
                        yield part.strip('"')
                    elif part:
                        yield part


def text_file_sentences(paths):
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for s in _sentences(f.read()):
                yield s


def collect_sentences(text_files=()):
    """{reference: tts text}, deduplicated by reference."""
    out = {}
    sources = [fortune_sentences(), wordnet_sentences(), text_file_sentences(text_files)]
    for src in sources:
        for s in src:
            ref = reference_of(s)
            if ref and ref not in out:
                out[ref] = tts_text_of(s)
    return out


def split_of(ref):
    h = int(hashlib.md5(ref.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if h < 90 else ("dev" if h < 95 else "test")


# ---------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------

def synthesize(voice, text, wav, rng):
    engine, name = voice.split(":", 1)
    if engine == "flite":
        cmd = ["flite", "-voice", name, "-t", text, "-o", wav]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    elif engine == "festival":
        cmd = ["text2wave", "-eval", "(voice_%s)" % name, "-o", wav]
        subprocess.run(cmd, input=text.encode("utf-8"), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
    else:
        speed = rng.randint(135, 185)
        variant = rng.choice(["", "+m1", "+m3", "+f2", "+f3", "+m7"])
        cmd = ["espeak-ng", "-v", name + variant, "-s", str(speed), "-w", wav, text]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def colored_noise(n, kind, rng):
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def render(job):
    """One utterance: TTS, sox effects to 16 kHz mono, noise, level, FLAC.  Returns the manifest
    entry or None on failure."""
    idx, ref, text, voice, split, out_path, augment, seed = job
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="earshot-tts-")
    try:
        raw = os.path.join(tmp, "raw.wav")
        synthesize(voice, text, raw, rng)
        eff = []
        aug = {}
        if augment:
            if rng.random() < 0.5:
                aug["tempo"] = round(rng.uniform(0.85, 1.15), 3)
                eff += ["tempo", "-s", str(aug["tempo"])]
            if rng.random() < 0.3:
                aug["pitch"] = rng.randint(-300, 300)
                eff += ["pitch", str(aug["pitch"])]
            if rng.random() < 0.1:
                aug["telephone"] = True
                eff += ["sinc", "300-3400", "rate", "8000"]
        mid = os.path.join(tmp, "mid.wav")
        cmd = ["sox", "-q", raw, "-c", "1", "-b", "32", "-e", "floating-point", mid, "remix", "-"] + eff + [
            "rate", str(SR)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        x, sr = soundfile.read(mid, dtype="float64")
        assert sr == SR
        if x.ndim > 1:
            x = x.mean(axis=1)
        # trim digital silence beyond 0.3 s at both ends, keep a natural margin
        nz = np.nonzero(np.abs(x) > 1e-4)[0]
        if len(nz) == 0:
            return None
        a = max(0, nz[0] - int(0.3 * SR))
        b = min(len(x), nz[-1] + int(0.3 * SR))
        x = x[a:b]
        if augment and rng.random() < 0.5:
            kind = rng.choice(["white", "pink", "brown"])
            snr = rng.uniform(5.0, 30.0)
            aug["noise"] = kind
            aug["snr_db"] = round(snr, 1)
            p_sig = np.mean(x ** 2) + 1e-12
            noise = colored_noise(len(x), kind, nrng)
            noise *= np.sqrt(p_sig / (10 ** (snr / 10.0)) / (np.mean(noise ** 2) + 1e-12))
            x = x + noise
        peak = np.max(np.abs(x)) + 1e-9
        level_db = rng.uniform(-20.0, -1.0) if augment else -3.0
        x = x / peak * (10 ** (level_db / 20.0))
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        if out_path.endswith(".opus"):  # Ogg Opus through libsndfile (>= 1.0.29): ~4x smaller
            soundfile.write(out_path, x.astype(np.float32), SR, format="OGG", subtype="OPUS")
        else:
            soundfile.write(out_path, x.astype(np.float32), SR, subtype="PCM_16", format="FLAC")
        return {"audio_filepath": out_path, "duration": round(len(x) / SR, 3), "text": ref,
                "voice": voice, "aug": aug}
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as e:
        print("make_data: utterance %d (%s) failed: %s" % (idx, voice, e), file=sys.stderr)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Progress:
    """A line on stderr about every 30 s while utterances render (a large set takes half an hour):
    how many are done, the audio made, and the time left at the pace so far."""

    def __init__(self, total, every_s=30.0):
        self.total, self.every_s = total, every_s
        self.done = self.failed = 0
        self.audio_s = 0.0
        self.start = self.last = time.monotonic()

    def done_one(self, result):
        self.done += 1
        if result:
            self.audio_s += result["duration"]
        else:
            self.failed += 1
        now = time.monotonic()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            left = (now - self.start) / self.done * (self.total - self.done)
            print("make_data: %d/%d utterances (%.2f h of audio%s), %d min, about %d min left"
                  % (self.done, self.total, self.audio_s / 3600.0,
                     ", %d failed" % self.failed if self.failed else "",
                     (now - self.start) // 60, round(left / 60.0)), file=sys.stderr, flush=True)

    def finish(self):
        print("make_data: rendered %d utterances in %.1f min" % (self.done, (time.monotonic() - self.start) / 60.0),
              file=sys.stderr, flush=True)


def pick_voice(rng, voices):
    names, weights = zip(*voices)
    return rng.choices(names, weights=weights)[0]


def available_voices():
    out = []
    for name, w in VOICES:
        engine, v = name.split(":", 1)
        if engine == "flite" and shutil.which("flite"):
            out.append((name, w))
        elif engine == "festival" and shutil.which("text2wave") and glob.glob(
                "/usr/share/festival/voices/*/%s" % v):
            out.append((name, w))
        elif engine == "espeak" and shutil.which("espeak-ng"):
            out.append((name, w))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="synthetic speech data for Earshot's training recipe")
    ap.add_argument("--out", required=True, help="output folder (audio/ and manifests)")
    ap.add_argument("--train", type=int, default=1000, help="training utterances")
    ap.add_argument("--dev", type=int, default=100)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--voices", default="", help="comma-separated subset, e.g. espeak:en-us")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--format", choices=["flac", "opus"], default="flac",
                    help="flac: 16-bit lossless (~68 MB per hour); opus: Ogg Opus (~17 MB per hour, lossy)")
    ap.add_argument("--text-files", nargs="*", default=[], help="extra plain-text sources")
    ap.add_argument("--sentences-out", help="write the sentence splits here (one JSON per line)")
    ap.add_argument("--render", default="train,dev,test",
                    help="splits to render (default all).  The choices of every split are drawn "
                         "as usual, so e.g. --render dev,test rebuilds exactly the dev and test sets "
                         "of a full run with the same counts and seed, without its training audio")
    a = ap.parse_args(argv)
    render_splits = set(x for x in a.render.split(",") if x)
    if not render_splits or render_splits - {"train", "dev", "test"}:
        ap.error("--render takes a comma-separated subset of train,dev,test")

    voices = available_voices()
    if a.voices:
        want = set(a.voices.split(","))
        voices = [(n, w) for n, w in voices if n in want]
    if not voices:
        print("make_data: no voice available", file=sys.stderr)
        return 1
    sents = collect_sentences(a.text_files)
    by_split = {"train": [], "dev": [], "test": []}
    for ref in sorted(sents):
        by_split[split_of(ref)].append(ref)
    print("sentences: %s; voices: %s" % ({k: len(v) for k, v in by_split.items()},
                                         ", ".join(n for n, _ in voices)), flush=True)
    os.makedirs(a.out, exist_ok=True)
    if a.sentences_out:
        with open(a.sentences_out, "w") as f:
            for k, refs in by_split.items():
                for r in refs:
                    f.write(json.dumps({"split": k, "text": r}) + "\n")

    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    jobs = []
    for split, count in (("train", a.train), ("dev", a.dev), ("test", a.test)):
        refs = by_split[split]
        if count and not refs:
            print("make_data: no %s sentences" % split, file=sys.stderr)
            return 1
        order = list(range(len(refs)))
        rng.shuffle(order)
        for i in range(count):
            ref = refs[order[i % len(order)]]  # cycles (with other voices) past the pool size
            voice = pick_voice(rng, voices)
            path = os.path.join(a.out, "audio", split, "%s_%06d.%s" % (split, i, a.format))
            augment = split == "train" and not a.no_augment
            job_seed = rng.getrandbits(32)  # drawn even when not rendered: later splits stay the same
            if split in render_splits:
                jobs.append((len(jobs), ref, sents[ref], voice, split, path, augment, job_seed))

    results = {"train": [], "dev": [], "test": []}
    progress = Progress(len(jobs))
    if a.jobs > 1:
        with multiprocessing.Pool(a.jobs) as pool:
            it = pool.imap(render, jobs, chunksize=4)
            for job, r in zip(jobs, it):
                if r:
                    results[job[4]].append(r)
                progress.done_one(r)
    else:
        for job in jobs:
            r = render(job)
            if r:
                results[job[4]].append(r)
            progress.done_one(r)
    progress.finish()
    for split, items in results.items():
        if split not in render_splits:
            continue
        with open(os.path.join(a.out, split + ".json"), "w", encoding="utf-8") as f:
            for r in items:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        hours = sum(r["duration"] for r in items) / 3600.0
        print("%s: %d utterances, %.2f h -> %s" % (split, len(items), hours, os.path.join(a.out, split + ".json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
