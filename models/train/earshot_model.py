# earshot_model.py - NeMo's cache-aware streaming FastConformer, in plain PyTorch.
#
# Design
# ------
# Earshot's engine (asr/) computes what NeMo's ConformerEncoder computes.  To train models for it
# without NeMo, this file rebuilds the same network from the same config (NeMo's
# model_config.yaml, as a dict), with the same module tree, so that `state_dict()` has exactly
# NeMo's names and shapes and a .nemo written from it loads in NeMo and converts with
# earshot-convert.  The module tree, top down:
#
#   preprocessor.featurizer           log-mel front end (buffers: window, fb)
#   encoder.pre_encode.{out,conv.N}   causal conv subsampling (dw_striding or striding)
#   encoder.layers.N.{norm_feed_forward1, feed_forward1, norm_conv, conv, norm_self_att,
#                     self_attn, norm_feed_forward2, feed_forward2, norm_out}
#   decoder.decoder_layers.0          CTC head (CTC model)
#   decoder.prediction.{embed, dec_rnn.lstm}, joint.{pred, enc, joint_net.2}   RNNT (rnnt/hybrid)
#   ctc_decoder.decoder_layers.0      CTC head of a hybrid model
#
# What each piece computes follows NeMo (v2.5/2.6) step by step, including the details that
# change numbers: the length masks between subsampling convolutions, pad masks and the
# chunked_limited / regular attention masks, masked_fill(-10000) before the softmax and zeroing
# after it, NeMo's rel_shift, the zeroing of padded frames before the depthwise convolution.
# tests/test_golden.py checks it against arrays computed by NeMo itself.
#
# Only the offline (whole utterance) forward is here: the training graph.  Streaming is the
# engine's business; with chunked_limited masks the offline forward with a given look-ahead is
# what streaming reproduces (see ../../shared/golden/README.md).

import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

INF_VAL = 10000.0   # NeMo's masked_fill value for attention scores
DITHER_CONST = 1e-5  # NeMo's CONSTANT (dither default, std guard)


def _get(cfg, key, default):
    v = cfg.get(key, default) if isinstance(cfg, dict) else default
    return default if v is None and default is not None else v


# ---------------------------------------------------------------------------
# Preprocessor
# ---------------------------------------------------------------------------

