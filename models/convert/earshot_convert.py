# earshot_convert.py - convert a NeMo .nemo archive into an Earshot model file.
#
# Design
# ------
# The converter must run on a machine with nothing but Python 3 and PyYAML: no
# numpy, no torch, no NeMo.  So every format it touches is read by hand, with
# the smallest reader that is still strict:
#
#   .nemo               a tar (plain or compressed) holding model_config.yaml,
#                       model_weights.ckpt and the SentencePiece tokenizer;
#                       read with `tarfile`.
#   model_weights.ckpt  PyTorch's zip checkpoint: `<dir>/data.pkl` describes the
#                       state dict, `<dir>/data/<key>` holds raw storages.  The
#                       pickle is read by a restricted Unpickler whose find_class
#                       knows only the handful of names a state dict needs, so a
#                       checkpoint can never run code; tensors come back as
#                       TensorRef (storage key, dtype, offset, shape, stride) and
#                       their bytes are pulled out of the zip only when written.
#   tokenizer .model    a SentencePiece ModelProto; a tiny protobuf reader takes
#                       field 1 (the pieces) and skips everything else.
#   output              safetensors as docs/model-format.md specifies: F32 for
#                       every float (F16/BF16 widened exactly), integers kept,
#                       each tensor 64-byte aligned, config and vocabulary in
#                       __metadata__.
#
# The order of work is: open the archive, validate the config (cheap, and the
# most likely reason to refuse a model), read the vocabulary, read the
# checkpoint's index (not its data), check that the tensors the engine needs
# are there with the right shapes, then stream the tensors one at a time into
# a temporary file next to the output and rename it into place, so memory stays
# at about one tensor and a failure never leaves a half-written output.
#
# Every problem with the input is raised as ConvertError with a one-line
# message; main() prints it as "earshot-convert: <message>" and exits 1.
# Usage errors exit 2 (argparse).  A traceback means a bug in this file.

import argparse
import collections
import io
import json
import math
import os
import pickle
import re
import shutil
import struct
import sys
import tarfile
import tempfile
import zipfile
import zlib
from array import array

try:
    import yaml
except ImportError:  # reported by main(), so that --help still works
    yaml = None

PROG = "earshot-convert"
FORMAT_VERSION = "1"
ALIGN = 64  # every tensor starts at a multiple of this from the file start


class ConvertError(Exception):
    """Bad or unsupported input; the message is shown to the user as is."""


# ---------------------------------------------------------------------------
# The .nemo archive
# ---------------------------------------------------------------------------

_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
# What tarfile raises on a truncated or corrupt archive (OverflowError: an offset too large for
# seek()). One list for every read, so that a new failure mode is handled everywhere at once.
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, OverflowError)


class NemoArchive:
    """Members of a .nemo tar, looked up by their name without a leading './'."""

    def __init__(self, path):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                magic = f.read(6)
        except OSError as e:
            raise ConvertError("cannot open %s: %s" % (path, e.strerror or e))
        if size == 0:
            raise ConvertError("%s is empty (not a .nemo archive)" % path)
        self.size = size
        self.compressed = magic.startswith(_COMPRESSED_MAGIC)
        try:
            self.tar = tarfile.open(path, mode="r:*")
        except _TAR_ERRORS:
            # tarfile's message lists every decompressor it tried; not useful.
            raise ConvertError("%s is not a .nemo archive (not a tar file, plain or compressed)" % path)
        try:
            members = self.tar.getmembers()
        except _TAR_ERRORS as e:
            self.tar.close()
            raise ConvertError("%s is truncated or corrupt (tar: %s)" % (path, e))
        self.members = {}
        for m in members:
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            if m.isfile():
                self.members[name] = m
        # tarfile stops quietly at a header cut short.  A complete plain tar
        # ends with two zero blocks after its last member; when they are
        # missing, say so in the messages about missing members.
        self.truncated = False
        if not self.compressed:
            ends = [m.offset_data + (m.size + 511) // 512 * 512 for m in members]
            self.truncated = self.size < max(ends, default=0) + 1024
        if not self.members:
            if self.truncated:
                raise ConvertError("%s is truncated (not one complete file in it)" % path)
            raise ConvertError("%s is not a .nemo archive (a tar with no files in it)" % path)

    def close(self):
        self.tar.close()

    def _member(self, name):
        m = self.members.get(name)
        if m is None:
            if self.truncated:
                raise ConvertError("%s is truncated: it ends before %s" % (self.path, name))
            raise ConvertError("%s has no %s (is it a NeMo model archive?)" % (self.path, name))
        # tarfile does not notice a plain tar cut short inside the last member's
        # data; compare with the file size so the message says what happened.
        if not self.compressed and m.offset_data + m.size > self.size:
            raise ConvertError("%s is truncated: member %s is cut short" % (self.path, name))
        return m

    def has(self, name):
        return name in self.members

    def read(self, name):
        """The whole member as bytes (for the small members)."""
        m = self._member(name)
        try:
            f = self.tar.extractfile(m)
            data = f.read()
        except _TAR_ERRORS as e:
            raise ConvertError("%s is truncated or corrupt: cannot read %s: %s" % (self.path, name, e))
        if len(data) != m.size:
            raise ConvertError("%s is truncated: member %s is cut short" % (self.path, name))
        return data

    def open_seekable(self, name):
        """A seekable file object for a (possibly large) member.

        In a plain tar the member can be read in place; in a compressed one
        seeking backwards means decompressing again from the start, and the zip
        reader seeks a lot, so the member is first copied to a temporary file.
        """
        m = self._member(name)
        try:
            f = self.tar.extractfile(m)
            if not self.compressed:
                return f
            tmp = tempfile.TemporaryFile()
            shutil.copyfileobj(f, tmp, 1 << 20)
            if tmp.tell() != m.size:
                raise ConvertError("%s is truncated: member %s is cut short" % (self.path, name))
            tmp.seek(0)
            return tmp
        except _TAR_ERRORS as e:
            raise ConvertError("%s is truncated or corrupt: cannot read %s: %s" % (self.path, name, e))


# ---------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------

if yaml is not None:
    class _ConfigLoader(yaml.SafeLoader):
        """SafeLoader that also reads '1e-5' as a float.

        PyYAML follows YAML 1.1, where a float needs a dot ('1.0e-5');
        OmegaConf, which NeMo uses to write the config, accepts '1e-5' too.
        """

    _ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))


_INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_NOT_FOUND = object()


def _lookup(cfg, dotted):
    """Value at 'a.b.c'; also tries without a leading 'model.' (the root of
    the training config, which is the root of model_config.yaml)."""
    paths = [dotted]
    if dotted.startswith("model."):
        paths.append(dotted[len("model."):])
    for path in paths:
        node = cfg
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                node = _NOT_FOUND
                break
            node = node[part]
        if node is not _NOT_FOUND:
            return node
    return _NOT_FOUND


def resolve_interpolations(cfg):
    """Replace OmegaConf '${a.b}' references by their values.

    NeMo usually saves resolved configs, but some archives keep references
    such as '${model.sample_rate}'.  Only plain absolute references are
    resolved; anything else (custom resolvers, missing keys) is left as
    written and, if it is in a field we check, refused showing that text.
    """

    def resolve(node, depth=0):
        if depth > 20:  # a reference cycle; leave the rest as written
            return node
        if isinstance(node, dict):
            return {k: resolve(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, depth) for v in node]
        if not isinstance(node, str) or "${" not in node:
            return node
        whole = _INTERPOLATION.fullmatch(node)
        if whole:  # the whole value: keep the referenced value's type
            value = _lookup(cfg, whole.group(1))
            return node if value is _NOT_FOUND else resolve(value, depth + 1)

        def text_of(m):  # part of a string: substitute its text
            value = _lookup(cfg, m.group(1))
            if value is _NOT_FOUND:
                return m.group(0)
            value = resolve(value, depth + 1)
            return json.dumps(value) if isinstance(value, bool) or value is None else str(value)

        return _INTERPOLATION.sub(text_of, node)

    return resolve(cfg)


def load_config(text):
    if yaml is None:
        raise ConvertError("PyYAML is required (Debian: apt install python3-yaml; pip: pyyaml)")
    try:
        cfg = yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as e:
        raise ConvertError("model_config.yaml is not valid YAML: %s" % " ".join(str(e).split()))
    except (AttributeError, TypeError, ValueError, IndexError, KeyError, RecursionError) as e:
        # PyYAML fails with these on some malformed documents (found by tests/fuzz/fuzz_convert.py)
        raise ConvertError("model_config.yaml is not valid YAML (%s: %s)" % (type(e).__name__, e))
    if not isinstance(cfg, dict):
        raise ConvertError("model_config.yaml is not a mapping (got %s)" % type(cfg).__name__)
    return resolve_interpolations(cfg)


def config_to_json(cfg):
    """The config as a JSON string that a strict JSON parser accepts.

    YAML can hold what JSON cannot: dates (written as ISO strings), non-finite
    floats (written as the strings "inf", "-inf", "nan"), non-string keys
    (stringified).  None of these occur in the fields the engine reads.
    """

    def clean(node):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if isinstance(k, bool) or k is None:
                    key = json.dumps(k)
                else:
                    key = str(k)
                out[key] = clean(v)
            return out
        if isinstance(node, (list, tuple, set)):
            return [clean(v) for v in node]
        if isinstance(node, float) and not math.isfinite(node):
            return "nan" if math.isnan(node) else ("inf" if node > 0 else "-inf")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if hasattr(node, "isoformat"):
            return node.isoformat()
        if isinstance(node, bytes):
            return node.decode("latin-1")
        return str(node)

    return json.dumps(clean(cfg), ensure_ascii=False, allow_nan=False)


_ABSENT = object()


