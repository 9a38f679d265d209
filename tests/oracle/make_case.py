#!/usr/bin/env python3
"""Make a golden case with NeMo's own code, for configurations the shared cases do not cover.

    bench/.venv/bin/python tests/oracle/make_case.py NAME OUT_DIR AUDIO.wav

Needs NeMo (the reference environment of bench/requirements-nemo.txt); the project's CI never
runs it. It builds NeMo's real modules (AudioToMelSpectrogramPreprocessor, ConformerEncoder,
ConvASRDecoder) with seeded random weights for the configuration NAME (see CONFIGS), trains a
tiny SentencePiece BPE tokenizer, writes model.nemo the way NeMo's save_to lays it out, and
computes with NeMo's code the arrays ../shared/golden/README.md describes: mel features, offline
encoder outputs, cache-aware streaming through CacheAwareStreamingAudioBuffer and
cache_aware_stream_step chunk by chunk, the caches after steps 1, 2 and the last, and CTC
log-probs, frame ids and tokens. earshot-golden must then pass on the folder without having
seen it: that is the point.

The CTC head's weights are redrawn until every argmax has a top-1/top-2 gap of at least 1e-2,
so that fp32 rounding cannot flip a token (as the shared cases do).
"""
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import uuid
import wave

import numpy as np
import sentencepiece as spm
import torch
import yaml
from omegaconf import OmegaConf
from types import SimpleNamespace

from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor, ConformerEncoder, ConvASRDecoder
from nemo.collections.asr.parts.utils.streaming_utils import CacheAwareStreamingAudioBuffer

CONFIGS = {
    # 8x full-conv striding, 64 mels, no xscaling, short kernel, two look-aheads
    "ctc_striding8_mel64": dict(
        features=64,
        encoder=dict(subsampling="striding", subsampling_factor=8, subsampling_conv_channels=16,
                     conv_norm_type="layer_norm", conv_kernel_size=5, n_layers=2, d_model=48, n_heads=2,
                     att_context_style="chunked_limited", att_context_size=[[32, 3], [32, 0]],
                     xscaling=False, untie_biases=True),
    ),
    # regular style with several look-aheads, dw_striding 4x, batch norm, shared attention biases
    "ctc_regular_bn_dw4": dict(
        features=80,
        encoder=dict(subsampling="dw_striding", subsampling_factor=4, subsampling_conv_channels=24,
                     conv_norm_type="batch_norm", conv_kernel_size=7, n_layers=2, d_model=64, n_heads=4,
                     att_context_style="regular", att_context_size=[[24, 2], [24, 1]],
                     xscaling=True, untie_biases=False),
    ),
}

TEXT = """the quick brown fox jumps over the lazy dog
please speak clearly into the microphone so the system can hear you
streaming speech recognition turns sound into words while people talk
a cache keeps the attention of the last frames so nothing is encoded twice
meetings captions and voice agents all need low latency transcripts"""


def save_npy(out, name, array, meaning, arrays):
    array = np.ascontiguousarray(array)
    if array.dtype.kind == "f":
        array = array.astype("<f4")
    else:
        array = array.astype("<i4")
    np.save(os.path.join(out, name + ".npy"), array)
    arrays[name] = {"file": name + ".npy", "dtype": "float32" if array.dtype.kind == "f" else "int32",
                    "shape": list(array.shape), "meaning": meaning}


