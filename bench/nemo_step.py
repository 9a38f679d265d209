#!/usr/bin/env python3
"""Time NeMo's own PyTorch cache-aware streaming step on this CPU.

This is the reference figure Earshot is compared against. It imports the
installed `nemo_toolkit` (see bench/requirements-nemo.txt), builds NeMo's
`ConformerEncoder` with random weights configured like NVIDIA's 114M
cache-aware streaming FastConformer (17 layers, d_model 512, 8x dw_striding
causal subsampling, att_context_size [[70,13],[70,6],[70,1],[70,0]]), and
times `encoder.cache_aware_stream_step(...)` on steady-state chunks for each
look-ahead mode and batch size.

A steady-state (non-first) chunk is pre_encode_cache_size + chunk_size[1] mel
columns wide (9 + 8*(1+R) for right context R) and is run with
drop_extra_pre_encoded from encoder.streaming_cfg, exactly as NeMo's
CacheAwareStreamingAudioBuffer / speech_to_text_cache_aware_streaming_infer.py
do for every chunk after the first. The caches start from
encoder.get_initial_cache_state(batch_size=B); cache_last_channel_len is set
to the full left context (70) so every step attends over a full cache, and the
caches each step returns are fed to the next step, as a live stream does.

Usage (from the repository root):
    bench/.venv/bin/python bench/nemo_step.py                       # all modes, B=1,4,16, 2 threads
    bench/.venv/bin/python bench/nemo_step.py --modes 160 --batch 1 --json out.json

"streams/s" is how many real-time streams one process sustains:
    B * chunk_seconds / median_step_seconds
where chunk_seconds is the audio one step consumes (chunk_size[1] * 10 ms).
"""

import argparse
import json
import logging as pylogging
import os
import platform
import statistics
import sys
import time
import warnings

# Each look-ahead mode (chunk length in ms) -> att_context_size [left, right].
MODES_MS = {1120: [70, 13], 560: [70, 6], 160: [70, 1], 80: [70, 0]}

ENCODER_CFG = dict(
    feat_in=80,
    n_layers=17,
    d_model=512,
    n_heads=8,
    ff_expansion_factor=4,
    subsampling="dw_striding",
    subsampling_factor=8,
    subsampling_conv_channels=256,
    causal_downsampling=True,
    conv_kernel_size=9,
    conv_norm_type="layer_norm",
    conv_context_size="causal",
    att_context_style="chunked_limited",
    att_context_size=[[70, 13], [70, 6], [70, 1], [70, 0]],
    xscaling=True,
    untie_biases=True,
    self_attention_model="rel_pos",
)

MEL_HOP_S = 0.01  # 10 ms mel hop


