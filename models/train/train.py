#!/usr/bin/env python3
# train.py - train a cache-aware streaming FastConformer (CTC) for Earshot, in plain PyTorch.
#
# Design
# ------
# The model is earshot_model.EncDecModel, built from a NeMo model config (make_config below), so
# its state dict is NeMo's and export.py can write a .nemo that earshot-convert and NeMo read.
# Training follows NeMo's recipe for cache-aware streaming models:
#   - on-the-fly log-mel features (dither in training), SpecAugment;
#   - chunked_limited attention with several look-aheads; each batch draws one look-ahead at
#     random (att_context_probs, uniform by default), as NeMo's ConformerEncoder does;
#   - CTC loss (blank = last id), NeMo's 'mean_batch' reduction (per-utterance sums, batch mean);
#   - AdamW, Noam (NeMo's NoamAnnealing) or cosine schedule with warmup, gradient clipping.
# Data: NeMo manifests (JSON lines: audio_filepath, duration, text), or packs of Opus packets
# (opus_pack.py: a folder given in place of a manifest, decoded into memory at the start; what a
# GPU machine without libsndfile or room for FLAC trains from, see gpu_train.sh).  Utterances are sorted by
# duration and cut into batches of at most --batch-seconds of audio; each epoch visits the
# batches in an order drawn from (seed, epoch), so the data position is just (epoch, index).
# Checkpoints (--out/last.pt, every --save-every steps and at the end) hold the model, the
# optimizer, the scheduler, every RNG state and the data position: --resume continues exactly
# where the run stopped (tests/test_engine.py checks that 2+2 steps equal 4 steps bit for bit).
# One progress line per --log-every steps: step, epoch, loss, learning rate, audio seconds per
# wall second.
#
#   /usr/bin/python3 models/train/train.py --train-manifest data/train.json --dev-manifest data/dev.json \
#       --tokenizer tok/ --out run/ --d-model 176 --n-layers 8 --max-steps 20000
#   /usr/bin/python3 models/train/train.py --out run/ --resume        # continue run/last.pt

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import earshot_model  # noqa: E402
import tokenizer as tokenizer_mod  # noqa: E402


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------

def parse_lookaheads(text):
    """'70,13;70,6;70,1;70,0' -> [[70,13],[70,6],[70,1],[70,0]]"""
    out = []
    for part in text.split(";"):
        l, r = part.split(",")
        out.append([int(l), int(r)])
    return out


def _ds(shuffle, max_duration):
    return {"manifest_filepath": None, "sample_rate": 16000, "batch_size": 16, "shuffle": shuffle,
            "num_workers": 0, "pin_memory": False, "max_duration": max_duration, "min_duration": 0.1,
            "use_start_end_token": False}


def preprocessor_config(n_mels, normalize):
    """NeMo's AudioToMelSpectrogramPreprocessor config: the front end Earshot's engine computes."""
    return {
        "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
        "sample_rate": 16000, "normalize": normalize, "window_size": 0.025, "window_stride": 0.01,
        "window": "hann", "features": n_mels, "n_fft": 512, "log": True, "frame_splicing": 1,
        "dither": 1e-05, "pad_to": 0, "pad_value": 0.0,
    }