def cfg_get(cfg, dotted, default=_ABSENT):
    """Value at 'a.b.c', or default (the _ABSENT marker unless given)."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def show(value):
    """A config value as the user wrote it, for messages."""
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def unsupported(path, value, supported, default=_ABSENT):
    """The error for a config field outside the supported family.  An absent
    field is reported as such, with the NeMo default it stands for."""
    if value is _ABSENT:
        if default is not _ABSENT:
            return ConvertError("unsupported config: %s is absent, so NeMo's default %s (supported: %s)"
                                % (path, show(default), supported))
        return ConvertError("unsupported config: %s is absent (supported: %s)" % (path, supported))
    return ConvertError("unsupported config: %s = %s (supported: %s)" % (path, show(value), supported))


def _class_name(target):
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _close(a, b):
    return isinstance(a, (int, float)) and not isinstance(a, bool) and abs(a - b) < 1e-9


class ModelInfo:
    """What the rest of the converter needs to know about a validated config."""

    def __init__(self):
        self.kind = None             # "ctc", "rnnt" or "hybrid"
        self.n_layers = 0
        self.d_model = 0
        self.n_heads = 0
        self.kernel = 0
        self.conv_norm = None        # "layer_norm" or "batch_norm"
        self.subsampling = None      # "dw_striding" or "striding"
        self.factor = 0              # subsampling factor, a power of 2
        self.conv_channels = 0       # channels of the subsampling convolutions
        self.use_bias = True
        self.n_mels = 0
        self.n_fft = 512
        self.win_length = 400
        self.lookaheads = []         # [[left, right], ...]
        self.pred_hidden = None      # RNNT prediction network width, if the config says
        self.joint_hidden = None
        self.vocab_size = 0          # SentencePiece pieces; blank id = this
        self.vocab_fields = []       # (config path, list) of vocabularies in the config
        self.class_counts = []       # (config path, int) of vocabulary sizes in the config


def _check_choice(cfg, path, default, choices):
    """The field's value (default if absent), refused unless among choices.
    default=_ABSENT makes the field required."""
    value = cfg_get(cfg, path)
    effective = default if value is _ABSENT else value
    # Compare types too: YAML's 1 must not pass for true.
    if not any(type(effective) is type(c) and effective == c for c in choices):
        raise unsupported(path, value, ", ".join(show(c) if not isinstance(c, str) else c
                                                 for c in choices), default)
    return effective


def _check_fixed_normalize(cfg, normalize):
    n_mels = cfg_get(cfg, "preprocessor.features", 64)
    for key in ("fixed_mean", "fixed_std"):
        values = normalize[key]
        if not isinstance(values, list) or len(values) != n_mels:
            raise ConvertError("unsupported config: preprocessor.normalize.%s must be a list of %s numbers "
                               "(one per mel bin, preprocessor.features)" % (key, n_mels))
        for i, v in enumerate(values):
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and abs(v) <= 1e30 and (key == "fixed_mean" or v > 1e-30))
            if not ok:
                raise ConvertError("unsupported config: preprocessor.normalize.%s[%d] = %r is not a %s number"
                                   % (key, i, v, "finite" if key == "fixed_mean" else "positive"))


def _check_preprocessor(cfg, info):
    pre = cfg_get(cfg, "preprocessor")
    if not isinstance(pre, dict):
        raise unsupported("preprocessor", pre, "a mapping with _target_ AudioToMelSpectrogramPreprocessor")
    target = cfg_get(cfg, "preprocessor._target_")
    if _class_name(target) != "AudioToMelSpectrogramPreprocessor":
        raise unsupported("preprocessor._target_", target, "...AudioToMelSpectrogramPreprocessor")

    # Streaming models must not normalise per utterance: NeMo's "NA" (no
    # normalisation) or its fixed form, {fixed_mean: [...], fixed_std: [...]}
    # with one value per mel bin, which a stream applies frame by frame.
    # Absent means NeMo's default, per_feature, which needs the whole utterance.
    normalize = cfg_get(cfg, "preprocessor.normalize")
    if isinstance(normalize, dict) and "fixed_mean" in normalize and "fixed_std" in normalize:
        _check_fixed_normalize(cfg, normalize)
    elif not (isinstance(normalize, str) and normalize.lower() == "na"):
        raise unsupported("preprocessor.normalize", normalize, "NA or {fixed_mean, fixed_std}", "per_feature")

    # n_fft absent or null means the next power of 2 above the window: 512
    # for the 400-sample window required below.
    n_fft = cfg_get(cfg, "preprocessor.n_fft")
    if not (n_fft is _ABSENT or n_fft is None or (_is_int(n_fft) and n_fft == 512)):
        raise unsupported("preprocessor.n_fft", n_fft, "512")

    # (path, NeMo's default, the value the engine implements)
    numeric = [
        ("preprocessor.sample_rate", 16000, 16000),
        ("preprocessor.window_size", 0.02, 0.025),
        ("preprocessor.window_stride", 0.01, 0.01),
        ("preprocessor.frame_splicing", 1, 1),
        ("preprocessor.preemph", 0.97, 0.97),
        ("preprocessor.mag_power", 2.0, 2.0),
        ("preprocessor.log_zero_guard_value", 2.0 ** -24, 2.0 ** -24),
    ]
    for path, default, wanted in numeric:
        value = cfg_get(cfg, path)
        if not _close(default if value is _ABSENT else value, wanted):
            raise unsupported(path, value, repr(wanted), default)
    _check_choice(cfg, "preprocessor.window", "hann", ["hann"])
    _check_choice(cfg, "preprocessor.log", True, [True])
    _check_choice(cfg, "preprocessor.log_zero_guard_type", "add", ["add"])
    _check_choice(cfg, "preprocessor.exact_pad", False, [False])

    features = cfg_get(cfg, "preprocessor.features", 64)
    if not _is_int(features) or features <= 0:
        raise unsupported("preprocessor.features", features, "a positive integer")
    info.n_mels = features
    info.n_fft = 512
    info.win_length = 400  # 0.025 s at 16 kHz


def _check_att_context(cfg, style):
    path = "encoder.att_context_size"
    raw = cfg_get(cfg, path)
    why = "a pair [left, right] or a list of pairs of non-negative ints"
    if style == "chunked_limited":
        why += ", left a multiple of right + 1"
    if not isinstance(raw, list) or not raw:
        raise unsupported(path, raw, why)
    pairs = raw if isinstance(raw[0], list) else [raw]
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(x) and x >= 0 for x in pair)):
            raise unsupported(path, raw, why)
        # NeMo's own rule for chunked_limited: the left context is a whole
        # number of chunks of right + 1 frames.
        if style == "chunked_limited" and pair[0] % (pair[1] + 1) != 0:
            raise unsupported(path, raw, why)
    return [list(p) for p in pairs]


def _check_encoder(cfg, info):
    target = cfg_get(cfg, "encoder._target_")
    if _class_name(target) != "ConformerEncoder":
        raise unsupported("encoder._target_", target, "...ConformerEncoder")

    # Defaults are NeMo's ConformerEncoder defaults, so an absent field means
    # what NeMo would have built.
    _check_choice(cfg, "encoder.self_attention_model", "rel_pos", ["rel_pos"])
    info.subsampling = _check_choice(cfg, "encoder.subsampling", "striding", ["dw_striding", "striding"])
    _check_choice(cfg, "encoder.causal_downsampling", False, [True])
    style = _check_choice(cfg, "encoder.att_context_style", "regular", ["chunked_limited", "regular"])
    info.conv_norm = _check_choice(cfg, "encoder.conv_norm_type", "batch_norm", ["layer_norm", "batch_norm"])
    _check_choice(cfg, "encoder.feat_out", -1, [-1])
    _check_choice(cfg, "encoder.reduction", None, [None])
    # Tied biases are one pos_bias_u/v pair shared by every layer; NeMo's state dict still lists
    # it under each layer's name, so both settings convert the same way (the tensor check below
    # finds each layer's pair).
    _check_choice(cfg, "encoder.untie_biases", True, [True, False])

    for path in ("encoder.n_layers", "encoder.d_model"):
        value = cfg_get(cfg, path)
        if not _is_int(value) or value <= 0:
            raise unsupported(path, value, "a positive integer")
    info.n_layers = cfg_get(cfg, "encoder.n_layers")
    info.d_model = cfg_get(cfg, "encoder.d_model")
    info.n_heads = cfg_get(cfg, "encoder.n_heads", 4)
    if not _is_int(info.n_heads) or info.n_heads <= 0 or info.d_model % info.n_heads:
        raise unsupported("encoder.n_heads", info.n_heads, "a positive divisor of d_model")
    info.use_bias = cfg_get(cfg, "encoder.use_bias", True) is True

    factor = cfg_get(cfg, "encoder.subsampling_factor", 4)
    if not _is_int(factor) or factor < 2 or factor & (factor - 1):
        raise unsupported("encoder.subsampling_factor", factor, "a power of 2 >= 2")
    info.factor = factor
    channels = cfg_get(cfg, "encoder.subsampling_conv_channels", -1)
    if channels == -1:  # NeMo: -1 means d_model
        channels = info.d_model
    if not _is_int(channels) or channels <= 0:
        raise unsupported("encoder.subsampling_conv_channels", channels, "a positive integer or -1")
    info.conv_channels = channels

    feat_in = cfg_get(cfg, "encoder.feat_in")
    if feat_in != info.n_mels:
        raise unsupported("encoder.feat_in", feat_in, "preprocessor.features = %d" % info.n_mels)

    kernel = cfg_get(cfg, "encoder.conv_kernel_size", 31)
    if not _is_int(kernel) or kernel < 1:
        raise unsupported("encoder.conv_kernel_size", kernel, "a positive integer")
    info.kernel = kernel
    conv_context = cfg_get(cfg, "encoder.conv_context_size")
    if conv_context != "causal" and conv_context != [kernel - 1, 0]:
        # absent = NeMo's symmetric (non-causal) convolution
        raise unsupported("encoder.conv_context_size", conv_context, "causal, [%d, 0]" % (kernel - 1))

    info.lookaheads = _check_att_context(cfg, style)


def _note_vocabulary(cfg, info, count_path, list_path):
    """Remember the head's vocabulary size and list, where the config has
    them, to cross-check with the tokenizer."""
    for path, into in ((count_path, info.class_counts), (list_path, info.vocab_fields)):
        value = cfg_get(cfg, path, None) if path else None
        if value is not None:
            into.append((path, value))


def _check_decoders(cfg, info):
    dec_target = cfg_get(cfg, "decoder._target_")
    dec_class = _class_name(dec_target)
    has_aux = isinstance(cfg_get(cfg, "aux_ctc", None), dict)

    if dec_class == "ConvASRDecoder":
        if has_aux:
            raise ConvertError("unsupported config: aux_ctc with a CTC decoder "
                               "(supported: aux_ctc only with an RNNTDecoder, i.e. a hybrid model)")
        info.kind = "ctc"
        _note_vocabulary(cfg, info, "decoder.num_classes", "decoder.vocabulary")
    elif dec_class == "RNNTDecoder":
        joint_target = cfg_get(cfg, "joint._target_")
        if _class_name(joint_target) != "RNNTJoint":
            raise unsupported("joint._target_", joint_target, "...RNNTJoint")
        _check_choice(cfg, "decoder.prednet.pred_rnn_layers", _ABSENT, [1])
        _check_choice(cfg, "decoder.normalization_mode", None, [None])
        _check_choice(cfg, "decoder.blank_as_pad", True, [True])
        _check_choice(cfg, "joint.jointnet.activation", "relu", ["relu"])
        # TDT and multi-blank joints have extra outputs after the blank.
        _check_choice(cfg, "joint.num_extra_outputs", 0, [0])
        info.pred_hidden = cfg_get(cfg, "decoder.prednet.pred_hidden", None)
        info.joint_hidden = cfg_get(cfg, "joint.jointnet.joint_hidden", None)
        _note_vocabulary(cfg, info, "decoder.vocab_size", None)
        _note_vocabulary(cfg, info, "joint.num_classes", "joint.vocabulary")
        if has_aux:
            aux_target = cfg_get(cfg, "aux_ctc.decoder._target_")
            if _class_name(aux_target) != "ConvASRDecoder":
                raise unsupported("aux_ctc.decoder._target_", aux_target, "...ConvASRDecoder")
            info.kind = "hybrid"
            _note_vocabulary(cfg, info, "aux_ctc.decoder.num_classes", "aux_ctc.decoder.vocabulary")
        else:
            info.kind = "rnnt"
    else:
        raise unsupported("decoder._target_", dec_target, "...ConvASRDecoder, ...RNNTDecoder")
    _note_vocabulary(cfg, info, None, "labels")


def validate_config(cfg):
    """Refuse anything outside the supported family; return a ModelInfo."""
    info = ModelInfo()
    _check_preprocessor(cfg, info)
    _check_encoder(cfg, info)
    _check_decoders(cfg, info)
    return info


def tokenizer_member_name(cfg):
    """The archive member of the SentencePiece model the config points at."""
    path = cfg_get(cfg, "tokenizer.model_path")
    if not isinstance(path, str) or not path:
        raise unsupported("tokenizer.model_path", path, "a SentencePiece model, nemo:<hash>_tokenizer.model")
    if path.startswith("nemo:"):
        path = path[len("nemo:"):]
    # Older archives wrote the absolute path the file had when saving; the
    # member is stored under its base name either way.
    return path.replace("\\", "/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------
# SentencePiece model (protobuf)
# ---------------------------------------------------------------------------

def _varint(buf, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ConvertError("tokenizer model is corrupt (truncated varint)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ConvertError("tokenizer model is corrupt (varint too long)")


def protobuf_fields(buf):
    """Yield (field number, wire type, value) for one protobuf message.

    value is an int for varints and fixed-width fields (the raw bits) and a
    memoryview for length-delimited fields.
    """
    buf = memoryview(buf)
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise ConvertError("tokenizer model is corrupt (truncated field)")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ConvertError("tokenizer model is corrupt (truncated field)")
            value = buf[pos:pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise ConvertError("tokenizer model is corrupt (truncated field)")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:  # 3/4 are the long-deprecated groups; 6/7 do not exist
            raise ConvertError("tokenizer model is corrupt (wire type %d)" % wire)
        if field == 0:
            raise ConvertError("tokenizer model is corrupt (field number 0)")
        yield field, wire, value


def parse_sentencepiece(data):
    """The pieces of a SentencePiece ModelProto, in id order.

    ModelProto field 1 is `repeated SentencePiece pieces`; in each piece,
    field 1 is the piece text, 2 its score, 3 its type.  Only the text
    matters here: the engine maps ids to text.
    """
    pieces = []
    for field, wire, value in protobuf_fields(data):
        if field != 1:
            continue
        if wire != 2:
            raise ConvertError("tokenizer model is corrupt (pieces field has wire type %d)" % wire)
        text = None
        for f, w, v in protobuf_fields(value):
            if f == 1 and w == 2:
                try:
                    text = bytes(v).decode("utf-8")
                except UnicodeDecodeError:
                    raise ConvertError("tokenizer model is corrupt (piece %d is not UTF-8)" % len(pieces))
        if text is None:
            raise ConvertError("tokenizer model is corrupt (piece %d has no text)" % len(pieces))
        pieces.append(text)
    if not pieces:
        raise ConvertError("tokenizer model has no pieces (is it a SentencePiece .model file?)")
    return pieces


def check_vocabulary(pieces, info):
    n = len(pieces)
    for path, value in info.vocab_fields:
        if not isinstance(value, list):
            raise unsupported(path, value, "a list of %d pieces" % n)
        if len(value) != n:
            raise ConvertError(
                "vocabulary mismatch: the tokenizer has %d pieces but %s has %d" % (n, path, len(value)))
    for path, value in info.class_counts:
        if value != n:
            raise ConvertError(
                "vocabulary mismatch: the tokenizer has %d pieces but %s = %s" % (n, path, show(value)))


# ---------------------------------------------------------------------------
# PyTorch checkpoint
# ---------------------------------------------------------------------------

class DType:
    def __init__(self, torch_name, itemsize, in_code, out_name, out_itemsize):
        self.torch_name = torch_name      # for messages
        self.itemsize = itemsize          # bytes per element in the checkpoint
        self.in_code = in_code            # how to convert (see convert_elements)
        self.out_name = out_name          # safetensors dtype written
        self.out_itemsize = out_itemsize


# torch.<Name>Storage -> element type.  Floats become F32 (the engine reads only
# F32); float64 is narrowed (rounded), the others widened exactly.
STORAGE_TYPES = {
    "FloatStorage": DType("float32", 4, "f32", "F32", 4),
    "HalfStorage": DType("float16", 2, "f16", "F32", 4),
    "BFloat16Storage": DType("bfloat16", 2, "bf16", "F32", 4),
    "DoubleStorage": DType("float64", 8, "f64", "F32", 4),
    "LongStorage": DType("int64", 8, "raw", "I64", 8),
    "IntStorage": DType("int32", 4, "raw", "I32", 4),
    "ShortStorage": DType("int16", 2, "raw", "I16", 2),
    "CharStorage": DType("int8", 1, "raw", "I8", 1),
    "ByteStorage": DType("uint8", 1, "raw", "U8", 1),
    "BoolStorage": DType("bool", 1, "raw", "BOOL", 1),
}


class StorageType:
    """What find_class returns for torch.<X>Storage: just the element type."""

    def __init__(self, dtype):
        self.dtype = dtype


class StorageRef:
    def __init__(self, key, dtype, numel):
        self.key = key
        self.dtype = dtype
        self.numel = numel


class TensorRef:
    """A tensor of the checkpoint, not yet read: where its elements are."""

    def __init__(self, storage, offset, shape, stride):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride

    @property
    def dtype(self):
        return self.storage.dtype

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


def _ints(value, what):
    if not isinstance(value, (tuple, list)) or not all(_is_int(x) and x >= 0 for x in value):
        raise ConvertError("corrupt checkpoint: bad tensor %s %r" % (what, value))
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
    # requires_grad, backward_hooks[, metadata]): only the first four matter.
    if not isinstance(storage, StorageRef) or not _is_int(storage_offset) or storage_offset < 0:
        raise ConvertError("corrupt checkpoint: bad tensor record")
    size = _ints(size, "shape")
    stride = _ints(stride, "stride")
    if len(size) != len(stride):
        raise ConvertError("corrupt checkpoint: tensor shape %r and stride %r differ in rank"
                           % (size, stride))
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    # torch._utils._rebuild_parameter(data, requires_grad, backward_hooks):
    # a Parameter is its data for our purposes.
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict and nothing else: no name outside ALLOWED is
    ever resolved, so a checkpoint cannot make us run code."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def find_class(self, module, name):
        fn = self.ALLOWED.get((module, name))
        if fn is not None:
            return fn
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(STORAGE_TYPES[name])
        raise ConvertError("unsupported object in checkpoint: %s.%s" % (module, name))

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, number of elements)
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)
                or not _is_int(pid[4]) or pid[4] < 0):
            raise ConvertError("corrupt checkpoint: unsupported storage reference %r" % (pid,))
        return StorageRef(pid[2], pid[1].dtype, pid[4])


# What zipfile raises on a corrupt checkpoint; NotImplementedError: a zip version or compression
# zipfile does not read; RuntimeError: a record flagged as encrypted (torch.save never encrypts).
# Shared by opening and every record read, like _TAR_ERRORS.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, OverflowError,
               NotImplementedError, RuntimeError)


class Checkpoint:
    """A PyTorch zip checkpoint: the state dict's TensorRefs, and their bytes."""

    def __init__(self, fileobj, label):
        self.label = label
        head = fileobj.read(8)
        fileobj.seek(0)
        if not head.startswith(b"PK"):
            if head[:1] == b"\x80":
                raise ConvertError(
                    "%s is a legacy (non-zip) PyTorch checkpoint, which is not supported; "
                    "re-save it with PyTorch >= 1.6 (torch.save's default zip format)" % label)
            raise ConvertError("corrupt checkpoint: %s is not a zip archive" % label)
        try:
            self.zip = zipfile.ZipFile(fileobj)
            names = self.zip.namelist()
        except _ZIP_ERRORS as e:
            raise ConvertError("corrupt checkpoint: %s: %s" % (label, e))
        pkls = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pkls) != 1:
            raise ConvertError("corrupt checkpoint: %s has %d data.pkl records (want 1)" % (label, len(pkls)))
        self.prefix = pkls[0][:-len("data.pkl")]
        self.names = set(names)
        self.big_endian = False
        if self.prefix + "byteorder" in self.names:
            order = self._read(self.prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise ConvertError("corrupt checkpoint: %s has byteorder %r" % (label, order))
            self.big_endian = order == "big"
        self.tensors = self._load_state_dict(self._read(pkls[0]))
        self._cache_key = None
        self._cache_data = None

    def _read(self, name):
        try:
            return self.zip.read(name)
        except KeyError:
            raise ConvertError("corrupt checkpoint: %s has no record %s" % (self.label, name))
        except _ZIP_ERRORS as e:
            raise ConvertError("corrupt checkpoint: %s: %s: %s" % (self.label, name, e))

    def _load_state_dict(self, pkl):
        try:
            obj = RestrictedUnpickler(io.BytesIO(pkl)).load()
        except ConvertError:
            raise
        except Exception as e:  # any malformed pickle; never a traceback
            raise ConvertError("corrupt checkpoint: %s: cannot unpickle data.pkl: %s: %s"
                               % (self.label, type(e).__name__, e))
        # torch.save(model.state_dict()) gives the dict itself; Lightning-style
        # checkpoints nest it under 'state_dict'.
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ConvertError("corrupt checkpoint: %s does not hold a state dict (got %s)"
                               % (self.label, type(obj).__name__))
        tensors = collections.OrderedDict()
        for name, value in obj.items():
            if not isinstance(name, str) or name == "__metadata__":
                # (__metadata__ is the one name a safetensors tensor cannot have)
                raise ConvertError("corrupt checkpoint: unusable state dict key %r" % (name,))
            if isinstance(value, TensorRef):
                tensors[name] = value
            elif name.endswith("_extra_state"):
                continue  # module extra state, not a weight
            else:
                raise ConvertError("unsupported checkpoint entry %s: a %s, not a tensor"
                                   % (name, type(value).__name__))
        if not tensors:
            raise ConvertError("corrupt checkpoint: %s holds no tensors" % self.label)
        return tensors

    def storage_bytes(self, storage):
        """Raw bytes of a storage, checked against its declared size."""
        if self._cache_key != storage.key:
            # Views of one storage are usually adjacent in a state dict, so
            # keeping the last storage avoids re-reading it.
            self._cache_data = None
            data = self._read(self.prefix + "data/" + storage.key)
            need = storage.numel * storage.dtype.itemsize
            if len(data) < need:
                raise ConvertError("corrupt checkpoint: storage %s has %d bytes, needs %d"
                                   % (storage.key, len(data), need))
            self._cache_key, self._cache_data = storage.key, data
        return self._cache_data

    def tensor_bytes(self, name):
        """The tensor as contiguous little-endian bytes of its output dtype."""
        t = self.tensors[name]
        raw = gather_contiguous(self.storage_bytes(t.storage), t, name)
        return convert_elements(raw, t.dtype, self.big_endian)


def gather_contiguous(data, t, name):
    """The tensor's elements, row-major, as raw bytes of its source dtype."""
    isz = t.dtype.itemsize
    n = t.numel
    if n == 0:
        return b""
    last = t.offset + sum((s - 1) * st for s, st in zip(t.shape, t.stride))
    if last >= t.storage.numel:
        raise ConvertError("corrupt checkpoint: tensor %s reaches element %d of a storage of %d"
                           % (name, last, t.storage.numel))
    view = memoryview(data)
    if is_contiguous(t.shape, t.stride):
        return view[t.offset * isz:(t.offset + n) * isz]
    # Non-contiguous (a transposed or sliced view): walk the outer indices and
    # copy the innermost dimension as one slice when it is dense.
    out = bytearray()
    inner_n = t.shape[-1] if t.shape else 1
    inner_s = t.stride[-1] if t.shape else 1
    for base in _outer_offsets(t.shape[:-1], t.stride[:-1], t.offset):
        if inner_s == 1:
            out += view[base * isz:(base + inner_n) * isz]
        else:
            for j in range(inner_n):
                p = (base + j * inner_s) * isz
                out += view[p:p + isz]
    return out


def is_contiguous(shape, stride):
    expected = 1
    for s, st in zip(reversed(shape), reversed(stride)):
        if s != 1 and st != expected:
            return False
        expected *= s
    return True


def _outer_offsets(shape, stride, base):
    if not shape:
        yield base
        return
    for i in range(shape[0]):
        yield from _outer_offsets(shape[1:], stride[1:], base + i * stride[0])


_BLOCK = 1 << 20  # elements converted per step, to bound memory on big tensors


def convert_elements(raw, dtype, big_endian):
    """Source-dtype bytes -> little-endian output-dtype bytes."""
    code = dtype.in_code
    if big_endian and dtype.itemsize > 1:
        raw = _byteswap(raw, dtype.itemsize)
    if code in ("f32", "raw"):
        return bytes(raw)
    if code == "bf16":
        # bfloat16 is the top half of a float32: put each 2-byte value in the
        # high half of a 4-byte little-endian word (exact by construction).
        n = len(raw) // 2
        out = bytearray(4 * n)
        out[2::4] = raw[0::2]
        out[3::4] = raw[1::2]
        return bytes(out)
    fmt = {"f16": "e", "f64": "d"}[code]
    out = bytearray()
    isz = dtype.itemsize
    for start in range(0, len(raw), _BLOCK * isz):
        chunk = raw[start:start + _BLOCK * isz]
        # struct decodes IEEE half/double exactly; array('f') stores the
        # Python floats as float32 (exact for half, rounded for double).
        values = struct.unpack("<%d%s" % (len(chunk) // isz, fmt), chunk)
        out += _le(array("f", values)).tobytes()
    return bytes(out)


def _byteswap(raw, itemsize):
    code = {2: "H", 4: "I", 8: "Q"}[itemsize]
    a = array(code)
    a.frombytes(bytes(raw))
    a.byteswap()
    return a.tobytes()


def _le(a):
    if sys.byteorder == "big":
        a.byteswap()
    return a


# ---------------------------------------------------------------------------
# Required tensors
# ---------------------------------------------------------------------------

def required_tensors(info):
    """(name, expected shape or None) the engine needs; None in a shape = any."""
    d = info.d_model
    h = info.n_heads
    ff = None  # d_ff = d_model * ff_expansion_factor; not checked
    req = [
        ("preprocessor.featurizer.fb", [1, info.n_mels, info.n_fft // 2 + 1]),
        ("preprocessor.featurizer.window", [info.win_length]),
    ]
    req += _subsampling_tensors(info)

    def linear(name, out_dim, in_dim, bias=True):
        req.append((name + ".weight", [out_dim, in_dim]))
        if bias and info.use_bias:
            req.append((name + ".bias", [out_dim]))

    def norm(name):
        req.append((name + ".weight", [d]))
        req.append((name + ".bias", [d]))

    for i in range(info.n_layers):
        p = "encoder.layers.%d." % i
        for ffn in ("feed_forward1", "feed_forward2"):
            norm(p + "norm_" + ffn)
            linear(p + ffn + ".linear1", ff, d)
            linear(p + ffn + ".linear2", d, ff)
        norm(p + "norm_self_att")
        for proj in ("linear_q", "linear_k", "linear_v", "linear_out"):
            linear(p + "self_attn." + proj, d, d)
        linear(p + "self_attn.linear_pos", d, d, bias=False)
        req.append((p + "self_attn.pos_bias_u", [h, d // h]))
        req.append((p + "self_attn.pos_bias_v", [h, d // h]))
        norm(p + "norm_conv")
        req.append((p + "conv.pointwise_conv1.weight", [2 * d, d, 1]))
        req.append((p + "conv.depthwise_conv.weight", [d, 1, info.kernel]))
        req.append((p + "conv.pointwise_conv2.weight", [d, d, 1]))
        if info.use_bias:
            req.append((p + "conv.pointwise_conv1.bias", [2 * d]))
            req.append((p + "conv.depthwise_conv.bias", [d]))
            req.append((p + "conv.pointwise_conv2.bias", [d]))
        # NeMo names the conv module's norm 'batch_norm' whatever its type.
        norm(p + "conv.batch_norm")
        if info.conv_norm == "batch_norm":
            req.append((p + "conv.batch_norm.running_mean", [d]))
            req.append((p + "conv.batch_norm.running_var", [d]))
        norm(p + "norm_out")

    v1 = info.vocab_size + 1  # the heads have one more output: blank
    if info.kind == "ctc":
        ctc_heads = ["decoder"]
    elif info.kind == "hybrid":
        ctc_heads = ["ctc_decoder"]
    else:
        ctc_heads = []
    for head in ctc_heads:
        req.append((head + ".decoder_layers.0.weight", [v1, d, 1]))
        req.append((head + ".decoder_layers.0.bias", [v1]))
    if info.kind in ("rnnt", "hybrid"):
        ph = info.pred_hidden if _is_int(info.pred_hidden) else None
        jh = info.joint_hidden if _is_int(info.joint_hidden) else None
        g = 4 * ph if ph else None
        lstm = "decoder.prediction.dec_rnn.lstm."
        req += [
            ("decoder.prediction.embed.weight", [v1, ph]),
            (lstm + "weight_ih_l0", [g, ph]),
            (lstm + "weight_hh_l0", [g, ph]),
            (lstm + "bias_ih_l0", [g]),
            (lstm + "bias_hh_l0", [g]),
            ("joint.enc.weight", [jh, d]),
            ("joint.enc.bias", [jh]),
            ("joint.pred.weight", [jh, ph]),
            ("joint.pred.bias", [jh]),
            ("joint.joint_net.2.weight", [v1, jh]),
            ("joint.joint_net.2.bias", [v1]),
        ]
    return req


def _subsampling_tensors(info):
    """The pre-encode convolutions: NeMo's ConvSubsampling with stride-2 3x3
    convolutions, one stage per factor of 2, in an nn.Sequential whose ReLUs
    take indices too.  The frequency axis shrinks to n // 2 + 1 per stage
    with causal padding (2 before, 1 after)."""
    c = info.conv_channels
    stages = info.factor.bit_length() - 1
    req = [("encoder.pre_encode.conv.0.weight", [c, 1, 3, 3]),
           ("encoder.pre_encode.conv.0.bias", [c])]
    for k in range(1, stages):
        if info.subsampling == "dw_striding":
            # conv, relu, then per stage: depthwise conv, pointwise conv, relu
            dw, pw = 3 * k - 1, 3 * k
            req += [("encoder.pre_encode.conv.%d.weight" % dw, [c, 1, 3, 3]),
                    ("encoder.pre_encode.conv.%d.bias" % dw, [c]),
                    ("encoder.pre_encode.conv.%d.weight" % pw, [c, c, 1, 1]),
                    ("encoder.pre_encode.conv.%d.bias" % pw, [c])]
        else:
            # conv, relu, then per stage: conv, relu
            req += [("encoder.pre_encode.conv.%d.weight" % (2 * k), [c, c, 3, 3]),
                    ("encoder.pre_encode.conv.%d.bias" % (2 * k), [c])]
    freq = info.n_mels
    for _ in range(stages):
        freq = freq // 2 + 1
    req += [("encoder.pre_encode.out.weight", [info.d_model, c * freq]),
            ("encoder.pre_encode.out.bias", [info.d_model])]
    return req


def check_tensors(tensors, info):
    for name, shape in required_tensors(info):
        t = tensors.get(name)
        if t is None:
            raise ConvertError("checkpoint is missing tensor %s" % name)
        if shape is not None:
            ok = len(shape) == len(t.shape) and all(
                want is None or want == got for want, got in zip(shape, t.shape))
            if not ok:
                want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
                raise ConvertError("tensor %s has shape %s, expected %s"
                                   % (name, list(t.shape), want))
        if t.dtype.out_name != "F32" and not name.endswith("num_batches_tracked"):
            raise ConvertError("tensor %s has dtype %s, expected a floating-point type"
                               % (name, t.dtype.torch_name))


# ---------------------------------------------------------------------------
# safetensors output
# ---------------------------------------------------------------------------

def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def build_header(tensors, metadata):
    """The padded JSON header and, per tensor, its (begin, end) in the data.

    The data section starts 64-byte aligned (the header is padded with spaces
    to make it so) and every tensor's offset within it is a multiple of 64,
    so every tensor starts at a multiple of 64 from the start of the file.
    """
    header = collections.OrderedDict()
    header["__metadata__"] = metadata
    offsets = collections.OrderedDict()
    pos = 0
    for name, t in tensors.items():
        pos = _align(pos)
        nbytes = t.numel * t.dtype.out_itemsize
        offsets[name] = (pos, pos + nbytes)
        header[name] = collections.OrderedDict([
            ("dtype", t.dtype.out_name),
            ("shape", list(t.shape)),
            ("data_offsets", [pos, pos + nbytes]),
        ])
        pos += nbytes
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    padded = _align(8 + len(text)) - 8
    return text + b" " * (padded - len(text)), offsets, pos


def write_safetensors(out_path, checkpoint, metadata):
    """Write atomically: a temporary file in the output's folder, then rename."""
    header, offsets, data_size = build_header(checkpoint.tensors, metadata)
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(out_path) + ".",
                                        suffix=".tmp", dir=folder)
    except OSError as e:
        raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or e))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            pos = 0
            for name, (begin, end) in offsets.items():
                f.write(b"\0" * (begin - pos))
                data = checkpoint.tensor_bytes(name)
                if len(data) != end - begin:  # would be a bug here, not bad input
                    raise AssertionError("tensor %s: %d bytes, header says %d"
                                         % (name, len(data), end - begin))
                f.write(data)
                pos = end
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, out_path)
    except OSError as e:
        _remove_quietly(tmp_path)
        raise ConvertError("cannot write %s: %s" % (out_path, e.strerror or e))
    except BaseException:
        _remove_quietly(tmp_path)
        raise
    return 8 + len(header) + data_size


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------

def convert(nemo_path, out_path):
    """Convert; return a one-line summary.  Raises ConvertError on bad input."""
    if os.path.isdir(out_path):
        raise ConvertError("output %s is a directory" % out_path)
    if os.path.exists(out_path) and os.path.exists(nemo_path) and os.path.samefile(nemo_path, out_path):
        raise ConvertError("output %s is the input file" % out_path)
    out_folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_folder):
        raise ConvertError("cannot write %s: folder %s does not exist" % (out_path, out_folder))

    archive = NemoArchive(nemo_path)
    ckpt_file = None
    try:
        try:
            text = archive.read("model_config.yaml").decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConvertError("model_config.yaml is not UTF-8 text (%s)" % e.reason)
        cfg = load_config(text)
        info = validate_config(cfg)

        tok_name = tokenizer_member_name(cfg)
        if not archive.has(tok_name) and not archive.truncated:
            raise ConvertError("%s has no %s (the tokenizer named by tokenizer.model_path)"
                               % (nemo_path, tok_name))
        pieces = parse_sentencepiece(archive.read(tok_name))
        check_vocabulary(pieces, info)
        info.vocab_size = len(pieces)

        ckpt_file = archive.open_seekable("model_weights.ckpt")
        checkpoint = Checkpoint(ckpt_file, "model_weights.ckpt")
        check_tensors(checkpoint.tensors, info)

        metadata = collections.OrderedDict([
            ("earshot.format", FORMAT_VERSION),
            ("earshot.model_kind", info.kind),
            ("earshot.config", config_to_json(cfg)),
            ("earshot.vocabulary", json.dumps(pieces, ensure_ascii=False)),
            ("earshot.source", os.path.basename(nemo_path)),
        ])
        size = write_safetensors(out_path, checkpoint, metadata)
    finally:
        if ckpt_file is not None:
            ckpt_file.close()
        archive.close()

    looks = " ".join("[%d,%d]" % tuple(p) for p in info.lookaheads)
    return ("%s: %s model, %d layers, d_model %d, vocabulary %d (+ blank), look-aheads %s, "
            "%d tensors, %d bytes" % (out_path, info.kind, info.n_layers, info.d_model,
                                      info.vocab_size, looks, len(checkpoint.tensors), size))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a NeMo cache-aware streaming FastConformer .nemo archive "
                    "(CTC, RNNT or hybrid) into an Earshot model file (safetensors; "
                    "see docs/model-format.md). Needs only Python 3 and PyYAML.",
        epilog="Exit status: 0 converted, 1 bad or unsupported input, 2 usage error.")
    parser.add_argument("model", metavar="MODEL.nemo", help="the NeMo archive to read")
    parser.add_argument("output", metavar="OUT.safetensors", help="the model file to write")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = convert(args.model, args.output)
    except ConvertError as e:
        # One line, whatever a library's message had in it.
        print("%s: %s" % (PROG, " ".join(str(e).split())), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("%s: interrupted" % PROG, file=sys.stderr)
        return 130
    except MemoryError:
        print("%s: out of memory" % PROG, file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
