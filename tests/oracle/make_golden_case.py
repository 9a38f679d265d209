#!/usr/bin/env python3
"""make_golden_case.py - builds a golden case for Earshot with NVIDIA NeMo's own code.

A golden case is one tiny NeMo ASR model with seeded random weights, one spoken utterance, and
everything NeMo computes for it: the mel features, the offline encoder outputs, cache-aware
streaming chunk by chunk (NeMo's CacheAwareStreamingAudioBuffer + ConformerEncoder.
cache_aware_stream_step) with the caches, and the CTC / RNNT greedy results. The layout is the one
../shared/golden/README.md documents (same files, array names, shapes and manifest keys), so
build/tests/earshot-golden checks a case made here like the shared ones.

Every number comes from NeMo's modules; this script only builds the model, draws the weights,
cuts nothing itself (the buffer cuts the chunks) and writes the results down. Requires the NeMo
venv (bench/.venv: nemo_toolkit 2.5.3, torch CPU), espeak-ng and sox. CI never runs it.

  bench/.venv/bin/python tests/oracle/make_golden_case.py --preset NAME OUT_DIR
      builds the preset model (see PRESETS), saves OUT_DIR/model.nemo and writes the case.
  bench/.venv/bin/python tests/oracle/make_golden_case.py --verify CASE_DIR
      recomputes every array of an existing case from its model.nemo + audio.wav with this
      script's code and compares them with the case's .npy files (a check of this oracle).
  bench/.venv/bin/python tests/oracle/make_golden_case.py --list

How the weights are drawn (seeded, torch.Generator): weight matrices / conv kernels uniform in
+-sqrt(3 / fan_in); biases uniform in +-0.2; LayerNorm / BatchNorm gains in [0.6, 1.4], shifts
+-0.2; BatchNorm running means +-0.3 and variances [0.5, 2]; pos_bias_u/v +-0.5; the RNNT
embedding's blank (padding) row stays zero. Three adjustments keep the outputs from being the
same every frame: the first subsampling conv's kernels have zero sum (the log-mel's offset
cancels), without xscaling the pre-encode output layer is drawn sqrt(d_model) wider, and the CTC
head and the joint's encoder projection get the time-mean encoder output direction projected out.
The output layers (CTC head, RNNT joint output) are drawn 3x wider so that decisions are
clear-cut, and the blank logit gets an offset: for CTC the midpoint of the widest gap in the
sorted (best non-blank - blank) margins between the 35% and 65% quantiles (so roughly half of the
frames are blank and no frame sits near the switch), for RNNT a bisection to about 0.4 tokens per
frame. If any argmax decision (CTC frames and RNNT joint calls, offline and streaming, every
look-ahead) then has a top-1/top-2 log-prob gap below MIN_GAP, the output layer is redrawn; the
counts and gaps go to manifest.weight_randomisation. The case is then written from the model
restored from the saved model.nemo and the saved audio.wav. The unpacked model_weights.ckpt copy
(the biggest file) is only written with --with-weights.

Streaming follows the README: pad_and_drop_preencoded=False, drop_extra_pre_encoded 0 on the first
chunk and streaming_cfg.drop_extra_pre_encoded after, keep_all_outputs = buffer exhausted after the
chunk. The features are those of the buffer's own preprocessor (get_all_audios() hands the same
tensor to the offline passes). In the `regular` style NeMo cannot stream a chunk that yields fewer
encoder frames than cache_drop_size (its cache update would shrink the cache), so the walk stops
before such a chunk and manifest.lookaheads[i].stream.stopped_early says where. RNNT greedy is NeMo's GreedyRNNTInfer
(max_symbols 10) with the hypothesis of the previous chunk passed as partial_hypotheses, which is
what conformer_stream_step does with greedy decoding.
"""

import argparse
import json
import logging as pylogging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings

warnings.filterwarnings("ignore")
pylogging.disable(pylogging.WARNING)

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

MIN_GAP = 1.1e-2  # every argmax decision keeps at least this top-1/top-2 log-prob gap
MAX_SYMBOLS = 10  # RNNT greedy: symbols per frame
MAX_REDRAWS = 200
RNNT_TOKENS_PER_FRAME = 0.4
# --verify: DESIGN.md's CPU tolerance. Another torch / librosa than the one that made a case moves the
# log-mel by ~1e-5 relative (the shared cases: NeMo 2.6.0rc0 + torch 1.13; here 2.5.3 + torch 2.7.1).
VERIFY_REL_TOL = 1e-4

# Text for the SentencePiece BPE tokenizer (lower-cased by create_spt_model's nmt_nfkc_cf rule).
TOKENIZER_TEXT = """\
a small boat drifted along the river while the children watched from the bridge
the library opens early on monday and closes late on friday evenings
she painted the fence green and then sat down to drink a cup of tea
many birds fly south for the winter and return when the days grow longer
the engineer checked every cable before switching the machine on again
our neighbours planted tomatoes beans and potatoes in the garden last spring
he forgot his umbrella at the station and walked home in the pouring rain
the museum shows old maps clocks and coins from distant countries
please remember to lock the door and turn off the lights when you leave
a bright moon rose over the hills and the valley became silent
the train to the coast leaves at nine and arrives shortly after noon
they counted the votes twice because the result was very close
fresh bread from the bakery smells wonderful in the morning
the teacher asked the students to read the first chapter by thursday
strong winds knocked down branches and blocked the narrow road
we listened to the radio while driving through the mountains at night
the doctor said that walking every day would help him recover quickly
my sister collects stamps postcards and letters from her travels
the orchestra played a quiet melody before the final loud chorus
water boils faster when the pot is covered with a lid
the farmer sold apples pears and plums at the weekend market
an old clock in the hall struck twelve as the guests arrived
the children built a castle of sand near the edge of the sea
reading a good book is the best way to spend a rainy afternoon
the pilot announced that the plane would land in twenty minutes
a quick brown fox jumps over the lazy dog near the river bank
the weather today is cloudy with a chance of light rain in the evening
please speak clearly into the microphone so the system can hear you
our meeting starts at ten and should end before lunch time
the cat slept on the warm windowsill all afternoon
"""