def make_config(a, vocabulary):
    """A NeMo config (as model_config.yaml holds it) for the options in a: EncDecCTCModelBPE, or
    with --model-kind hybrid EncDecHybridRNNTCTCBPEModel (RNNT decoder + joint, CTC as aux_ctc)."""
    lookaheads = parse_lookaheads(a.lookaheads)
    n = len(vocabulary)
    cfg = {
        "sample_rate": 16000,
        "log_prediction": True,
        "ctc_reduction": "mean_batch",
        "skip_nan_grad": False,
        "tokenizer": {"dir": None, "type": "bpe"},
        "preprocessor": preprocessor_config(a.n_mels, getattr(a, "feature_stats", None) or "NA"),
        "spec_augment": {
            "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
            "freq_masks": a.freq_masks, "time_masks": a.time_masks, "freq_width": 27, "time_width": 0.05,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": a.n_mels, "feat_out": -1, "n_layers": a.n_layers, "d_model": a.d_model,
            "use_bias": True, "subsampling": "dw_striding", "subsampling_factor": a.subsampling_factor,
            "subsampling_conv_channels": a.conv_channels, "causal_downsampling": True,
            "ff_expansion_factor": a.ff_expansion, "self_attention_model": "rel_pos", "n_heads": a.n_heads,
            "att_context_size": lookaheads if len(lookaheads) > 1 else lookaheads[0],
            "att_context_style": "chunked_limited", "att_context_probs": None,
            "xscaling": True, "untie_biases": True, "pos_emb_max_len": 5000,
            "conv_kernel_size": a.conv_kernel, "conv_norm_type": "layer_norm", "conv_context_size": "causal",
            "dropout": a.dropout, "dropout_pre_encoder": a.dropout, "dropout_emb": 0.0,
            "dropout_att": a.dropout, "stochastic_depth_drop_prob": 0.0, "stochastic_depth_mode": "linear",
            "stochastic_depth_start_layer": 1,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": a.d_model, "num_classes": n, "vocabulary": list(vocabulary),
        },
        "decoding": {"strategy": "greedy"},
        "optim": {"name": "adamw", "lr": a.lr, "betas": [0.9, 0.98], "weight_decay": a.weight_decay,
                  "sched": {"name": "NoamAnnealing" if a.schedule == "noam" else "CosineAnnealing",
                            "d_model": a.d_model, "warmup_steps": a.warmup, "min_lr": a.min_lr}},
        "labels": list(vocabulary),
        "train_ds": _ds(True, a.max_duration),
        "validation_ds": _ds(False, 40.0),
        "test_ds": _ds(False, 40.0),
        "target": earshot_model.CTC_TARGET,
    }
    if getattr(a, "model_kind", "ctc") == "hybrid":
        ctc_dec = cfg.pop("decoder")
        cfg.pop("decoding")
        labels, ds = cfg.pop("labels"), {k: cfg.pop(k) for k in ("train_ds", "validation_ds", "test_ds")}
        target = cfg.pop("target")
        cfg["model_defaults"] = {"enc_hidden": a.d_model, "pred_hidden": a.pred_hidden,
                                 "joint_hidden": a.joint_hidden}
        cfg["compute_eval_loss"] = False
        cfg["decoder"] = {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder", "normalization_mode": None,
            "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": a.pred_hidden, "pred_rnn_layers": 1, "t_max": None, "dropout": 0.2},
            "vocab_size": n}
        cfg["joint"] = {
            "_target_": "nemo.collections.asr.modules.RNNTJoint", "log_softmax": None, "preserve_memory": False,
            "fuse_loss_wer": True, "fused_batch_size": 4,
            "jointnet": {"joint_hidden": a.joint_hidden, "activation": "relu", "dropout": 0.2,
                         "encoder_hidden": a.d_model, "pred_hidden": a.pred_hidden},
            "num_classes": n, "vocabulary": list(vocabulary)}
        cfg["decoding"] = {"strategy": "greedy_batch", "greedy": {"max_symbols": 10}}
        cfg["loss"] = {"loss_name": "default"}
        cfg["aux_ctc"] = {"ctc_loss_weight": a.ctc_weight, "use_cer": False, "ctc_reduction": "mean_batch",
                          "decoder": ctc_dec, "decoding": {"strategy": "greedy"}}
        cfg["labels"] = labels
        cfg.update(ds)
        cfg["target"] = earshot_model.HYBRID_TARGET
        del target
    return cfg


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def read_manifest(path, min_dur=0.1, max_dur=20.0, jobs=1):
    if os.path.isdir(path):  # an Opus pack (opus_pack.py)
        import opus_pack
        return [it for it in opus_pack.load(path, max_duration=max_dur, jobs=jobs) if it["duration"] >= min_dur]
    items = []
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            dur = float(d.get("duration", 0.0))
            if dur < min_dur or dur > max_dur:
                continue
            p = d["audio_filepath"]
            if not os.path.isabs(p):
                p = os.path.join(base, p)
            items.append({"audio": p, "duration": dur, "text": d["text"]})
    return items


def load_audio(path):
    """float32 mono 16 kHz, int16 / 32768 as NeMo reads it."""
    import soundfile
    x, sr = soundfile.read(path, dtype="float32", always_2d=True)
    if sr != 16000:
        raise ValueError("%s: sample rate %d (16000 expected)" % (path, sr))
    return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]


