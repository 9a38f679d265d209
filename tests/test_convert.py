#!/usr/bin/env python3
"""Tests of earshot-convert (models/convert/).

    python3 tests/test_convert.py --golden /work/shared/golden \
        --converter models/convert/earshot-convert [unittest options]

The converter runs as a subprocess under the interpreter running these tests
(so `/usr/bin/python3 tests/test_convert.py ...` checks Debian's Python).
What it writes is read back with a small safetensors reader written here, and
compared with things the converter's own code does not produce: the raw
storage bytes pulled straight out of the checkpoint's zip by a separate
reader in this file, the Hann window and the Slaney mel filterbank computed
from their formulas, the shapes in each case's manifest.json, and the
tokenizer's own tokenizer.vocab / vocab.txt.  Synthetic checkpoints (half and
bfloat16 storages, strided views, shared storages, big-endian, a state dict
nested under 'state_dict') are written by a small PyTorch-format writer here,
without PyTorch.  Bad inputs must give a one-line 'earshot-convert: ' message,
exit status 1 (2 for usage), no traceback and no output file.

Ends with a line 'N passed, N failed'.
"""

import argparse
import collections
import glob
import io
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
import zipfile

import yaml

GOLDEN = None      # set from --golden
CONVERTER = None   # set from --converter

ALIGN = 64
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
METADATA_KEYS = {"earshot.format", "earshot.model_kind", "earshot.config",
                 "earshot.vocabulary", "earshot.source"}


# ---------------------------------------------------------------------------
# Running the converter
# ---------------------------------------------------------------------------

def run_converter(*args):
    return run_converter_at(CONVERTER, *args)


