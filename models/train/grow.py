#!/usr/bin/env python3
# grow.py - a deeper model that starts out computing exactly what a trained one computes.
#
# A small model that has stopped improving on its data is short of capacity. Training a larger
# one from scratch throws away hours of CPU; instead this inserts new conformer layers between
# the trained ones, each set up to pass its input through unchanged, and training goes on from
# there (train.py --init-from OUT --n-layers N).
#
# Why a new layer is an identity: a conformer layer adds four branches (feed-forward, attention,
# convolution, feed-forward) to its input and ends in a LayerNorm. The branches' last projections
# start at zero, so they add nothing; their other weights keep a fresh random initialisation, so
# gradients reach them as soon as the projections move. The closing LayerNorm is the subtle
# part: LayerNorm(x) is not x. But the layer before the new one also ends in a LayerNorm, so
# its affine part (scale and shift) moves to the new layer's closing LayerNorm, and it keeps
# only the normalisation. Normalising an already normalised vector changes it only by the
# LayerNorm's epsilon, so the deeper model's outputs equal the old ones to about 1e-5.
#
#   /usr/bin/python3 models/train/grow.py models/earshot-en-small.nemo /tmp/grown.nemo --after 0,2,4

import argparse
import copy
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import earshot_model  # noqa: E402
import nemo_io  # noqa: E402

# The last projection of each branch: zero, so the branch adds nothing at first.
ZEROED = ("feed_forward1.linear2", "self_attn.linear_out", "conv.pointwise_conv2", "feed_forward2.linear2")


def grow(cfg, state_dict, after, seed=0):
    """-> (config, state dict) of a model with a new identity layer after each index in `after`
    (indices of the old model's layers, 0-based; repeats insert several)."""
    n_old = cfg["encoder"]["n_layers"]
    for i in after:
        if not 0 <= i < n_old:
            raise ValueError("layer index %d is outside 0..%d" % (i, n_old - 1))
    new_cfg = copy.deepcopy(cfg)
    new_cfg["encoder"]["n_layers"] = n_old + len(after)
    torch.manual_seed(seed)
    fresh = earshot_model.EncDecModel(new_cfg).state_dict()  # random weights for the new layers

    def layer_params(sd, i):
        prefix = "encoder.layers.%d." % i
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}

    # The new order: each old layer, then the new layers that follow it.
    plan = []  # ("old", i) or ("new", i of the old layer it follows)
    for i in range(n_old):
        plan.append(("old", i))
        plan.extend(("new", i) for _ in range(after.count(i)))

    out = {k: v for k, v in state_dict.items() if not k.startswith("encoder.layers.")}
    handed_over = None
    for j, (kind, i) in enumerate(plan):
        if kind == "old":
            params = {k: v.clone() for k, v in layer_params(state_dict, i).items()}
        else:
            params = {k: v.clone() for k, v in layer_params(fresh, j).items()}
            for name in ZEROED:
                for suffix in (".weight", ".bias"):
                    if name + suffix in params:
                        params[name + suffix].zero_()
            params["norm_out.weight"], params["norm_out.bias"] = handed_over
            if not cfg["encoder"].get("untie_biases", True):
                # Every layer then holds the encoder's one shared position bias, and loading
                # writes each layer's copy into it in turn: the new layers must carry its value.
                for bias in ("self_attn.pos_bias_u", "self_attn.pos_bias_v"):
                    params[bias] = state_dict["encoder.layers.0." + bias].clone()
        if j + 1 < len(plan) and plan[j + 1][0] == "new":
            # Hand this layer's output affine over to the new layer that follows.
            handed_over = (params["norm_out.weight"].clone(), params["norm_out.bias"].clone())
            params["norm_out.weight"].fill_(1.0)
            params["norm_out.bias"].zero_()
        for k, v in params.items():
            out["encoder.layers.%d.%s" % (j, k)] = v
    # Carry forward the new model's key order (NeMo's), so the state dict reads like NeMo's.
    ordered = {k: out[k] for k in fresh}
    missing = set(out) - set(ordered)
    if missing:
        raise ValueError("unexpected parameters: %s" % ", ".join(sorted(missing)[:5]))
    return new_cfg, ordered


def main(argv=None):
    ap = argparse.ArgumentParser(description="insert identity conformer layers into a trained .nemo")
    ap.add_argument("input", help="a .nemo of a cache-aware FastConformer (train.py's or NeMo's)")
    ap.add_argument("output", help="the deeper .nemo")
    ap.add_argument("--after", required=True,
                    help="comma-separated indices of the old layers each new layer follows, e.g. 0,2,4")
    ap.add_argument("--seed", type=int, default=0, help="seed of the new layers' random weights")
    a = ap.parse_args(argv)
    try:
        after = [int(x) for x in a.after.split(",") if x.strip()]
    except ValueError:
        ap.error("--after takes comma-separated layer indices")
    cfg, sd, artifacts, _ = nemo_io.read_nemo(a.input)
    try:
        new_cfg, new_sd = grow(cfg, sd, after, a.seed)
    except ValueError as e:
        print("grow: %s" % e, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tok_dir:
        for key, (_, data) in artifacts.items():
            with open(os.path.join(tok_dir, nemo_io.TOKENIZER_FILES[key]), "wb") as f:
                f.write(data)
        nemo_io.write_nemo(a.output, new_cfg, new_sd, tok_dir)
    n = sum(v.numel() for v in new_sd.values())
    print("grow: %d -> %d layers, %.2fM parameters: wrote %s"
          % (cfg["encoder"]["n_layers"], new_cfg["encoder"]["n_layers"], n / 1e6, a.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
