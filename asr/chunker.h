/*
 * chunker.h - cuts one stream's mel columns into encoder chunks exactly as NeMo's
 * CacheAwareStreamingAudioBuffer does (golden/README.md, "How NeMo streams"), but online:
 * columns arrive a few at a time and a chunk is handed out as soon as all its columns exist.
 *
 * Chunk 0 is columns [0, chunk_size[0]) with nothing before it. Chunk k >= 1 starts at
 * idx = shift_size[0] + (k-1) * shift_size[1], takes [idx, idx + chunk_size[1]) and is preceded
 * by the pre_encode_cache_size columns before idx (zeros where idx is too small to have them).
 * At the end of the stream a shorter last chunk is allowed, but a tail shorter than the
 * subsampling factor is never encoded, as in NeMo. Only the columns a future chunk can still
 * need are kept, so memory does not grow with the stream.
 */
#ifndef EARSHOT_CHUNKER_H
#define EARSHOT_CHUNKER_H

#include "model.h"

typedef struct {
    const float *features; /* [width][n_mels], valid until the chunk is consumed */
    int width;
    int drop_extra;
    int keep_all;
    int first_column;      /* index of the chunk's first new column (after the pre-encode cache) */
} es_chunk;

typedef struct es_chunker es_chunker;

es_chunker *es_chunker_create(const es_model *m, int lookahead);
void es_chunker_free(es_chunker *c);
/* Appends n columns ([n][n_mels]); returns 0 or -1 when out of memory. */
int es_chunker_push(es_chunker *c, const float *columns, int n);
/* No more columns will come. */
void es_chunker_end(es_chunker *c);
/* Whether a chunk can be taken now. */
int es_chunker_ready(const es_chunker *c);
/* Whether the stream ended and every chunk it will ever give has been consumed. */
int es_chunker_done(const es_chunker *c);
/* Fills *chunk with the next chunk (requires ready); returns 0, or -1 when out of memory. */
int es_chunker_peek(es_chunker *c, es_chunk *chunk);
/* Marks the peeked chunk as encoded and moves on. */
void es_chunker_consume(es_chunker *c);
/* Total columns pushed so far. */
long es_chunker_columns(const es_chunker *c);

#endif
