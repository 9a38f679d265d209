#!/usr/bin/env python3
# tokenizer.py - train a SentencePiece BPE tokenizer the way NeMo's create_spt_model does.
#
# Input: NeMo manifests (JSON lines with "text") or plain text files; the text is taken as is
# (make_data.py already lower-cases and normalises it).  Output in OUT_DIR: tokenizer.model,
# tokenizer.vocab and vocab.txt (NeMo's: "▁x" -> "x", "x" -> "##x", <unk> left out), which
# export.py packs into the .nemo.  Options as NeMo's script: BPE, character coverage 1.0, no
# BOS/EOS, <unk> = id 0, lower-case normalisation (nmt_nfkc_cf).
#
#   /usr/bin/python3 models/train/tokenizer.py --manifest train.json --vocab-size 256 --out tok/

import argparse
import json
import os
import sys
import tempfile

import sentencepiece


def read_texts(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                if path.endswith((".json", ".jsonl")):
                    yield json.loads(line)["text"]
                else:
                    yield line


def train_tokenizer(texts, out_dir, vocab_size, lower_case=True, max_piece_len=-1):
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        n = 0
        for t in texts:
            f.write(t.strip() + "\n")
            n += 1
        data = f.name
    try:
        args = ("--input=%s --model_prefix=%s/tokenizer --vocab_size=%d --shuffle_input_sentence=true "
                "--hard_vocab_limit=false --model_type=bpe --character_coverage=1.0 --bos_id=-1 --eos_id=-1"
                % (data, out_dir, vocab_size))
        if lower_case:
            args += " --normalization_rule_name=nmt_nfkc_cf"
        if max_piece_len > 0:
            args += " --max_sentencepiece_length=%d" % max_piece_len
        sentencepiece.SentencePieceTrainer.Train(args + " --minloglevel=2")
    finally:
        os.unlink(data)
    tokens = []
    with open(os.path.join(out_dir, "tokenizer.vocab"), encoding="utf-8") as f:
        for line in f:
            piece = line.split("\t")[0]
            if piece == "<unk>":
                continue
            tok = piece[1:] if piece.startswith("\u2581") else "##" + piece
            tokens.append(tok if tok else piece[0])
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        for t in tokens:
            f.write(t + "\n")
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    return sp, n


def load(out_dir):
    return sentencepiece.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))


def main(argv=None):
    ap = argparse.ArgumentParser(description="train a SentencePiece BPE tokenizer the way NeMo does")
    ap.add_argument("--manifest", nargs="+", required=True, help="NeMo manifests (.json) or text files")
    ap.add_argument("--vocab-size", type=int, default=256)
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args(argv)
    sp, n = train_tokenizer(read_texts(a.manifest), a.out, a.vocab_size)
    print("tokenizer: %d pieces from %d lines -> %s" % (sp.get_piece_size(), n, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