def make_batches(items, batch_seconds, max_batch):
    order = sorted(range(len(items)), key=lambda i: items[i]["duration"])
    batches, cur = [], []
    for i in order:
        longest = max([items[j]["duration"] for j in cur] + [items[i]["duration"]])
        if cur and (longest * (len(cur) + 1) > batch_seconds or len(cur) >= max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def epoch_order(n_batches, seed, epoch):
    order = list(range(n_batches))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    return order


def collate(items, idxs, sp):
    audios = [items[i]["pcm"] if "pcm" in items[i] else load_audio(items[i]["audio"]) for i in idxs]
    lens = torch.tensor([len(x) for x in audios], dtype=torch.long)
    audio = torch.zeros(len(audios), int(lens.max()))
    for k, x in enumerate(audios):
        audio[k, :len(x)] = torch.from_numpy(x)
    toks = [items[i]["ids"] if "ids" in items[i] else sp.encode(items[i]["text"]) for i in idxs]
    tlen = torch.tensor([len(t) for t in toks], dtype=torch.long)
    targets = torch.zeros(len(toks), max(1, int(tlen.max())), dtype=torch.long)
    for k, t in enumerate(toks):
        targets[k, :len(t)] = torch.tensor(t, dtype=torch.long)
    seconds = float(lens.sum()) / 16000.0
    return audio, lens, targets, tlen, seconds


def measure_feature_stats(items, n_mels, limit=400):
    """Per mel bin mean and standard deviation of the log-mel features over the valid frames of
    up to `limit` utterances spread over the set: NeMo's fixed normalisation
    (normalize: {fixed_mean, fixed_std}), which a stream applies frame by frame.
    Why: with normalize NA the bins differ by several units in level (the top bins of band-limited
    speech sit at the log floor) and CTC training stays on its blank plateau; with these
    statistics it leaves it within a few hundred steps (models/README.md)."""
    pre = earshot_model.AudioToMelSpectrogramPreprocessor(preprocessor_config(n_mels, "NA"))
    pre.eval()  # no dither
    step = max(1, len(items) // limit)
    total = torch.zeros(n_mels, dtype=torch.float64)
    total_sq = torch.zeros(n_mels, dtype=torch.float64)
    count = 0
    for it in items[::step][:limit]:
        x = it["pcm"] if "pcm" in it else load_audio(it["audio"])
        feats, n = pre(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None], torch.tensor([len(x)]))
        f = feats[0, :, :int(n[0])].double()
        total += f.sum(1)
        total_sq += (f * f).sum(1)
        count += f.size(1)
    if count < 2:
        raise SystemExit("--normalize fixed: no training audio to measure feature statistics on")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp(min=1e-4).sqrt()
    return {"fixed_mean": [round(float(v), 6) for v in mean], "fixed_std": [round(float(v), 6) for v in std]}


# ---------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------

class Schedule:
    """Learning rate per step.  noam: NeMo's NoamAnnealing, lr * d^-0.5 * min(s^-0.5, s * w^-1.5)
    (floored at min_lr); cosine: linear warmup, then cosine from lr down to min_lr at max_steps."""

    def __init__(self, optimizer, kind, lr, warmup, max_steps, min_lr, d_model):
        self.opt, self.kind, self.lr, self.warmup = optimizer, kind, lr, max(1, warmup)
        self.max_steps, self.min_lr, self.d_model = max_steps, min_lr, d_model
        self.step_num = 0
        self._apply()

    def value(self, s):
        s = max(1, s)
        if self.kind == "noam":
            v = self.lr * self.d_model ** -0.5 * min(s ** -0.5, s * self.warmup ** -1.5)
            return max(v, self.min_lr) if s > self.warmup else v
        if s <= self.warmup:
            return self.lr * s / self.warmup
        frac = min(1.0, (s - self.warmup) / max(1, self.max_steps - self.warmup))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * frac))

    def _apply(self):
        for g in self.opt.param_groups:
            g["lr"] = self.value(self.step_num + 1)

    def step(self):
        self.step_num += 1
        self._apply()

    def state_dict(self):
        return {"step_num": self.step_num}

    def load_state_dict(self, d):
        self.step_num = d["step_num"]
        self._apply()

    def current(self):
        return self.opt.param_groups[0]["lr"]


