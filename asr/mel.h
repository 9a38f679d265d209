/*
 * mel.h - NeMo-exact log-mel features, computed incrementally, one state per stream.
 *
 * What it computes: the output of NeMo's AudioToMelSpectrogramPreprocessor with normalize NA
 * or fixed (per mel bin mean and std given in the config), dither 0 and pad_to 0
 * (golden/README.md, "How NeMo computes the features"):
 *   pre-emphasis y[0] = x[0], y[t] = x[t] - 0.97 x[t-1];
 *   frame t centred on sample t*hop, n_fft samples wide, zero outside [0, n) (torch.stft with
 *   center=True and zero padding), the win_length window centred in the frame;
 *   power spectrum |X|^2; mel = fb . power; log(mel + 2^-24);
 *   frames t >= n / hop set to 0 (only the last one, t = n / hop); T_mel = n / hop + 1.
 * The FFT and all sums run in double; the result is rounded to float once.
 *
 * Why incremental: a live stream arrives 20-100 ms at a time and the encoder wants its feature
 * columns as soon as they exist, so each stream keeps only the few hundred pre-emphasised samples
 * the next frame still needs (plus the pre-emphasis carry) and turns new audio into new frames.
 * Memory does not grow with the stream, and every sample is featurised exactly once.
 * Feeding a stream in any pieces gives bit-for-bit the frames of feeding it in one piece.
 *
 * When a frame comes out: frame t needs the padded samples under its window, which end at
 * t*hop + win_length/2 (t*160 + 200), and it must be known not to be the masked last frame,
 * i.e. t < n / hop, which holds once (t+1)*hop samples exist. So frame t is emitted as soon as
 * max(t*hop + (n_fft - win_length)/2 - n_fft/2 + win_length, (t+1)*hop) samples have arrived;
 * for the 16 kHz defaults that is t*160 + 200 samples, 12.5 ms after the frame's centre.
 * es_mel_finish then emits the frames whose window runs past the end (zero-padded on the right)
 * and the final frame, which NeMo zeroes.
 *
 * Output buffers: push and finish write at most max_frames frames. Frames that did not fit stay
 * queued inside the stream (as finished mel rows, n_mels floats each) and come out first on the
 * next call; push(m, NULL, 0, ...) or another finish drains them. The queue only grows when the
 * caller leaves frames there; es_mel_pending says how many there are.
 *
 * Not thread-safe per stream; distinct streams are independent. The config's window and
 * filterbank are copied at creation.

 */
#ifndef EARSHOT_MEL_H
#define EARSHOT_MEL_H

#include <stddef.h>

typedef struct {
    int sample_rate;         /* 16000 (only checked to be > 0) */
    int n_fft;               /* 512; any power of two from 4 to 65536 */
    int hop_length;          /* 160 */
    int win_length;          /* 400, <= n_fft */
    int n_mels;              /* e.g. 80 */
    float preemph;           /* 0.97; 0 disables it */
    const float *window;     /* [win_length]: the model's preprocessor.featurizer.window tensor */
    const float *filterbank; /* [n_mels][n_fft/2+1]: preprocessor.featurizer.fb (row-major) */
    const float *norm_mean;  /* [n_mels] or NULL: normalize {fixed_mean, fixed_std}; then every */
    const float *norm_std;   /* frame but NeMo's zeroed last one becomes (x - mean) / std, in float */
} es_mel_config;

typedef struct es_mel es_mel; /* one stream's incremental state */

/* NULL on a bad config or out of memory. */
es_mel *es_mel_create(const es_mel_config *cfg);
void es_mel_free(es_mel *m);
/* Forget everything and start a new stream. */
void es_mel_reset(es_mel *m);

/* Feeds n samples (float, sample_rate Hz; samples may be NULL when n is 0). Writes every frame
 * that is now fully determined to out (frame-major: out[f * n_mels + m]), at most max_frames, and
 * returns the number written. Frames that did not fit stay pending and come out first on the
 * next call (push with n = 0 drains them). Returns -1, with the stream unchanged, when out of
 * memory for the pending queue, on bad arguments, or after es_mel_finish (reset first). */
int es_mel_push(es_mel *m, const float *samples, size_t n, float *out, int max_frames);

/* End of stream: writes the remaining frames (right edge zero-padded like torch.stft center=True
 * with zero padding) followed by the final frame that NeMo zeroes, so that the total count over
 * the stream is n_samples / hop + 1, NeMo's T_mel. Same draining rules as push: call it again
 * until it returns 0 when max_frames was too small. Returns -1 on out of memory or bad
 * arguments (the stream is unchanged, so the call can be retried). */
int es_mel_finish(es_mel *m, float *out, int max_frames);

/* Frames that es_mel_finish would still produce plus the pending ones (lets a caller size out).
 * Before finish this is always (samples so far) / hop + 1 - (frames returned so far). */
int es_mel_pending(const es_mel *m);

/* One-shot convenience for whole files (tests, offline path): returns T_mel = n / hop + 1 and
 * fills *out with a malloc'd [T_mel][n_mels] array (free() it). Returns -1 with *out = NULL on a
 * bad config or out of memory. Bitwise equal to feeding the samples in pieces. */
int es_mel_compute(const es_mel_config *cfg, const float *samples, size_t n, float **out);

#endif /* EARSHOT_MEL_H */
