/*
 * ops.c - see ops.h.
 *
 * Linear layers are where the time goes. Three facts shape es_linear_forward:
 *  - A streaming step has few rows (a 160 ms chunk of one stream is 2 encoder frames), and
 *    OpenBLAS packs the whole weight matrix on every call, which then costs more than the
 *    arithmetic. The encoder's weights are therefore packed once, at load, in panels of 16
 *    outputs; the kernel streams a panel once per block of 6 rows, so one stream reads each
 *    weight once (memory-bound, as it must be) and a batch of streams reuses it from cache.
 *  - OpenBLAS picks its kernels by CPU model and falls back to old SSE3 ones on CPUs it does not
 *    know (seen on our machines), which made it 2.5x slower than its AVX2 kernels. The packed
 *    kernel uses AVX2/FMA whenever the CPU has them, whatever OpenBLAS thinks.
 *  - The compute pool is OpenMP; OpenBLAS runs single-threaded inside it. The output panels
 *    are split between threads, so each thread reads only its own slice of W, whatever the
 *    number of rows.
 * Unpacked weights (the decoders' small layers) use a dot-product kernel or OpenBLAS.
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __x86_64__
#include <immintrin.h>
#endif

/* Unpacked weights: rows up to this count use the direct kernel, above it OpenBLAS. */
#define SMALL_ROWS 12

static float dot_scalar(const float *a, const float *b, int n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#ifdef __x86_64__
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

/* y[r][o] (+)= x[r] . w[o] for 4 rows of x at once, so each W row is loaded once. */
__attribute__((target("avx2,fma"))) static void dot4_avx2(const float *w, const float *x0, const float *x1,
                                                          const float *x2, const float *x3, int n, float *out)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
    }
    float s[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
    for (; i < n; i++) {
        s[0] += w[i] * x0[i];
        s[1] += w[i] * x1[i];
        s[2] += w[i] * x2[i];
        s[3] += w[i] * x3[i];
    }
    memcpy(out, s, sizeof s);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}
#endif