# ---------------------------------------------------------------------------
# Loss, evaluation
# ---------------------------------------------------------------------------

def ctc_loss(model, encoded, enc_len, targets, tlen):
    log_probs = model.ctc_head(encoded)  # [B, T, V+1]
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, enc_len, tlen, blank=model.blank_id,
                      reduction="none", zero_infinity=True)
    return loss.mean(), log_probs


def rnnt_loss(logits, targets, f_len, t_len, blank):
    """Negative log-likelihood of the RNN-T lattice (Graves 2012), per utterance.

    logits [B, T, U+1, V+1].  alpha(t, u) = logaddexp(alpha(t-1, u) + blank(t-1, u),
    alpha(t, u-1) + emit(t, u-1)); along u the recurrence is a log-space prefix sum, so each
    time step is one logcumsumexp over u:
        alpha(t, u) = E(u) + logcumsumexp_k (a(k) - E(k)),  E(u) = sum_{j<u} emit(t, j),
        a(k) = alpha(t-1, k) + blank(t-1, k)   (a(0) = 0 at t = 0, -inf elsewhere).
    Computed in float64; autograd gives the gradient."""
    lp = logits.double().log_softmax(-1)
    b, t_max, u1, _ = lp.shape
    blank_lp = lp[..., blank]  # [B, T, U+1]
    emit = lp[:, :, :-1, :].gather(-1, targets[:, None, :u1 - 1, None].expand(b, t_max, u1 - 1, 1)).squeeze(-1)
    zero = lp.new_zeros(b, t_max, 1)
    E = torch.cat([zero, emit.cumsum(-1)], dim=-1)  # [B, T, U+1]
    alphas = []
    neg_inf = lp.new_full((b, u1), float("-inf"))
    prev = None
    for t in range(t_max):
        if t == 0:
            a = neg_inf.clone()
            a[:, 0] = 0.0
        else:
            a = prev + blank_lp[:, t - 1]
        cur = E[:, t] + torch.logcumsumexp(a - E[:, t], dim=-1)
        alphas.append(cur)
        prev = cur
    alpha = torch.stack(alphas, dim=1)  # [B, T, U+1]
    idx_t = (f_len - 1).clamp(min=0)
    bi = torch.arange(b, device=lp.device)
    ll = alpha[bi, idx_t, t_len] + blank_lp[bi, idx_t, t_len]
    return -ll


def model_loss(model, encoded, enc_len, targets, tlen, ctc_weight):
    """CTC (ctc model), RNNT (rnnt) or (1 - w) RNNT + w CTC (hybrid, NeMo's weighting);
    NeMo's 'mean_batch' reduction: per-utterance sums, mean over the batch."""
    parts = {}
    if model.kind in ("ctc", "hybrid"):
        parts["ctc"], _ = ctc_loss(model, encoded, enc_len, targets, tlen)
    if model.kind in ("rnnt", "hybrid"):
        g, _ = model.decoder.predict(targets, None, add_sos=True)
        logits = model.joint(encoded.transpose(1, 2), g)
        parts["rnnt"] = rnnt_loss(logits, targets, enc_len, tlen, model.blank_id).mean().float()
    if model.kind == "ctc":
        return parts["ctc"], parts
    if model.kind == "rnnt":
        return parts["rnnt"], parts
    return (1 - ctc_weight) * parts["rnnt"] + ctc_weight * parts["ctc"], parts


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


@torch.no_grad()
def evaluate(model, items, sp, att_context_size=None, batch_seconds=120.0, limit=None, decoder="ctc"):
    """Greedy WER over items (a manifest's entries) with one look-ahead; decoder ctc or rnnt."""
    was = model.training
    model.eval()
    errs = words = 0
    sel = items[:limit] if limit else items
    for idxs in make_batches(sel, batch_seconds, 64):
        audio, lens, _, _, _ = collate(sel, idxs, sp)
        device = next(model.parameters()).device
        audio, lens = audio.to(device), lens.to(device)
        enc, enc_len = model(audio, lens, att_context_size=att_context_size)
        if model.kind == "ctc" or (model.kind == "hybrid" and decoder == "ctc"):
            hyps = model.ctc_greedy(model.ctc_head(enc), enc_len)
        else:
            hyps = model.rnnt_greedy(enc, enc_len)
        for k, toks in enumerate(hyps):
            hyp = sp.decode(toks).split()
            ref = sel[idxs[k]]["text"].split()
            errs += edit_distance(ref, hyp)
            words += len(ref)
    model.train(was)
    return errs / max(1, words)


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------

