/*
 * ops.h - the dense building blocks of the CPU encoder: linear layers on OpenBLAS, layer norm,
 * activations. Every function works on row-major matrices of `rows` frames, so a batch of
 * streams is just more rows, and each weight matrix is read once per step for all streams.
 */
#ifndef EARSHOT_OPS_H
#define EARSHOT_OPS_H

#include "model.h"

/* y[rows][l.out] = x[rows][l.in] W^T + b */
void es_linear_forward(const es_linear *l, const float *x, int rows, float *y);
/* Lays W out in panels of 16 outputs, [panel][in][16], zero-padded, so that the kernel streams
   one contiguous panel per 16 outputs for any number of rows. Returns 0 or -1 (out of memory);
   the caller frees l->packed. */
int es_linear_pack(es_linear *l);
/* y = LayerNorm(x) over the last dimension d, eps 1e-5 as PyTorch's default; y may equal x. */
void es_layer_norm_forward(const es_layer_norm *n, const float *x, int rows, int d, float *y);
/* in place: x * sigmoid(x) */
void es_swish(float *x, size_t n);
/* y[rows][d] = a * sigmoid(b) where x[rows][2d] = [a | b] */
void es_glu(const float *x, int rows, int d, float *y);
/* Sets the compute pool's size: OpenMP threads for our loops and splits, OpenBLAS kept
   single-threaded inside them (0 = one per core). */
void es_set_compute_threads(int n);
/* The most threads a parallel loop of ours may run, and the calling thread's index among them
   (0 outside one): for per-thread scratch buffers. */
int es_compute_threads(void);
int es_compute_thread_id(void);
/* The dot product of two float vectors (AVX2 when the CPU has it). */
float es_dot(const float *a, const float *b, int n);
/* dst += scale * src */
void es_add_scaled(float *dst, const float *src, size_t n, float scale);

#endif