static int have_avx2(void)
{
#ifdef __x86_64__
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int have_avx512(void)
{
#ifdef __x86_64__
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* Outputs [o0, o1) of y for few rows, one pass over those rows of W. */
static void linear_small(const es_linear *l, const float *x, int rows, float *y, int o0, int o1)
{
    int in = l->in, out = l->out;
    int avx = have_avx2();
    for (int o = o0; o < o1; o++) {
        const float *w = l->w + (size_t)o * in;
        float bias = l->b ? l->b[o] : 0.0f;
        int r = 0;
#ifdef __x86_64__
        if (avx)
            for (; r + 4 <= rows; r += 4) {
                float s[4];
                dot4_avx2(w, x + (size_t)r * in, x + (size_t)(r + 1) * in, x + (size_t)(r + 2) * in,
                          x + (size_t)(r + 3) * in, in, s);
                for (int k = 0; k < 4; k++)
                    y[(size_t)(r + k) * out + o] = s[k] + bias;
            }
        for (; r < rows; r++)
            y[(size_t)r * out + o] = (avx ? dot_avx2(w, x + (size_t)r * in, in) : dot_scalar(w, x + (size_t)r * in, in)) + bias;
#else
        (void)avx;
        for (; r < rows; r++)
            y[(size_t)r * out + o] = dot_scalar(w, x + (size_t)r * in, in) + bias;
#endif
    }
}

/* ---- the packed kernel: panels of 16 outputs, blocks of up to 6 rows ---- */

#define PANEL 16
#define ROW_BLOCK 6

int es_linear_pack(es_linear *l)
{
    int panels = (l->out + PANEL - 1) / PANEL;
    size_t bytes = sizeof(float) * (size_t)panels * PANEL * (size_t)l->in;
    float *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return -1;
    for (int pn = 0; pn < panels; pn++)
        for (int k = 0; k < l->in; k++)
            for (int j = 0; j < PANEL; j++) {
                int o = pn * PANEL + j;
                p[((size_t)pn * l->in + k) * PANEL + j] = o < l->out ? l->w[(size_t)o * l->in + k] : 0.0f;
            }
    l->packed = p;
    return 0;
}

#ifdef __x86_64__
/* y[r][o0..o0+16) for 6 rows: every k broadcasts x[r][k] against one 16-wide row of the panel.
   12 accumulators + 2 panel registers fit the 16 AVX registers; they are named one by one so
   the compiler keeps them in registers. */
__attribute__((target("avx2,fma"))) static void panel6_avx2(const float *panel, const float *x, int in, float *out)
{
    const float *x0 = x, *x1 = x + in, *x2 = x + 2 * (size_t)in, *x3 = x + 3 * (size_t)in, *x4 = x + 4 * (size_t)in,
                *x5 = x + 5 * (size_t)in;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00,
           a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int k = 0; k < in; k++) {
        __m256 w0 = _mm256_load_ps(panel + (size_t)k * PANEL), w1 = _mm256_load_ps(panel + (size_t)k * PANEL + 8);
        __m256 v;
        v = _mm256_broadcast_ss(x0 + k);
        a00 = _mm256_fmadd_ps(v, w0, a00);
        a01 = _mm256_fmadd_ps(v, w1, a01);
        v = _mm256_broadcast_ss(x1 + k);
        a10 = _mm256_fmadd_ps(v, w0, a10);
        a11 = _mm256_fmadd_ps(v, w1, a11);
        v = _mm256_broadcast_ss(x2 + k);
        a20 = _mm256_fmadd_ps(v, w0, a20);
        a21 = _mm256_fmadd_ps(v, w1, a21);
        v = _mm256_broadcast_ss(x3 + k);
        a30 = _mm256_fmadd_ps(v, w0, a30);
        a31 = _mm256_fmadd_ps(v, w1, a31);
        v = _mm256_broadcast_ss(x4 + k);
        a40 = _mm256_fmadd_ps(v, w0, a40);
        a41 = _mm256_fmadd_ps(v, w1, a41);
        v = _mm256_broadcast_ss(x5 + k);
        a50 = _mm256_fmadd_ps(v, w0, a50);
        a51 = _mm256_fmadd_ps(v, w1, a51);
    }
    _mm256_storeu_ps(out + 0 * PANEL, a00);
    _mm256_storeu_ps(out + 0 * PANEL + 8, a01);
    _mm256_storeu_ps(out + 1 * PANEL, a10);
    _mm256_storeu_ps(out + 1 * PANEL + 8, a11);
    _mm256_storeu_ps(out + 2 * PANEL, a20);
    _mm256_storeu_ps(out + 2 * PANEL + 8, a21);
    _mm256_storeu_ps(out + 3 * PANEL, a30);
    _mm256_storeu_ps(out + 3 * PANEL + 8, a31);
    _mm256_storeu_ps(out + 4 * PANEL, a40);
    _mm256_storeu_ps(out + 4 * PANEL + 8, a41);
    _mm256_storeu_ps(out + 5 * PANEL, a50);
    _mm256_storeu_ps(out + 5 * PANEL + 8, a51);
}

/* The same for one row (the remainder rows of a block go one by one). */
__attribute__((target("avx2,fma"))) static void panel1_avx2(const float *panel, const float *x, int in, float *out)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    int k = 0;
    /* two independent chains per half hide the FMA latency */
    for (; k + 2 <= in; k += 2) {
        __m256 v = _mm256_broadcast_ss(x + k), u = _mm256_broadcast_ss(x + k + 1);
        a0 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * PANEL), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * PANEL + 8), a1);
        b0 = _mm256_fmadd_ps(u, _mm256_load_ps(panel + (size_t)(k + 1) * PANEL), b0);
        b1 = _mm256_fmadd_ps(u, _mm256_load_ps(panel + (size_t)(k + 1) * PANEL + 8), b1);
    }
    for (; k < in; k++) {
        __m256 v = _mm256_broadcast_ss(x + k);
        a0 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * PANEL), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * PANEL + 8), a1);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(a0, b0));
    _mm256_storeu_ps(out + 8, _mm256_add_ps(a1, b1));
}

static void panel_avx2(const float *panel, const float *x, int rows, int in, float *out)
{
    if (rows == ROW_BLOCK) {
        panel6_avx2(panel, x, in, out);
        return;
    }
    for (int r = 0; r < rows; r++)
        panel1_avx2(panel, x + (size_t)r * in, in, out + r * PANEL);
}
#endif

