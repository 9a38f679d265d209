# nemo_io.py - read and write NeMo's .nemo archives (no NeMo needed).
#
# A .nemo is a tar (NeMo's SaveRestoreConnector writes it uncompressed) holding
#   ./model_config.yaml    the model config (OmegaConf YAML)
#   ./model_weights.ckpt   torch.save(state_dict) in PyTorch's zip format
#   ./<32 hex>_tokenizer.model, _vocab.txt, _tokenizer.vocab   the SentencePiece tokenizer,
#                          referenced from the config as nemo:<name>
# read_nemo() returns the config, the state dict and the tokenizer bytes; write_nemo() writes
# the same layout, naming the artifacts the way NeMo does (a random 32-hex prefix).

import io
import os
import sys
import tarfile
import time
import uuid

import torch
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "convert"))
import earshot_convert  # noqa: E402

# The tokenizer's files: the config key that names each in the archive, and its name in a
# tokenizer folder (what tokenizer.py writes and write_nemo reads).
TOKENIZER_FILES = {"model_path": "tokenizer.model", "vocab_path": "vocab.txt",
                   "spe_tokenizer_vocab": "tokenizer.vocab"}


def load_yaml(text):
    """model_config.yaml as NeMo reads it: OmegaConf's floats ('1e-5'), interpolations resolved.
    The converter's reader, so that the recipe and earshot-convert see the same config."""
    return earshot_convert.load_config(text)


def dump_yaml(cfg):
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _strip(name):
    while name.startswith("./"):
        name = name[2:]
    return name


def _artifact(cfg_path):
    if not isinstance(cfg_path, str):
        return None
    if cfg_path.startswith("nemo:"):
        cfg_path = cfg_path[5:]
    return cfg_path.replace("\\", "/").rsplit("/", 1)[-1]


def read_nemo(path):
    """-> (config dict, state dict, {member name: bytes} of the tokenizer artifacts,
    tokenizer model bytes)."""
    with tarfile.open(path, "r:*") as tar:
        members = {_strip(m.name): m for m in tar.getmembers() if m.isfile()}

        def read(name):
            return tar.extractfile(members[name]).read()

        cfg = load_yaml(read("model_config.yaml").decode("utf-8"))
        sd = torch.load(io.BytesIO(read("model_weights.ckpt")), map_location="cpu")
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        tok = cfg.get("tokenizer", {}) or {}
        artifacts = {}
        for key in TOKENIZER_FILES:
            name = _artifact(tok.get(key))
            if name and name in members:
                artifacts[key] = (name, read(name))
        tok_model = artifacts["model_path"][1] if "model_path" in artifacts else None
    return cfg, sd, artifacts, tok_model


def write_nemo(path, cfg, state_dict, tokenizer_dir):
    """Write a .nemo: cfg (dict; its tokenizer paths are rewritten), the state dict, and the
    tokenizer files tokenizer.model, tokenizer.vocab, vocab.txt from tokenizer_dir."""
    cfg = dict(cfg)
    tok = dict(cfg.get("tokenizer") or {})
    tok.setdefault("dir", None)
    tok["type"] = "bpe"
    members = []
    for key, base in TOKENIZER_FILES.items():
        p = os.path.join(tokenizer_dir, base)
        if not os.path.exists(p):
            continue
        name = "%s_%s" % (uuid.uuid4().hex, base)
        tok[key] = "nemo:" + name
        with open(p, "rb") as f:
            members.append((name, f.read()))
    cfg["tokenizer"] = tok

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, buf)
    members = [("model_config.yaml", dump_yaml(cfg).encode("utf-8")),
               ("model_weights.ckpt", buf.getvalue())] + members

    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        now = time.time()
        for name, data in members:
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            info.mtime = now
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return cfg
