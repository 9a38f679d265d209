/*
 * mel.c - incremental NeMo log-mel features (see features.h for what and why).
 *
 * Design. A stream keeps the pre-emphasised samples from the left edge of its next frame's
 * window up to the newest sample, in a small linear buffer (at most max(win_length,
 * hop_length + n_fft/2 - (n_fft-win_length)/2) samples: 400 for the 16 kHz defaults). Samples
 * are appended only up to the point where the next frame becomes ready; the frame is then
 * computed, the samples no later frame needs are dropped, and appending goes on. So the buffer
 * never holds more than one frame's worth, whatever the size of a push.
 *
 * Frames that the caller has no room for go to a FIFO of finished mel rows, which is also how
 * es_mel_finish hands out its last frames. The FIFO's capacity is reserved before a push consumes
 * any audio, so an allocation failure leaves the stream untouched.
 *
 * Numerics. Each frame is windowed in double, transformed by our own 512-point (any power of
 * two) real FFT in double (a complex FFT of half the size plus the usual split step, exact
 * twiddles from cos/sin), the power spectrum and the mel sums are accumulated in double, and
 * log(mel + 2^-24) is rounded to float once. Pre-emphasis is done in float like NeMo's (a float
 * tensor op), so the FFT sees the same input values as torch.stft did. The computation of a
 * frame depends only on the samples under it, never on how they were pushed, hence the
 * bit-for-bit equality of incremental and one-shot use.
 */
#include "mel.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ES_PI 3.14159265358979323846
#define ES_LOG_GUARD 5.9604644775390625e-08 /* 2^-24, NeMo's log_zero_guard_value */

struct es_mel {
    /* configuration */
    int n_fft, hop, win, n_mels, n_bins;
    int win_off;           /* (n_fft - win) / 2: where the window sits in the frame */
    int left;              /* n_fft/2 - win_off: frame t's window starts at t*hop - left */
    int ready_lag;         /* win - left: frame t's window ends at t*hop + ready_lag */
    float preemph;
    float *window;         /* [win] */
    float *fb;             /* [n_mels][n_bins] */
    int *fb_lo, *fb_hi;    /* per mel row: its non-zero bins are [lo, hi) */
    float *norm_mean, *norm_std; /* [n_mels] or NULL: fixed normalisation */

    /* FFT tables and scratch */
    double *tw_re, *tw_im; /* [n_fft/2 + 1]: exp(-2 pi i k / n_fft) */
    int *bitrev;           /* [n_fft/2] */
    double *frame;         /* [n_fft]: the windowed frame */
    double *z_re, *z_im;   /* [n_fft/2] */
    double *power;         /* [n_bins] */

    /* stream state */
    float *buf;            /* pre-emphasised samples [base, n_seen) */
    int buf_cap;
    int64_t base;          /* absolute index of buf[0] */
    int64_t n_seen;        /* samples received */
    float prev;            /* last raw sample (pre-emphasis carry) */
    int64_t next_t;        /* next frame to compute */
    int finished;

    /* FIFO of computed frames the caller had no room for */
    float *q;              /* [q_cap][n_mels] */
    int q_cap, q_head, q_count;
};