#ifdef __x86_64__
/* AVX-512: two panels (32 outputs) for 8 rows, 16 accumulators + 2 panel registers of the 32
   zmm registers; twice the work per instruction of the AVX2 kernel. */
#define ROW_BLOCK_512 8
__attribute__((target("avx512f"))) static void pair8_avx512(const float *pa, const float *pb, const float *x, int in,
                                                           float *out)
{
    const float *x0 = x, *x1 = x + in, *x2 = x + 2 * (size_t)in, *x3 = x + 3 * (size_t)in, *x4 = x + 4 * (size_t)in,
                *x5 = x + 5 * (size_t)in, *x6 = x + 6 * (size_t)in, *x7 = x + 7 * (size_t)in;
    __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0, a4 = a0, b4 = a0,
           a5 = a0, b5 = a0, a6 = a0, b6 = a0, a7 = a0, b7 = a0;
    for (int k = 0; k < in; k++) {
        __m512 wa = _mm512_load_ps(pa + (size_t)k * PANEL), wb = _mm512_load_ps(pb + (size_t)k * PANEL);
        __m512 v;
#define ROW(i)                                                                                                         \
    v = _mm512_set1_ps(x##i[k]);                                                                                       \
    a##i = _mm512_fmadd_ps(v, wa, a##i);                                                                               \
    b##i = _mm512_fmadd_ps(v, wb, b##i);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
    }
    __m512 acc[16] = {a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7};
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(out + i * PANEL, acc[i]);
}

/* Two rows against two panels: a 160 ms chunk of one stream is two frames, and reading the
   weights once for both is what a single stream's step costs. */
__attribute__((target("avx512f"))) static void pair2_avx512(const float *pa, const float *pb, const float *x, int in,
                                                           float *out)
{
    const float *x0 = x, *x1 = x + in;
    __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, c0 = a0, d0 = a0, c1 = a0, d1 = a0;
    int k = 0;
    for (; k + 2 <= in; k += 2) {
        __m512 wa = _mm512_load_ps(pa + (size_t)k * PANEL), wb = _mm512_load_ps(pb + (size_t)k * PANEL);
        __m512 va = _mm512_load_ps(pa + (size_t)(k + 1) * PANEL), vb = _mm512_load_ps(pb + (size_t)(k + 1) * PANEL);
        __m512 s0 = _mm512_set1_ps(x0[k]), s1 = _mm512_set1_ps(x1[k]);
        __m512 t0 = _mm512_set1_ps(x0[k + 1]), t1 = _mm512_set1_ps(x1[k + 1]);
        a0 = _mm512_fmadd_ps(s0, wa, a0);
        b0 = _mm512_fmadd_ps(s0, wb, b0);
        a1 = _mm512_fmadd_ps(s1, wa, a1);
        b1 = _mm512_fmadd_ps(s1, wb, b1);
        c0 = _mm512_fmadd_ps(t0, va, c0);
        d0 = _mm512_fmadd_ps(t0, vb, d0);
        c1 = _mm512_fmadd_ps(t1, va, c1);
        d1 = _mm512_fmadd_ps(t1, vb, d1);
    }
    for (; k < in; k++) {
        __m512 wa = _mm512_load_ps(pa + (size_t)k * PANEL), wb = _mm512_load_ps(pb + (size_t)k * PANEL);
        __m512 s0 = _mm512_set1_ps(x0[k]), s1 = _mm512_set1_ps(x1[k]);
        a0 = _mm512_fmadd_ps(s0, wa, a0);
        b0 = _mm512_fmadd_ps(s0, wb, b0);
        a1 = _mm512_fmadd_ps(s1, wa, a1);
        b1 = _mm512_fmadd_ps(s1, wb, b1);
    }
    _mm512_storeu_ps(out, _mm512_add_ps(a0, c0));
    _mm512_storeu_ps(out + PANEL, _mm512_add_ps(b0, d0));
    _mm512_storeu_ps(out + 2 * PANEL, _mm512_add_ps(a1, c1));
    _mm512_storeu_ps(out + 3 * PANEL, _mm512_add_ps(b1, d1));
}

/* One row against two panels, for the rows left after blocks of 8. */
__attribute__((target("avx512f"))) static void pair1_avx512(const float *pa, const float *pb, const float *x, int in,
                                                           float *out)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    int k = 0;
    for (; k + 2 <= in; k += 2) {
        __m512 v = _mm512_set1_ps(x[k]), u = _mm512_set1_ps(x[k + 1]);
        a = _mm512_fmadd_ps(v, _mm512_load_ps(pa + (size_t)k * PANEL), a);
        b = _mm512_fmadd_ps(v, _mm512_load_ps(pb + (size_t)k * PANEL), b);
        c = _mm512_fmadd_ps(u, _mm512_load_ps(pa + (size_t)(k + 1) * PANEL), c);
        d = _mm512_fmadd_ps(u, _mm512_load_ps(pb + (size_t)(k + 1) * PANEL), d);
    }
    for (; k < in; k++) {
        __m512 v = _mm512_set1_ps(x[k]);
        a = _mm512_fmadd_ps(v, _mm512_load_ps(pa + (size_t)k * PANEL), a);
        b = _mm512_fmadd_ps(v, _mm512_load_ps(pb + (size_t)k * PANEL), b);
    }
    _mm512_storeu_ps(out, _mm512_add_ps(a, c));
    _mm512_storeu_ps(out + PANEL, _mm512_add_ps(b, d));
}
#endif