def run_converter_at(script, *args):
    proc = subprocess.run([sys.executable, script] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------
# An independent safetensors reader (strict about the Earshot layout)
# ---------------------------------------------------------------------------

class SafeTensorsFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.blob = f.read()
        if len(self.blob) < 8:
            raise ValueError("file shorter than 8 bytes")
        (n,) = struct.unpack("<Q", self.blob[:8])
        if 8 + n > len(self.blob):
            raise ValueError("header length %d beyond the file" % n)
        raw = self.blob[8:8 + n]
        self.header_text = raw.decode("utf-8")
        self.header_padding = len(raw) - len(raw.rstrip(b" "))
        self.header = json.loads(self.header_text, object_pairs_hook=collections.OrderedDict)
        self.data_start = 8 + n
        self.metadata = self.header.get("__metadata__", {})
        self.tensors = collections.OrderedDict(
            (k, v) for k, v in self.header.items() if k != "__metadata__")

    def info(self, name):
        return self.tensors[name]

    def raw(self, name):
        b, e = self.tensors[name]["data_offsets"]
        return self.blob[self.data_start + b:self.data_start + e]

    def floats(self, name):
        t = self.tensors[name]
        assert t["dtype"] == "F32", t["dtype"]
        data = self.raw(name)
        return struct.unpack("<%df" % (len(data) // 4), data)


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# ---------------------------------------------------------------------------
# An independent reader of PyTorch zip checkpoints (for the golden cases)
# ---------------------------------------------------------------------------

class _IndexUnpickler(pickle.Unpickler):
    """Records what each tensor points at; only the names a state dict uses."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *rest: {
                "storage": storage, "offset": offset, "shape": list(size), "stride": list(stride)}
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError("test reader: unexpected %s.%s" % (module, name))

    def persistent_load(self, pid):
        kind, storage_type, key, location, n = pid
        return {"type": storage_type, "key": key, "numel": n}


def read_checkpoint_index(ckpt_bytes):
    """(state dict index, storages by key) of a PyTorch zip checkpoint."""
    z = zipfile.ZipFile(io.BytesIO(ckpt_bytes))
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    prefix = pkl[:-len("data.pkl")]
    index = _IndexUnpickler(io.BytesIO(z.read(pkl))).load()
    storages = {}
    for name, t in index.items():
        key = t["storage"]["key"]
        if key not in storages:
            storages[key] = z.read(prefix + "data/" + key)
    return index, storages


ITEMSIZE = {"FloatStorage": 4, "LongStorage": 8, "IntStorage": 4, "HalfStorage": 2,
            "BFloat16Storage": 2, "DoubleStorage": 8}


def contiguous_bytes(t, storages):
    """Bytes of a contiguous tensor straight out of its storage."""
    isz = ITEMSIZE[t["storage"]["type"]]
    expected = 1
    for s, st in zip(reversed(t["shape"]), reversed(t["stride"])):
        assert s == 1 or st == expected, "golden tensor is not contiguous"
        expected *= s
    data = storages[t["storage"]["key"]]
    begin = t["offset"] * isz
    return data[begin:begin + numel(t["shape"]) * isz]


# ---------------------------------------------------------------------------
# A minimal writer of PyTorch zip checkpoints (no torch needed)
# ---------------------------------------------------------------------------

class FakeStorage:
    def __init__(self, type_name, data, itemsize):
        self.type_name = type_name
        self.data = data
        self.numel = len(data) // itemsize


class FakeTensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


class FakeParameter:
    """An nn.Parameter wrapping a FakeTensor (pickled via _rebuild_parameter)."""

    def __init__(self, tensor):
        self.tensor = tensor


def write_checkpoint(state, big_endian=False, nest=False):
    """A torch.save-style zip of `state` {name: FakeTensor}.

    pickle writes a global by looking its module up in sys.modules, so fake
    'torch' and 'torch._utils' modules stand in while pickling.
    """
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    def _rebuild_parameter(*args):
        raise AssertionError("never called")

    for fn in (_rebuild_tensor_v2, _rebuild_parameter):
        fn.__module__ = "torch._utils"
        fn.__qualname__ = fn.__name__
        setattr(fake_utils, fn.__name__, fn)
    storage_classes = {}
    for tn in ITEMSIZE:
        cls = type(tn, (), {"__module__": "torch"})
        cls.__qualname__ = tn
        setattr(fake_torch, tn, cls)
        storage_classes[tn] = cls

    keys = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, FakeStorage):
                key = keys.setdefault(id(obj), (str(len(keys)), obj))[0]
                return ("storage", storage_classes[obj.type_name], key, "cpu", obj.numel)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, FakeTensor):
                return (_rebuild_tensor_v2, (obj.storage, obj.offset, tuple(obj.shape),
                                             tuple(obj.stride), False, collections.OrderedDict()))
            if isinstance(obj, FakeParameter):
                return (_rebuild_parameter, (obj.tensor, True, collections.OrderedDict()))
            return NotImplemented

    saved = {m: sys.modules.get(m) for m in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
    try:
        obj = collections.OrderedDict(state)
        if nest:
            obj = {"epoch": 3, "state_dict": obj}
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(obj)
    finally:
        for m, old in saved.items():
            if old is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = old

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "big" if big_endian else "little")
        for key, storage in keys.values():
            data = storage.data
            if big_endian:
                data = swap_bytes(data, ITEMSIZE[storage.type_name])
            z.writestr("archive/data/" + key, data)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def swap_bytes(data, itemsize):
    return b"".join(data[i:i + itemsize][::-1] for i in range(0, len(data), itemsize))


def golden_state(case_dir):
    """The golden checkpoint as {name: FakeTensor} (each its own F32/I64 storage)."""
    with open(os.path.join(case_dir, "model_weights.ckpt"), "rb") as f:
        index, storages = read_checkpoint_index(f.read())
    state = collections.OrderedDict()
    for name, t in index.items():
        tn = t["storage"]["type"]
        data = contiguous_bytes(t, storages)
        state[name] = FakeTensor(FakeStorage(tn, data, ITEMSIZE[tn]), 0, t["shape"],
                                 row_major_strides(t["shape"]))
    return state


def row_major_strides(shape):
    strides = []
    acc = 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= s
    return list(reversed(strides))


# ---------------------------------------------------------------------------
# Building .nemo variants
# ---------------------------------------------------------------------------

def nemo_members(case_dir):
    """{member name: bytes} of a golden model.nemo, in archive order."""
    out = collections.OrderedDict()
    with tarfile.open(os.path.join(case_dir, "model.nemo")) as t:
        for m in t.getmembers():
            if m.isfile():
                out[m.name] = t.extractfile(m).read()
    return out


def write_nemo(path, members, compress=False):
    with tarfile.open(path, "w:gz" if compress else "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def replace_member(members, suffix, data):
    out = collections.OrderedDict()
    for name, old in members.items():
        if name.endswith(suffix):
            if data is None:
                continue
            old = data
        out[name] = old
    return out


DELETE = object()


def edit_config(members, dotted, value):
    """The archive with one config field set (or removed, value=DELETE)."""
    cfg = yaml.safe_load(members["./model_config.yaml"].decode("utf-8"))
    node = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    text = yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
    return replace_member(members, "model_config.yaml", text.encode("utf-8"))


# ---------------------------------------------------------------------------
# Independent references: Hann window, Slaney mel filterbank, vocab files
# ---------------------------------------------------------------------------

def hann_symmetric(n):
    return [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]


def _hz_to_mel(f):
    # Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    logstep = math.log(6.4) / 27.0
    if f >= min_log_hz:
        return min_log_hz / f_sp + math.log(f / min_log_hz) / logstep
    return f / f_sp


def _mel_to_hz(m):
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    if m >= min_log_mel:
        return min_log_hz * math.exp(logstep * (m - min_log_mel))
    return f_sp * m


def slaney_filterbank(sr, n_fft, n_mels):
    """Triangular filters on the Slaney mel scale, area-normalised (norm='slaney')."""
    n_bins = n_fft // 2 + 1
    fft_freqs = [i * (sr / 2) / (n_bins - 1) for i in range(n_bins)]
    lo, hi = _hz_to_mel(0.0), _hz_to_mel(sr / 2)
    mel_f = [_mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    rows = []
    for m in range(n_mels):
        left, centre, right = mel_f[m], mel_f[m + 1], mel_f[m + 2]
        enorm = 2.0 / (right - left)
        row = []
        for f in fft_freqs:
            up = (f - left) / (centre - left)
            down = (right - f) / (right - centre)
            row.append(max(0.0, min(up, down)) * enorm)
        rows.append(row)
    return rows


def vocab_file_pieces(case_dir):
    with open(os.path.join(case_dir, "tokenizer.vocab"), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[0] for line in f if line.strip("\n")]


def nemo_vocab_txt(pieces):
    """NeMo's vocab.txt from pieces: word-initial '▁x' -> 'x', others '##x'
    ('▁' alone stays), the first piece (<unk>) left out."""
    out = []
    for p in pieces[1:]:
        if p == "\u2581":
            out.append(p)
        elif p.startswith("\u2581"):
            out.append(p[1:])
        else:
            out.append("##" + p)
    return out


def f16_bits_to_float(h):
    sign = -1.0 if h & 0x8000 else 1.0
    exp = (h >> 10) & 0x1F
    frac = h & 0x3FF
    if exp == 0:
        return sign * frac * 2.0 ** -24
    if exp == 31:
        return sign * (float("inf") if frac == 0 else float("nan"))
    return sign * (1 + frac / 1024.0) * 2.0 ** (exp - 15)


# ---------------------------------------------------------------------------
# Checks of one converted golden case (methods are generated per case)
# ---------------------------------------------------------------------------

class GoldenCase:
    """A converted golden case, converted once and shared by its tests."""

    _cache = {}

    @classmethod
    def get(cls, case_dir):
        if case_dir not in cls._cache:
            cls._cache[case_dir] = cls(case_dir)
        return cls._cache[case_dir]

    def __init__(self, case_dir):
        self.dir = case_dir
        self.tmp = tempfile.mkdtemp(prefix="earshot-convert-test-")
        self.out = os.path.join(self.tmp, "model.safetensors")
        self.rc, self.stdout, self.stderr = run_converter(os.path.join(case_dir, "model.nemo"), self.out)
        with open(os.path.join(case_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.st = SafeTensorsFile(self.out) if self.rc == 0 else None
        # The checkpoint as it is inside model.nemo (the member the converter read).
        ckpt = [d for n, d in nemo_members(case_dir).items() if n.endswith("model_weights.ckpt")][0]
        self.index, self.storages = read_checkpoint_index(ckpt)

    @classmethod
    def cleanup(cls):
        for case in cls._cache.values():
            shutil.rmtree(case.tmp, ignore_errors=True)


def check_converts(self, c):
    self.assertEqual(c.rc, 0, "converter failed: " + c.stderr)
    self.assertEqual(c.stderr, "")
    lines = c.stdout.strip().splitlines()
    self.assertEqual(len(lines), 1, c.stdout)
    self.assertIn(c.manifest["model_kind"], lines[0])
    self.assertIn("d_model %d" % c.manifest["encoder"]["d_model"], lines[0])
    looks = " ".join("[%d,%d]" % tuple(la["att_context_size"]) for la in c.manifest["lookaheads"])
    self.assertIn("look-aheads %s," % looks, lines[0])


def check_layout(self, c):
    st = c.st
    self.assertEqual(st.data_start % ALIGN, 0, "data section not 64-byte aligned")
    self.assertTrue(st.header_text.startswith("{"))
    self.assertEqual(st.header_text[len(st.header_text) - st.header_padding:].strip(" "), "")
    spans = []
    for name, t in st.tensors.items():
        begin, end = t["data_offsets"]
        self.assertIn(t["dtype"], DTYPE_SIZES, name)
        self.assertEqual(end - begin, numel(t["shape"]) * DTYPE_SIZES[t["dtype"]], name)
        self.assertEqual((st.data_start + begin) % ALIGN, 0, "%s not 64-byte aligned" % name)
        spans.append((begin, end, name))
    # In header order, no overlaps, and the file ends with the last tensor.
    self.assertEqual(spans, sorted(spans))
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        self.assertLessEqual(e0, b1, "%s overlaps %s" % (n0, n1))
        self.assertLess(b1 - e0, ALIGN, "hole of more than alignment padding before " + n1)
    self.assertEqual(st.data_start + spans[-1][1], len(st.blob))


def check_metadata(self, c):
    md = c.st.metadata
    self.assertEqual(set(md), METADATA_KEYS)
    self.assertTrue(all(isinstance(v, str) for v in md.values()))
    self.assertEqual(md["earshot.format"], "1")
    self.assertEqual(md["earshot.model_kind"], c.manifest["model_kind"])
    self.assertEqual(md["earshot.source"], "model.nemo")
    with open(os.path.join(c.dir, "model_config.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    self.assertEqual(json.loads(md["earshot.config"]), cfg)
    # Pieces are written as UTF-8, not \u escapes.
    self.assertIn("\u2581", md["earshot.vocabulary"])


def check_vocabulary(self, c):
    vocab = json.loads(c.st.metadata["earshot.vocabulary"])
    self.assertEqual(len(vocab), c.manifest["vocab_size"])
    self.assertEqual(len(vocab), c.manifest["blank_id"])
    self.assertEqual(vocab, vocab_file_pieces(c.dir))
    with open(os.path.join(c.dir, "vocab.txt"), encoding="utf-8") as f:
        self.assertEqual(nemo_vocab_txt(vocab), f.read().splitlines())


def check_all_tensors_raw(self, c):
    """Every tensor: same name set, shape, and bytes as the raw zip storages."""
    self.assertEqual(list(c.st.tensors), list(c.index))
    for name, t in c.index.items():
        info = c.st.info(name)
        self.assertEqual(info["shape"], t["shape"], name)
        want_dtype = {"FloatStorage": "F32", "LongStorage": "I64"}[t["storage"]["type"]]
        self.assertEqual(info["dtype"], want_dtype, name)
        self.assertEqual(c.st.raw(name), contiguous_bytes(t, c.storages), name)


def check_shapes_from_manifest(self, c):
    enc = c.manifest["encoder"]
    d, k, n_layers = enc["d_model"], enc["conv_kernel_size"], enc["n_layers"]
    n_heads = enc["n_heads"]
    v1 = c.manifest["vocab_size"] + 1
    n_mels = c.manifest["arrays"]["mel"]["shape"][0]
    st = c.st
    self.assertEqual(st.info("preprocessor.featurizer.fb")["shape"], [1, n_mels, 257])
    self.assertEqual(st.info("preprocessor.featurizer.window")["shape"], [400])
    for i in range(n_layers):
        p = "encoder.layers.%d." % i
        for proj in ("linear_q", "linear_k", "linear_v", "linear_out", "linear_pos"):
            self.assertEqual(st.info(p + "self_attn.%s.weight" % proj)["shape"], [d, d])
        self.assertEqual(st.info(p + "self_attn.pos_bias_u")["shape"], [n_heads, d // n_heads])
        self.assertEqual(st.info(p + "conv.depthwise_conv.weight")["shape"], [d, 1, k])
    self.assertNotIn("encoder.layers.%d.norm_out.weight" % n_layers, st.tensors)
    kind = c.manifest["model_kind"]
    if kind in ("ctc", "hybrid"):
        head = "decoder" if kind == "ctc" else "ctc_decoder"
        self.assertEqual(st.info(head + ".decoder_layers.0.weight")["shape"], [v1, d, 1])
    if kind in ("rnnt", "hybrid"):
        self.assertEqual(st.info("decoder.prediction.embed.weight")["shape"][0], v1)
        self.assertEqual(st.info("joint.joint_net.2.weight")["shape"][0], v1)
    cache = c.manifest["lookaheads"][0]["cache_shapes"]["cache_last_time"]
    self.assertEqual(cache[3], k - 1)


def check_window_values(self, c):
    got = c.st.floats("preprocessor.featurizer.window")
    want = hann_symmetric(400)
    self.assertLess(max(abs(a - b) for a, b in zip(got, want)), 1e-6)


def check_filterbank_values(self, c):
    fb = c.st.floats("preprocessor.featurizer.fb")
    n_mels = c.manifest["arrays"]["mel"]["shape"][0]
    rows = [fb[m * 257:(m + 1) * 257] for m in range(n_mels)]
    for m, row in enumerate(rows):
        self.assertGreater(sum(row), 0.0, "mel band %d is empty" % m)
        self.assertGreaterEqual(min(row), 0.0)
    want = slaney_filterbank(16000, 512, n_mels)
    peak = max(max(r) for r in want)
    err = max(abs(a - b) for r, w in zip(rows, want) for a, b in zip(r, w))
    self.assertLess(err, 1e-5 * peak)


CASE_CHECKS = [check_converts, check_layout, check_metadata, check_vocabulary,
               check_all_tensors_raw, check_shapes_from_manifest, check_window_values,
               check_filterbank_values]


class GoldenTests(unittest.TestCase):
    """Filled in by add_golden_tests(): test_<case>_<check> per golden case."""

    @classmethod
    def tearDownClass(cls):
        GoldenCase.cleanup()


def add_golden_tests(golden_dir):
    cases = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(golden_dir, "*", "manifest.json")))

    def test_found_cases(self):
        self.assertTrue(cases, "no golden cases (*/manifest.json) under %s" % golden_dir)

    GoldenTests.test_found_cases = test_found_cases
    for case_dir in cases:
        case = os.path.basename(case_dir)
        for check in CASE_CHECKS:
            def test(self, check=check, case_dir=case_dir):
                c = GoldenCase.get(case_dir)
                if check is not check_converts and c.rc != 0:
                    self.fail("conversion failed: " + c.stderr)
                check(self, c)
            name = "test_%s_%s" % (case, check.__name__[len("check_"):])
            setattr(GoldenTests, name, test)


# ---------------------------------------------------------------------------
# Converting synthetic and broken archives
# ---------------------------------------------------------------------------

def first_case(kind=None):
    for p in sorted(glob.glob(os.path.join(GOLDEN, "*", "manifest.json"))):
        with open(p) as f:
            m = json.load(f)
        if kind is None or m["model_kind"] == kind:
            return os.path.dirname(p)
    raise unittest.SkipTest("no golden case of kind %s" % kind)


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="earshot-convert-test-")
        # (a cleanup, not tearDown: it also runs when a subclass's setUp fails)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def convert_ok(self, members, compress=False):
        src = self.path("in.nemo")
        write_nemo(src, members, compress)
        out = self.path("out.safetensors")
        rc, stdout, stderr = run_converter(src, out)
        self.assertEqual(rc, 0, stderr)
        return SafeTensorsFile(out)

    def assert_refused(self, src, *fragments, rc=1):
        """The converter refuses src cleanly: one prefixed line, no output."""
        out = self.path("out.safetensors")
        got_rc, stdout, stderr = run_converter(src, out)
        self.assertEqual(got_rc, rc, "exit status; stderr: " + stderr)
        self.assertNotIn("Traceback", stderr)
        lines = stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, stderr)
        self.assertTrue(lines[0].startswith("earshot-convert: "), lines[0])
        for frag in fragments:
            self.assertIn(frag, lines[0])
        self.assertFalse(os.path.exists(out), "output written despite the error")
        leftovers = [n for n in os.listdir(self.tmp) if n.startswith(".out.safetensors")]
        self.assertEqual(leftovers, [], "temporary files left behind")
        return lines[0]


class BadInputTests(TempDirTest):
    def setUp(self):
        super().setUp()
        self.case = first_case("ctc")
        self.members = nemo_members(self.case)

    def nemo(self, members, name="bad.nemo"):
        p = self.path(name)
        write_nemo(p, members)
        return p

    def test_missing_input(self):
        self.assert_refused(self.path("nope.nemo"), "nope.nemo", "No such file")

    def test_empty_file(self):
        p = self.path("empty.nemo")
        open(p, "wb").close()
        self.assert_refused(p, "empty")

    def test_not_a_tar(self):
        p = self.path("text.nemo")
        with open(p, "w") as f:
            f.write("hello, this is not an archive\n" * 40)
        self.assert_refused(p, "not a .nemo archive")

    def test_directory_as_input(self):
        os.mkdir(self.path("dir.nemo"))
        self.assert_refused(self.path("dir.nemo"))

    def _cut(self, member_suffix, into):
        src = os.path.join(self.case, "model.nemo")
        with tarfile.open(src) as t:
            m = [m for m in t.getmembers() if m.name.endswith(member_suffix)][0]
        with open(src, "rb") as f:
            data = f.read()
        p = self.path("cut.nemo")
        with open(p, "wb") as f:
            f.write(data[:m.offset_data + into(m.size)])
        return p

    def test_truncated_in_checkpoint(self):
        self.assert_refused(self._cut("model_weights.ckpt", lambda n: n // 2), "truncated")

    def test_truncated_in_config(self):
        self.assert_refused(self._cut("model_config.yaml", lambda n: 10), "truncated")

    def test_truncated_at_member_boundary(self):
        # tarfile itself sees a shorter, valid-looking archive here.
        self.assert_refused(self._cut("model_config.yaml", lambda n: -512), "truncated")

    def test_truncated_in_first_header(self):
        src = os.path.join(self.case, "model.nemo")
        with open(src, "rb") as f:
            data = f.read(700)
        p = self.path("cut.nemo")
        with open(p, "wb") as f:
            f.write(data)
        self.assert_refused(p, "truncated")

    def test_truncated_gzip(self):
        p = self.path("full.nemo")
        write_nemo(p, self.members, compress=True)
        with open(p, "rb") as f:
            data = f.read()
        cut = self.path("cut.nemo")
        with open(cut, "wb") as f:
            f.write(data[:len(data) * 2 // 3])
        self.assert_refused(cut)

    def test_missing_config(self):
        self.assert_refused(self.nemo(replace_member(self.members, "model_config.yaml", None)),
                            "model_config.yaml")

    def test_missing_checkpoint(self):
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", None)),
                            "model_weights.ckpt")

    def test_missing_tokenizer(self):
        self.assert_refused(self.nemo(replace_member(self.members, "_tokenizer.model", None)),
                            "_tokenizer.model")

    def test_corrupt_checkpoint_garbage(self):
        bad = replace_member(self.members, "model_weights.ckpt", b"PK\x03\x04" + b"\x00garbage" * 500)
        self.assert_refused(self.nemo(bad), "corrupt checkpoint")

    def test_corrupt_checkpoint_flipped_bytes(self):
        ckpt = bytearray(self.members["./model_weights.ckpt"])
        mid = len(ckpt) // 2
        ckpt[mid:mid + 64] = bytes(b ^ 0xFF for b in ckpt[mid:mid + 64])
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", bytes(ckpt))),
                            "corrupt checkpoint")

    def test_corrupt_pickle(self):
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00(X\x01\x00")  # cut short
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", z.getvalue())),
                            "corrupt checkpoint")

    def test_encrypted_record(self):
        # torch.save never encrypts; a record flagged so (fuzz_convert found one) is corruption,
        # and zipfile's RuntimeError for it must not escape as a traceback.
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        raw = bytearray(z.getvalue())
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # the flag bits of the local and central headers
            at = raw.find(sig)
            flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
            raw[flag_at] |= 0x01
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", bytes(raw))),
                            "corrupt checkpoint", "encrypted")

    def test_pickle_with_code_is_refused(self):
        # A pickle that would call os.system if unpickled naively.
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("archive/data.pkl", b"cos\nsystem\n(S'touch /tmp/earshot-pwned'\ntR.")
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", z.getvalue())),
                            "unsupported object in checkpoint: os.system")

    def test_legacy_checkpoint(self):
        legacy = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19." + b"\x00" * 100
        self.assert_refused(self.nemo(replace_member(self.members, "model_weights.ckpt", legacy)),
                            "legacy")

    def test_subsampling_vggnet(self):
        bad = edit_config(self.members, "encoder.subsampling", "vggnet")
        self.assert_refused(self.nemo(bad), "encoder.subsampling = 'vggnet'", "dw_striding")

    def test_abs_pos(self):
        bad = edit_config(self.members, "encoder.self_attention_model", "abs_pos")
        self.assert_refused(self.nemo(bad), "encoder.self_attention_model = 'abs_pos'")

    def test_normalize_absent(self):
        bad = edit_config(self.members, "preprocessor.normalize", DELETE)
        self.assert_refused(self.nemo(bad), "preprocessor.normalize is absent", "per_feature")

    def test_normalize_per_feature(self):
        bad = edit_config(self.members, "preprocessor.normalize", "per_feature")
        self.assert_refused(self.nemo(bad), "preprocessor.normalize = 'per_feature'")

    def _n_mels(self):
        cfg = yaml.safe_load(self.members["./model_config.yaml"].decode("utf-8"))
        return cfg["preprocessor"]["features"]

    def test_normalize_fixed_accepted(self):
        n = self._n_mels()
        stats = {"fixed_mean": [-10.0 + 0.01 * i for i in range(n)], "fixed_std": [3.0] * n}
        st = self.convert_ok(edit_config(self.members, "preprocessor.normalize", stats))
        cfg = json.loads(st.metadata["earshot.config"])
        self.assertEqual(cfg["preprocessor"]["normalize"]["fixed_mean"], stats["fixed_mean"])

    def test_normalize_fixed_wrong_length(self):
        n = self._n_mels()
        bad = edit_config(self.members, "preprocessor.normalize", {"fixed_mean": [0.0] * (n - 1), "fixed_std": [1.0] * n})
        self.assert_refused(self.nemo(bad), "normalize.fixed_mean must be a list of %d numbers" % n)

    def test_normalize_fixed_zero_std(self):
        n = self._n_mels()
        bad = edit_config(self.members, "preprocessor.normalize",
                          {"fixed_mean": [0.0] * n, "fixed_std": [1.0] * (n - 1) + [0.0]})
        self.assert_refused(self.nemo(bad), "normalize.fixed_std[%d] = 0.0 is not a positive number" % (n - 1))

    def test_non_causal_downsampling(self):
        bad = edit_config(self.members, "encoder.causal_downsampling", False)
        self.assert_refused(self.nemo(bad), "encoder.causal_downsampling = false")

    def test_bad_att_context(self):
        bad = edit_config(self.members, "encoder.att_context_size", [[70, 13], [71, 1]])
        self.assert_refused(self.nemo(bad), "encoder.att_context_size")

    def test_absent_conv_context(self):
        bad = edit_config(self.members, "encoder.conv_context_size", DELETE)
        self.assert_refused(self.nemo(bad), "encoder.conv_context_size is absent")

    def test_unknown_decoder(self):
        bad = edit_config(self.members, "decoder._target_", "nemo.collections.asr.modules.SomethingElse")
        self.assert_refused(self.nemo(bad), "decoder._target_")

    def test_two_lstm_layers(self):
        case = first_case("rnnt")
        bad = edit_config(nemo_members(case), "decoder.prednet.pred_rnn_layers", 2)
        self.assert_refused(self.nemo(bad), "decoder.prednet.pred_rnn_layers = 2")

    def test_vocabulary_mismatch(self):
        bad = edit_config(self.members, "decoder.num_classes", 12345)
        self.assert_refused(self.nemo(bad), "vocabulary mismatch", "decoder.num_classes")

    def test_invalid_yaml(self):
        bad = replace_member(self.members, "model_config.yaml", b"encoder: [unclosed\n")
        self.assert_refused(self.nemo(bad), "model_config.yaml")

    def test_missing_tensor(self):
        state = golden_state(self.case)
        del state["encoder.layers.1.self_attn.linear_q.weight"]
        bad = replace_member(self.members, "model_weights.ckpt", write_checkpoint(state))
        self.assert_refused(self.nemo(bad), "encoder.layers.1.self_attn.linear_q.weight")

    def test_wrong_tensor_shape(self):
        state = golden_state(self.case)
        t = state["decoder.decoder_layers.0.bias"]
        t.shape = [t.shape[0] - 1]
        bad = replace_member(self.members, "model_weights.ckpt", write_checkpoint(state))
        self.assert_refused(self.nemo(bad), "decoder.decoder_layers.0.bias")

    def test_failure_keeps_existing_output(self):
        out = self.path("out.safetensors")
        with open(out, "wb") as f:
            f.write(b"previous")
        bad = edit_config(self.members, "encoder.subsampling", "vggnet")
        rc, _, stderr = run_converter(self.nemo(bad), out)
        self.assertEqual(rc, 1)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"previous")

    def test_output_folder_missing(self):
        rc, _, stderr = run_converter(os.path.join(self.case, "model.nemo"),
                                      self.path("no/such/dir/out.safetensors"))
        self.assertEqual(rc, 1)
        self.assertTrue(stderr.startswith("earshot-convert: "), stderr)
        self.assertNotIn("Traceback", stderr)


class CliTests(TempDirTest):
    def test_usage_error(self):
        rc, _, stderr = run_converter()
        self.assertEqual(rc, 2)
        self.assertIn("usage", stderr)
        self.assertNotIn("Traceback", stderr)

    def test_too_many_arguments(self):
        rc, _, stderr = run_converter("a", "b", "c")
        self.assertEqual(rc, 2)

    def test_runs_as_an_executable(self):
        proc = subprocess.run([CONVERTER, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_runs_through_a_symlink(self):
        link = self.path("earshot-convert")
        os.symlink(CONVERTER, link)
        rc, stdout, stderr = run_converter_at(link, "--help")
        self.assertEqual(rc, 0, stderr)

    def test_help(self):
        rc, stdout, _ = run_converter("--help")
        self.assertEqual(rc, 0)
        self.assertIn("MODEL.nemo", stdout)


class SyntheticCheckpointTests(TempDirTest):
    """Storage kinds the golden checkpoints do not exercise."""

    def setUp(self):
        super().setUp()
        self.case = first_case("ctc")
        self.members = nemo_members(self.case)
        self.state = golden_state(self.case)
        self.reference = self.convert_ok(self.members)

    def with_checkpoint(self, state, **kw):
        ckpt = write_checkpoint(state, **kw)
        return self.convert_ok(replace_member(self.members, "model_weights.ckpt", ckpt))

    def test_half_storage_widened_exactly(self):
        name = "preprocessor.featurizer.fb"
        values = struct.unpack("<%df" % (len(self.state[name].storage.data) // 4),
                               self.state[name].storage.data)
        half = struct.pack("<%de" % len(values), *values)
        t = self.state[name]
        self.state[name] = FakeTensor(FakeStorage("HalfStorage", half, 2), 0, t.shape, t.stride)
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.info(name)["dtype"], "F32")
        bits = struct.unpack("<%dH" % len(values), half)
        want = [f16_bits_to_float(h) for h in bits]
        got = st.floats(name)
        self.assertEqual(len(got), len(want))
        # (not assertEqual on the lists: its diff of 20000 floats takes minutes)
        bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        self.assertFalse(bad, "%d values differ, first at %s" % (len(bad), bad[:1]))

    def test_bfloat16_storage_widened_exactly(self):
        name = "encoder.layers.0.feed_forward1.linear1.weight"
        f32 = self.state[name].storage.data
        bf16 = b"".join(f32[i + 2:i + 4] for i in range(0, len(f32), 4))
        t = self.state[name]
        self.state[name] = FakeTensor(FakeStorage("BFloat16Storage", bf16, 2), 0, t.shape, t.stride)
        st = self.with_checkpoint(self.state)
        want = b"".join(b"\0\0" + f32[i + 2:i + 4] for i in range(0, len(f32), 4))
        self.assertEqual(st.raw(name), want)

    def test_double_storage(self):
        name = "encoder.layers.0.norm_out.weight"
        f32 = self.state[name].storage.data
        values = struct.unpack("<%df" % (len(f32) // 4), f32)
        t = self.state[name]
        doubles = struct.pack("<%dd" % len(values), *values)
        self.state[name] = FakeTensor(FakeStorage("DoubleStorage", doubles, 8), 0, t.shape, t.stride)
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.info(name)["dtype"], "F32")
        self.assertEqual(st.raw(name), f32)

    def test_transposed_view_made_contiguous(self):
        name = "encoder.layers.0.self_attn.linear_q.weight"
        t = self.state[name]
        rows, cols = t.shape
        w = struct.unpack("<%df" % (rows * cols), t.storage.data)
        wt = [w[r * cols + c] for c in range(cols) for r in range(rows)]  # column-major
        storage = FakeStorage("FloatStorage", struct.pack("<%df" % len(wt), *wt), 4)
        self.state[name] = FakeTensor(storage, 0, [rows, cols], [1, rows])
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.info(name)["shape"], [rows, cols])
        self.assertEqual(st.raw(name), self.reference.raw(name))

    def test_shared_storage_with_offsets(self):
        a, b = "encoder.layers.0.self_attn.linear_q.bias", "encoder.layers.0.self_attn.linear_k.bias"
        pad = struct.pack("<3f", 1.0, 2.0, 3.0)
        shared = FakeStorage("FloatStorage", pad + self.state[a].storage.data + self.state[b].storage.data, 4)
        n = self.state[a].shape[0]
        self.state[a] = FakeTensor(shared, 3, [n], [1])
        self.state[b] = FakeTensor(shared, 3 + n, [n], [1])
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.raw(a), self.reference.raw(a))
        self.assertEqual(st.raw(b), self.reference.raw(b))

    def test_integer_tensors_kept(self):
        self.state["extra.int32"] = FakeTensor(FakeStorage("IntStorage", struct.pack("<3i", 7, -8, 9), 4),
                                               0, [3], [1])
        self.state["extra.int64"] = FakeTensor(FakeStorage("LongStorage", struct.pack("<q", -5), 8),
                                               0, [], [])
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.info("extra.int32")["dtype"], "I32")
        self.assertEqual(st.raw("extra.int32"), struct.pack("<3i", 7, -8, 9))
        self.assertEqual(st.info("extra.int64"), {"dtype": "I64", "shape": [],
                                                  "data_offsets": st.info("extra.int64")["data_offsets"]})
        self.assertEqual(st.raw("extra.int64"), struct.pack("<q", -5))

    def test_big_endian_checkpoint(self):
        st = self.with_checkpoint(self.state, big_endian=True)
        for name in self.reference.tensors:
            self.assertEqual(st.raw(name), self.reference.raw(name), name)

    def test_nested_state_dict(self):
        st = self.with_checkpoint(self.state, nest=True)
        self.assertEqual(list(st.tensors), list(self.reference.tensors))
        for name in self.reference.tensors:
            self.assertEqual(st.raw(name), self.reference.raw(name), name)

    def test_parameters(self):
        for name in list(self.state)[:10]:
            self.state[name] = FakeParameter(self.state[name])
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.blob, self.reference.blob)

    def test_rewritten_checkpoint_matches_original(self):
        # Our writer + the converter reproduce the conversion of the real file.
        st = self.with_checkpoint(self.state)
        self.assertEqual(st.header_text, self.reference.header_text)
        self.assertEqual(st.blob, self.reference.blob)


class ArchiveVariantTests(TempDirTest):
    def test_gzip_nemo_same_output(self):
        case = first_case()
        members = nemo_members(case)
        plain = self.convert_ok(members)
        gz = self.convert_ok(members, compress=True)
        self.assertEqual(plain.blob, gz.blob)

    def test_member_names_without_dot_slash(self):
        case = first_case()
        members = nemo_members(case)
        plain = self.convert_ok(members)
        bare = collections.OrderedDict((n[2:] if n.startswith("./") else n, d) for n, d in members.items())
        self.assertEqual(self.convert_ok(bare).blob, plain.blob)

    def test_interpolated_sample_rate(self):
        case = first_case()
        members = nemo_members(case)
        plain = self.convert_ok(members)
        edited = edit_config(members, "preprocessor.sample_rate", "${model.sample_rate}")
        st = self.convert_ok(edited)
        cfg = json.loads(st.metadata["earshot.config"])
        self.assertEqual(cfg["preprocessor"]["sample_rate"], 16000)
        self.assertEqual(cfg, json.loads(plain.metadata["earshot.config"]))


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


class CountingRunner(unittest.TextTestRunner):
    resultclass = CountingResult


def main():
    global GOLDEN, CONVERTER
    parser = argparse.ArgumentParser(description="Tests of earshot-convert.")
    parser.add_argument("--golden", required=True, help="folder of golden cases (*/manifest.json)")
    parser.add_argument("--converter", required=True, help="path of the earshot-convert script")
    args, rest = parser.parse_known_args()
    GOLDEN = os.path.abspath(args.golden)
    CONVERTER = os.path.abspath(args.converter)
    add_golden_tests(GOLDEN)

    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, testRunner=CountingRunner)
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
    print("%d passed, %d failed" % (result.passed, failed))
    return 0 if failed == 0 and result.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
