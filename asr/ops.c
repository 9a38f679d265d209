/*
 * ops.c - see ops.h. Elementwise loops are written so the compiler can vectorise them; the
 * heavy lifting is cblas_sgemm.
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>

void es_linear_forward(const es_linear *l, const float *x, int rows, float *y)
{
    if (rows <= 0)
        return;
    float beta = 0.0f;
    if (l->b) {
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < l->out; o++)
                y[(size_t)r * l->out + o] = l->b[o];
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, l->out, l->in, 1.0f, x, l->in, l->w, l->in,
                beta, y, l->out);
}

void es_layer_norm_forward(const es_layer_norm *n, const float *x, int rows, int d, float *y)
{
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
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-x[i]));
}

void es_glu(const float *x, int rows, int d, float *y)
{
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * 2 * d, *b = a + d;
        float *yr = y + (size_t)r * d;
        for (int i = 0; i < d; i++)
            yr[i] = a[i] / (1.0f + expf(-b[i]));
    }
}

void es_add_scaled(float *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += scale * src[i];
}
