#!/usr/bin/env python3
# opus_pack.py - training data as one compact file of Opus packets, readable with nothing but
# libopus, Python and numpy.
#
# Why: the GPU machines that can train a model in minutes have PyTorch but no libsndfile, no
# text-to-speech voices and no way to install anything, and what travels to them is limited to
# 64 MiB. Five hours of 16 kHz speech is 576 MB as PCM and 340 MB as FLAC, but about 30 MB as
# Opus at 12 kbit/s. So data is made here (make_data.py), packed with this tool, carried along
# with a copy of libopus, and decoded into memory there with ctypes.
#
# A pack is a folder:
#   audio.bin     the packets of every utterance, back to back, each as a 2-byte little-endian
#                 length and the packet (20 ms of 16 kHz mono per packet)
#   index.jsonl   one line per utterance: text, duration, samples (to trim the last packet),
#                 offset and packets in audio.bin, and the token ids when a tokenizer was given
#                 (so the reader needs no SentencePiece)
#   libopus.so.0  the library that encoded it, so a machine without one can decode
#
# Opus delays its output by the encoder's look-ahead; each utterance is padded at the end by
# that many samples when encoded and the same count is dropped from the front when decoded, so
# decoded audio lines up with the original sample for sample (up to the codec's loss).
#
#   /usr/bin/python3 models/train/opus_pack.py --manifest data/train.json --tokenizer tok/ --out pack/train
#   /usr/bin/python3 models/train/opus_pack.py --check pack/train          # decode and summarise

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import struct
import sys

import numpy as np

SR = 16000
FRAME = 320  # 20 ms
APPLICATION_AUDIO = 2049
SET_BITRATE = 4002
GET_LOOKAHEAD = 4027
RESET_STATE = 4028


def load_libopus(path=None):
    """libopus through ctypes: the given file, the pack's copy, or the system's."""
    name = path or ctypes.util.find_library("opus") or "libopus.so.0"
    lib = ctypes.CDLL(name)
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encode.restype = ctypes.c_int
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_int]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encoder_ctl.restype = ctypes.c_int
    lib.opus_decoder_ctl.restype = ctypes.c_int
    return lib


class Encoder:
    def __init__(self, lib, bitrate):
        self.lib = lib
        err = ctypes.c_int(0)
        self.enc = lib.opus_encoder_create(SR, 1, APPLICATION_AUDIO, ctypes.byref(err))
        if err.value != 0 or not self.enc:
            raise RuntimeError("opus_encoder_create failed (%d)" % err.value)
        lib.opus_encoder_ctl(ctypes.c_void_p(self.enc), ctypes.c_int(SET_BITRATE), ctypes.c_int(bitrate))
        look = ctypes.c_int(0)
        lib.opus_encoder_ctl(ctypes.c_void_p(self.enc), ctypes.c_int(GET_LOOKAHEAD), ctypes.byref(look))
        self.lookahead = look.value
        self.out = ctypes.create_string_buffer(4000)

    def encode(self, pcm16):
        """int16 samples -> list of packets (bytes); the state is reset first."""
        self.lib.opus_encoder_ctl(ctypes.c_void_p(self.enc), ctypes.c_int(RESET_STATE))
        x = np.concatenate([pcm16, np.zeros(self.lookahead, np.int16)])
        pad = (-len(x)) % FRAME
        x = np.ascontiguousarray(np.concatenate([x, np.zeros(pad, np.int16)]))
        packets = []
        for i in range(0, len(x), FRAME):
            n = self.lib.opus_encode(self.enc, x[i:i + FRAME].ctypes.data, FRAME, self.out, len(self.out))
            if n < 0:
                raise RuntimeError("opus_encode failed (%d)" % n)
            packets.append(self.out.raw[:n])
        return packets

    def close(self):
        self.lib.opus_encoder_destroy(self.enc)


class Decoder:
    def __init__(self, lib):
        self.lib = lib
        err = ctypes.c_int(0)
        self.dec = lib.opus_decoder_create(SR, 1, ctypes.byref(err))
        if err.value != 0 or not self.dec:
            raise RuntimeError("opus_decoder_create failed (%d)" % err.value)
        self.frame = np.zeros(FRAME * 6, np.int16)

    def decode(self, blob, n_packets, samples, lookahead):
        """Packets (2-byte length + data, n_packets of them) -> float32 samples in [-1, 1)."""
        self.lib.opus_decoder_ctl(ctypes.c_void_p(self.dec), ctypes.c_int(RESET_STATE))
        out = np.empty(n_packets * FRAME, np.int16)
        pos, o = 0, 0
        for _ in range(n_packets):
            (n,) = struct.unpack_from("<H", blob, pos)
            pos += 2
            pkt = blob[pos:pos + n]
            pos += n
            got = self.lib.opus_decode(self.dec, pkt, n, self.frame.ctypes.data, len(self.frame), 0)
            if got < 0:
                raise RuntimeError("opus_decode failed (%d)" % got)
            out[o:o + got] = self.frame[:got]
            o += got
        return out[lookahead:lookahead + samples].astype(np.float32) / 32768.0

    def close(self):
        self.lib.opus_decoder_destroy(self.dec)