# The models. `encoder` entries override BASE_ENCODER; `lookaheads` is att_context_size.
PRESETS = {
    "ctc_striding8_ln": dict(
        kind="ctc",
        seed=5505,
        vocab_size=72,
        n_mels=64,
        text="a gentle breeze moved across the quiet harbour at dawn",
        voice="en-us",
        wpm=150,
        encoder=dict(
            subsampling="striding",
            subsampling_factor=8,
            subsampling_conv_channels=32,
            conv_norm_type="layer_norm",
            conv_kernel_size=5,
            n_layers=2,
            d_model=48,
            n_heads=2,
            att_context_style="chunked_limited",
            att_context_size=[[32, 3], [32, 0]],
            xscaling=False,
            untie_biases=True,
        ),
    ),
    "hybrid_regular_multi": dict(
        kind="hybrid",
        seed=6606,
        vocab_size=128,
        n_mels=80,
        text="seven green bottles stood on the kitchen shelf",
        voice="en-gb",
        wpm=150,
        pred_hidden=48,
        joint_hidden=56,
        encoder=dict(
            subsampling="dw_striding",
            subsampling_factor=4,
            subsampling_conv_channels=-1,
            conv_norm_type="batch_norm",
            conv_kernel_size=7,
            n_layers=2,
            d_model=64,
            n_heads=4,
            att_context_style="regular",
            att_context_size=[[24, 2], [24, 1]],
            xscaling=True,
            untie_biases=False,  # one pos_bias_u/v pair shared by the layers
        ),
    ),
}

BASE_ENCODER = dict(
    _target_="nemo.collections.asr.modules.ConformerEncoder",
    feat_in=80,
    feat_out=-1,
    use_bias=True,
    subsampling="dw_striding",
    subsampling_factor=8,
    causal_downsampling=True,
    ff_expansion_factor=4,
    self_attention_model="rel_pos",
    att_context_style="chunked_limited",
    att_context_probs=None,
    xscaling=True,
    untie_biases=True,
    pos_emb_max_len=5000,
    conv_kernel_size=9,
    conv_norm_type="layer_norm",
    conv_context_size="causal",
    dropout=0.1,
    dropout_pre_encoder=0.1,
    dropout_emb=0.0,
    dropout_att=0.1,
    stochastic_depth_drop_prob=0.0,
    stochastic_depth_mode="linear",
    stochastic_depth_start_layer=1,
    n_layers=2,
    d_model=64,
    n_heads=4,
    subsampling_conv_channels=32,
    att_context_size=[70, 1],
)