static int is_pow2(int x)
{
    return x > 0 && (x & (x - 1)) == 0;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Samples needed before frame t may be emitted: its window must be complete and t < n / hop
 * must be certain (so that it is not the masked last frame). */
static int64_t ready_at(const es_mel *m, int64_t t)
{
    return max64(t * m->hop + m->ready_lag, (t + 1) * m->hop);
}

/* Number of frames t >= 0 with ready_at(t) <= n. */
static int64_t frames_ready(const es_mel *m, int64_t n)
{
    int64_t by_mask = n / m->hop;
    if (n < m->ready_lag)
        return 0;
    int64_t by_window = (n - m->ready_lag) / m->hop + 1;
    return by_window < by_mask ? by_window : by_mask;
}

void es_mel_free(es_mel *m)
{
    if (!m)
        return;
    free(m->window);
    free(m->fb);
    free(m->fb_lo);
    free(m->fb_hi);
    free(m->norm_mean);
    free(m->norm_std);
    free(m->tw_re);
    free(m->tw_im);
    free(m->bitrev);
    free(m->frame);
    free(m->z_re);
    free(m->z_im);
    free(m->power);
    free(m->buf);
    free(m->q);
    free(m);
}

void es_mel_reset(es_mel *m)
{
    if (!m)
        return;
    m->base = 0;
    m->n_seen = 0;
    m->prev = 0.0f;
    m->next_t = 0;
    m->finished = 0;
    m->q_head = 0;
    m->q_count = 0;
}

es_mel *es_mel_create(const es_mel_config *cfg)
{
    if (!cfg || !cfg->window || !cfg->filterbank)
        return NULL;
    if (cfg->sample_rate <= 0 || !is_pow2(cfg->n_fft) || cfg->n_fft < 4 || cfg->n_fft > 65536)
        return NULL;
    if (cfg->hop_length <= 0 || cfg->win_length <= 0 || cfg->win_length > cfg->n_fft)
        return NULL;
    if (cfg->n_mels <= 0 || cfg->n_mels > 65536 || !isfinite(cfg->preemph))
        return NULL;

    es_mel *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->n_fft = cfg->n_fft;
    m->hop = cfg->hop_length;
    m->win = cfg->win_length;
    m->n_mels = cfg->n_mels;
    m->n_bins = cfg->n_fft / 2 + 1;
    m->win_off = (cfg->n_fft - cfg->win_length) / 2;
    m->left = cfg->n_fft / 2 - m->win_off;
    m->ready_lag = m->win - m->left;
    m->preemph = cfg->preemph;

    int half = m->n_fft / 2;
    /* Longest span kept: from a frame's window start to the moment it is ready. */
    int cap = m->win > m->hop + m->left ? m->win : m->hop + m->left;
    m->buf_cap = cap;
    /* Finish emits the frames whose window runs past the end plus the zero frame; reserve that
     * much queue so that finish on an empty queue never allocates. */
    int lag = m->ready_lag > m->hop ? m->ready_lag : m->hop;
    m->q_cap = (lag + m->hop - 1) / m->hop + 2;

    size_t nb = (size_t)m->n_bins;
    m->window = malloc(sizeof(float) * (size_t)m->win);
    m->fb = malloc(sizeof(float) * (size_t)m->n_mels * nb);
    m->fb_lo = malloc(sizeof(int) * (size_t)m->n_mels);
    m->fb_hi = malloc(sizeof(int) * (size_t)m->n_mels);
    m->tw_re = malloc(sizeof(double) * (size_t)(half + 1));
    m->tw_im = malloc(sizeof(double) * (size_t)(half + 1));
    m->bitrev = malloc(sizeof(int) * (size_t)half);
    m->frame = malloc(sizeof(double) * (size_t)m->n_fft);
    m->z_re = malloc(sizeof(double) * (size_t)half);
    m->z_im = malloc(sizeof(double) * (size_t)half);
    m->power = malloc(sizeof(double) * nb);
    m->buf = malloc(sizeof(float) * (size_t)cap);
    m->q = malloc(sizeof(float) * (size_t)m->q_cap * (size_t)m->n_mels);
    if (!m->window || !m->fb || !m->fb_lo || !m->fb_hi || !m->tw_re || !m->tw_im || !m->bitrev ||
        !m->frame || !m->z_re || !m->z_im || !m->power || !m->buf || !m->q) {
        es_mel_free(m);
        return NULL;
    }

    if ((cfg->norm_mean != NULL) != (cfg->norm_std != NULL)) {
        es_mel_free(m);
        return NULL;
    }
    if (cfg->norm_mean) {
        size_t bytes = sizeof(float) * (size_t)m->n_mels;
        m->norm_mean = malloc(bytes);
        m->norm_std = malloc(bytes);
        if (!m->norm_mean || !m->norm_std) {
            es_mel_free(m);
            return NULL;
        }
        memcpy(m->norm_mean, cfg->norm_mean, bytes);
        memcpy(m->norm_std, cfg->norm_std, bytes);
    }

    memcpy(m->window, cfg->window, sizeof(float) * (size_t)m->win);
    memcpy(m->fb, cfg->filterbank, sizeof(float) * (size_t)m->n_mels * nb);
    for (int r = 0; r < m->n_mels; r++) {
        const float *row = m->fb + (size_t)r * nb;
        int lo = 0, hi = m->n_bins;
        while (lo < hi && row[lo] == 0.0f)
            lo++;
        while (hi > lo && row[hi - 1] == 0.0f)
            hi--;
        m->fb_lo[r] = lo;
        m->fb_hi[r] = hi;
    }

    for (int k = 0; k <= half; k++) {
        double a = 2.0 * ES_PI * (double)k / (double)m->n_fft;
        m->tw_re[k] = cos(a);
        m->tw_im[k] = -sin(a);
    }
    int bits = 0;
    while ((1 << bits) < half)
        bits++;
    for (int i = 0; i < half; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b))
                r |= 1 << (bits - 1 - b);
        m->bitrev[i] = r;
    }

    es_mel_reset(m);
    return m;
}

/* Power spectrum of the real frame x[n_fft] into m->power[0..n_fft/2]: a complex FFT of
 * z[j] = x[2j] + i x[2j+1] (size M = n_fft/2), then X[k] = E[k] + W^k O[k] with
 * E[k] = (Z[k] + conj Z[M-k]) / 2 and O[k] = (Z[k] - conj Z[M-k]) / 2i, W = exp(-2 pi i / n_fft). */