static void panel_scalar(const float *panel, const float *x, int rows, int in, float *acc_out)
{
    for (int r = 0; r < rows; r++) {
        float acc[PANEL] = {0};
        for (int k = 0; k < in; k++) {
            float xv = x[(size_t)r * in + k];
            for (int j = 0; j < PANEL; j++)
                acc[j] += xv * panel[(size_t)k * PANEL + j];
        }
        memcpy(acc_out + r * PANEL, acc, sizeof acc);
    }
}

/* Adds the bias and stores `n_panels` panels of accumulators ([rows][n_panels*16]) into y. */
static void store_panels(const es_linear *l, const float *acc, int rows, int stride, float *y, int r0, int pn,
                         int n_panels)
{
    int o0 = pn * PANEL, width = l->out - o0 < n_panels * PANEL ? l->out - o0 : n_panels * PANEL;
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)(r0 + r) * l->out + o0;
        const float *ar = acc + (size_t)r * stride;
        for (int j = 0; j < width; j++)
            yr[j] = ar[j] + (l->b ? l->b[o0 + j] : 0.0f);
    }
}

/* Panels [p0, p1) of y for all rows. */
static void linear_packed(const es_linear *l, const float *x, int rows, float *y, int p0, int p1)
{
    size_t panel_size = (size_t)l->in * PANEL;
    int r0 = 0;
#ifdef __x86_64__
    if (have_avx512()) {
        float acc[ROW_BLOCK_512 * 2 * PANEL];
        for (; r0 < rows; r0 += ROW_BLOCK_512) {
            int nr = rows - r0 < ROW_BLOCK_512 ? rows - r0 : ROW_BLOCK_512;
            const float *xb = x + (size_t)r0 * l->in;
            int pn = p0;
            for (; pn + 2 <= p1; pn += 2) {
                const float *pa = l->packed + (size_t)pn * panel_size, *pb = pa + panel_size;
                if (nr == ROW_BLOCK_512) {
                    pair8_avx512(pa, pb, xb, l->in, acc);
                } else {
                    int r = 0;
                    for (; r + 2 <= nr; r += 2)
                        pair2_avx512(pa, pb, xb + (size_t)r * l->in, l->in, acc + (size_t)r * 2 * PANEL);
                    if (r < nr)
                        pair1_avx512(pa, pb, xb + (size_t)r * l->in, l->in, acc + (size_t)r * 2 * PANEL);
                }
                store_panels(l, acc, nr, 2 * PANEL, y, r0, pn, 2);
            }
            for (; pn < p1; pn++) { /* an odd last panel */
                panel_avx2(l->packed + (size_t)pn * panel_size, xb, nr < ROW_BLOCK ? nr : ROW_BLOCK, l->in, acc);
                store_panels(l, acc, nr < ROW_BLOCK ? nr : ROW_BLOCK, PANEL, y, r0, pn, 1);
                if (nr > ROW_BLOCK) {
                    panel_avx2(l->packed + (size_t)pn * panel_size, xb + (size_t)ROW_BLOCK * l->in, nr - ROW_BLOCK,
                               l->in, acc);
                    store_panels(l, acc, nr - ROW_BLOCK, PANEL, y, r0 + ROW_BLOCK, pn, 1);
                }
            }
        }
        return;
    }
#endif
    int avx = have_avx2();
    float acc[ROW_BLOCK * PANEL];
    for (; r0 < rows; r0 += ROW_BLOCK) {
        int nr = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
        const float *xb = x + (size_t)r0 * l->in;
        for (int pn = p0; pn < p1; pn++) {
            const float *panel = l->packed + (size_t)pn * panel_size;
#ifdef __x86_64__
            if (avx)
                panel_avx2(panel, xb, nr, l->in, acc);
            else
#endif
                panel_scalar(panel, xb, nr, l->in, acc);
            store_panels(l, acc, nr, PANEL, y, r0, pn, 1);
        }
    }
    (void)avx;
}

