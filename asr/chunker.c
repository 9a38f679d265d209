/*
 * chunker.c - see chunker.h. The buffer holds columns [base, total) in absolute column
 * numbers; chunk k's position is computed from k alone, as NeMo's buffer computes it.
 */
#include "chunker.h"

#include "encoder.h"

#include <stdlib.h>
#include <string.h>

struct es_chunker {
    const es_model *m;
    es_streaming_cfg cfg;
    int n_mels;
    int k;          /* next chunk index */
    long base;      /* absolute index of buf's first column */
    long total;     /* columns pushed */
    int ended;
    float *buf;
    long cap;       /* columns buf can hold */
    float *chunk;   /* assembled chunk for peek */
};

es_chunker *es_chunker_create(const es_model *m, int lookahead)
{
    es_chunker *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->m = m;
    c->cfg = m->streaming[lookahead];
    c->n_mels = m->n_mels;
    int widest = c->cfg.chunk_size[0] > c->cfg.pre_encode_cache_size + c->cfg.chunk_size[1]
                     ? c->cfg.chunk_size[0]
                     : c->cfg.pre_encode_cache_size + c->cfg.chunk_size[1];
    c->chunk = malloc(sizeof(float) * (size_t)widest * c->n_mels);
    if (!c->chunk) {
        free(c);
        return NULL;
    }
    return c;
}

void es_chunker_free(es_chunker *c)
{
    if (!c)
        return;
    free(c->buf);
    free(c->chunk);
    free(c);
}

static long chunk_start(const es_chunker *c, int k)
{
    return k == 0 ? 0 : c->cfg.shift_size[0] + (long)(k - 1) * c->cfg.shift_size[1];
}

int es_chunker_push(es_chunker *c, const float *columns, int n)
{
    if (n <= 0)
        return 0;
    long have = c->total - c->base;
    if (have + n > c->cap) {
        long want = (have + n) * 2 + 64;
        float *p = realloc(c->buf, sizeof(float) * (size_t)want * c->n_mels);
        if (!p)
            return -1;
        c->buf = p;
        c->cap = want;
    }
    memcpy(c->buf + (size_t)have * c->n_mels, columns, sizeof(float) * (size_t)n * c->n_mels);
    c->total += n;
    return 0;
}

void es_chunker_end(es_chunker *c)
{
    c->ended = 1;
}

/* Width of the next chunk's new columns, or 0 when no chunk can be taken now. */
static int next_width(const es_chunker *c)
{
    long start = chunk_start(c, c->k);
    long want = c->k == 0 ? c->cfg.chunk_size[0] : c->cfg.chunk_size[1];
    long rem = c->total - start;
    if (rem >= want)
        return (int)want;
    if (!c->ended)
        return 0;
    long min_rem = c->k == 0 ? 1 : c->m->subsampling_factor;
    if (rem < min_rem)
        return 0;
    if (c->m->att_style == ES_ATT_REGULAR) {
        /* NeMo cannot stream a tail with fewer frames than the cache drop (it would keep a
           negative number of frames in the cache and fail on the next step); it stops there. */
        int width = (int)rem + (c->k == 0 ? 0 : c->cfg.pre_encode_cache_size);
        int frames = es_encoder_subsampled_length(c->m, width) - (c->k == 0 ? 0 : c->cfg.drop_extra_pre_encoded);
        if (frames < 1 || frames < c->cfg.cache_drop_size)
            return 0;
    }
    return (int)rem;
}

int es_chunker_ready(const es_chunker *c)
{
    return next_width(c) > 0;
}

int es_chunker_done(const es_chunker *c)
{
    return c->ended && next_width(c) == 0;
}

long es_chunker_columns(const es_chunker *c)
{
    return c->total;
}

int es_chunker_peek(es_chunker *c, es_chunk *chunk)
{
    int width = next_width(c);
    if (width == 0)
        return -1;
    long start = chunk_start(c, c->k);
    int pre = c->k == 0 ? 0 : c->cfg.pre_encode_cache_size;
    size_t nm = (size_t)c->n_mels;
    for (int i = 0; i < pre; i++) {
        long col = start - pre + i;
        float *dst = c->chunk + (size_t)i * nm;
        if (col < 0)
            memset(dst, 0, sizeof(float) * nm);
        else
            memcpy(dst, c->buf + (size_t)(col - c->base) * nm, sizeof(float) * nm);
    }
    memcpy(c->chunk + (size_t)pre * nm, c->buf + (size_t)(start - c->base) * nm, sizeof(float) * (size_t)width * nm);
    chunk->features = c->chunk;
    chunk->width = pre + width;
    chunk->drop_extra = c->k == 0 ? 0 : c->cfg.drop_extra_pre_encoded;
    /* NeMo's buffer is "exhausted" when its index, which moves by the shift (not the chunk
       width), has passed the end */
    chunk->keep_all = c->ended && chunk_start(c, c->k + 1) >= c->total;
    chunk->first_column = (int)start;
    return 0;
}

void es_chunker_consume(es_chunker *c)
{
    c->k++;
    /* keep only what the next chunk's pre-encode cache and columns can reach */
    long keep_from = chunk_start(c, c->k) - c->cfg.pre_encode_cache_size;
    if (keep_from > c->total)
        keep_from = c->total;
    if (keep_from > c->base) {
        long drop = keep_from - c->base, have = c->total - c->base;
        memmove(c->buf, c->buf + (size_t)drop * c->n_mels, sizeof(float) * (size_t)(have - drop) * c->n_mels);
        c->base = keep_from;
    }
}
