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

/* ---- batch-size buckets (cuda_plan.c): few shapes, so CUDA graphs are replayed ----

   A step's graph is keyed by its es_cuda_totals: streams n, rows N = sum T, the widest chunk,
   the largest C + T and T. When every stream streams (slot >= 0) with one T and one C, they
   depend on n and the widest width alone: the cache fill, keep_all and the valid lengths are
   read from device memory or only change what comes back, and first chunks (narrower, no
   pre-encode drop) usually give as many frames as later ones. Such a step is padded up to a
   bucket of batch sizes with copies of its widest stream on the scratch slot (slot n_slots,
   which the backend allocates and never hands out), so a batch whose size changes every step
   replays one graph per bucket instead of capturing one per size. Buckets: every power of two
   up to ES_CUDA_BUCKET_POW2_MAX (a step that small is launch-bound, so even doubling it costs
   little), then four per octave (less than 25 % padding: 257 -> 320, 1025 -> 1280). Steps
   larger than ES_CUDA_BUCKET_MAX are not padded. */
#define ES_CUDA_BUCKET_POW2_MAX 256
#define ES_CUDA_BUCKET_MAX (1 << 20)

/* The smallest bucket >= n (n itself when n < 1 or n > ES_CUDA_BUCKET_MAX). */
int es_cuda_bucket(int n);
/* The stream whose copies pad this step (the widest), or -1 when padding would change its
   shape: a stream that does not stream or that es_cuda_plan refuses, or two streams whose T
   (encoder frames after the drop) or C (attention cache size) differ. */
int es_cuda_pad_template(const es_model *m, const es_encoder_input *in, int n);
/* The streams the step runs with: es_cuda_bucket(n) when it can be padded, else n (its exact
   shape). */
int es_cuda_padded_n(const es_model *m, const es_encoder_input *in, int n);
/* padded[0..n) = in[0..n) unchanged, then n_pad - n padding streams with in[tmpl]'s width,
   look-ahead and drop, all columns valid, not keep_all, on scratch_slot, with features NULL
   (the step feeds them zeros). Padding streams come last, so real streams keep their rows.
   padded may be in when it has room for n_pad. */
void es_cuda_pad_inputs(const es_encoder_input *in, int n, int n_pad, int tmpl, int scratch_slot,
                        es_encoder_input *padded);
/* Stacked rows of streams [0, n) of a plan: everything the caller gets back lies in them. */
int es_cuda_real_rows(const es_cuda_stream *plan, int n);
/* out[0..n) from the plan of the (possibly padded) step: frames (NULL when not copied back)
   at each real stream's first row, n_frames its n_out. Nothing of a padding stream. */
void es_cuda_map_outputs(const es_cuda_stream *plan, int n, const float *frames, int d, es_encoder_output *out);

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

/* Uploads the model and reserves caches for n_slots slots (0 = offline only), plus the
   scratch slot n_slots that padding streams share. */
es_cuda *es_cuda_create(const es_model *m, int n_slots, char *err, size_t errlen);
void es_cuda_free(es_cuda *c);

/* Zeroes a slot's caches: the state of a new stream. Returns 0 or -1. */
int es_cuda_clear_slot(es_cuda *c, int slot);

/* One batched step. With ES_CUDA_FRAMES, out[b].frames points into a host buffer of the
   backend (valid until the next step); without it, out[b].frames is NULL and only n_frames
   is set. With ES_CUDA_CTC_IDS, es_cuda_ctc_ids gives each stream's per-frame argmax. With
   graphs on, a step that can be padded runs padded to its bucket (above); out, the CTC ids and RNNT see
   only the n real streams. */
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
