/*
 * encoder.h - the cache-aware FastConformer encoder on the CPU: one batched step over B
 * streams, each bringing its own chunk of mel columns and addressing its caches by slot.
 *
 * This is NeMo's ConformerEncoder.cache_aware_stream_step (and, with no slot, its ordinary
 * forward). Streams in one step may have different chunk widths and look-aheads: the batch is
 * "ragged". All frames of all streams are stacked into one matrix for every linear layer, so a
 * weight matrix is read once per step however many streams there are; only the attention
 * scores and the depthwise convolution, which depend on each stream's own cache, run per stream.
 *
 * Cache layout in the slot pool (ES_ENCODER_REGIONS regions from the first one given):
 *   channel: float [n_layers][max_cache_size][d_model]  NeMo's cache_last_channel: the
 *            LayerNorm'ed attention inputs of the last frames, oldest first (a stream uses the
 *            first cache_size rows of its look-ahead)
 *   time:    float [n_layers][kernel-1][d_model]        cache_last_time: the depthwise conv's
 *            input tail
 *   length:  int32 [1]                                  cache_last_channel_len
 *   key, value: float [n_layers][max_cache_size][d_model] linear_k / linear_v of the channel
 *            cache. NeMo recomputes them from the channel cache at every step; keeping them
 *            costs memory but removes most of the arithmetic of a short chunk.
 */
#ifndef EARSHOT_ENCODER_H
#define EARSHOT_ENCODER_H

#include "model.h"
#include "../cache/slot_pool.h"

typedef struct {
    const float *features; /* [width][n_mels], frame-major */
    int width;             /* mel columns, pre-encode cache columns included */
    int length;            /* valid columns (== width when streaming) */
    int lookahead;         /* index into model->streaming; -1 = full context (offline only) */
    int drop_extra;        /* encoder frames to drop at the start (0 on a stream's first chunk) */
    int keep_all;          /* keep every output frame (the stream's last chunk) */
    int slot;              /* cache slot, or -1 for an offline pass without caches */
} es_encoder_input;

typedef struct {
    const float *frames; /* [n_frames][d_model]; valid until the next step */
    int n_frames;
} es_encoder_output;

typedef struct es_encoder es_encoder;

#define ES_ENCODER_REGIONS 5

/* The regions the encoder needs in a slot pool, for es_slot_pool_create. Returns the count
   written into region_bytes (ES_ENCODER_REGIONS). */
int es_encoder_cache_regions(const es_model *m, size_t *region_bytes);

/* `pool` may be NULL for offline-only use; ES_ENCODER_REGIONS regions from first_region hold
   the encoder caches laid out as above. */
es_encoder *es_encoder_create(const es_model *m, es_slot_pool *pool, int first_region);
void es_encoder_free(es_encoder *e);

/* Runs one step; returns 0, or -1 with a message in err for an input it cannot run. */
int es_encoder_step(es_encoder *e, const es_encoder_input *in, int n, es_encoder_output *out, char *err,
                    size_t errlen);

/* Checks one stream's input the way a step will run it (look-ahead index, lengths, the
   pre-encode drop, the regular style's cache drop) and gives in *T its encoder frames after
   the drop. Returns 0, or -1 with the sentence every backend gives for that input. */
int es_encoder_check_input(const es_model *m, const es_encoder_input *x, int *T, char *err, size_t errlen);

/* Number of encoder frames the subsampling makes of `columns` mel columns. */
int es_encoder_subsampled_length(const es_model *m, int columns);

/* Direct access to a slot's caches, for tests and debugging. */
float *es_encoder_channel_cache(es_encoder *e, int slot, int layer);
float *es_encoder_time_cache(es_encoder *e, int slot, int layer);
int *es_encoder_channel_len(es_encoder *e, int slot);

#endif
