/*
 * ops.c - see ops.h.
 *
 * Linear layers are where the time goes. Two facts shape es_linear_forward:
 *  - A streaming step has few rows (a 160 ms chunk of one stream is 2 encoder frames), and
 *    OpenBLAS packs the whole weight matrix on every call, which then costs more than the
 *    arithmetic. For few rows a direct kernel does one pass over the weights: each output is a
 *    dot product of a row of x with a row of W, and W's rows are contiguous.
 *  - The compute pool is OpenMP; OpenBLAS runs single-threaded inside it. The output columns
 *    are split between threads, so each thread reads only its own slice of W, whatever the
 *    number of rows.
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __x86_64__
#include <immintrin.h>
#endif

/* Rows up to this count use the direct kernel; above it, OpenBLAS's packed GEMM wins. */
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
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cached;
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
    /* enough work per thread to pay for the fork; slices of 16 columns keep W reads aligned */
    double work = (double)rows * l->out * l->in;
#pragma omp parallel if (work > 2e5)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int per = ((l->out + nt - 1) / nt + 15) & ~15;
        int o0 = t * per, o1 = o0 + per < l->out ? o0 + per : l->out;
        if (o0 < o1) {
            if (small)
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

void es_add_scaled(float *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += scale * src[i];
}
