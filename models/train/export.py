#!/usr/bin/env python3
# export.py - write a training checkpoint (train.py's last.pt) as a NeMo .nemo archive.
#
# The archive holds what NeMo's save_to writes: model_config.yaml (the NeMo config the model was
# built from, tokenizer paths pointing into the archive as nemo:<hex>_tokenizer.model etc.),
# model_weights.ckpt (torch.save of the state dict, NeMo's names) and the tokenizer files.
# earshot-convert turns it into an Earshot model; NeMo's restore_from loads it too.
#
#   /usr/bin/python3 models/train/export.py run/last.pt run/model.nemo

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import earshot_model  # noqa: E402
import nemo_io  # noqa: E402


def export(ckpt_path, out_path, tokenizer_dir=None):
    ck = torch.load(ckpt_path, map_location="cpu")
    cfg = ck["config"]
    model = earshot_model.EncDecModel(cfg)
    model.load_state_dict(ck["model"])  # strict: the names are NeMo's
    tok = tokenizer_dir or ck["args"]["tokenizer"]
    if not os.path.isabs(tok) and not os.path.exists(tok):
        tok = os.path.join(os.path.dirname(ckpt_path), tok)
    return nemo_io.write_nemo(out_path, cfg, model.state_dict(), tok)


def main(argv=None):
    ap = argparse.ArgumentParser(description="export a train.py checkpoint as a .nemo")
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--tokenizer", help="tokenizer folder (default: the one the run used)")
    a = ap.parse_args(argv)
    export(a.checkpoint, a.output, a.tokenizer)
    print("wrote %s" % a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