static void power_spectrum(es_mel *m, const double *x)
{
    const int M = m->n_fft / 2;
    double *zr = m->z_re, *zi = m->z_im;
    for (int j = 0; j < M; j++) {
        int r = m->bitrev[j];
        zr[r] = x[2 * j];
        zi[r] = x[2 * j + 1];
    }
    /* Radix-2 decimation in time; a size-len butterfly uses exp(-2 pi i j / len) = tw[j * n_fft / len]. */
    for (int len = 2; len <= M; len <<= 1) {
        int h = len / 2, stride = m->n_fft / len;
        for (int s = 0; s < M; s += len) {
            for (int j = 0; j < h; j++) {
                double wr = m->tw_re[j * stride], wi = m->tw_im[j * stride];
                int a = s + j, b = a + h;
                double br = zr[b] * wr - zi[b] * wi;
                double bi = zr[b] * wi + zi[b] * wr;
                zr[b] = zr[a] - br;
                zi[b] = zi[a] - bi;
                zr[a] += br;
                zi[a] += bi;
            }
        }
    }
    for (int k = 0; k <= M; k++) {
        int k1 = k % M, k2 = (M - k) % M;
        double ar = zr[k1], ai = zi[k1];  /* Z[k] */
        double cr = zr[k2], ci = -zi[k2]; /* conj Z[M-k] */
        double er = 0.5 * (ar + cr), ei = 0.5 * (ai + ci);
        /* (d) / 2i with d = Z[k] - conj Z[M-k]: (dr + i di) / 2i = (di - i dr) / 2 */
        double orr = 0.5 * (ai - ci), oi = -0.5 * (ar - cr);
        double xr = er + m->tw_re[k] * orr - m->tw_im[k] * oi;
        double xi = ei + m->tw_re[k] * oi + m->tw_im[k] * orr;
        m->power[k] = xr * xr + xi * xi;
    }
}

/* Computes frame t (not masked) into out[n_mels]. Samples outside [0, n_seen) are zero. */
static void compute_frame(es_mel *m, int64_t t, float *out)
{
    double *x = m->frame;
    for (int k = 0; k < m->n_fft; k++)
        x[k] = 0.0;
    int64_t start = t * m->hop - m->left; /* absolute index of window[0] */
    for (int j = 0; j < m->win; j++) {
        int64_t s = start + j;
        if (s < 0 || s >= m->n_seen)
            continue;
        x[m->win_off + j] = (double)m->buf[s - m->base] * (double)m->window[j];
    }
    power_spectrum(m, x);

    const size_t nb = (size_t)m->n_bins;
    for (int r = 0; r < m->n_mels; r++) {
        const float *row = m->fb + (size_t)r * nb;
        double acc = 0.0;
        for (int k = m->fb_lo[r]; k < m->fb_hi[r]; k++)
            acc += (double)row[k] * m->power[k];
        out[r] = (float)log(acc + ES_LOG_GUARD);
        if (m->norm_mean) /* NeMo normalises the float log-mel: subtract, then divide, in float */
            out[r] = (out[r] - m->norm_mean[r]) / m->norm_std[r];
    }
}

/* Drops the samples that no frame from next_t on needs. */
static void drop_old(es_mel *m)
{
    int64_t nb = max64(0, m->next_t * m->hop - m->left);
    if (nb <= m->base)
        return;
    int64_t have = m->n_seen - m->base;
    int64_t shift = nb - m->base;
    if (shift < have)
        memmove(m->buf, m->buf + shift, sizeof(float) * (size_t)(have - shift));
    m->base = nb;
}

/* Appends samples with pre-emphasis; the caller guarantees they fit the buffer. */
static void append(es_mel *m, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float y = x[i];
        if (m->n_seen > 0) {
            float p = m->preemph * m->prev;
            y = x[i] - p;
        }
        m->prev = x[i];
        if (m->n_seen >= m->base)
            m->buf[m->n_seen - m->base] = y;
        m->n_seen++;
    }
}