/* Outputs [o0, o1) of y with OpenBLAS (W's rows o0..o1 are one contiguous block). */
static void linear_gemm(const es_linear *l, const float *x, int rows, float *y, int o0, int o1)
{
    int n = o1 - o0;
    float beta = 0.0f;
    if (l->b) {
        for (int r = 0; r < rows; r++)
            memcpy(y + (size_t)r * l->out + o0, l->b + o0, sizeof(float) * (size_t)n);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, l->in, 1.0f, x, l->in, l->w + (size_t)o0 * l->in,
                l->in, beta, y + o0, l->out);
}

void es_linear_forward(const es_linear *l, const float *x, int rows, float *y)
{
    if (rows <= 0)
        return;
    int small = rows <= SMALL_ROWS;
    int panels = (l->out + PANEL - 1) / PANEL;
    /* enough work per thread to pay for the fork; threads own whole panels of 16 outputs */
    double work = (double)rows * l->out * l->in;
#pragma omp parallel if (work > 2e5)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int per = ((panels + nt - 1) / nt + 1) & ~1; /* even: the AVX-512 kernel takes panels in pairs */
        int p0 = t * per, p1 = p0 + per < panels ? p0 + per : panels;
        int o0 = p0 * PANEL, o1 = p1 * PANEL < l->out ? p1 * PANEL : l->out;
        if (p0 < p1) {
            if (l->packed)
                linear_packed(l, x, rows, y, p0, p1);
            else if (small)
                linear_small(l, x, rows, y, o0, o1);
            else
                linear_gemm(l, x, rows, y, o0, o1);
        }
    }
}

void es_layer_norm_forward(const es_layer_norm *n, const float *x, int rows, int d, float *y)
{
#pragma omp parallel for if (rows * d > 32768)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        /* two-pass mean and variance in double: rows are short and exactness matters more */
        double mean = 0.0;
        for (int i = 0; i < d; i++)
            mean += xr[i];
        mean /= d;
        double var = 0.0;
        for (int i = 0; i < d; i++) {
            double t = xr[i] - mean;
            var += t * t;
        }
        var /= d;
        float inv = (float)(1.0 / sqrt(var + 1e-5));
        float m = (float)mean;
        for (int i = 0; i < d; i++)
            yr[i] = (xr[i] - m) * inv * n->gamma[i] + n->beta[i];
    }
}

void es_swish(float *x, size_t n)
{
#pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-x[i]));
}

void es_glu(const float *x, int rows, int d, float *y)
{
#pragma omp parallel for if ((size_t)rows * d > 65536)
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * 2 * d, *b = a + d;
        float *yr = y + (size_t)r * d;
        for (int i = 0; i < d; i++)
            yr[i] = a[i] / (1.0f + expf(-b[i]));
    }
}

void openblas_set_num_threads(int);

void es_set_compute_threads(int n)
{
    openblas_set_num_threads(1);
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
#else
    (void)n;
#endif
}

int es_compute_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int es_compute_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

float es_dot(const float *a, const float *b, int n)
{
#ifdef __x86_64__
    if (have_avx2())
        return dot_avx2(a, b, n);
#endif
    return dot_scalar(a, b, n);
}

void es_add_scaled(float *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += scale * src[i];
}