def slaney_mel_filterbank(sr, n_fft, n_mels, fmin=0.0, fmax=None):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney'), in float64
    then float32 as librosa returns it.  NeMo stores the result as preprocessor.featurizer.fb."""
    if fmax is None:
        fmax = sr / 2.0

    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        mel = f / f_sp
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        hz = f_sp * m
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), hz)

    fftfreqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights.astype(np.float32)


class FilterbankFeatures(nn.Module):
    """NeMo's FilterbankFeatures: pre-emphasis, STFT (center, zero padding), power, mel, log,
    optional per-utterance normalisation, zeroing beyond the length, optional pad_to."""

    def __init__(self, sample_rate=16000, n_window_size=400, n_window_stride=160, window="hann",
                 normalize="NA", n_fft=None, preemph=0.97, nfilt=64, lowfreq=0.0, highfreq=None,
                 log=True, log_zero_guard_type="add", log_zero_guard_value=2 ** -24, dither=1e-5,
                 pad_to=16, frame_splicing=1, mag_power=2.0, pad_value=0.0):
        super().__init__()
        if window != "hann":
            raise ValueError("only the hann window is supported (got %r)" % window)
        if frame_splicing != 1:
            raise ValueError("frame_splicing must be 1")
        if log_zero_guard_type != "add" or not log:
            raise ValueError("only log with log_zero_guard_type 'add' is supported")
        self.win_length = n_window_size
        self.hop_length = n_window_stride
        self.n_fft = n_fft or 2 ** math.ceil(math.log2(n_window_size))
        self.normalize = normalize
        self.preemph = preemph
        self.log_zero_guard_value = float(log_zero_guard_value)
        self.dither = dither
        self.pad_to = pad_to
        self.mag_power = mag_power
        self.pad_value = pad_value
        self.nfilt = nfilt
        # Same registration order and names as NeMo: window, then fb.
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False))
        fb = slaney_mel_filterbank(sample_rate, self.n_fft, nfilt, lowfreq, highfreq)
        self.register_buffer("fb", torch.from_numpy(fb).unsqueeze(0))

    def get_seq_len(self, seq_len):
        pad = self.n_fft // 2 * 2
        return torch.div(seq_len + pad - self.n_fft, self.hop_length, rounding_mode="floor").long()

    def forward(self, x, seq_len):
        """x [B, samples] float32, seq_len [B] -> features [B, nfilt, frames], lengths [B]."""
        seq_len_time = seq_len
        feat_len = self.get_seq_len(seq_len)
        feat_len = torch.where(seq_len == 0, torch.zeros_like(feat_len), feat_len)
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn_like(x)
        if self.preemph is not None:
            timemask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < seq_len_time.unsqueeze(1)
            x = torch.cat((x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]), dim=1)
            x = x.masked_fill(~timemask, 0.0)
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          center=True, window=self.window.to(torch.float32), return_complex=True,
                          pad_mode="constant")
        spec = torch.view_as_real(spec)
        mag = torch.sqrt(spec.pow(2).sum(-1))
        if self.mag_power != 1.0:
            mag = mag.pow(self.mag_power)
        mel = torch.matmul(self.fb.to(mag.dtype), mag)
        mel = torch.log(mel + self.log_zero_guard_value)
        if isinstance(self.normalize, str) and self.normalize == "per_feature":
            mel = normalize_per_feature(mel, feat_len)
        elif isinstance(self.normalize, dict):
            mel = normalize_fixed(mel, self.normalize)
        elif isinstance(self.normalize, str) and self.normalize not in ("NA", "na", "none", ""):
            raise ValueError("normalize %r is not supported" % self.normalize)
        max_len = mel.size(-1)
        mask = torch.arange(max_len, device=mel.device).unsqueeze(0) >= feat_len.unsqueeze(1)
        mel = mel.masked_fill(mask.unsqueeze(1), self.pad_value)
        if isinstance(self.pad_to, int) and self.pad_to > 0:
            rem = mel.size(-1) % self.pad_to
            if rem:
                mel = F.pad(mel, (0, self.pad_to - rem), value=self.pad_value)
        return mel, feat_len


def normalize_per_feature(x, seq_len):
    """NeMo's normalize_batch(..., 'per_feature'): per utterance and mel bin, mean and unbiased
    std over the valid frames; std + 1e-5."""
    b, _, t = x.shape
    valid = (torch.arange(t, device=x.device).unsqueeze(0).expand(b, t) < seq_len.unsqueeze(1)).unsqueeze(1)
    n = valid.sum(-1).to(x.dtype)  # [B, 1]
    mean = torch.where(valid, x, torch.zeros_like(x)).sum(2) / n
    var = torch.where(valid, x - mean.unsqueeze(2), torch.zeros_like(x)).pow(2).sum(2) / (n - 1.0)
    std = torch.sqrt(var)
    std = std.masked_fill(std.isnan(), 0.0) + DITHER_CONST
    return (x - mean.unsqueeze(2)) / std.unsqueeze(2)


def normalize_fixed(x, stats):
    """NeMo's normalize {fixed_mean: [...], fixed_std: [...]}: one mean and standard deviation
    per mel bin, the same for every utterance, so that a stream can apply it frame by frame."""
    mean = torch.tensor(stats["fixed_mean"], dtype=x.dtype, device=x.device).view(1, -1, 1)
    std = torch.tensor(stats["fixed_std"], dtype=x.dtype, device=x.device).view(1, -1, 1)
    if mean.size(1) != x.size(1) or std.size(1) != x.size(1):
        raise ValueError("normalize fixed_mean / fixed_std need %d values" % x.size(1))
    return (x - mean) / std


class AudioToMelSpectrogramPreprocessor(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        sr = _get(cfg, "sample_rate", 16000)
        win = _get(cfg, "window_size", 0.02)
        hop = _get(cfg, "window_stride", 0.01)
        self.featurizer = FilterbankFeatures(
            sample_rate=sr,
            n_window_size=int(win * sr),
            n_window_stride=int(hop * sr),
            window=_get(cfg, "window", "hann"),
            normalize=_get(cfg, "normalize", "per_feature"),
            n_fft=cfg.get("n_fft"),
            preemph=_get(cfg, "preemph", 0.97),
            nfilt=_get(cfg, "features", 64),
            lowfreq=_get(cfg, "lowfreq", 0.0),
            highfreq=cfg.get("highfreq"),
            log=_get(cfg, "log", True),
            log_zero_guard_type=_get(cfg, "log_zero_guard_type", "add"),
            log_zero_guard_value=_get(cfg, "log_zero_guard_value", 2 ** -24),
            dither=_get(cfg, "dither", 1e-5),
            pad_to=_get(cfg, "pad_to", 16),
            frame_splicing=_get(cfg, "frame_splicing", 1),
            mag_power=_get(cfg, "mag_power", 2.0),
            pad_value=_get(cfg, "pad_value", 0.0),
        )

    @torch.no_grad()
    def forward(self, input_signal, length):
        return self.featurizer(input_signal.float(), length)


# ---------------------------------------------------------------------------
# SpecAugment (no parameters, not in the state dict)
# ---------------------------------------------------------------------------

class SpecAugment(nn.Module):
    """NeMo's SpecAugment: freq_masks bands of up to freq_width bins and time_masks spans of up
    to time_width frames (a float: that fraction of the utterance's length), set to 0."""

    def __init__(self, freq_masks=2, time_masks=10, freq_width=27, time_width=0.05, mask_value=0.0):
        super().__init__()
        self.freq_masks, self.time_masks = freq_masks, time_masks
        self.freq_width, self.time_width = freq_width, time_width
        self.mask_value = mask_value

    @torch.no_grad()
    def forward(self, x, length, rng=random):
        if not self.training:
            return x
        x = x.clone()
        b, nf, _ = x.shape
        for i in range(b):
            n = int(length[i])
            for _ in range(self.freq_masks):
                w = rng.randint(0, self.freq_width)
                s = rng.randint(0, max(0, nf - w))
                x[i, s:s + w, :] = self.mask_value
            tw = self.time_width
            tw = max(1, int(n * tw)) if isinstance(tw, float) else tw
            for _ in range(self.time_masks):
                w = rng.randint(0, tw)
                s = rng.randint(0, max(0, n - w))
                x[i, :, s:s + w] = self.mask_value
        return x


# ---------------------------------------------------------------------------
# Encoder: subsampling
# ---------------------------------------------------------------------------

class CausalConv2D(nn.Conv2d):
    """Conv2d padded (kernel-1) before and (stride-1) after, in time and in frequency."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, groups=1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups)
        self._left_padding = kernel_size - 1
        self._right_padding = stride - 1

    def forward(self, x):
        x = F.pad(x, (self._left_padding, self._right_padding, self._left_padding, self._right_padding))
        return super().forward(x)


class MaskedConvSequential(nn.Sequential):
    """NeMo's MaskedConvSequential: zero the time steps beyond the (per-stage) length before
    every layer and at the end."""

    def forward(self, x, lengths):
        x = x.unsqueeze(1)  # [B, 1, T, F]
        lengths = lengths.clone().float()
        mask = _time_mask(x, lengths.long())
        for layer in self:
            x = x * mask.unsqueeze(1)
            x = layer(x)
            if isinstance(layer, nn.Conv2d) and layer.stride != (1, 1):
                if hasattr(layer, "_left_padding"):
                    pad = (layer._left_padding, layer._right_padding)
                else:
                    pad = layer.padding
                lengths = torch.div(lengths + pad[0] + pad[1] - layer.kernel_size[0], layer.stride[0],
                                    rounding_mode="floor") + 1
                mask = _time_mask(x, lengths.long())
        x = x * mask.unsqueeze(1)
        return x, lengths.long()


def _time_mask(x, lengths):
    b, _, t, f = x.shape
    m = torch.arange(t, device=x.device).expand(b, t) < lengths.unsqueeze(1)
    return m.unsqueeze(-1).expand(b, t, f).to(x.dtype)


class ConvSubsampling(nn.Module):
    def __init__(self, subsampling, factor, feat_in, feat_out, conv_channels, is_causal):
        super().__init__()
        if subsampling not in ("dw_striding", "striding"):
            raise ValueError("subsampling %r is not supported (dw_striding, striding)" % subsampling)
        if factor < 2 or factor & (factor - 1):
            raise ValueError("subsampling_factor must be a power of 2")
        self.subsampling_factor = factor
        n = int(math.log2(factor))
        k, s = 3, 2
        if is_causal:
            lp, rp = k - 1, s - 1
        else:
            lp = rp = (k - 1) // 2

        def conv(cin, cout, groups=1):
            if is_causal:
                return CausalConv2D(cin, cout, k, s, groups=groups)
            return nn.Conv2d(cin, cout, k, s, padding=lp, groups=groups)

        layers = []
        if subsampling == "dw_striding":
            layers += [conv(1, conv_channels), nn.ReLU(True)]
            for _ in range(n - 1):
                layers += [conv(conv_channels, conv_channels, groups=conv_channels),
                           nn.Conv2d(conv_channels, conv_channels, 1), nn.ReLU(True)]
        else:
            cin = 1
            for _ in range(n):
                layers += [conv(cin, conv_channels), nn.ReLU(True)]
                cin = conv_channels
        freq = feat_in
        for _ in range(n):
            freq = (freq + lp + rp - k) // s + 1
        self.out = nn.Linear(conv_channels * freq, feat_out)  # created before conv, as in NeMo
        self.conv = MaskedConvSequential(*layers)

    def forward(self, x, lengths):
        """x [B, T, F] -> [B, T', d_model], lengths'."""
        x, lengths = self.conv(x, lengths)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, -1))
        return x, lengths


# ---------------------------------------------------------------------------
# Encoder: relative positions, attention, convolution, layer
# ---------------------------------------------------------------------------

class RelPositionalEncoding(nn.Module):
    """x * sqrt(d) (xscaling) and the sinusoids of positions L-1 .. -(L-1)."""

    def __init__(self, d_model, dropout_rate, xscale, dropout_rate_emb=0.0):
        super().__init__()
        self.d_model = d_model
        self.xscale = xscale
        self.dropout = nn.Dropout(dropout_rate)
        self.dropout_emb = nn.Dropout(dropout_rate_emb) if dropout_rate_emb > 0 else None
        self._pe = {}

    def pos_emb(self, length, device):
        key = (length, str(device))
        pe = self._pe.get(key)
        if pe is None:
            positions = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=device)
                                 * -(math.log(INF_VAL) / self.d_model))
            pe = torch.zeros(positions.size(0), self.d_model, device=device)
            pe[:, 0::2] = torch.sin(positions * div_term)
            pe[:, 1::2] = torch.cos(positions * div_term)
            pe = pe.unsqueeze(0)
            if len(self._pe) > 64:
                self._pe.clear()
            self._pe[key] = pe
        return pe

    def forward(self, x, cache_len=0):
        if self.xscale:
            x = x * self.xscale
        pos_emb = self.pos_emb(x.size(1) + cache_len, x.device).to(x.dtype)
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x), pos_emb


class RelPositionMultiHeadAttention(nn.Module):
    def __init__(self, n_head, n_feat, dropout_rate, pos_bias_u=None, pos_bias_v=None, use_bias=True):
        super().__init__()
        self.d_k = n_feat // n_head
        self.h = n_head
        self.s_d_k = math.sqrt(self.d_k)
        self.linear_q = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_k = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_v = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.linear_out = nn.Linear(n_feat, n_feat, bias=use_bias)
        self.dropout = nn.Dropout(dropout_rate)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        if pos_bias_u is None:
            self.pos_bias_u = nn.Parameter(torch.zeros(self.h, self.d_k))
            self.pos_bias_v = nn.Parameter(torch.zeros(self.h, self.d_k))
        else:  # tied across layers (untie_biases: false): the same Parameter in every layer
            self.pos_bias_u = pos_bias_u
            self.pos_bias_v = pos_bias_v

    @staticmethod
    def rel_shift(x):
        b, h, qlen, pos_len = x.size()
        x = F.pad(x, pad=(1, 0))
        x = x.view(b, h, -1, qlen)
        return x[:, :, 1:].view(b, h, qlen, pos_len)

    def forward(self, x, mask, pos_emb):
        b = x.size(0)
        q = self.linear_q(x).view(b, -1, self.h, self.d_k)           # [B, T, H, dk]
        k = self.linear_k(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_bd = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        matrix_bd = matrix_bd[:, :, :, :matrix_ac.size(-1)]
        scores = (matrix_ac + matrix_bd) / self.s_d_k
        if mask is not None:
            m = mask.unsqueeze(1)
            scores = scores.masked_fill(m, -INF_VAL)
            attn = torch.softmax(scores, dim=-1).masked_fill(m, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(self.dropout(attn), v)
        out = out.transpose(1, 2).reshape(b, -1, self.h * self.d_k)
        return self.linear_out(out)


class CausalConv1D(nn.Conv1d):
    def __init__(self, channels, kernel_size, padding, bias=True):
        super().__init__(channels, channels, kernel_size, stride=1, padding=0, groups=channels, bias=bias)
        self._left_padding, self._right_padding = padding

    def forward(self, x):
        return super().forward(F.pad(x, (self._left_padding, self._right_padding)))


class ConformerConvolution(nn.Module):
    def __init__(self, d_model, kernel_size, norm_type, conv_context_size, use_bias=True):
        super().__init__()
        self.norm_type = norm_type
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1, bias=use_bias)
        self.depthwise_conv = CausalConv1D(d_model, kernel_size, conv_context_size, bias=use_bias)
        if norm_type == "batch_norm":
            self.batch_norm = nn.BatchNorm1d(d_model)
        elif norm_type == "layer_norm":
            self.batch_norm = nn.LayerNorm(d_model)
        else:
            raise ValueError("conv_norm_type %r is not supported (batch_norm, layer_norm)" % norm_type)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1, bias=use_bias)

    def forward(self, x, pad_mask):
        x = self.pointwise_conv1(x.transpose(1, 2))
        x = F.glu(x, dim=1)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(1), 0.0)
        x = self.depthwise_conv(x)
        if self.norm_type == "layer_norm":
            x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.batch_norm(x)
        x = x * torch.sigmoid(x)
        x = self.pointwise_conv2(x)
        return x.transpose(1, 2)


class ConformerFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, dropout, use_bias=True):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=use_bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=use_bias)

    def forward(self, x):
        x = self.linear1(x)
        x = x * torch.sigmoid(x)
        return self.linear2(self.dropout(x))


class ConformerLayer(nn.Module):
    def __init__(self, d_model, d_ff, n_heads, conv_kernel_size, conv_norm_type, conv_context_size,
                 dropout, dropout_att, pos_bias_u, pos_bias_v, use_bias):
        super().__init__()
        self.fc_factor = 0.5
        # Registration order = NeMo's, so state_dict() lists the names in NeMo's order.
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConformerConvolution(d_model, conv_kernel_size, conv_norm_type, conv_context_size, use_bias)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = RelPositionMultiHeadAttention(n_heads, d_model, dropout_att, pos_bias_u, pos_bias_v,
                                                       use_bias)
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = ConformerFeedForward(d_model, d_ff, dropout, use_bias)
        self.dropout = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x, att_mask, pos_emb, pad_mask):
        residual = x
        x = self.feed_forward1(self.norm_feed_forward1(x))
        residual = residual + self.dropout(x) * self.fc_factor
        x = self.self_attn(self.norm_self_att(residual), att_mask, pos_emb)
        residual = residual + self.dropout(x)
        x = self.conv(self.norm_conv(residual), pad_mask)
        residual = residual + self.dropout(x)
        x = self.feed_forward2(self.norm_feed_forward2(residual))
        residual = residual + self.dropout(x) * self.fc_factor
        return self.norm_out(residual)


def normalise_att_context(att_context_size):
    """[l, r] or [[l, r], ...] -> list of [l, r] lists."""
    if not att_context_size:
        return [[-1, -1]]
    if isinstance(att_context_size[0], int):
        return [list(att_context_size)]
    return [list(p) for p in att_context_size]


class ConformerEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d_model = cfg["d_model"]
        n_layers = cfg["n_layers"]
        n_heads = _get(cfg, "n_heads", 4)
        if _get(cfg, "self_attention_model", "rel_pos") != "rel_pos":
            raise ValueError("only self_attention_model rel_pos is supported")
        if _get(cfg, "feat_out", -1) not in (-1, d_model):
            raise ValueError("feat_out must be -1")
        self.d_model = d_model
        self.att_context_style = _get(cfg, "att_context_style", "regular")
        if self.att_context_style not in ("regular", "chunked_limited"):
            raise ValueError("att_context_style %r is not supported" % self.att_context_style)
        self.att_context_size_all = normalise_att_context(cfg.get("att_context_size"))
        for l, r in self.att_context_size_all:
            if self.att_context_style == "chunked_limited" and l > 0 and l % (r + 1):
                raise ValueError("att_context_size left must be a multiple of right + 1")
        probs = cfg.get("att_context_probs")
        self.att_context_probs = list(probs) if probs else [1.0 / len(self.att_context_size_all)] * len(
            self.att_context_size_all)
        self.att_context_size = self.att_context_size_all[0]
        kernel = _get(cfg, "conv_kernel_size", 31)
        ccs = cfg.get("conv_context_size")
        if ccs == "causal":
            ccs = [kernel - 1, 0]
        elif ccs is None:
            ccs = [(kernel - 1) // 2, (kernel - 1) // 2]
        self.conv_context_size = list(ccs)
        use_bias = _get(cfg, "use_bias", True)
        xscale = math.sqrt(d_model) if _get(cfg, "xscaling", True) else None
        channels = _get(cfg, "subsampling_conv_channels", -1)
        if channels == -1:
            channels = d_model
        self.subsampling_factor = _get(cfg, "subsampling_factor", 4)
        self.pre_encode = ConvSubsampling(_get(cfg, "subsampling", "striding"), self.subsampling_factor,
                                          cfg["feat_in"], d_model, channels,
                                          bool(_get(cfg, "causal_downsampling", False)))
        if not _get(cfg, "untie_biases", True):
            dk = d_model // n_heads
            pos_bias_u = nn.Parameter(torch.zeros(n_heads, dk))
            pos_bias_v = nn.Parameter(torch.zeros(n_heads, dk))
        else:
            pos_bias_u = pos_bias_v = None
        self.pos_enc = RelPositionalEncoding(d_model, _get(cfg, "dropout_pre_encoder", 0.1), xscale,
                                             _get(cfg, "dropout_emb", 0.0))
        d_ff = d_model * _get(cfg, "ff_expansion_factor", 4)
        self.layers = nn.ModuleList([
            ConformerLayer(d_model, d_ff, n_heads, kernel, _get(cfg, "conv_norm_type", "batch_norm"),
                           self.conv_context_size, _get(cfg, "dropout", 0.1), _get(cfg, "dropout_att", 0.0),
                           pos_bias_u, pos_bias_v, use_bias)
            for _ in range(n_layers)])
        # Stochastic depth (NeMo: linear from start_layer), only active in training.
        p = _get(cfg, "stochastic_depth_drop_prob", 0.0)
        start = _get(cfg, "stochastic_depth_start_layer", 1)
        if p > 0:
            L = n_layers - start + 1 if start <= n_layers else 1
            self.layer_drop_probs = [0.0] * (start - 1) + [p * l / L for l in range(1, n_layers - start + 2)]
            self.layer_drop_probs = self.layer_drop_probs[:n_layers]
        else:
            self.layer_drop_probs = [0.0] * n_layers

    def pick_att_context(self, rng=random):
        """NeMo: a random look-ahead per batch in training, the first one otherwise."""
        if self.training and len(self.att_context_size_all) > 1:
            return rng.choices(self.att_context_size_all, weights=self.att_context_probs)[0]
        return self.att_context_size

    def create_masks(self, att_context_size, length, max_len, device):
        att_mask = torch.ones(1, max_len, max_len, dtype=torch.bool, device=device)
        left, right = att_context_size
        if self.att_context_style == "regular":
            if left >= 0:
                att_mask = att_mask.triu(diagonal=-left)
            if right >= 0:
                att_mask = att_mask.tril(diagonal=right)
        else:
            if right == -1:
                if left >= 0:
                    att_mask = att_mask.triu(diagonal=-left)
            else:
                chunk = right + 1
                left_chunks = left // chunk if left >= 0 else 10000
                idx = torch.div(torch.arange(max_len, device=device), chunk, rounding_mode="trunc")
                diff = idx.unsqueeze(1) - idx.unsqueeze(0)
                att_mask = att_mask & ((diff <= left_chunks) & (diff >= 0)).unsqueeze(0)
        pad_mask = torch.arange(max_len, device=device).expand(length.size(0), -1) < length.unsqueeze(-1)
        pm = pad_mask.unsqueeze(1).repeat(1, max_len, 1)
        pm = pm & pm.transpose(1, 2)
        att_mask = ~(pm & att_mask)
        return ~pad_mask, att_mask

    def forward(self, audio_signal, length, att_context_size=None, rng=random):
        """audio_signal [B, feat_in, T], length [B] -> encoded [B, d_model, T'], encoded_len [B]."""
        if att_context_size is None:
            att_context_size = self.pick_att_context(rng)
        x = audio_signal.transpose(1, 2)
        x, length = self.pre_encode(x, length)
        length = length.to(torch.int64)
        x, pos_emb = self.pos_enc(x)
        pad_mask, att_mask = self.create_masks(att_context_size, length, x.size(1), x.device)
        for drop_prob, layer in zip(self.layer_drop_probs, self.layers):
            original = x
            x = layer(x, att_mask, pos_emb, pad_mask)
            if self.training and drop_prob > 0.0:
                if torch.rand(1).item() < drop_prob:
                    x = x * 0.0 + original
                else:
                    x = (x - original) / (1.0 - drop_prob) + original
        return x.transpose(1, 2), length


# ---------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------

class ConvASRDecoder(nn.Module):
    """CTC head: Conv1d(d, V+1, 1), log_softmax.  Blank is the last class."""

    def __init__(self, feat_in, num_classes):
        super().__init__()
        self.num_classes_with_blank = num_classes + 1
        self.decoder_layers = nn.Sequential(nn.Conv1d(feat_in, num_classes + 1, kernel_size=1, bias=True))

    def forward(self, encoder_output):
        return F.log_softmax(self.decoder_layers(encoder_output).transpose(1, 2), dim=-1)


class LSTMDropout(nn.Module):
    def __init__(self, hidden, dropout):
        super().__init__()
        self.lstm = nn.LSTM(hidden, hidden, num_layers=1, batch_first=False)
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x, h=None):
        x, h = self.lstm(x, h)
        if self.dropout is not None:
            x = self.dropout(x)
        return x, h


class RNNTDecoder(nn.Module):
    """NeMo's RNNTDecoder with one LSTM layer and blank_as_pad: embed(V+1, H, padding_idx=V)."""

    def __init__(self, vocab_size, pred_hidden, dropout=0.2):
        super().__init__()
        self.blank_idx = vocab_size
        self.pred_hidden = pred_hidden
        self.prediction = nn.ModuleDict({
            "embed": nn.Embedding(vocab_size + 1, pred_hidden, padding_idx=vocab_size),
            "dec_rnn": LSTMDropout(pred_hidden, dropout),
        })

    def predict(self, y, state=None, add_sos=True):
        """y [B, U] token ids or None (start) -> g [B, U(+1), H], state."""
        if y is None:
            emb = torch.zeros(state[0].size(1) if state is not None else 1, 1, self.pred_hidden,
                              device=self.prediction["embed"].weight.device)
        else:
            emb = self.prediction["embed"](y)
            if add_sos:
                emb = F.pad(emb, (0, 0, 1, 0))
        g, state = self.prediction["dec_rnn"](emb.transpose(0, 1), state)
        return g.transpose(0, 1), state


class RNNTJoint(nn.Module):
    def __init__(self, enc_hidden, pred_hidden, joint_hidden, num_classes, dropout=0.2):
        super().__init__()
        self.pred = nn.Linear(pred_hidden, joint_hidden)
        self.enc = nn.Linear(enc_hidden, joint_hidden)
        layers = [nn.ReLU(True)] + ([nn.Dropout(dropout)] if dropout else []) + [
            nn.Linear(joint_hidden, num_classes + 1)]
        self.joint_net = nn.Sequential(*layers)

    def forward(self, f, g):
        """f [B, T, enc_hidden], g [B, U, pred_hidden] -> logits [B, T, U, V+1]."""
        return self.joint_net(self.enc(f).unsqueeze(2) + self.pred(g).unsqueeze(1))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

CTC_TARGET = "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"
RNNT_TARGET = "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel"
HYBRID_TARGET = "nemo.collections.asr.models.hybrid_rnnt_ctc_bpe_models.EncDecHybridRNNTCTCBPEModel"


def model_kind(cfg):
    dec = str(cfg.get("decoder", {}).get("_target_", ""))
    if dec.endswith("ConvASRDecoder"):
        return "ctc"
    if dec.endswith("RNNTDecoder"):
        return "hybrid" if isinstance(cfg.get("aux_ctc"), dict) else "rnnt"
    raise ValueError("decoder._target_ %r is not supported" % dec)


class EncDecModel(nn.Module):
    """A CTC, RNNT or hybrid model built from NeMo's model config (a dict)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.kind = model_kind(cfg)
        self.preprocessor = AudioToMelSpectrogramPreprocessor(cfg["preprocessor"])
        self.encoder = ConformerEncoder(cfg["encoder"])
        sa = cfg.get("spec_augment")
        self.spec_augmentation = SpecAugment(
            _get(sa, "freq_masks", 2), _get(sa, "time_masks", 10), _get(sa, "freq_width", 27),
            _get(sa, "time_width", 0.05)) if isinstance(sa, dict) else None
        d = cfg["encoder"]["d_model"]
        if self.kind == "ctc":
            self.vocab_size = cfg["decoder"]["num_classes"]
            self.decoder = ConvASRDecoder(d, self.vocab_size)
        else:
            dcfg, jcfg = cfg["decoder"], cfg["joint"]
            self.vocab_size = dcfg["vocab_size"]
            pn = dcfg["prednet"]
            if _get(pn, "pred_rnn_layers", 1) != 1:
                raise ValueError("only pred_rnn_layers 1 is supported")
            self.decoder = RNNTDecoder(self.vocab_size, pn["pred_hidden"], _get(pn, "dropout", 0.2))
            jn = jcfg["jointnet"]
            self.joint = RNNTJoint(d, pn["pred_hidden"], jn["joint_hidden"], self.vocab_size,
                                   _get(jn, "dropout", 0.2))
            if self.kind == "hybrid":
                self.ctc_decoder = ConvASRDecoder(d, cfg["aux_ctc"]["decoder"]["num_classes"])
        self.blank_id = self.vocab_size

    @property
    def ctc_head(self):
        if self.kind == "ctc":
            return self.decoder
        if self.kind == "hybrid":
            return self.ctc_decoder
        return None

    def forward(self, audio, audio_len, att_context_size=None, rng=random, augment=True):
        """audio [B, samples] -> (encoded [B, d, T], encoded_len [B])."""
        feats, feat_len = self.preprocessor(audio, audio_len)
        if self.training and augment and self.spec_augmentation is not None:
            feats = self.spec_augmentation(feats, feat_len, rng)
        return self.encoder(feats, feat_len, att_context_size=att_context_size, rng=rng)

    # -- decoding --

    @torch.no_grad()
    def ctc_greedy(self, log_probs, lengths):
        """[B, T, V+1] -> list of token-id lists (argmax, merge repeats, drop blank)."""
        ids = log_probs.argmax(-1)
        out = []
        for b in range(ids.size(0)):
            prev, toks = None, []
            for t in ids[b, :int(lengths[b])].tolist():
                if t != prev and t != self.blank_id:
                    toks.append(t)
                prev = t
            out.append(toks)
        return out

    @torch.no_grad()
    def rnnt_greedy(self, encoded, lengths, max_symbols=10, gaps=None):
        """encoded [B, d, T] -> list of token lists; NeMo's greedy, one utterance at a time.
        gaps: a list to which each decision's top-1 minus top-2 logit is appended."""
        results = []
        f_all = self.joint.enc(encoded.transpose(1, 2))  # [B, T, J]
        for b in range(encoded.size(0)):
            g, state = self.decoder.predict(None, None)
            gp = self.joint.pred(g[:, -1])
            toks = []
            for t in range(int(lengths[b])):
                for _ in range(max_symbols):
                    logits = self.joint.joint_net(f_all[b, t] + gp[0])
                    k = int(logits.argmax(-1))
                    if gaps is not None:
                        top = torch.topk(logits, 2).values
                        gaps.append(float(top[0] - top[1]))
                    if k == self.blank_id:
                        break
                    toks.append(k)
                    g, state = self.decoder.predict(torch.tensor([[k]], device=encoded.device), state, add_sos=False)
                    gp = self.joint.pred(g[:, -1])
            results.append(toks)
        return results
