/*
 * cuda_backend.h - the CUDA encoder backend as the engine sees it (internal to libearshot).
 *
 * One es_cuda holds a model's weights in device memory, the device caches of every stream
 * slot, and the step's workspace. es_cuda_step has the ragged-batch contract of es_encoder_step
 * (encoder.h): each stream brings its own chunk, width, look-ahead, drop and keep_all, and
 * addresses its caches by slot (-1 = an offline pass without caches).
 *
 * Device caches, one contiguous array per region indexed by slot (base + slot * stride), the
 * same idea as cache/slot_pool, so that kernels address a stream's state by its slot and a step
 * copies no state in or out:
 *   key, value: fp16  [n_layers][max_cache_size][d_model]  linear_k / linear_v of NeMo's
 *               cache_last_channel rows (NeMo's channel cache itself is not kept: only its
 *               projections are ever read), as rings: NeMo's row j (oldest first) is ring row
 *               (head + j) % C, so a step writes only its new rows
 *   time:       fp32  [n_layers][kernel-1][d_model]        cache_last_time (conv input tail)
 *   length:     int32 [2]                                  cache_last_channel_len, ring head
 *   rnnt:       the RNNT decoder's state in rnnt.c's layout (models with RNNT)
 *
 *               (bf16 when built with EARSHOT_CUDA_BF16; see kernels.h)
 *
 * The host-side pieces that need no GPU (the step plan, batch-norm folding, the cache layout,
 * the position table) are plain C in cuda_plan.c, built in every configuration
 * and unit-tested on machines without a GPU (tests/test_cuda_backend.c).
 */
#ifndef EARSHOT_CUDA_BACKEND_H
#define EARSHOT_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* the C headers below too: the .cu files see them with C linkage */
#endif

#include "../encoder.h"
#include "../model.h"

/* ---- host-side plan (cuda_plan.c; no CUDA needed) ---- */

/* One stream of a step as the kernels see it: copied to the device once per step. */
typedef struct {
    int rows;     /* first row of this stream in the stacked frame matrix */
    int T;        /* encoder frames of this step (after the pre-encode drop) */
    int len;      /* valid frames among them (== T when streaming) */
    int C;        /* attention cache length (0 offline) */
    int slot;     /* cache slot, -1 offline */
    int keep;     /* frames pushed into the caches: T - cache_drop_size */
    int full;     /* 1: no attention mask (offline pass without a look-ahead) */
    int left;     /* attention context in frames ([left, right] of the look-ahead) */
    int right;
    int regular;  /* 1: NeMo's "regular" mask, 0: "chunked_limited" */
    int pos_row0; /* row of the step's position table that holds position C + T - 1 */
    int drop;     /* frames dropped from the start of the subsampling output */
    int n_out;    /* frames the step returns */
    int sub_len[ES_MAX_SUB_STAGES + 1]; /* valid time rows before subsampling stage i (i = n_sub: after all) */
} es_cuda_stream;

/* Sizes of a whole step. */
typedef struct {
    int n;           /* streams */
    int N;           /* stacked frames */
    int max_width;   /* mel columns of the widest chunk */
    int max_klen;    /* largest C + T */
    int max_T;       /* largest T */
    int pos_rows;    /* rows of the position table: max_klen + max_T - 1 */
    int sub_T[ES_MAX_SUB_STAGES + 1]; /* time rows (of the widest chunk) before stage i */
    int sub_F[ES_MAX_SUB_STAGES + 1]; /* frequency columns before stage i */
    int sub_C[ES_MAX_SUB_STAGES + 1]; /* channels before stage i */
} es_cuda_totals;

/* Validates a step as es_encoder_step does and plans it: streams[n], row_stream[N] (the stream
   of every stacked row). row_stream may be NULL to only count (then totals->N tells its size).
   Returns 0, or -1 with the same messages as the CPU encoder. */
int es_cuda_plan(const es_model *m, const es_encoder_input *in, int n, es_cuda_stream *streams, int *row_stream,
                 es_cuda_totals *totals, char *err, size_t errlen);