MODEL_TARGETS = {
    "ctc": "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE",
    "rnnt": "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel",
    "hybrid": "nemo.collections.asr.models.hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel",
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# audio, tokenizer, config
# ---------------------------------------------------------------------------------------------


def make_audio(text, voice, wpm, path):
    """espeak-ng speech resampled by sox to 16 kHz mono s16 (no dither, so it is repeatable)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "espeak.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", raw, text], check=True)
        subprocess.run(["sox", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", path],
                       check=True)
    info = sf.info(path)
    if info.samplerate != 16000 or info.channels != 1 or info.subtype != "PCM_16":
        raise RuntimeError(f"{path}: not 16 kHz mono s16: {info}")
    return info.frames


def train_tokenizer(vocab_size, out_dir):
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model

    text_file = os.path.join(out_dir, "text.txt")
    with open(text_file, "w", encoding="utf8") as f:
        f.write(TOKENIZER_TEXT)
    model_path, vocab_path = create_spt_model(text_file, vocab_size, sample_size=-1, do_lower_case=True,
                                              tokenizer_type="bpe", output_dir=os.path.join(out_dir, "spt"))
    return os.path.dirname(model_path)


def model_config(preset, tokenizer_dir):
    enc = dict(BASE_ENCODER)
    enc.update(preset["encoder"])
    enc["feat_in"] = preset["n_mels"]
    d = enc["d_model"]
    cfg = dict(
        sample_rate=16000,
        log_prediction=True,
        ctc_reduction="mean_batch",
        skip_nan_grad=False,
        tokenizer=dict(dir=tokenizer_dir, type="bpe"),
        preprocessor=dict(
            _target_="nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            sample_rate=16000,
            normalize="NA",
            window_size=0.025,
            window_stride=0.01,
            window="hann",
            features=preset["n_mels"],
            n_fft=512,
            frame_splicing=1,
            dither=0.0,
            pad_to=0,
        ),
        encoder=enc,
    )
    ctc_head = dict(_target_="nemo.collections.asr.modules.ConvASRDecoder", feat_in=d, num_classes=-1,
                    vocabulary=[])
    if preset["kind"] == "ctc":
        cfg["decoder"] = ctc_head
        cfg["decoding"] = dict(strategy="greedy")
        return cfg
    H, J = preset["pred_hidden"], preset["joint_hidden"]
    cfg["model_defaults"] = dict(enc_hidden=d, pred_hidden=H, joint_hidden=J)
    cfg["compute_eval_loss"] = False
    cfg["decoder"] = dict(
        _target_="nemo.collections.asr.modules.RNNTDecoder",
        normalization_mode=None,
        random_state_sampling=False,
        blank_as_pad=True,
        prednet=dict(pred_hidden=H, pred_rnn_layers=1, t_max=None, dropout=0.2),
    )
    cfg["joint"] = dict(
        _target_="nemo.collections.asr.modules.RNNTJoint",
        log_softmax=None,
        preserve_memory=False,
        fuse_loss_wer=True,
        fused_batch_size=4,
        jointnet=dict(joint_hidden=J, activation="relu", dropout=0.2),
    )
    cfg["decoding"] = dict(strategy="greedy_batch", greedy=dict(max_symbols=MAX_SYMBOLS))
    cfg["loss"] = dict(loss_name="default")
    if preset["kind"] == "hybrid":
        cfg["aux_ctc"] = dict(ctc_loss_weight=0.3, use_cer=False, ctc_reduction="mean_batch", decoder=ctc_head,
                              decoding=dict(strategy="greedy"))
    return cfg


# ---------------------------------------------------------------------------------------------
# model structure helpers
# ---------------------------------------------------------------------------------------------


def model_kind(model):
    has_rnnt = hasattr(model, "joint")
    has_ctc = hasattr(model, "ctc_decoder") or not has_rnnt
    return "hybrid" if has_rnnt and has_ctc else ("rnnt" if has_rnnt else "ctc")


def ctc_head(model):
    """The CTC head module (ConvASRDecoder) or None."""
    if hasattr(model, "ctc_decoder"):
        return model.ctc_decoder
    return None if hasattr(model, "joint") else model.decoder


def joint_output_layer(model):
    """The joint's last Linear (J -> V+1)."""
    return [m for m in model.joint.joint_net.modules() if isinstance(m, torch.nn.Linear)][-1]


def vocab_size(model):
    return model.tokenizer.vocab_size


def lookahead_list(model):
    return [list(a) for a in model.encoder.att_context_size_all]


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


def _uniform(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo


def randomise_weights(model, seed):
    """Seeded draw of every parameter and BatchNorm statistic (the preprocessor is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    with torch.no_grad():
        done = set()
        for name, mod in model.named_modules():
            if name.startswith("preprocessor"):
                continue
            if isinstance(mod, norms):
                if mod.weight is not None:
                    mod.weight.copy_(_uniform(gen, mod.weight.shape, 0.6, 1.4))
                    mod.bias.copy_(_uniform(gen, mod.bias.shape, -0.2, 0.2))
                    done.update({id(mod.weight), id(mod.bias)})
                if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) and mod.running_mean is not None:
                    mod.running_mean.copy_(_uniform(gen, mod.running_mean.shape, -0.3, 0.3))
                    mod.running_var.copy_(_uniform(gen, mod.running_var.shape, 0.5, 2.0))
                    mod.num_batches_tracked.fill_(1000)
        for name, p in model.named_parameters():
            if name.startswith("preprocessor") or id(p) in done:
                continue
            if name.endswith("pos_bias_u") or name.endswith("pos_bias_v"):
                p.copy_(_uniform(gen, p.shape, -0.5, 0.5))
            elif p.dim() >= 2:
                a = (3.0 / (p.numel() // p.shape[0])) ** 0.5
                p.copy_(_uniform(gen, p.shape, -a, a))
            else:
                p.copy_(_uniform(gen, p.shape, -0.2, 0.2))
        # The log-mel has a large constant offset; zero-sum kernels in the first subsampling conv keep
        # it from swamping the speech (else the encoder outputs hardly change from frame to frame).
        first_conv = next(m for m in model.encoder.pre_encode.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.weight -= first_conv.weight.mean(dim=(1, 2, 3), keepdim=True)
        # Without xscaling the subsampled input enters the residual stream sqrt(d_model) times smaller
        # than with it; draw the pre-encode output that much wider for the same balance.
        if getattr(model.encoder, "xscale", None) is None:
            model.encoder.pre_encode.out.weight *= model.encoder.d_model ** 0.5
            model.encoder.pre_encode.out.bias *= model.encoder.d_model ** 0.5
        if hasattr(model, "joint"):
            emb = model.decoder.prediction["embed"]
            if emb.padding_idx is not None:
                emb.weight[emb.padding_idx].zero_()


def draw_output_layer(weight, bias, gen):
    """Weights 3x wider than the other layers, biases uniform +-1."""
    fan_in = weight.numel() // weight.shape[0]
    a = 3.0 * (3.0 / fan_in) ** 0.5
    with torch.no_grad():
        weight.copy_(_uniform(gen, weight.shape, -a, a))
        bias.copy_(_uniform(gen, bias.shape, -1.0, 1.0))


def project_out(weight, direction):
    """weight <- weight (I - u u^T), u = direction / |direction|, over weight's input axis (dim 1).
    With u the time-mean of the encoder output, the layer sees only what changes from frame to frame,
    so one token does not win every frame."""
    u = torch.from_numpy(direction / np.linalg.norm(direction)).float()
    with torch.no_grad():
        w = weight.view(weight.shape[0], -1)
        w -= torch.outer(w @ u, u)


# ---------------------------------------------------------------------------------------------
# running NeMo
# ---------------------------------------------------------------------------------------------


def new_buffer(model):
    from nemo.collections.asr.parts.utils.streaming_utils import CacheAwareStreamingAudioBuffer

    return CacheAwareStreamingAudioBuffer(model=model, online_normalization=False, pad_and_drop_preencoded=False)


@torch.no_grad()
def compute_mel(model, audio_path):
    """The features as the streaming buffer computes them (its own preprocessor, built from the config;
    the offline passes get the same tensor, as NeMo's get_all_audios() hands it over)."""
    samples, sr = sf.read(audio_path, dtype="float32")  # = int16 / 32768, as NeMo's get_samples
    assert sr == 16000 and samples.ndim == 1
    mel, mel_len = new_buffer(model).preprocess_audio(samples)
    # the model's own preprocessor (filterbank from the checkpoint) must agree
    own, own_len = model.preprocessor(input_signal=torch.from_numpy(samples)[None],
                                      length=torch.tensor([len(samples)]))
    assert int(own_len[0]) == int(mel_len[0])
    log(f"  mel: model preprocessor vs streaming buffer's: max|diff| {float((own - mel).abs().max()):.3g}")
    return mel, int(mel_len[0]), len(samples)


@torch.no_grad()
def run_encoder(model, audio_path):
    """Offline and streaming encoder passes for every look-ahead; no decoders."""
    enc = model.encoder
    mel, mel_length, n_samples = compute_mel(model, audio_path)
    T_mel = mel.shape[-1]
    out = dict(mel=mel[0].numpy(), mel_length=mel_length, mel_frames=T_mel, n_samples=n_samples, las=[])
    for i, att in enumerate(lookahead_list(model)):
        enc.set_default_att_context_size(att)  # also runs setup_streaming_params
        cfg = enc.streaming_cfg
        la = dict(index=i, att=att)
        e, e_len = enc(audio_signal=mel, length=torch.tensor([mel_length]))
        la["offline_encoded"] = e[0, :, : int(e_len[0])].numpy()
        e, e_len = enc(audio_signal=mel, length=torch.tensor([T_mel]))
        la["offline_full_encoded"] = e[0, :, : int(e_len[0])].numpy()

        buf = new_buffer(model)  # reads enc.streaming_cfg, so one per look-ahead
        buf.append_processed_signal(mel, stream_id=-1)
        assert torch.equal(buf.get_all_audios()[0], mel) and int(buf.streams_length[0]) == T_mel
        cache_ch, cache_t, cache_len = enc.get_initial_cache_state(batch_size=1)
        la["streaming_cfg"] = dict(
            chunk_size=cfg.chunk_size,
            shift_size=cfg.shift_size,
            cache_drop_size=cfg.cache_drop_size,
            last_channel_cache_size=cfg.last_channel_cache_size,
            valid_out_len=cfg.valid_out_len,
            pre_encode_cache_size=cfg.pre_encode_cache_size,
            drop_extra_pre_encoded=cfg.drop_extra_pre_encoded,
        )
        la["cache_shapes"] = dict(cache_last_channel=list(cache_ch.shape), cache_last_time=list(cache_t.shape),
                                  cache_last_channel_len=list(cache_len.shape))
        chunks = []  # per chunk: features, length, drop, keep, encoded (valid frames), returned width
        caches = []  # per chunk: (last_channel, last_time, last_channel_len) after the step
        stopped = None
        it = iter(buf)
        while True:
            start = buf.buffer_idx
            try:
                feats, feat_len = next(it)
            except StopIteration:
                break
            step = len(chunks)
            drop = 0 if step == 0 else cfg.drop_extra_pre_encoded
            keep = bool(buf.is_buffer_empty())
            if enc.att_context_style == "regular" and cfg.cache_drop_size > 0:
                # NeMo keeps T - cache_drop_size frames of this chunk in the attention cache; a
                # negative number would shrink the cache and break the following steps.
                _, sub_len = enc.pre_encode(x=feats.transpose(1, 2), lengths=feat_len)
                n_sub = int(sub_len[0]) - drop
                if n_sub < cfg.cache_drop_size:
                    stopped = dict(at_chunk=step, chunk_width=int(feats.shape[-1]), subsampled_frames=n_sub,
                                   cache_drop_size=cfg.cache_drop_size, mel_frames_not_streamed=T_mel - start)
                    break
            (e, e_len, cache_ch, cache_t, cache_len) = enc.cache_aware_stream_step(
                processed_signal=feats,
                processed_signal_length=feat_len,
                cache_last_channel=cache_ch,
                cache_last_time=cache_t,
                cache_last_channel_len=cache_len,
                keep_all_outputs=keep,
                drop_extra_pre_encoded=drop,
            )
            chunks.append(dict(features=feats[0].numpy(), length=int(feat_len[0]), drop=drop, keep=int(keep),
                               encoded=e[0, :, : int(e_len[0])].numpy(), returned=int(e.shape[-1])))
            caches.append((cache_ch[:, 0].numpy().copy(), cache_t[:, 0].numpy().copy(),
                           cache_len.numpy().astype(np.int32).copy()))
        la["chunks"], la["caches"], la["stopped_early"] = chunks, caches, stopped
        out["las"].append(la)
    enc.set_default_att_context_size(lookahead_list(model)[0])
    return out


def top2_gaps(lp):
    s = np.sort(lp, axis=-1)
    return s[..., -1] - s[..., -2]


def ctc_collapse(ids, blank):
    toks, prev = [], -1
    for k in ids:
        if k != prev and k != blank:
            toks.append(int(k))
        prev = k
    return toks


def ctc_log_probs(model, frames):
    """frames [d, T] -> log-probs [T, V+1] from NeMo's ConvASRDecoder."""
    with torch.inference_mode():
        return ctc_head(model)(encoder_output=torch.from_numpy(frames)[None])[0].numpy()


def rnnt_greedy(model, frame_chunks):
    """NeMo's GreedyRNNTInfer over a list of [d, T] chunks, the hypothesis carried from chunk to chunk.
    Returns token counts after each chunk, the tokens, every joint call's top-1/top-2 gap."""
    from nemo.collections.asr.parts.submodules.rnnt_greedy_decoding import GreedyRNNTInfer

    greedy = GreedyRNNTInfer(decoder_model=model.decoder, joint_model=model.joint, blank_index=vocab_size(model),
                             max_symbols_per_step=MAX_SYMBOLS, preserve_alignments=True)
    hyp, counts, gaps = None, [], []
    for frames in frame_chunks:
        x = torch.from_numpy(np.ascontiguousarray(frames))[None]
        (hyps,) = greedy(encoder_output=x, encoded_lengths=torch.tensor([frames.shape[1]]),
                         partial_hypotheses=[hyp] if hyp is not None else None)
        hyp = hyps[0]
        for frame in hyp.alignments or []:
            for logp, _ in frame:
                gaps.append(float(top2_gaps(logp.numpy())))
        counts.append(len(hyp.y_sequence))
    tokens = [int(t) for t in (hyp.y_sequence if hyp is not None else [])]
    return counts, tokens, np.array(gaps, dtype=np.float64)


def decisions(model, enc_out):
    """Everything the heads decide on the encoder outputs, per look-ahead."""
    V = vocab_size(model)
    kind = model_kind(model)
    res = []
    for la in enc_out["las"]:
        r = {}
        stream_chunks = [c["encoded"] for c in la["chunks"]]
        if kind in ("ctc", "hybrid"):
            for name, frames in (("offline", la["offline_encoded"]), ("offline_full", la["offline_full_encoded"]),
                                 ("stream", np.concatenate(stream_chunks, axis=1))):
                lp = ctc_log_probs(model, frames)
                ids = lp.argmax(-1).astype(np.int32)
                r[name + "_ctc"] = dict(log_probs=lp, ids=ids, tokens=ctc_collapse(ids, V), gaps=top2_gaps(lp))
        if kind in ("rnnt", "hybrid"):
            for name, chunks in (("offline", [la["offline_encoded"]]), ("offline_full", [la["offline_full_encoded"]]),
                                 ("stream", stream_chunks)):
                counts, tokens, gaps = rnnt_greedy(model, chunks)
                r[name + "_rnnt"] = dict(counts=counts, tokens=tokens, gaps=gaps)
        res.append(r)
    return res


def min_gap(dec, head):
    """Smallest decision gap of the checked arrays (offline and stream, all look-aheads)."""
    return min(float(np.min(r[f"{w}_{head}"]["gaps"])) for r in dec for w in ("offline", "stream")
               if len(r[f"{w}_{head}"]["gaps"]))


# ---------------------------------------------------------------------------------------------
# choosing the output layers
# ---------------------------------------------------------------------------------------------


def choose_ctc_head(model, enc_out, seed):
    head = ctc_head(model).decoder_layers[0]
    V = vocab_size(model)
    frames = [f for la in enc_out["las"] for f in
              [la["offline_encoded"]] + [c["encoded"] for c in la["chunks"]]]
    frames = np.concatenate(frames, axis=1)
    for r in range(MAX_REDRAWS):
        gen = torch.Generator().manual_seed(seed * 1000 + 100 + r)
        draw_output_layer(head.weight, head.bias, gen)
        project_out(head.weight, frames.mean(axis=1))
        lp = ctc_log_probs(model, frames)
        margin = np.sort(np.max(np.delete(lp, V, axis=1), axis=1) - lp[:, V])
        lo, hi = int(0.35 * len(margin)), int(0.65 * len(margin))
        k = lo + int(np.argmax(np.diff(margin[lo:hi + 1])))
        offset = 0.5 * (margin[k] + margin[k + 1])
        with torch.no_grad():
            head.bias[V] += float(offset)
        gap = min_gap(decisions_ctc_only(model, enc_out), "ctc")
        log(f"  CTC head draw {r}: blank offset {offset:.3f}, min top-2 gap {gap:.4f}")
        if gap >= MIN_GAP:
            return dict(ctc_head_redraws=r, ctc_blank_bias_offset=float(offset), ctc_min_top2_gap=gap)
    raise RuntimeError("no CTC head with clear decisions found")


def decisions_ctc_only(model, enc_out):
    """The CTC decision gaps only (what choose_ctc_head checks after each draw)."""
    res = []
    for la in enc_out["las"]:
        r = {}
        for name, frames in (("offline", la["offline_encoded"]),
                             ("stream", np.concatenate([c["encoded"] for c in la["chunks"]], axis=1))):
            r[name + "_ctc"] = dict(gaps=top2_gaps(ctc_log_probs(model, frames)))
        res.append(r)
    return res


def choose_joint_output(model, enc_out, seed):
    layer = joint_output_layer(model)
    V = vocab_size(model)
    la0 = enc_out["las"][0]
    n0 = la0["offline_encoded"].shape[1]
    project_out(model.joint.enc.weight, la0["offline_encoded"].mean(axis=1))
    for r in range(MAX_REDRAWS):
        gen = torch.Generator().manual_seed(seed * 1000 + 500 + r)
        draw_output_layer(layer.weight, layer.bias, gen)
        base = float(layer.bias[V])

        def set_offset(off):
            with torch.no_grad():
                layer.bias[V] = base + off

        def tokens_per_frame(off):
            set_offset(off)
            return len(rnnt_greedy(model, [la0["offline_encoded"]])[1]) / n0

        lo, hi = -5.0, 20.0  # more blank bias -> fewer tokens
        for _ in range(16):
            mid = 0.5 * (lo + hi)
            if tokens_per_frame(mid) > RNNT_TOKENS_PER_FRAME:
                lo = mid
            else:
                hi = mid
        for off in [hi + d for d in (0.0, 0.05, -0.05, 0.1, -0.1, 0.15, 0.2)]:
            set_offset(off)
            gaps = []
            for la in enc_out["las"]:
                gaps.append(rnnt_greedy(model, [la["offline_encoded"]])[2])
                gaps.append(rnnt_greedy(model, [c["encoded"] for c in la["chunks"]])[2])
            gap = float(min(np.min(g) for g in gaps if len(g)))
            if gap >= MIN_GAP:
                tpf = tokens_per_frame(off)
                set_offset(off)
                log(f"  joint output draw {r}: blank offset {off:.3f}, {tpf:.3f} tokens/frame, min gap {gap:.4f}")
                return dict(joint_output_redraws=r, joint_blank_bias_offset=float(off),
                            rnnt_tokens_per_frame_offline=tpf, rnnt_min_top2_gap=gap)
        log(f"  joint output draw {r}: min top-2 gap {gap:.4f} too small, redrawing")
    raise RuntimeError("no joint output layer with clear decisions found")


# ---------------------------------------------------------------------------------------------
# the case files
# ---------------------------------------------------------------------------------------------


class CaseWriter:
    """Writes .npy files and collects manifest.arrays."""

    def __init__(self, case_dir):
        self.dir, self.arrays = case_dir, {}

    def put(self, name, value, meaning, dtype):
        a = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        np.save(os.path.join(self.dir, name + ".npy"), a)
        self.arrays[name] = dict(file=name + ".npy", dtype=str(a.dtype), shape=list(a.shape), meaning=meaning)

    def f32(self, name, value, meaning):
        self.put(name, value, meaning, np.float32)

    def i32(self, name, value, meaning):
        self.put(name, value, meaning, np.int32)


def compute_case(model, audio_path):
    """All arrays and manifest facts of a case, as nested dicts (no files written)."""
    enc_out = run_encoder(model, audio_path)
    dec = decisions(model, enc_out)
    return enc_out, dec


def compare_stream(stream, ref):
    n = min(stream.shape[1], ref.shape[1])
    d = np.abs(stream[:, :n] - ref[:, :n])
    return dict(stream_frames=int(stream.shape[1]), offline_frames=int(ref.shape[1]), common_frames=n,
                max_abs_diff=float(d.max()) if n else 0.0, max_abs_reference=float(np.abs(ref).max()),
                bitwise_equal_frames=int(np.sum(np.all(stream[:, :n] == ref[:, :n], axis=0))))


def write_case(case_dir, model, enc_out, dec, meta):
    tok = model.tokenizer
    kind = model_kind(model)
    V = vocab_size(model)
    w = CaseWriter(case_dir)
    T_mel, mel_length = enc_out["mel_frames"], enc_out["mel_length"]
    w.f32("mel", enc_out["mel"],
          "preprocessor output for the whole file [n_mels, T_mel]; AudioToMelSpectrogramPreprocessor (dither 0, "
          "pad_to 0). T_mel = n_samples // 160 + 1; the last frame is beyond mel_length and is zero")
    lookaheads = []
    for la, r in zip(enc_out["las"], dec):
        p = f"la{la['index']}_"
        att = la["att"]
        chunks, caches = la["chunks"], la["caches"]
        n = len(chunks)
        lam = dict(index=la["index"], att_context_size=att, prefix=p,
                   offline_encoded_len=int(la["offline_encoded"].shape[1]),
                   offline_full_encoded_len=int(la["offline_full_encoded"].shape[1]))
        w.f32(p + "offline_encoded", la["offline_encoded"],
              f"offline encoder output [d_model, T] for att_context_size {att}: encoder(audio_signal=mel, "
              f"length=mel_length={mel_length})")
        w.f32(p + "offline_full_encoded", la["offline_full_encoded"],
              f"offline encoder output [d_model, T] with length = all {T_mel} mel frames (the trailing zero frame "
              "included), which is what streaming reproduces")
        if "offline_ctc" in r:
            c = r["offline_ctc"]
            w.f32(p + "offline_ctc_log_probs", c["log_probs"],
                  "CTC log-probs [T, V+1] of offline_encoded (blank = last index)")
            w.i32(p + "offline_ctc_frame_ids", c["ids"], "argmax per frame [T]")
            w.i32(p + "offline_ctc_tokens", c["tokens"], "greedy CTC tokens (repeats merged, blanks dropped)")
            lam.update(offline_ctc_text=tok.ids_to_text(c["tokens"]), offline_ctc_min_top2_gap=float(c["gaps"].min()),
                       offline_ctc_blank_frames=int(np.sum(c["ids"] == V)))
        if "offline_rnnt" in r:
            c = r["offline_rnnt"]
            w.i32(p + "offline_rnnt_tokens", c["tokens"],
                  f"greedy RNNT tokens of offline_encoded (GreedyRNNTInfer, max_symbols {MAX_SYMBOLS})")
            lam.update(offline_rnnt_text=tok.ids_to_text(c["tokens"]), offline_rnnt_min_top2_gap=float(c["gaps"].min()),
                       offline_rnnt_joint_calls=int(len(c["gaps"])))
        # streaming
        widths = [c["features"].shape[1] for c in chunks]
        enc_lens = [c["encoded"].shape[1] for c in chunks]
        saved = dict(step1=0, step2=min(1, n - 1), last=n - 1)
        lam["stream"] = dict(n_chunks=n, stopped_early=la["stopped_early"], cache_steps_saved=saved,
                             chunk_widths=widths, encoded_lens=enc_lens)
        w.f32(p + "stream_chunk_features", np.concatenate([c["features"] for c in chunks], axis=1),
              "per-chunk encoder inputs [n_mels, sum of chunk widths], concatenated: chunk k is columns "
              "stream_chunk_feature_offsets[k]:[k+1] (pre-encode cache columns first, then new frames)")
        w.i32(p + "stream_chunk_feature_offsets", np.cumsum([0] + widths),
              "[n_chunks+1] column offsets into stream_chunk_features")
        w.i32(p + "stream_chunk_lengths", [c["length"] for c in chunks],
              "processed_signal_length passed to cache_aware_stream_step for each chunk")
        w.i32(p + "stream_drop_extra_pre_encoded", [c["drop"] for c in chunks],
              "drop_extra_pre_encoded passed for each chunk (0 on the first)")
        w.i32(p + "stream_keep_all_outputs", [c["keep"] for c in chunks],
              "keep_all_outputs passed for each chunk (1 only when the buffer is exhausted after it)")
        stream = np.concatenate([c["encoded"] for c in chunks], axis=1)
        w.f32(p + "stream_encoded", stream,
              "streaming encoder outputs [d_model, T], the valid frames of every chunk concatenated; chunk k is "
              "columns stream_encoded_offsets[k]:[k+1]")
        w.i32(p + "stream_encoded_offsets", np.cumsum([0] + enc_lens),
              "[n_chunks+1] column offsets into stream_encoded")
        w.i32(p + "stream_encoded_frames_returned", [c["returned"] for c in chunks],
              "time width of the encoder output tensor returned per chunk")
        for when, k in saved.items():
            ch, t, ln = caches[k]
            w.f32(f"{p}stream_cache_after_{when}_last_channel", ch,
                  f"cache_last_channel after chunk index {k} [n_layers, last_channel_cache_size, d_model] "
                  "(NeMo's batch axis 1 squeezed)")
            w.f32(f"{p}stream_cache_after_{when}_last_time", t,
                  f"cache_last_time after chunk index {k} [n_layers, d_model, conv_kernel_size-1] (batch squeezed)")
            w.i32(f"{p}stream_cache_after_{when}_last_channel_len", ln,
                  f"cache_last_channel_len after chunk index {k} [1] (int64 in NeMo)")
        cmp = dict(offline_full_encoded=compare_stream(stream, la["offline_full_encoded"]),
                   offline_encoded=compare_stream(stream, la["offline_encoded"]))
        if "stream_ctc" in r:
            c = r["stream_ctc"]
            w.f32(p + "stream_ctc_log_probs", c["log_probs"],
                  "CTC log-probs [T, V+1] of each chunk's encoder output, concatenated")
            w.i32(p + "stream_ctc_frame_ids", c["ids"], "per-frame argmax of stream_ctc_log_probs")
            w.i32(p + "stream_ctc_tokens", c["tokens"], "greedy CTC tokens of the concatenated stream")
            lam.update(stream_ctc_min_top2_gap=float(c["gaps"].min()), stream_ctc_text=tok.ids_to_text(c["tokens"]))
            full = r["offline_full_ctc"]
            m = min(len(c["ids"]), len(full["ids"]))
            cmp.update(ctc_frame_ids_equal_on_common_frames=bool(np.array_equal(c["ids"][:m], full["ids"][:m])),
                       ctc_tokens_equal=c["tokens"] == full["tokens"],
                       offline_full_ctc_text=tok.ids_to_text(full["tokens"]))
        if "stream_rnnt" in r:
            c = r["stream_rnnt"]
            w.i32(p + "stream_rnnt_tokens", c["tokens"],
                  "greedy RNNT tokens after the last chunk (hypothesis carried across chunks as partial_hypotheses)")
            w.i32(p + "stream_rnnt_token_counts", c["counts"],
                  "number of RNNT tokens after each chunk (tokens after chunk k = stream_rnnt_tokens[:count[k]])")
            lam.update(stream_rnnt_min_top2_gap=float(c["gaps"].min()), stream_rnnt_text=tok.ids_to_text(c["tokens"]))
            full = r["offline_full_rnnt"]
            cmp.update(rnnt_tokens_equal=c["tokens"] == full["tokens"],
                       offline_full_rnnt_text=tok.ids_to_text(full["tokens"]))
        lam["stream_vs_offline"] = cmp
        lam["streaming_cfg"] = la["streaming_cfg"]
        lam["cache_shapes"] = dict(la["cache_shapes"], layout=(
            "cache_last_channel [n_layers, B, last_channel_cache_size, d_model]; cache_last_time "
            "[n_layers, B, d_model, conv_context_size[0]]; cache_last_channel_len [B]"))
        lookaheads.append(lam)

    from omegaconf import OmegaConf
    import nemo

    manifest = dict(
        case=os.path.basename(os.path.normpath(case_dir)),
        description="Golden outputs computed by NVIDIA NeMo's own code (tests/oracle/make_golden_case.py) "
                    "with seeded random weights.",
        nemo_commit=None,
        nemo_version=nemo.__version__,
        torch_version=torch.__version__,
        model_kind=kind,
        model_target=MODEL_TARGETS[kind],
        seed=meta["seed"],
        files={name: what for name, what in {
            "model.nemo": "tar (SaveRestoreConnector layout) of model_config.yaml, model_weights.ckpt and the tokenizer "
                          "artifacts named <32 hex>_tokenizer.model / _vocab.txt / _tokenizer.vocab",
            "model_config.yaml": "the model config (same as inside model.nemo)",
            "model_weights.ckpt": "torch.save(state_dict) (same as inside model.nemo)",
            "tokenizer.model": "SentencePiece BPE model (NeMo create_spt_model)",
            "tokenizer.vocab": "SentencePiece vocab with scores",
            "vocab.txt": "NeMo vocab.txt",
            "audio.wav": "16 kHz mono s16 speech (espeak-ng + sox)",
        }.items() if os.path.exists(os.path.join(case_dir, name))},
        audio=dict(text_spoken=meta["text"], voice=meta["voice"], speed_wpm=meta["wpm"],
                   n_samples=enc_out["n_samples"], sample_rate=16000,
                   reader="soundfile float32 = int16 / 32768 (as NeMo's get_samples)"),
        vocab_size=V,
        blank_id=V,
        mel_length=mel_length,
        mel_frames=T_mel,
        encoder=OmegaConf.to_container(model.cfg.encoder, resolve=True),
        weight_randomisation=meta["weight_randomisation"],
        lookaheads=lookaheads,
        arrays=w.arrays,
        tolerances_hint="DESIGN.md: CPU fp32 max|err| <= 1e-4 * max|ref| on features and encoder outputs; "
                        "tokens identical",
    )
    with open(os.path.join(case_dir, "manifest.json"), "w", encoding="utf8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def unpack_nemo(case_dir, with_weights):
    """Copies model.nemo's members next to it under the golden cases' plain names. The checkpoint
    copy (the biggest file, byte-identical to the member) only when asked, to keep cases small."""
    names = [("model_config.yaml", "model_config.yaml"), ("_tokenizer.model", "tokenizer.model"),
             ("_tokenizer.vocab", "tokenizer.vocab"), ("_vocab.txt", "vocab.txt")]
    if with_weights:
        names.append(("model_weights.ckpt", "model_weights.ckpt"))
    with tarfile.open(os.path.join(case_dir, "model.nemo"), "r:") as tar:
        for member in tar.getmembers():
            name = os.path.basename(member.name)
            for suffix, plain in names:
                if name.endswith(suffix) and member.isfile():
                    with tar.extractfile(member) as src, open(os.path.join(case_dir, plain), "wb") as dst:
                        shutil.copyfileobj(src, dst)


def restore(path):
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(path, map_location="cpu")
    model.eval()
    return model


def check_gaps(dec, kind):
    gaps = {}
    if kind in ("ctc", "hybrid"):
        gaps["ctc"] = min_gap(dec, "ctc")
    if kind in ("rnnt", "hybrid"):
        gaps["rnnt"] = min_gap(dec, "rnnt")
    for head, g in gaps.items():
        if g < MIN_GAP:
            raise RuntimeError(f"{head}: a decision has a top-2 gap of only {g:.4g} after restoring the model")
    return gaps


def build_case(name, case_dir, with_weights=False):
    from nemo.collections.asr.models import EncDecCTCModelBPE, EncDecHybridRNNTCTCBPEModel, EncDecRNNTBPEModel
    from omegaconf import OmegaConf, open_dict

    preset = PRESETS[name]
    seed = preset["seed"]
    os.makedirs(case_dir, exist_ok=True)
    for f in os.listdir(case_dir):
        os.remove(os.path.join(case_dir, f))
    torch.manual_seed(seed)
    audio_path = os.path.join(case_dir, "audio.wav")
    n = make_audio(preset["text"], preset["voice"], preset["wpm"], audio_path)
    log(f"{name}: audio {n} samples ({n / 16000:.2f} s)")
    if not 3 * 16000 <= n <= 5 * 16000:
        raise RuntimeError(f"audio is {n / 16000:.2f} s, wanted 3-5 s: change the text or speed")

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = train_tokenizer(preset["vocab_size"], tmp)
        cfg = OmegaConf.create(model_config(preset, tok_dir))
        cls = dict(ctc=EncDecCTCModelBPE, rnnt=EncDecRNNTBPEModel, hybrid=EncDecHybridRNNTCTCBPEModel)[preset["kind"]]
        model = cls(cfg=cfg)
        model.eval()
        if vocab_size(model) != preset["vocab_size"]:
            raise RuntimeError(f"tokenizer has {vocab_size(model)} pieces, wanted {preset['vocab_size']}")
        randomise_weights(model, seed)
        enc_out = run_encoder(model, audio_path)
        wr = dict(seed=seed)
        if model_kind(model) in ("ctc", "hybrid"):
            wr.update(choose_ctc_head(model, enc_out, seed))
        if model_kind(model) in ("rnnt", "hybrid"):
            wr.update(choose_joint_output(model, enc_out, seed))
        wr["min_gap_required"] = MIN_GAP
        wr["rule"] = ("see tests/oracle/make_golden_case.py: randomise_weights, draw_output_layer, "
                      "choose_ctc_head, choose_joint_output")
        with open_dict(model.cfg):
            model.cfg.tokenizer.dir = None  # a temporary folder; the artifacts travel in model.nemo
        model.save_to(os.path.join(case_dir, "model.nemo"))

    # Everything written comes from the saved model and the saved audio.
    model = restore(os.path.join(case_dir, "model.nemo"))
    unpack_nemo(case_dir, with_weights)
    enc_out, dec = compute_case(model, audio_path)
    gaps = check_gaps(dec, model_kind(model))
    log(f"{name}: restored model, min top-2 gaps {gaps}")
    for head in gaps:  # the shared cases' key: the offline decisions' smallest gap
        wr[f"{head}_min_top2_gap_offline"] = min(float(np.min(r[f"offline_{head}"]["gaps"])) for r in dec)
    meta = dict(seed=seed, text=preset["text"], voice=preset["voice"], wpm=preset["wpm"], weight_randomisation=wr)
    manifest = write_case(case_dir, model, enc_out, dec, meta)
    for lam in manifest["lookaheads"]:
        s = lam["stream"]
        log(f"  {lam['prefix']} {lam['att_context_size']}: {s['n_chunks']} chunks, "
            f"{sum(s['encoded_lens'])} stream frames vs {lam['offline_full_encoded_len']} offline, "
            f"stopped_early {s['stopped_early']}")
    total = sum(os.path.getsize(os.path.join(case_dir, f)) for f in os.listdir(case_dir))
    log(f"{name}: wrote {case_dir} ({total / 1e6:.2f} MB)")


# ---------------------------------------------------------------------------------------------
# --verify: recompute an existing case and compare
# ---------------------------------------------------------------------------------------------


def verify_case(case_dir):
    """Recomputes CASE_DIR's arrays from its model.nemo + audio.wav and compares them."""
    with open(os.path.join(case_dir, "manifest.json"), encoding="utf8") as f:
        manifest = json.load(f)
    model = restore(os.path.join(case_dir, "model.nemo"))
    enc_out, dec = compute_case(model, os.path.join(case_dir, "audio.wav"))
    with tempfile.TemporaryDirectory() as tmp:
        meta = dict(seed=manifest.get("seed"), text="", voice="", wpm=0, weight_randomisation={})
        mine = write_case(tmp, model, enc_out, dec, meta)
        failures = 0
        for name, info in manifest["arrays"].items():
            ref = np.load(os.path.join(case_dir, info["file"]))
            path = os.path.join(tmp, info["file"])
            if not os.path.exists(path):
                print(f"  MISSING  {name}")
                failures += 1
                continue
            got = np.load(path)
            if got.shape != ref.shape:
                print(f"  SHAPE    {name}: {list(got.shape)} vs golden {list(ref.shape)}")
                failures += 1
            elif ref.dtype.kind == "f":
                err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
                mx = float(np.abs(ref).max()) if ref.size else 0.0
                ok = err <= VERIFY_REL_TOL * max(mx, 1e-30)
                failures += not ok
                print(f"  {'ok' if ok else 'DIFF':8s} {name}: max|err| {err:.3g} (max|ref| {mx:.3g})")
            else:
                ok = np.array_equal(got, ref)
                failures += not ok
                print(f"  {'ok' if ok else 'DIFF':8s} {name}: {ref.size} ints {'identical' if ok else 'differ'}")
        extra = sorted(set(mine["arrays"]) - set(manifest["arrays"]))
        if extra:
            print(f"  note: arrays this script writes that the case lacks: {extra}")
        for a, b in zip(manifest["lookaheads"], mine["lookaheads"]):
            for key in ("n_chunks", "stopped_early", "chunk_widths", "encoded_lens", "cache_steps_saved"):
                ok = a["stream"][key] == b["stream"][key]
                failures += not ok
                print(f"  {'ok' if ok else 'DIFF':8s} {a['prefix']}stream.{key}")
            for key in ("streaming_cfg", "offline_ctc_text", "offline_rnnt_text", "stream_ctc_text", "stream_rnnt_text",
                        "offline_rnnt_joint_calls", "offline_ctc_blank_frames"):
                if key in a:
                    ok = a[key] == b.get(key)
                    failures += not ok
                    print(f"  {'ok' if ok else 'DIFF':8s} {a['prefix']}{key}")
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {failures} differences")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--verify", metavar="CASE_DIR")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--with-weights", action="store_true",
                    help="also write model_weights.ckpt (a copy of the member of model.nemo)")
    ap.add_argument("out_dir", nargs="?")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.list:
        for name, p in PRESETS.items():
            print(name, json.dumps(dict(kind=p["kind"], **p["encoder"])))
        return 0
    if args.verify:
        return verify_case(args.verify)
    if not args.preset or not args.out_dir:
        ap.error("give --preset NAME OUT_DIR, --verify CASE_DIR or --list")
    build_case(args.preset, args.out_dir, args.with_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