def pack(manifest, out_dir, bitrate=12000, sp=None, max_duration=None):
    import soundfile  # only the packing side needs it
    os.makedirs(out_dir, exist_ok=True)
    lib_path = ctypes.util.find_library("opus")
    lib = load_libopus()
    enc = Encoder(lib, bitrate)
    base = os.path.dirname(os.path.abspath(manifest))
    n, total, offset = 0, 0.0, 0
    with open(manifest, encoding="utf-8") as f, open(os.path.join(out_dir, "audio.bin"), "wb") as audio, \
            open(os.path.join(out_dir, "index.jsonl"), "w", encoding="utf-8") as index:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            if max_duration and float(d["duration"]) > max_duration:
                continue
            path = d["audio_filepath"] if os.path.isabs(d["audio_filepath"]) else os.path.join(base, d["audio_filepath"])
            x, sr = soundfile.read(path, dtype="int16", always_2d=True)
            if sr != SR:
                raise ValueError("%s: sample rate %d (16000 expected)" % (path, sr))
            pcm = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1).astype(np.int16)
            packets = enc.encode(pcm)
            blob = b"".join(struct.pack("<H", len(p)) + p for p in packets)
            audio.write(blob)
            rec = {"text": d["text"], "duration": len(pcm) / SR, "samples": len(pcm), "offset": offset,
                   "bytes": len(blob), "packets": len(packets), "lookahead": enc.lookahead}
            if sp is not None:
                rec["ids"] = sp.encode(d["text"])
            index.write(json.dumps(rec) + "\n")
            offset += len(blob)
            n += 1
            total += len(pcm) / SR
    enc.close()
    real = os.path.realpath(lib_path) if lib_path and os.path.exists(lib_path) else None
    if real is None:
        for cand in ("/usr/lib/x86_64-linux-gnu/libopus.so.0", "/usr/lib/libopus.so.0"):
            if os.path.exists(cand):
                real = os.path.realpath(cand)
                break
    if real:
        shutil.copyfile(real, os.path.join(out_dir, "libopus.so.0"))
    return n, total, offset


def read_index(pack_dir, max_duration=None):
    items = []
    with open(os.path.join(pack_dir, "index.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if max_duration is None or d["duration"] <= max_duration:
                    items.append(d)
    return items


def _decode_range(args):
    pack_dir, lib_path, recs = args
    lib = load_libopus(lib_path)
    dec = Decoder(lib)
    with open(os.path.join(pack_dir, "audio.bin"), "rb") as f:
        blob = f.read()
    out = [dec.decode(memoryview(blob)[r["offset"]:r["offset"] + r["bytes"]].tobytes(), r["packets"], r["samples"],
                      r["lookahead"]) for r in recs]
    dec.close()
    return out


def load(pack_dir, max_duration=None, jobs=1):
    """The pack's utterances as train.py items: text, duration, ids (when packed), and pcm
    (float32), all decoded into memory (jobs processes)."""
    recs = read_index(pack_dir, max_duration)
    own = os.path.join(pack_dir, "libopus.so.0")
    lib_path = own if os.path.exists(own) else None
    try:
        load_libopus(lib_path)
    except OSError:
        lib_path = None  # the copy does not load here: try the system's
    if jobs > 1 and len(recs) > 64:
        import multiprocessing
        step = (len(recs) + jobs - 1) // jobs
        parts = [(pack_dir, lib_path, recs[i:i + step]) for i in range(0, len(recs), step)]
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            pcms = [p for part in pool.map(_decode_range, parts) for p in part]
    else:
        pcms = _decode_range((pack_dir, lib_path, recs))
    items = []
    for r, pcm in zip(recs, pcms):
        it = {"audio": "%s#%d" % (pack_dir, r["offset"]), "duration": r["duration"], "text": r["text"], "pcm": pcm}
        if "ids" in r:
            it["ids"] = r["ids"]
        items.append(it)
    return items


def main(argv=None):
    ap = argparse.ArgumentParser(description="pack a NeMo manifest's audio as Opus packets (or check a pack)")
    ap.add_argument("--manifest", help="NeMo manifest (JSON lines) to pack")
    ap.add_argument("--out", help="pack folder to write")
    ap.add_argument("--tokenizer", help="tokenizer folder: store each utterance's token ids too")
    ap.add_argument("--bitrate", type=int, default=12000, help="bits per second (default 12000)")
    ap.add_argument("--max-duration", type=float, help="leave out longer utterances")
    ap.add_argument("--check", metavar="PACK", help="decode a pack and print what it holds")
    a = ap.parse_args(argv)
    if a.check:
        items = load(a.check, jobs=os.cpu_count() or 1)
        hours = sum(i["duration"] for i in items) / 3600
        peak = max(float(np.abs(i["pcm"]).max()) for i in items) if items else 0.0
        print("%s: %d utterances, %.2f h, peak %.3f, token ids: %s" % (a.check, len(items), hours, peak,
                                                                        "yes" if items and "ids" in items[0] else "no"))
        return 0
    if not a.manifest or not a.out:
        ap.error("--manifest and --out are required (or --check PACK)")
    sp = None
    if a.tokenizer:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import tokenizer as tokenizer_mod
        sp = tokenizer_mod.load(a.tokenizer)
    n, total, size = pack(a.manifest, a.out, a.bitrate, sp, a.max_duration)
    print("packed %d utterances, %.2f h, %.1f MB (%.1f MB per hour) -> %s"
          % (n, total / 3600, size / 1e6, size / 1e6 / max(total / 3600, 1e-9), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