/* The key/value rings (shared by the kernels and the tests): NeMo's cache row j, oldest first,
   lies at ring row ES_RING_ROW(head, j, C); a step that keeps `keep` fresh rows writes fresh
   row r (from ES_RING_FIRST(keep, C) on; earlier ones would be dropped at once) at ring row
   ES_RING_ROW(head, r, C), over the oldest rows, then the head becomes
   ES_RING_ADVANCE(head, keep, C). */
#define ES_RING_ROW(head, j, C) (((head) + (j)) % (C))
#define ES_RING_FIRST(keep, C) ((keep) > (C) ? (keep) - (C) : 0)
#define ES_RING_ADVANCE(head, keep, C) (((head) + (keep)) % (C))

/* Bytes of each device cache region of one slot (each rounded up to 256 bytes). */
typedef struct {
    size_t key, value, time, length, rnnt;
} es_cuda_layout;
es_cuda_layout es_cuda_cache_layout(const es_model *m);
size_t es_cuda_layout_bytes(const es_cuda_layout *l);

/* The depthwise conv of layer L with its batch norm folded in (w' = w * scale per channel,
   b' = b * scale + shift), or copied as is when the model normalises with layer norm.
   w_out [d][kernel], b_out [d]. */
void es_cuda_fold_dw(const es_model *m, const es_layer *L, float *w_out, float *b_out);

/* Sinusoidal relative-position rows, fp32, as the CPU encoder computes them: row r holds
   position top - r, for `rows` rows, into dst [rows][d]. */
void es_cuda_fill_positions(int d, int top, int rows, float *dst);

/* ---- the backend (encoder_cuda.cu; only in EARSHOT_HAVE_CUDA builds) ---- */

typedef struct es_cuda es_cuda;

/* What a step copies back to the host. */
enum { ES_CUDA_FRAMES = 1, ES_CUDA_CTC_IDS = 2 };

/* 1 when a CUDA device can be used; else 0 and one sentence in msg. */
int es_cuda_available(char *msg, size_t msglen);

/* Uploads the model and reserves caches for n_slots slots (0 = offline only). */
es_cuda *es_cuda_create(const es_model *m, int n_slots, char *err, size_t errlen);
void es_cuda_free(es_cuda *c);

/* Zeroes a slot's caches: the state of a new stream. Returns 0 or -1. */
int es_cuda_clear_slot(es_cuda *c, int slot);

/* One batched step. With ES_CUDA_FRAMES, out[b].frames points into a host buffer of the
   backend (valid until the next step); without it, out[b].frames is NULL and only n_frames
   is set. With ES_CUDA_CTC_IDS, es_cuda_ctc_ids gives each stream's per-frame argmax. */
int es_cuda_step(es_cuda *c, const es_encoder_input *in, int n, unsigned flags, es_encoder_output *out, char *err,
                 size_t errlen);
/* Steps run by replaying a CUDA graph so far (0 when graphs are off or could not be captured). */
unsigned long es_cuda_graph_launches(const es_cuda *c);
/* Per-frame CTC argmax of stream b of the last step (out[b].n_frames values). */
const int *es_cuda_ctc_ids(const es_cuda *c, int b);

/* Greedy RNNT on the GPU (rnnt_cuda.cu) over the frames of the last step, for the streams
   which[0..B) of that step (indices into its inputs; each must have a slot), with each stream's
   decoder state in its slot. On unless the model has no RNNT or EARSHOT_CUDA_RNNT=0; the engine
   then decodes RNNT on the host from copied frames. Returns 0 or -1. */
int es_cuda_rnnt_on(const es_cuda *c);
int es_cuda_rnnt(es_cuda *c, const int *which, int B, char *err, size_t errlen);
/* Tokens of which[i] from the last es_cuda_rnnt: *n pairs (token id, frame within the chunk). */
const int *es_cuda_rnnt_tokens(const es_cuda *c, int i, int *n);

/* Reads back one layer's conv cache [kernel-1][d] and the attention cache length of a slot
   (tests). Return 0 or -1. */
int es_cuda_read_time_cache(es_cuda *c, int slot, int layer, float *dst);
int es_cuda_read_channel_len(es_cuda *c, int slot, int *len);

size_t es_cuda_bytes_per_slot(const es_cuda *c);
size_t es_cuda_device_bytes(const es_cuda *c);

#ifdef __cplusplus
}
#endif

#endif