def rng_state(rng):
    return {"python": rng.getstate(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "global_python": random.getstate()}


def set_rng_state(rng, st):
    rng.setstate(st["python"])
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["global_python"])


def deadline_time(hhmm, now):
    """The epoch time of the next HH:MM (UTC) at or after `now`.  A time of day already past today
    means tomorrow's: a run started at 23:00 with --deadline 01:30 trains 2.5 hours, not 0."""
    try:
        hh, mm = (int(x) for x in hhmm.split(":"))
    except ValueError:
        raise SystemExit("--deadline: expected HH:MM (UTC), got %r" % hhmm)
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise SystemExit("--deadline: %r is not a time of day (00:00 to 23:59)" % hhmm)
    midnight = now - now % 86400  # epoch time has no leap seconds, so days are 86400 s in UTC
    target = midnight + hh * 3600 + mm * 60
    return target if target >= now else target + 86400


def save_checkpoint(path, model, opt, sched, rng, pos, args, cfg, history):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": rng_state(rng), "position": dict(pos), "args": vars(args), "config": cfg,
                "history": history}, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def save_tokenizer(artifacts, tok_dir, nemo_path):
    """Writes a .nemo's tokenizer files (read_nemo's artifacts) into tok_dir, as tokenizer.py
    names them. A folder that already holds a tokenizer.model is left as it is."""
    import nemo_io
    if os.path.exists(os.path.join(tok_dir, "tokenizer.model")):
        return
    if "model_path" not in artifacts:
        raise SystemExit("--init-from %s: the archive holds no tokenizer.model; give --tokenizer" % nemo_path)
    os.makedirs(tok_dir, exist_ok=True)
    for key, (_, data) in artifacts.items():
        with open(os.path.join(tok_dir, nemo_io.TOKENIZER_FILES[key]), "wb") as f:
            f.write(data)


