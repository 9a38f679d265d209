#!/usr/bin/env python3
"""fuzz_convert.py - atheris (libFuzzer for Python) target: earshot-convert's parsers.

The first byte of each input picks a parser: the model config (YAML text -> validation), the
SentencePiece tokenizer (protobuf), or the PyTorch checkpoint (zip + restricted unpickler);
the rest is that parser's input. Every refusal must be a ConvertError with its one-line reason:
any other exception (a traceback for the user) is a finding and stops the fuzzer.

    fuzz_convert.py [libFuzzer flags] WORK_CORPUS SEED_CORPUS
"""
import io
import os
import sys

import atheris

with atheris.instrument_imports():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "convert"))
    import earshot_convert as ec


def parse_config(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # convert() refuses non-UTF-8 before parsing
    cfg = ec.load_config(text)
    info = ec.validate_config(cfg)
    ec.tokenizer_member_name(cfg)
    ec.config_to_json(cfg)
    return info


def parse_tokenizer(data):
    ec.parse_sentencepiece(data)


def parse_checkpoint(data):
    ckpt = ec.Checkpoint(io.BytesIO(data), "model_weights.ckpt")
    for name in list(ckpt.tensors)[:8]:
        ckpt.tensor_bytes(name)


PARSERS = (parse_config, parse_tokenizer, parse_checkpoint)


def test_one(data):
    if not data:
        return
    try:
        PARSERS[data[0] % len(PARSERS)](data[1:])
    except ec.ConvertError:
        pass


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