def parse_int_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def pct(values, q):
    """q-th percentile (0..100) with linear interpolation."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--modes", default="1120,560,160,80", help="chunk modes in ms (default 1120,560,160,80)")
    ap.add_argument("--batch", default="1,4,16", help="batch sizes (default 1,4,16)")
    ap.add_argument("--seconds-per-case", type=float, default=5.0, help="timed wall seconds per (mode, B) case")
    ap.add_argument("--min-steps", type=int, default=5,
                    help="timed steps per case at least (default 5; on a loaded machine a case stops after "
                         "3 steps once 3x --seconds-per-case have passed)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per case (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sdpa", action="store_true", help="use_pytorch_sdpa=True (NeMo default and the 114M model: off)")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON here")
    args = ap.parse_args()

    modes = parse_int_list(args.modes)
    batches = parse_int_list(args.batch)
    for m in modes:
        if m not in MODES_MS:
            ap.error(f"unknown mode {m} ms; choose from {sorted(MODES_MS)}")

    # Quiet NeMo's import-time chatter (missing ffmpeg, Megatron, telemetry).
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(pylogging.ERROR)
    from nemo.collections.asr.modules import ConformerEncoder

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    enc = ConformerEncoder(**ENCODER_CFG, use_pytorch_sdpa=args.sdpa)
    enc.eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in enc.parameters())

    import nemo

    meta = {
        "torch": torch.__version__,
        "nemo_toolkit": nemo.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "os_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "encoder_params": n_params,
        "encoder_cfg": ENCODER_CFG,
        "use_pytorch_sdpa": args.sdpa,
        "seconds_per_case": args.seconds_per_case,
        "warmup_steps": args.warmup,
        "loadavg_start": loadavg(),
    }
    print(
        f"# NeMo {meta['nemo_toolkit']}  torch {meta['torch']}  threads {meta['torch_threads']}  "
        f"cpu '{meta['cpu']}' x{meta['os_cpus']}  params {n_params/1e6:.1f}M  build {build_s:.1f}s  "
        f"loadavg {meta['loadavg_start']}",
        flush=True,
    )

    header = f"{'mode_ms':>7} {'B':>3} {'in_cols':>7} {'out_fr':>6} {'steps':>5} {'median_ms':>10} {'p90_ms':>9} {'streams/s':>10} {'load1':>5}"
    print(header, flush=True)

    results = []
    gen = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        for mode in modes:
            enc.set_default_att_context_size(MODES_MS[mode])
            enc.setup_streaming_params()
            cfg = enc.streaming_cfg
            pre_cache = cfg.pre_encode_cache_size
            pre_cache = pre_cache[1] if isinstance(pre_cache, list) else pre_cache
            chunk = cfg.chunk_size[1] if isinstance(cfg.chunk_size, list) else cfg.chunk_size
            width = pre_cache + chunk
            chunk_s = chunk * MEL_HOP_S
            drop = cfg.drop_extra_pre_encoded

            for B in batches:
                feats = torch.randn(B, ENCODER_CFG["feat_in"], width, generator=gen)
                lengths = torch.full((B,), width, dtype=torch.int64)
                c_ch, c_t, c_len = enc.get_initial_cache_state(batch_size=B)
                # Steady state: a full left-context cache (the shapes and the work
                # are the same either way; only the mask values differ).
                c_len.fill_(cfg.last_channel_cache_size)
                c_ch.normal_(generator=gen)
                c_t.normal_(generator=gen)

                def step(c_ch, c_t, c_len):
                    out, out_len, c_ch, c_t, c_len = enc.cache_aware_stream_step(
                        processed_signal=feats,
                        processed_signal_length=lengths,
                        cache_last_channel=c_ch,
                        cache_last_time=c_t,
                        cache_last_channel_len=c_len,
                        keep_all_outputs=True,
                        drop_extra_pre_encoded=drop,
                    )
                    return out, c_ch, c_t, c_len

                for _ in range(args.warmup):
                    out, c_ch, c_t, c_len = step(c_ch, c_t, c_len)
                out_frames = out.shape[-1]

                times = []
                t_case = time.perf_counter()
                while True:
                    ts = time.perf_counter()
                    out, c_ch, c_t, c_len = step(c_ch, c_t, c_len)
                    times.append(time.perf_counter() - ts)
                    elapsed = time.perf_counter() - t_case
                    if len(times) >= args.min_steps and elapsed >= args.seconds_per_case:
                        break
                    # Bound the run on a loaded machine: at least 3 steps, at most ~3x the budget.
                    if len(times) >= 3 and elapsed >= 3 * args.seconds_per_case:
                        break

                med = statistics.median(times)
                p90 = pct(times, 90)
                streams = B * chunk_s / med
                la = loadavg()
                r = {
                    "mode_ms": mode,
                    "att_context_size": MODES_MS[mode],
                    "batch": B,
                    "input_mel_columns": width,
                    "drop_extra_pre_encoded": drop,
                    "output_frames": int(out_frames),
                    "chunk_seconds": chunk_s,
                    "steps": len(times),
                    "median_step_ms": med * 1e3,
                    "p90_step_ms": p90 * 1e3,
                    "mean_step_ms": statistics.fmean(times) * 1e3,
                    "min_step_ms": min(times) * 1e3,
                    "streams_per_wall_second": streams,
                    "loadavg_1min_after": la[0] if la else None,
                }
                results.append(r)
                print(
                    f"{mode:>7} {B:>3} {width:>7} {out_frames:>6} {len(times):>5} "
                    f"{med*1e3:>10.2f} {p90*1e3:>9.2f} {streams:>10.2f} {la[0] if la else float('nan'):>5.1f}",
                    flush=True,
                )

    meta["loadavg_end"] = loadavg()
    print(f"# loadavg at end {meta['loadavg_end']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"# wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