def build_parser():
    ap = argparse.ArgumentParser(description="train a cache-aware streaming FastConformer CTC model")
    ap.add_argument("--train-manifest")
    ap.add_argument("--dev-manifest")
    ap.add_argument("--tokenizer", help="folder with tokenizer.model (made by tokenizer.py); "
                    "when absent: --init-from's own, else made from the training texts")
    ap.add_argument("--vocab-size", type=int, default=32,
                    help="SentencePiece BPE pieces (default 32: letters, apostrophe and a few word starts)")
    ap.add_argument("--out", required=True, help="run folder: last.pt, model.nemo, log")
    ap.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly")
    ap.add_argument("--init-from", help="start from the weights of a .nemo with the same config "
                    "(and its tokenizer, unless --tokenizer names one with the same pieces)")
    # model
    ap.add_argument("--model-kind", choices=["ctc", "hybrid"], default="ctc",
                    help="ctc: CTC head; hybrid: RNNT decoder + joint with CTC as auxiliary head")
    ap.add_argument("--pred-hidden", type=int, default=160, help="hybrid: prediction network width")
    ap.add_argument("--joint-hidden", type=int, default=160, help="hybrid: joint width")
    ap.add_argument("--ctc-weight", type=float, default=0.3, help="hybrid: weight of the CTC loss")
    ap.add_argument("--d-model", type=int, default=112)
    ap.add_argument("--n-layers", type=int, default=5)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--ff-expansion", type=int, default=4)
    ap.add_argument("--conv-kernel", type=int, default=9)
    ap.add_argument("--conv-channels", type=int, default=128)
    ap.add_argument("--subsampling-factor", type=int, default=4)
    ap.add_argument("--n-mels", type=int, default=80)
    ap.add_argument("--lookaheads", default="84,13;84,3;84,1",
                    help="att_context_size list, 'left,right;left,right;...' (first = default)")
    ap.add_argument("--normalize", choices=["fixed", "NA"], default="fixed",
                    help="feature normalisation: fixed (per mel bin mean and std measured on the training "
                    "set, stored in the model; default) or NA (none)")
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--freq-masks", type=int, default=2)
    ap.add_argument("--time-masks", type=int, default=2)
    # optimisation
    ap.add_argument("--lr", type=float, default=0.5, help="noam: scale (NeMo's lr); cosine: peak lr")
    ap.add_argument("--schedule", choices=["noam", "cosine"], default="noam")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--min-lr", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=10000, help="stop after this step (may grow on --resume)")
    ap.add_argument("--total-steps", type=int, help="length of the cosine schedule (default: --max-steps of "
                    "the first start; kept on --resume)")
    ap.add_argument("--batch-seconds", type=float, default=32.0, help="audio seconds per batch (padded)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-duration", type=float, default=16.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--deadline", help="stop (checkpoint, export) at the next HH:MM, UTC (tomorrow's "
                    "if that time of day has passed)")
    ap.add_argument("--minutes", type=float, help="stop (checkpoint, export) after this many minutes of training")
    ap.add_argument("--no-export", action="store_true")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "last.pt")
    resume = None
    if args.resume:
        resume = torch.load(ckpt_path, map_location="cpu")
        # What to compute comes from the checkpoint; where and how often to write and report comes
        # from this command line, so that a copied run folder resumes into itself.
        keep = {k: v for k, v in vars(args).items() if k in ("resume", "out", "max_steps", "threads", "device",
                                                             "deadline", "minutes", "log_every", "save_every",
                                                             "eval_every", "eval_limit", "no_export")}
        vars(args).update(resume["args"])
        vars(args).update(keep)
    if not args.total_steps:
        args.total_steps = args.max_steps
    deadline = deadline_time(args.deadline, time.time()) if args.deadline else None  # refuse a bad one now
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tok_dir = args.tokenizer or os.path.join(args.out, "tokenizer")
    train_items = read_manifest(args.train_manifest, max_dur=args.max_duration, jobs=args.threads)
    init = None  # (config, state dict) of --init-from
    if args.init_from and not resume:
        import nemo_io
        init_cfg, init_sd, init_tok, _ = nemo_io.read_nemo(args.init_from)
        init = (init_cfg, init_sd)
        if not args.tokenizer:  # the weights' own tokenizer, not a new one trained on these texts
            save_tokenizer(init_tok, tok_dir, args.init_from)
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.model")):
        tokenizer_mod.train_tokenizer((it["text"] for it in train_items), tok_dir, args.vocab_size)
    args.tokenizer = tok_dir
    sp = tokenizer_mod.load(tok_dir)
    vocabulary = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if init:
        want = init[0].get("labels")  # the vocabulary, in CTC and hybrid configs alike
        if want is not None and list(want) != vocabulary:
            raise SystemExit("--tokenizer %s has other pieces than the model in %s (%d and %d pieces): its "
                             "weights would read the wrong tokens; leave --tokenizer out to use the "
                             ".nemo's own" % (tok_dir, args.init_from, len(vocabulary), len(want)))
    if not resume and not init and args.normalize == "fixed":
        args.feature_stats = measure_feature_stats(train_items, args.n_mels)
    cfg = resume["config"] if resume else make_config(args, vocabulary)
    if init:  # the weights were trained on that model's features
        cfg["preprocessor"]["normalize"] = init[0]["preprocessor"].get("normalize", "NA")
    model = earshot_model.EncDecModel(cfg)
    if init:
        model.load_state_dict(init[1])
    device = torch.device(args.device)
    model.to(device)
    dev_items = read_manifest(args.dev_manifest, jobs=args.threads) if args.dev_manifest else []

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in n or "pos_bias" in n else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    sched = Schedule(opt, args.schedule, args.lr, args.warmup, args.total_steps, args.min_lr, args.d_model)
    batches = make_batches(train_items, args.batch_seconds, args.max_batch)
    pos = {"step": 0, "epoch": 0, "index": 0}
    history = []
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        pos = resume["position"]
        history = resume.get("history", [])
        set_rng_state(rng, resume["rng"])
    n_params = sum(p.numel() for p in model.parameters())
    print("model: %d parameters (%.2fM), %d layers x d_model %d, look-aheads %s, vocabulary %d; "
          "%d utterances (%.1f h) in %d batches; device %s, %d threads"
          % (n_params, n_params / 1e6, args.n_layers, args.d_model, model.encoder.att_context_size_all,
             len(vocabulary), len(train_items), sum(i["duration"] for i in train_items) / 3600, len(batches),
             device, args.threads), flush=True)
    if pos["step"]:
        print("resumed at step %d (epoch %d, batch %d)" % (pos["step"], pos["epoch"], pos["index"]), flush=True)

    if args.minutes:
        until = time.time() + args.minutes * 60
        deadline = until if deadline is None else min(deadline, until)

    model.train()
    order = epoch_order(len(batches), args.seed, pos["epoch"])
    t_last, sec_acc, loss_acc, tok_acc, n_acc = time.time(), 0.0, 0.0, 0.0, 0
    t_start = time.time()
    audio_total = 0.0
    while pos["step"] < args.max_steps:
        if pos["index"] >= len(batches):
            pos["epoch"] += 1
            pos["index"] = 0
            order = epoch_order(len(batches), args.seed, pos["epoch"])
        idxs = batches[order[pos["index"]]]
        audio, lens, targets, tlen, seconds = collate(train_items, idxs, sp)
        audio, lens, targets, tlen = audio.to(device), lens.to(device), targets.to(device), tlen.to(device)
        acs = model.encoder.pick_att_context(rng)
        encoded, enc_len = model(audio, lens, att_context_size=acs, rng=rng)
        loss, parts = model_loss(model, encoded, enc_len, targets, tlen, args.ctc_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        pos["step"] += 1
        pos["index"] += 1
        sec_acc += seconds
        audio_total += seconds
        loss_acc += float(loss)
        tok_acc += float(loss) * len(idxs) / max(1, int(tlen.sum()))
        n_acc += 1
        if pos["step"] % args.log_every == 0 or pos["step"] == args.max_steps:
            now = time.time()
            rate = sec_acc / max(1e-9, now - t_last)
            rec = {"step": pos["step"], "epoch": pos["epoch"], "loss": loss_acc / n_acc,
                   "loss_per_token": tok_acc / n_acc, "lr": sched.current(),
                   "parts": {k: float(v) for k, v in parts.items()},
                   "audio_s_per_s": rate, "time": round(now - t_start, 1)}
            history.append(rec)
            print("step %6d  epoch %3d  loss %8.4f (%.3f per token)  lr %.2e  look-ahead %-8s  %.1f audio-s/s  %.0fs"
                  % (pos["step"], pos["epoch"], rec["loss"], rec["loss_per_token"], rec["lr"], "%d,%d" % tuple(acs), rate,
                     now - t_start), flush=True)
            t_last, sec_acc, loss_acc, tok_acc, n_acc = now, 0.0, 0.0, 0.0, 0
        stop = deadline is not None and time.time() > deadline
        if pos["step"] % args.save_every == 0 or pos["step"] == args.max_steps or stop:
            save_checkpoint(ckpt_path, model, opt, sched, rng, pos, args, cfg, history)
        if dev_items and (pos["step"] % args.eval_every == 0 or pos["step"] == args.max_steps or stop):
            decs = ["ctc"] if model.kind == "ctc" else (["rnnt"] if model.kind == "rnnt" else ["rnnt", "ctc"])
            wers = {"%s %d,%d" % (dec, la[0], la[1]): evaluate(model, dev_items, sp, la, limit=args.eval_limit,
                                                              decoder=dec)
                    for dec in decs for la in model.encoder.att_context_size_all}
            history.append({"step": pos["step"], "dev_wer": wers})
            print("step %6d  dev WER %s" % (pos["step"], "  ".join("[%s] %.2f%%" % (k, 100 * v)
                                                                for k, v in wers.items())), flush=True)
            save_checkpoint(ckpt_path, model, opt, sched, rng, pos, args, cfg, history)
        if stop:
            print("deadline reached at step %d" % pos["step"], flush=True)
            break
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump(history, f)
    if not args.no_export:
        import export
        path = os.path.join(args.out, "model.nemo")
        export.export(ckpt_path, path)
        print("exported %s" % path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
