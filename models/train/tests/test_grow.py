#!/usr/bin/env python3
# test_grow.py - grow.py's deeper model computes what the model it grew from computes, and can learn.
#
# For every golden case's model.nemo (NeMo's own checkpoints: layer and batch norm convolutions,
# CTC, RNNT and hybrid heads, one or several look-aheads) and the shipped model, it inserts new
# layers (two after the first layer, one after the last) and checks:
#   - the encoder's output for the case's audio, at every look-ahead, equals the old model's
#     (max|err| <= 1e-4 * max|ref|, DESIGN.md's tolerance);
#   - the state dict has a freshly built deeper model's names in its order (so NeMo and
#     earshot-convert read it), and the old layers' weights are where they belong;
#   - gradients reach the new layers' zeroed projections, so training can move them;
#   - the .nemo grow.py writes reads back with the new depth and the same tokenizer;
#   - a layer index outside the model is refused.
# Plain script: prints one line per check, then "N passed, N failed"; exits 1 on any failure.
#
#   /usr/bin/python3 models/train/tests/test_grow.py

import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import earshot_model  # noqa: E402
import grow  # noqa: E402
import nemo_io  # noqa: E402
from test_golden import REPO, TOL, Results, default_cases, read_wav  # noqa: E402


def load(cfg, sd):
    model = earshot_model.EncDecModel(cfg)
    model.load_state_dict(sd)
    model.eval()
    return model


def check_model(res, name, nemo_path, audio):
    cfg, sd, _, _ = nemo_io.read_nemo(nemo_path)
    n_old = cfg["encoder"]["n_layers"]
    after = [0, 0, n_old - 1]
    new_cfg, new_sd = grow.grow(cfg, sd, after, seed=7)
    old_model, new_model = load(cfg, sd), load(new_cfg, new_sd)

    x = torch.tensor(audio)[None]
    lens = torch.tensor([len(audio)])
    for acs in old_model.encoder.att_context_size_all:
        with torch.no_grad():
            ref, ref_len = old_model(x, lens, att_context_size=acs, augment=False)
            out, out_len = new_model(x, lens, att_context_size=acs, augment=False)
        err = float((out - ref).abs().max())
        scale = float(ref.abs().max())
        res.check(out.shape == ref.shape and torch.equal(out_len, ref_len) and err <= TOL * scale,
                  "%s look-ahead %s" % (name, acs),
                  "%d -> %d layers, max|err| %.2e (limit %.2e)" % (n_old, n_old + len(after), err, TOL * scale))

    fresh_names = list(earshot_model.EncDecModel(new_cfg).state_dict())
    res.check(list(new_sd) == fresh_names and new_cfg["encoder"]["n_layers"] == n_old + len(after),
              "%s names" % name, "%d tensors in a fresh %d-layer model's order" % (len(new_sd), n_old + len(after)))
    # old layer i lands at i plus the new layers inserted before it: 0 -> 0, 1 -> 3, last -> last + 2
    moved = all(torch.equal(sd["encoder.layers.%d.feed_forward1.linear1.weight" % i],
                            new_sd["encoder.layers.%d.feed_forward1.linear1.weight" % j])
                for i, j in [(0, 0), (1, 3), (n_old - 1, n_old + 1)] if i < n_old)
    res.check(moved, "%s placement" % name, "old layers 0, 1 and the last keep their weights at 0, 3 and %d"
              % (n_old + 1))

    new_model.train()
    for p in new_model.parameters():
        p.grad = None
    out, _ = new_model(x, lens, att_context_size=new_model.encoder.att_context_size_all[0], augment=False)
    (out ** 2).mean().backward()
    layer = new_model.encoder.layers[1]  # the first inserted layer
    grads = [float(layer.feed_forward1.linear2.weight.grad.abs().max()),
             float(layer.self_attn.linear_out.weight.grad.abs().max()),
             float(layer.conv.pointwise_conv2.weight.grad.abs().max()),
             float(layer.feed_forward2.linear2.weight.grad.abs().max())]
    res.check(all(g > 0 for g in grads), "%s gradients" % name,
              "largest gradient of each zeroed projection: %s" % ", ".join("%.1e" % g for g in grads))


def main():
    res = Results()
    cases = [(os.path.basename(c), os.path.join(c, "model.nemo"), read_wav(os.path.join(c, "audio.wav")))
             for c in default_cases()]
    shipped = os.path.join(REPO, "models", "earshot-en-small.nemo")
    if os.path.exists(shipped) and cases:
        cases.append(("earshot-en-small", shipped, cases[0][2]))
    if not cases:
        print("no golden cases found (set EARSHOT_GOLDEN_DIR)")
        return 1
    for name, path, audio in cases:
        check_model(res, name, path, audio)

    # The command line: writes a .nemo that reads back deeper, with the same tokenizer.
    name, path, _ = cases[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grown.nemo")
        run = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "grow.py"), path, out,
                              "--after", "0"], capture_output=True, text=True)
        cfg, _, _, tok = nemo_io.read_nemo(path)
        ok = run.returncode == 0 and os.path.exists(out)
        if ok:
            new_cfg, _, _, new_tok = nemo_io.read_nemo(out)
            ok = new_cfg["encoder"]["n_layers"] == cfg["encoder"]["n_layers"] + 1 and new_tok == tok
        res.check(ok, "grow.py %s" % name, (run.stdout + run.stderr).strip())
        bad = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "grow.py"), path, out,
                              "--after", "99"], capture_output=True, text=True)
        res.check(bad.returncode == 2 and "outside" in bad.stderr, "grow.py refuses layer 99", bad.stderr.strip())

    print("%d passed, %d failed" % (res.passed, res.failed))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