def read_wav(path):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def train_tokenizer(workdir, vocab_size=48):
    text = os.path.join(workdir, "text.txt")
    with open(text, "w") as f:
        f.write(TEXT.lower() + "\n")
    prefix = os.path.join(workdir, "tokenizer")
    spm.SentencePieceTrainer.train(input=text, model_prefix=prefix, vocab_size=vocab_size, model_type="bpe",
                                   character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    return prefix + ".model", prefix + ".vocab", [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def collapse(ids, blank):
    out, prev = [], -1
    for i in ids:
        if i != prev and i != blank:
            out.append(int(i))
        prev = i
    return out


def randomise(encoder, seed):
    """PyTorch's default init leaves norms at 1/0 and NeMo's biases at 0; draw them all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if name.endswith("pos_bias_u") or name.endswith("pos_bias_v") or "norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") and "norm" in name else 0.0))
        for name, b in encoder.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 0.5 + 0.75)


def main():
    name, out, audio_path = sys.argv[1], sys.argv[2], sys.argv[3]
    spec = CONFIGS[name]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    work = tempfile.mkdtemp()
    tok_model, tok_vocab, pieces = train_tokenizer(work)
    V = len(pieces)

    pre_cfg = dict(sample_rate=16000, normalize="NA", window_size=0.025, window_stride=0.01, window="hann",
                   features=spec["features"], n_fft=512, frame_splicing=1, dither=0.0, pad_to=0)
    enc_cfg = dict(feat_in=spec["features"], feat_out=-1, causal_downsampling=True, ff_expansion_factor=4,
                   self_attention_model="rel_pos", conv_context_size="causal", pos_emb_max_len=5000,
                   dropout=0.0, dropout_pre_encoder=0.0, dropout_emb=0.0, dropout_att=0.0, **spec["encoder"])
    pre = AudioToMelSpectrogramPreprocessor(**pre_cfg).eval()
    enc = ConformerEncoder(**enc_cfg).eval()
    randomise(enc, 99)
    d = enc_cfg["d_model"]

    audio = read_wav(audio_path)
    shutil.copy(audio_path, os.path.join(out, "audio.wav"))
    with torch.inference_mode():
        sig = torch.tensor(audio)[None]
        mel, mel_len = pre(input_signal=sig, length=torch.tensor([len(audio)]))
    T_mel = mel.shape[-1]

    arrays, lookaheads = {}, []
    save_npy(out, "mel", mel[0].numpy(), "preprocessor output [n_mels, T_mel]", arrays)
    contexts = enc_cfg["att_context_size"]

    # a CTC head whose decisions are robust on every look-ahead, offline and streaming
    for attempt in range(50):
        dec = ConvASRDecoder(feat_in=d, num_classes=V).eval()
        with torch.no_grad():
            # move the blank bias to the median margin, so that about half the frames are blank
            # and the rest carry tokens (random heads otherwise say all-blank or no blank at all)
            enc.set_default_att_context_size(contexts[0])
            x, x_len = enc(audio_signal=mel, length=mel_len)
            z = dec.decoder_layers[0](x)[0].T  # [T, V+1] logits
            margin = z[:, :-1].max(-1).values - z[:, -1]
            dec.decoder_layers[0].bias[-1] += float(margin.median()) + 0.01 * attempt
        results, min_gap = [], 1e9
        for i, ctx in enumerate(contexts):
            r = run_lookahead(enc, dec, mel, mel_len, T_mel, ctx)
            results.append(r)
            min_gap = min(min_gap, r["min_gap"])
        if min_gap >= 1e-2:
            break
    else:
        raise SystemExit("could not draw a CTC head with top-2 gaps >= 1e-2")

    for i, (ctx, r) in enumerate(zip(contexts, results)):
        p = f"la{i}_"
        for key, (arr, meaning) in r["arrays"].items():
            save_npy(out, p + key, arr, meaning, arrays)
        lookaheads.append({"index": i, "att_context_size": ctx, "prefix": p,
                           "offline_ctc_text": r["offline_text"], "stream_ctc_text": r["stream_text"],
                           "offline_ctc_min_top2_gap": r["min_gap"], "stream": r["stream"],
                           "streaming_cfg": r["streaming_cfg"]})

    write_nemo(out, pre_cfg, enc_cfg, V, pieces, tok_model, tok_vocab, pre, enc, dec)
    manifest = {"case": name, "description": "made by tests/oracle/make_case.py with NeMo's own modules",
                "nemo_version": __import__("nemo").__version__, "torch_version": torch.__version__,
                "model_kind": "ctc", "vocab_size": V, "blank_id": V, "mel_length": int(mel_len[0]),
                "mel_frames": int(T_mel), "encoder": enc_cfg, "arrays": arrays, "lookaheads": lookaheads}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(work)
    print(f"{out}: {len(contexts)} look-aheads, vocabulary {V}, T_mel {T_mel}")


def run_lookahead(enc, dec, mel, mel_len, T_mel, ctx):
    enc.set_default_att_context_size(ctx)
    enc.setup_streaming_params()
    cfg = enc.streaming_cfg
    arrays = {}
    gaps = []
    with torch.inference_mode():
        off, off_len = enc(audio_signal=mel, length=mel_len)
        off = off[0, :, : int(off_len[0])]
        full, full_len = enc(audio_signal=mel, length=torch.tensor([T_mel]))
        full = full[0, :, : int(full_len[0])]
        lp = dec(encoder_output=off[None])[0]
        ids = lp.argmax(-1)
        gaps.append(float((lp.topk(2, -1).values[:, 0] - lp.topk(2, -1).values[:, 1]).min()))
        arrays["offline_encoded"] = (off.numpy(), "encoder(mel, mel_length) [d_model, T]")
        arrays["offline_full_encoded"] = (full.numpy(), "encoder(mel, T_mel) [d_model, T]")
        arrays["offline_ctc_log_probs"] = (lp.numpy(), "CTC log-probs of offline_encoded [T, V+1]")
        arrays["offline_ctc_frame_ids"] = (ids.numpy(), "argmax per frame")
        arrays["offline_ctc_tokens"] = (np.array(collapse(ids.tolist(), lp.shape[-1] - 1)), "greedy CTC tokens")

        # the buffer wants a model only to rebuild its preprocessor, which this script does not use
        holder = SimpleNamespace(encoder=enc, device=torch.device("cpu"),
                                 _cfg=OmegaConf.create({"preprocessor": {"normalize": "NA"}}),
                                 from_config_dict=lambda c: torch.nn.Identity())
        buf = CacheAwareStreamingAudioBuffer(holder, pad_and_drop_preencoded=False)
        buf.append_processed_signal(mel.clone())
        c_ch, c_t, c_len = enc.get_initial_cache_state(batch_size=1)
        feats, foffs, lens, drops, keeps, outs, eoffs, widths, enc_lens = [], [0], [], [], [], [], [0], [], []
        saved = {}
        for step, (chunk, chunk_len) in enumerate(buf):
            drop = 0 if step == 0 else cfg.drop_extra_pre_encoded
            keep = buf.is_buffer_empty()
            try:
                o, o_len, c_ch, c_t, c_len = enc.cache_aware_stream_step(
                    processed_signal=chunk, processed_signal_length=chunk_len, cache_last_channel=c_ch,
                    cache_last_time=c_t, cache_last_channel_len=c_len, keep_all_outputs=keep,
                    drop_extra_pre_encoded=drop)
            except RuntimeError:
                break  # NeMo cannot stream this tail (regular style); the golden stops here too
            if o.shape[-1] < 1 or (cfg.cache_drop_size and c_ch.shape[2] != cfg.last_channel_cache_size):
                break
            n = int(o_len[0])
            feats.append(chunk[0].numpy())
            foffs.append(foffs[-1] + chunk.shape[-1])
            widths.append(int(chunk.shape[-1]))
            lens.append(int(chunk_len[0]))
            drops.append(drop)
            keeps.append(int(keep))
            outs.append(o[0, :, :n].numpy())
            eoffs.append(eoffs[-1] + n)
            enc_lens.append(n)
            snapshot = (c_ch[:, 0].numpy().copy(), c_t[:, 0].numpy().copy(), c_len.numpy().copy())
            if step == 0:
                saved["step1"] = (step, snapshot)
            if step == 1:
                saved["step2"] = (step, snapshot)
            saved["last"] = (step, snapshot)
        stream = np.concatenate(outs, axis=1)
        slp = dec(encoder_output=torch.tensor(stream)[None])[0]
        sids = slp.argmax(-1)
        gaps.append(float((slp.topk(2, -1).values[:, 0] - slp.topk(2, -1).values[:, 1]).min()))
    arrays["stream_chunk_features"] = (np.concatenate(feats, axis=1), "encoder input of every chunk")
    arrays["stream_chunk_feature_offsets"] = (np.array(foffs), "column offsets of the chunks")
    arrays["stream_chunk_lengths"] = (np.array(lens), "processed_signal_length per chunk")
    arrays["stream_drop_extra_pre_encoded"] = (np.array(drops), "drop_extra_pre_encoded per chunk")
    arrays["stream_keep_all_outputs"] = (np.array(keeps), "keep_all_outputs per chunk")
    arrays["stream_encoded"] = (stream, "streaming encoder outputs, concatenated [d_model, T]")
    arrays["stream_encoded_offsets"] = (np.array(eoffs), "frame offsets of the chunks")
    for when, (step, (ch, t, ln)) in saved.items():
        arrays[f"stream_cache_after_{when}_last_channel"] = (ch, f"cache_last_channel after chunk {step}")
        arrays[f"stream_cache_after_{when}_last_time"] = (t, f"cache_last_time after chunk {step}")
        arrays[f"stream_cache_after_{when}_last_channel_len"] = (ln, f"cache_last_channel_len after chunk {step}")
    arrays["stream_ctc_log_probs"] = (slp.numpy(), "CTC log-probs of stream_encoded")
    arrays["stream_ctc_frame_ids"] = (sids.numpy(), "argmax per frame")
    arrays["stream_ctc_tokens"] = (np.array(collapse(sids.tolist(), slp.shape[-1] - 1)), "greedy CTC tokens")
    return {"arrays": arrays, "min_gap": min(gaps),
            "offline_text": None, "stream_text": None,
            "stream": {"n_chunks": len(widths), "chunk_widths": widths, "encoded_lens": enc_lens,
                       "cache_steps_saved": {k: v[0] for k, v in saved.items()}},
            "streaming_cfg": {k: getattr(cfg, k) for k in ("chunk_size", "shift_size", "cache_drop_size",
                                                           "last_channel_cache_size", "valid_out_len",
                                                           "pre_encode_cache_size", "drop_extra_pre_encoded")}}


def write_nemo(out, pre_cfg, enc_cfg, V, pieces, tok_model, tok_vocab, pre, enc, dec):
    h = uuid.uuid4().hex
    names = {"model": f"{h}_tokenizer.model", "vocab": f"{h}_vocab.txt", "spe": f"{h}_tokenizer.vocab"}
    cfg = {"sample_rate": 16000,
           "tokenizer": {"dir": None, "type": "bpe", "model_path": "nemo:" + names["model"],
                         "vocab_path": "nemo:" + names["vocab"], "spe_tokenizer_vocab": "nemo:" + names["spe"]},
           "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor", **pre_cfg},
           "encoder": {"_target_": "nemo.collections.asr.modules.ConformerEncoder", **enc_cfg},
           "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": enc_cfg["d_model"],
                       "num_classes": V, "vocabulary": pieces},
           "target": "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"}
    state = {}
    for prefix, module in (("preprocessor", pre), ("encoder", enc), ("decoder", dec)):
        for k, v in module.state_dict().items():
            state[f"{prefix}.{k}"] = v.detach().clone()
    ckpt = io.BytesIO()
    torch.save(state, ckpt)
    with tarfile.open(os.path.join(out, "model.nemo"), "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("model_config.yaml", yaml.safe_dump(cfg, allow_unicode=True).encode())
        add("model_weights.ckpt", ckpt.getvalue())
        add(names["model"], open(tok_model, "rb").read())
        add(names["spe"], open(tok_vocab, "rb").read())
        add(names["vocab"], ("\n".join(pieces) + "\n").encode())


if __name__ == "__main__":
    main()