/* Makes room in the FIFO for `more` frames beyond those queued. 0, or -1 when out of memory. */
static int queue_reserve(es_mel *m, int64_t more)
{
    if (more <= 0)
        return 0;
    if (more > INT_MAX - m->q_count)
        return -1;
    int need = m->q_count + (int)more;
    size_t row = sizeof(float) * (size_t)m->n_mels;
    if (m->q_head + need <= m->q_cap)
        return 0;
    if (need <= m->q_cap) {
        memmove(m->q, m->q + (size_t)m->q_head * m->n_mels, row * (size_t)m->q_count);
        m->q_head = 0;
        return 0;
    }
    int cap = m->q_cap;
    while (cap < need)
        cap = cap > INT_MAX / 2 ? need : cap * 2;
    if ((size_t)cap > SIZE_MAX / row)
        return -1;
    float *q = malloc(row * (size_t)cap);
    if (!q)
        return -1;
    memcpy(q, m->q + (size_t)m->q_head * m->n_mels, row * (size_t)m->q_count);
    free(m->q);
    m->q = q;
    m->q_cap = cap;
    m->q_head = 0;
    return 0;
}

/* Slot for one more queued frame (space reserved beforehand). */
static float *queue_tail(es_mel *m)
{
    float *p = m->q + (size_t)(m->q_head + m->q_count) * m->n_mels;
    m->q_count++;
    return p;
}

/* Moves up to max queued frames to out; returns how many. */
static int queue_drain(es_mel *m, float *out, int max)
{
    int n = m->q_count < max ? m->q_count : max;
    if (n > 0) {
        memcpy(out, m->q + (size_t)m->q_head * m->n_mels, sizeof(float) * (size_t)n * m->n_mels);
        m->q_head += n;
        m->q_count -= n;
    }
    if (m->q_count == 0)
        m->q_head = 0;
    return n;
}

int es_mel_push(es_mel *m, const float *samples, size_t n, float *out, int max_frames)
{
    if (!m || m->finished || (n > 0 && !samples) || max_frames < 0 || (max_frames > 0 && !out))
        return -1;
    if (n > (size_t)(INT64_MAX / 2) - (size_t)m->n_seen)
        return -1;

    int64_t fresh = frames_ready(m, m->n_seen + (int64_t)n) - m->next_t;
    int drained = m->q_count < max_frames ? m->q_count : max_frames;
    int64_t room = max_frames - drained;
    if (fresh - room > 0 && queue_reserve(m, fresh - room) != 0)
        return -1;

    int written = queue_drain(m, out, max_frames);
    size_t i = 0;
    while (i < n) {
        int64_t target = ready_at(m, m->next_t);
        size_t take = n - i;
        if ((int64_t)take > target - m->n_seen)
            take = (size_t)(target - m->n_seen);
        append(m, samples + i, take);
        i += take;
        if (m->n_seen == target) {
            float *dst = (written < max_frames && m->q_count == 0) ? out + (size_t)written++ * m->n_mels
                                                                    : queue_tail(m);
            compute_frame(m, m->next_t, dst);
            m->next_t++;
            drop_old(m);
        }
    }
    return written;
}

int es_mel_finish(es_mel *m, float *out, int max_frames)
{
    if (!m || max_frames < 0 || (max_frames > 0 && !out))
        return -1;
    if (!m->finished) {
        int64_t t_end = m->n_seen / m->hop; /* frames [t_end, T_mel) are masked: only t_end */
        if (queue_reserve(m, t_end - m->next_t + 1) != 0)
            return -1;
        for (int64_t t = m->next_t; t < t_end; t++)
            compute_frame(m, t, queue_tail(m));
        float *z = queue_tail(m);
        for (int r = 0; r < m->n_mels; r++)
            z[r] = 0.0f;
        m->next_t = t_end + 1;
        m->finished = 1;
    }
    return queue_drain(m, out, max_frames);
}

int es_mel_pending(const es_mel *m)
{
    if (!m)
        return 0;
    int64_t p = m->q_count;
    if (!m->finished)
        p += m->n_seen / m->hop + 1 - m->next_t;
    return p > INT_MAX ? INT_MAX : (int)p;
}

int es_mel_compute(const es_mel_config *cfg, const float *samples, size_t n, float **out)
{
    if (!out)
        return -1;
    *out = NULL;
    if (!cfg || cfg->hop_length <= 0 || cfg->n_mels <= 0 || (n > 0 && !samples))
        return -1;
    size_t T = n / (size_t)cfg->hop_length + 1;
    if (T > (size_t)INT_MAX || T > SIZE_MAX / sizeof(float) / (size_t)cfg->n_mels)
        return -1;
    es_mel *m = es_mel_create(cfg);
    if (!m)
        return -1;
    float *mel = malloc(sizeof(float) * T * (size_t)cfg->n_mels);
    if (!mel) {
        es_mel_free(m);
        return -1;
    }
    int a = es_mel_push(m, samples, n, mel, (int)T);
    int b = a < 0 ? -1 : es_mel_finish(m, mel + (size_t)a * cfg->n_mels, (int)T - a);
    es_mel_free(m);
    if (a < 0 || b < 0 || (size_t)(a + b) != T) {
        free(mel);
        return -1;
    }
    *out = mel;
    return (int)T;
}
