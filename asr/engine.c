/*
 * engine.c - ties the parts of libearshot together behind earshot.h: model, slot pool, encoder,
 * and per stream the incremental features, the chunker and the decoder state.
 *
 * Where state lives: the encoder caches and the RNNT state are in the slot pool (cache/), so a
 * batched step addresses them by slot; the feature front end and the chunker's column buffer are
 * per-stream host memory, because they are touched only by the stream's own audio.
 *
 * With the CUDA backend (asr/cuda) the encoder caches and the RNNT decoder state live in
 * device memory, one array per region indexed by the same slot numbers as the host pool. CTC
 * streams get their per-frame argmax from the GPU, RNNT streams their tokens from the GPU's
 * batched greedy loop. With EARSHOT_CUDA_RNNT=0, RNNT streams instead get the encoder frames
 * copied back and run the CPU's es_rnnt_greedy_batch on the state in the host pool.
 */
#include "earshot.h"

#include "chunker.h"
#include "decoder.h"
#include "encoder.h"
#include "mel.h"
#include "model.h"
#include "ops.h"
#include "../cache/slot_pool.h"
#ifdef EARSHOT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { REGION_ENCODER = 0, REGION_RNNT = ES_ENCODER_REGIONS, N_REGIONS = ES_ENCODER_REGIONS + 1 };

/* Arguments of one batched RNNT call, sized for the largest step so far. */
typedef struct {
    void **states;
    const float **frames;
    int *n_frames, *first, *max_out, *n_out;
    es_token **outs;
    es_stream **who;
} rnnt_batch;

/* Room for one chunk's CTC log-probs. */
typedef struct {
    float *buf;
    size_t cap;
} ctc_scratch;

struct es_engine {
    es_model *model;
    es_slot_pool *pool;
    es_encoder *encoder;
#ifdef EARSHOT_HAVE_CUDA
    es_cuda *cuda; /* the CUDA backend, instead of encoder */
#endif
    es_mel_config mel;
    char *name;
    /* per-step scratch */
    es_encoder_input *inputs;
    es_encoder_output *outputs;
    es_chunk *chunks;
    int step_cap;
    ctc_scratch *ctc;       /* one per compute thread: streams are decoded in parallel */
    int n_ctc;
    rnnt_batch rnnt;
    es_lm *lm;              /* NULL: CTC is greedy */
    es_beam_params beam;
};

struct es_stream {
    es_engine *e;
    int slot;
    int lookahead;
    es_decoder_kind decoder;
    es_mel *mel;
    es_chunker *chunker;
    float *columns; /* feature scratch for one push */
    int columns_cap;
    int ended;
    long samples;
    int frames;     /* encoder frames decoded */
    int ctc_prev;   /* CTC: the last frame's id, to merge repeats across chunks */
    es_ctc_beam *beam; /* CTC with the engine's LM: the search, instead of ctc_prev */
    int beam_finished;
    es_token *tokens;
    int n_tokens, tokens_cap;
};

static int finish_beam(es_stream *s);
static int append_tokens(es_stream *s, const es_token *t, int n);

es_engine_params es_engine_default_params(void)
{
    es_beam_params b = es_beam_default_params();
    es_engine_params p = {.backend = ES_BACKEND_CPU, .n_threads = 0, .max_streams = 64, .lm_path = NULL,
                          .lm_weight = b.lm_weight, .lm_word_bonus = b.word_bonus, .lm_beam = b.beam,
                          .lm_max_delay_ms = 2000};
    return p;
}

int es_backend_available(es_backend backend, char *msg, size_t msglen)
{
    if (msg && msglen)
        msg[0] = '\0';
    if (backend == ES_BACKEND_CPU)
        return 1;
    if (backend != ES_BACKEND_CUDA) {
        if (msg && msglen)
            snprintf(msg, msglen, "unknown backend %d", (int)backend);
        return 0;
    }
#ifdef EARSHOT_HAVE_CUDA
    return es_cuda_available(msg, msglen);
#else
    if (msg && msglen)
        snprintf(msg, msglen, "this build has no CUDA backend; use the CPU backend");
    return 0;
#endif
}

/* Loads the engine's language model and checks the search parameters. */
static int configure_lm(es_engine *e, const es_engine_params *p, char *err, size_t errlen)
{
    if (!e->model->has_ctc) {
        snprintf(err, errlen, "a language model needs a model with a CTC decoder; this one has only RNNT");
        return -1;
    }
    if (p->lm_beam < 1 || p->lm_beam > 1024 || !isfinite(p->lm_weight) || p->lm_weight < 0 ||
        !isfinite(p->lm_word_bonus) || p->lm_max_delay_ms < 100 || p->lm_max_delay_ms > 60000) {
        snprintf(err, errlen, "language-model search: beam must be 1..1024, the weight a number >= 0, the word "
                 "bonus a number, the maximum delay 100..60000 ms");
        return -1;
    }
    double frame_ms = es_engine_frame_seconds(e) * 1000.0;
    e->beam = es_beam_default_params();
    e->beam.beam = p->lm_beam;
    e->beam.lm_weight = p->lm_weight;
    e->beam.word_bonus = p->lm_word_bonus;
    e->beam.max_delay_frames = (int)(p->lm_max_delay_ms / frame_ms + 0.5);
    if (e->beam.max_delay_frames < 1)
        e->beam.max_delay_frames = 1;
    /* a pause of about 300 ms settles a phrase: shorter than any sensible endpointing */
    e->beam.silence_frames = (int)(300.0 / frame_ms + 0.5);
    if (e->beam.silence_frames < 1)
        e->beam.silence_frames = 1;
    e->lm = es_lm_load(p->lm_path, err, errlen);
    return e->lm ? 0 : -1;
}

int es_lm_beside_model(const char *model_path, char *out, size_t outlen)
{
    static const char *const model_ext[] = {".safetensors", ".nemo"}, *const lm_ext[] = {".arpa.gz", ".arpa"};
    size_t len = strlen(model_path);
    for (size_t i = 0; i < sizeof model_ext / sizeof *model_ext; i++) {
        size_t el = strlen(model_ext[i]);
        if (len <= el || strcmp(model_path + len - el, model_ext[i]) != 0)
            continue;
        for (size_t k = 0; k < sizeof lm_ext / sizeof *lm_ext; k++) {
            if ((size_t)snprintf(out, outlen, "%.*s%s", (int)(len - el), model_path, lm_ext[k]) >= outlen)
                return 0;
            FILE *f = fopen(out, "rb");
            if (f) {
                fclose(f);
                return 1;
            }
        }
    }
    return 0;
}

es_engine *es_engine_create(const char *model_path, const es_engine_params *params, char *err, size_t errlen)
{
    es_engine_params p = params ? *params : es_engine_default_params();
    if (p.backend != ES_BACKEND_CPU && !es_backend_available(p.backend, err, errlen))
        return NULL;
    if (p.max_streams < 1 || p.max_streams > 1000000) {
        snprintf(err, errlen, "max_streams must be between 1 and 1000000 (got %d)", p.max_streams);
        return NULL;
    }
    es_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->model = es_model_load(model_path, err, errlen);
    if (!e->model) {
        free(e);
        return NULL;
    }
    const es_model *m = e->model;
    if (p.lm_path && configure_lm(e, &p, err, errlen) != 0) {
        es_engine_free(e);
        return NULL;
    }
    size_t regions[N_REGIONS];
    es_encoder_cache_regions(m, regions);
    regions[REGION_RNNT] = m->has_rnnt ? es_rnnt_state_bytes(m) : 1;
#ifdef EARSHOT_HAVE_CUDA
    if (p.backend == ES_BACKEND_CUDA) {
        /* the encoder caches are on the GPU: the host slots keep only the RNNT state */
        for (int r = REGION_ENCODER; r < REGION_ENCODER + ES_ENCODER_REGIONS; r++)
            regions[r] = 1;
        e->cuda = es_cuda_create(m, p.max_streams, err, errlen);
        if (!e->cuda) {
            es_engine_free(e);
            return NULL;
        }
    }
#endif
    e->pool = es_slot_pool_create(p.max_streams, regions, N_REGIONS);
    if (p.backend == ES_BACKEND_CPU)
        e->encoder = es_encoder_create(m, e->pool, REGION_ENCODER);
    const char *base = m->source ? m->source : strrchr(model_path, '/') ? strrchr(model_path, '/') + 1 : model_path;
    e->name = strdup(base);
    if (!e->pool || (p.backend == ES_BACKEND_CPU && !e->encoder) || !e->name) {
        snprintf(err, errlen, "out of memory reserving %d stream slots", p.max_streams);
        es_engine_free(e);
        return NULL;
    }
    e->mel = (es_mel_config){.sample_rate = m->sample_rate, .n_fft = m->n_fft, .hop_length = m->hop_length,
                             .win_length = m->win_length, .n_mels = m->n_mels, .preemph = 0.97f,
                             .window = m->window, .filterbank = m->filterbank,
                             .norm_mean = m->feat_mean, .norm_std = m->feat_std};
    es_set_compute_threads(p.n_threads);
    return e;
}

void es_engine_free(es_engine *e)
{
    if (!e)
        return;
    es_encoder_free(e->encoder);
#ifdef EARSHOT_HAVE_CUDA
    es_cuda_free(e->cuda);
#endif
    es_slot_pool_free(e->pool);
    es_model_free(e->model);
    es_lm_free(e->lm);
    free(e->name);
    free(e->inputs);
    free(e->outputs);
    free(e->chunks);
    for (int i = 0; i < e->n_ctc; i++)
        free(e->ctc[i].buf);
    free(e->ctc);
    free(e->rnnt.states);
    free(e->rnnt.frames);
    free(e->rnnt.n_frames);
    free(e->rnnt.first);
    free(e->rnnt.max_out);
    free(e->rnnt.n_out);
    free(e->rnnt.outs);
    free(e->rnnt.who);
    free(e);
}

int es_engine_lookahead_count(const es_engine *e)
{
    return e->model->n_lookaheads;
}

es_lookahead_info es_engine_lookahead(const es_engine *e, int index)
{
    es_lookahead_info info = {0};
    if (index < 0 || index >= e->model->n_lookaheads)
        return info;
    const es_streaming_cfg *s = &e->model->streaming[index];
    info.chunk_ms = s->chunk_ms;
    info.att_context[0] = s->att_context[0];
    info.att_context[1] = s->att_context[1];
    return info;
}

int es_engine_pick_lookahead(const es_engine *e, int chunk_ms)
{
    int best = -1, smallest = 0;
    for (int i = 0; i < e->model->n_lookaheads; i++) {
        int ms = e->model->streaming[i].chunk_ms;
        if (ms < e->model->streaming[smallest].chunk_ms)
            smallest = i;
        if (ms <= chunk_ms && (best < 0 || ms > e->model->streaming[best].chunk_ms))
            best = i;
    }
    return best >= 0 ? best : smallest;
}

int es_engine_has_decoder(const es_engine *e, es_decoder_kind kind)
{
    switch (kind) {
    case ES_DECODER_CTC:
        return e->model->has_ctc;
    case ES_DECODER_RNNT:
        return e->model->has_rnnt;
    default:
        return 1;
    }
}

int es_engine_sample_rate(const es_engine *e)
{
    return e->model->sample_rate;
}

double es_engine_frame_seconds(const es_engine *e)
{
    const es_model *m = e->model;
    return (double)m->hop_length * m->subsampling_factor / m->sample_rate;
}

const char *es_engine_model_name(const es_engine *e)
{
    return e->name;
}

int es_engine_streams_in_use(const es_engine *e)
{
    return es_slot_pool_in_use(e->pool);
}

int es_engine_max_streams(const es_engine *e)
{
    return es_slot_pool_capacity(e->pool);
}

size_t es_engine_bytes_per_stream(const es_engine *e)
{
    return es_slot_pool_bytes_per_slot(e->pool);
}

size_t es_engine_lm_bytes(const es_engine *e)
{
    return e->lm ? es_lm_bytes(e->lm) : 0;
}

size_t es_engine_device_bytes_per_stream(const es_engine *e)
{
#ifdef EARSHOT_HAVE_CUDA
    if (e->cuda)
        return es_cuda_bytes_per_slot(e->cuda);
#endif
    (void)e;
    return 0;
}

size_t es_engine_device_bytes(const es_engine *e)
{
#ifdef EARSHOT_HAVE_CUDA
    if (e->cuda)
        return es_cuda_device_bytes(e->cuda);
#endif
    (void)e;
    return 0;
}

/* ---- streams ---- */

es_stream_params es_stream_default_params(const es_engine *e)
{
    es_stream_params p = {.lookahead = 0, .decoder = e->model->has_rnnt ? ES_DECODER_RNNT : ES_DECODER_CTC};
    return p;
}

es_stream *es_stream_create(es_engine *e, const es_stream_params *params, char *err, size_t errlen)
{
    es_stream_params p = params ? *params : es_stream_default_params(e);
    if (p.decoder == ES_DECODER_DEFAULT)
        p.decoder = es_stream_default_params(e).decoder;
    if (p.lookahead < 0 || p.lookahead >= e->model->n_lookaheads) {
        snprintf(err, errlen, "look-ahead %d does not exist (the model has %d)", p.lookahead, e->model->n_lookaheads);
        return NULL;
    }
    if (!es_engine_has_decoder(e, p.decoder)) {
        snprintf(err, errlen, "the model has no %s decoder", p.decoder == ES_DECODER_CTC ? "CTC" : "RNNT");
        return NULL;
    }
    es_stream *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->e = e;
    s->lookahead = p.lookahead;
    s->decoder = p.decoder;
    s->ctc_prev = -1;
    s->slot = es_slot_acquire(e->pool);
    if (s->slot < 0) {
        snprintf(err, errlen, "all %d stream slots are in use", es_slot_pool_capacity(e->pool));
        free(s);
        return NULL;
    }
#ifdef EARSHOT_HAVE_CUDA
    /* the host pool zeroed the slot; its device caches must start from zero too */
    if (e->cuda && es_cuda_clear_slot(e->cuda, s->slot) != 0) {
        snprintf(err, errlen, "cannot clear the stream's GPU caches");
        es_stream_free(s);
        return NULL;
    }
#endif
    s->mel = es_mel_create(&e->mel);
    s->chunker = es_chunker_create(e->model, p.lookahead);
    if (e->lm && s->decoder == ES_DECODER_CTC)
        s->beam = es_ctc_beam_create(e->model, e->lm, &e->beam);
    if (!s->mel || !s->chunker || (e->lm && s->decoder == ES_DECODER_CTC && !s->beam)) {
        snprintf(err, errlen, "out of memory");
        es_stream_free(s);
        return NULL;
    }
    return s;
}

void es_stream_free(es_stream *s)
{
    if (!s)
        return;
    if (s->slot >= 0)
        es_slot_release(s->e->pool, s->slot);
    es_mel_free(s->mel);
    es_chunker_free(s->chunker);
    es_ctc_beam_free(s->beam);
    free(s->columns);
    free(s->tokens);
    free(s);
}

static int ensure_columns(es_stream *s, int n)
{
    if (n <= s->columns_cap)
        return 0;
    float *p = realloc(s->columns, sizeof(float) * (size_t)n * s->e->model->n_mels);
    if (!p)
        return -1;
    s->columns = p;
    s->columns_cap = n;
    return 0;
}

/* Moves every feature column the front end has produced into the chunker. */
static int drain_features(es_stream *s, const float *samples, size_t n, int finish)
{
    int max = (int)(n / (size_t)s->e->model->hop_length) + 8;
    if (ensure_columns(s, max) != 0)
        return -1;
    int got = finish ? es_mel_finish(s->mel, s->columns, max) : es_mel_push(s->mel, samples, n, s->columns, max);
    for (;;) {
        if (got < 0 || (got > 0 && es_chunker_push(s->chunker, s->columns, got) != 0))
            return -1;
        if (got < max)
            return 0;
        got = finish ? es_mel_finish(s->mel, s->columns, max) : es_mel_push(s->mel, NULL, 0, s->columns, max);
    }
}

int es_stream_accept_audio(es_stream *s, const float *samples, size_t n)
{
    if (s->ended)
        return -1;
    s->samples += (long)n;
    return drain_features(s, samples, n, 0);
}

int es_stream_end_audio(es_stream *s)
{
    if (s->ended)
        return 0;
    s->ended = 1;
    /* NeMo would encode the one all-zero feature column of an empty input and may emit a
       token for it; a stream that never received audio has nothing to say */
    if (s->samples > 0 && drain_features(s, NULL, 0, 1) != 0)
        return -1;
    es_chunker_end(s->chunker);
    return finish_beam(s); /* when no chunk was left to decode */
}

int es_stream_ready(const es_stream *s)
{
    return es_chunker_ready(s->chunker);
}

int es_stream_done(const es_stream *s)
{
    return es_chunker_done(s->chunker);
}

double es_stream_audio_seconds(const es_stream *s)
{
    return (double)s->samples / s->e->model->sample_rate;
}

const es_token *es_stream_tokens(const es_stream *s, int *n)
{
    *n = s->n_tokens;
    return s->tokens;
}

int es_stream_settle(es_stream *s)
{
    if (!s->beam)
        return 0;
    const es_token *settled;
    int n = es_ctc_beam_settle(s->beam, &settled);
    return append_tokens(s, settled, n);
}

const es_token *es_stream_pending_tokens(const es_stream *s, int *n)
{
    if (!s->beam) {
        *n = 0;
        return s->tokens;
    }
    return es_ctc_beam_pending(s->beam, n);
}

int es_stream_frames(const es_stream *s)
{
    return s->frames;
}

int es_stream_settled_frames(const es_stream *s)
{
    return s->beam ? es_ctc_beam_frontier(s->beam, s->frames) : s->frames;
}

/* Makes room for `more` tokens; a frame can emit at most max_symbols (RNNT) or one (CTC). */
static int reserve_tokens(es_stream *s, int more)
{
    if (s->n_tokens + more <= s->tokens_cap)
        return 0;
    int want = (s->n_tokens + more) * 2 + 16;
    es_token *t = realloc(s->tokens, sizeof(es_token) * (size_t)want);
    if (!t)
        return -1;
    s->tokens = t;
    s->tokens_cap = want;
    return 0;
}

/* realloc that keeps the old block on failure; *ok is cleared then. */
static void *grow(void *p, size_t bytes, int *ok)
{
    void *q = realloc(p, bytes);
    if (!q) {
        *ok = 0;
        return p;
    }
    return q;
}

static int ensure_step(es_engine *e, int n)
{
    if (n <= e->step_cap)
        return 0;
    int ok = 1;
    size_t k = (size_t)n;
    rnnt_batch *r = &e->rnnt;
    e->inputs = grow(e->inputs, sizeof *e->inputs * k, &ok);
    e->outputs = grow(e->outputs, sizeof *e->outputs * k, &ok);
    e->chunks = grow(e->chunks, sizeof *e->chunks * k, &ok);
    r->states = grow(r->states, sizeof *r->states * k, &ok);
    r->frames = grow(r->frames, sizeof *r->frames * k, &ok);
    r->n_frames = grow(r->n_frames, sizeof *r->n_frames * k, &ok);
    r->first = grow(r->first, sizeof *r->first * k, &ok);
    r->max_out = grow(r->max_out, sizeof *r->max_out * k, &ok);
    r->n_out = grow(r->n_out, sizeof *r->n_out * k, &ok);
    r->outs = grow(r->outs, sizeof *r->outs * k, &ok);
    r->who = grow(r->who, sizeof *r->who * k, &ok);
    if (!ok)
        return -1;
    e->step_cap = n;
    return 0;
}

/* Appends tokens the beam search settled. */
static int append_tokens(es_stream *s, const es_token *t, int n)
{
    if (n < 0 || reserve_tokens(s, n) != 0)
        return -1;
    if (n > 0)
        memcpy(s->tokens + s->n_tokens, t, sizeof *t * (size_t)n);
    s->n_tokens += n;
    return 0;
}

/* Once the stream's last chunk is decoded, the beam search settles its best hypothesis. */
static int finish_beam(es_stream *s)
{
    if (!s->beam || s->beam_finished || !es_chunker_done(s->chunker))
        return 0;
    s->beam_finished = 1;
    const es_token *settled;
    int n = es_ctc_beam_finish(s->beam, &settled);
    return append_tokens(s, settled, n);
}

static int decode_ctc(es_engine *e, es_stream *s, const es_encoder_output *o, ctc_scratch *sc)
{
    size_t need = (size_t)o->n_frames * (size_t)(e->model->n_vocab + 1);
    if (need > sc->cap) {
        float *p = realloc(sc->buf, sizeof(float) * need);
        if (!p)
            return -1;
        sc->buf = p;
        sc->cap = need;
    }
    if (s->beam) {
        const es_token *settled;
        es_ctc_log_probs(e->model, o->frames, o->n_frames, sc->buf);
        int got = es_ctc_beam_step(s->beam, sc->buf, o->n_frames, s->frames, &settled);
        return append_tokens(s, settled, got);
    }
    if (reserve_tokens(s, o->n_frames) != 0)
        return -1;
    int got = es_ctc_greedy(e->model, o->frames, o->n_frames, s->frames, &s->ctc_prev, NULL, s->tokens + s->n_tokens,
                            s->tokens_cap - s->n_tokens, sc->buf);
    s->n_tokens += got;
    return 0;
}

#ifdef EARSHOT_HAVE_CUDA
/* Greedy CTC from the GPU's per-frame argmax: es_ctc_greedy's merge of repeats and blanks. */
static int decode_ctc_ids(es_engine *e, es_stream *s, const int *ids, int n_frames)
{
    int blank = e->model->n_vocab, prev = s->ctc_prev;
    if (reserve_tokens(s, n_frames) != 0)
        return -1;
    for (int t = 0; t < n_frames; t++) {
        int k = ids[t];
        if (k != blank && k != prev)
            s->tokens[s->n_tokens++] = (es_token){.id = k, .frame = s->frames + t};
        prev = k;
    }
    s->ctc_prev = prev;
    return 0;
}
#endif

/* CTC-decodes the step's CTC streams (gpu_ids: greedy ones from the GPU's argmax). With an LM
   the beam search costs about a fifth of a stream's encoder time on one core, and it does not
   batch, so the streams are searched in parallel: each search is the stream's own and the LM
   is only read. In one loop on one thread it would cap the streams a step can serve at what
   one core searches, however many cores (or a GPU) run the encoder. */
static int decode_ctc_streams(es_engine *e, es_stream **streams, int n, int gpu_ids)
{
    int threads = es_compute_threads(), any_beam = 0;
    for (int i = 0; i < n; i++)
        any_beam |= streams[i]->decoder == ES_DECODER_CTC && streams[i]->beam;
    if (threads > e->n_ctc) {
        ctc_scratch *sc = realloc(e->ctc, sizeof *sc * (size_t)threads);
        if (!sc)
            return -1;
        memset(sc + e->n_ctc, 0, sizeof *sc * (size_t)(threads - e->n_ctc));
        e->ctc = sc;
        e->n_ctc = threads;
    }
    int failed = 0;
#pragma omp parallel for schedule(dynamic) if (n > 1 && any_beam)
    for (int i = 0; i < n; i++) {
        es_stream *s = streams[i];
        if (s->decoder != ES_DECODER_CTC)
            continue;
        int r;
#ifdef EARSHOT_HAVE_CUDA
        if (gpu_ids && !s->beam)
            r = decode_ctc_ids(e, s, es_cuda_ctc_ids(e->cuda, i), e->outputs[i].n_frames);
        else
#endif
            r = decode_ctc(e, s, &e->outputs[i], &e->ctc[es_compute_thread_id()]);
        if (r != 0) {
#pragma omp atomic write
            failed = 1;
        }
    }
    (void)gpu_ids;
    return failed ? -1 : 0;
}

#ifdef EARSHOT_HAVE_CUDA
/* Greedy RNNT on the GPU for every RNNT stream of the step (e->rnnt.n_out lists them). */
static int decode_rnnt_cuda(es_engine *e, es_stream **streams, int n, char *err, size_t errlen)
{
    int *which = e->rnnt.n_out, B = 0;
    for (int i = 0; i < n; i++)
        if (streams[i]->decoder == ES_DECODER_RNNT)
            which[B++] = i;
    if (B == 0)
        return 0;
    if (es_cuda_rnnt(e->cuda, which, B, err, errlen) != 0)
        return -1;
    for (int k = 0; k < B; k++) {
        es_stream *s = streams[which[k]];
        int got;
        const int *tok = es_cuda_rnnt_tokens(e->cuda, k, &got);
        if (reserve_tokens(s, got) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (int j = 0; j < got; j++)
            s->tokens[s->n_tokens++] = (es_token){.id = tok[2 * j], .frame = s->frames + tok[2 * j + 1]};
    }
    return 0;
}

/* The encoder step on the GPU, then CTC from its argmax ids and RNNT on the GPU (or, with it
   off, the frames copied back for the host's RNNT). */
static int step_cuda(es_engine *e, es_stream **streams, int n, char *err, size_t errlen)
{
    unsigned flags = 0;
    int gpu_rnnt = es_cuda_rnnt_on(e->cuda);
    for (int i = 0; i < n; i++)
        flags |= streams[i]->beam                       ? ES_CUDA_FRAMES /* the search needs the log-probs */
                 : streams[i]->decoder == ES_DECODER_CTC ? ES_CUDA_CTC_IDS
                 : gpu_rnnt                              ? 0
                                                         : ES_CUDA_FRAMES;
    if (es_cuda_step(e->cuda, e->inputs, n, flags, e->outputs, err, errlen) != 0)
        return -1;
    if (decode_ctc_streams(e, streams, n, 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return gpu_rnnt ? decode_rnnt_cuda(e, streams, n, err, errlen) : 0;
}
#endif

static int decode_rnnt(es_engine *e, es_stream **streams, int n)
{
    /* batch every RNNT stream of the step through one greedy loop */
    rnnt_batch *r = &e->rnnt;
    void **states = r->states;
    const float **frames = r->frames;
    int *n_frames = r->n_frames, *first = r->first, *max_out = r->max_out, *n_out = r->n_out;
    es_token **outs = r->outs;
    es_stream **who = r->who;
    int B = 0;
    for (int i = 0; i < n; i++) {
        es_stream *s = streams[i];
        if (s->decoder != ES_DECODER_RNNT)
            continue;
        int more = e->outputs[i].n_frames * e->model->max_symbols;
        if (reserve_tokens(s, more) != 0)
            return -1;
        states[B] = es_slot_region(e->pool, s->slot, REGION_RNNT);
        frames[B] = e->outputs[i].frames;
        n_frames[B] = e->outputs[i].n_frames;
        first[B] = s->frames;
        outs[B] = s->tokens + s->n_tokens;
        max_out[B] = s->tokens_cap - s->n_tokens;
        who[B] = s;
        B++;
    }
    if (B == 0)
        return 0;
    if (es_rnnt_greedy_batch(e->model, states, frames, n_frames, first, B, outs, max_out, n_out) < 0)
        return -1;
    for (int b = 0; b < B; b++)
        who[b]->n_tokens += n_out[b];
    return 0;
}

int es_engine_step(es_engine *e, es_stream **streams, int n, char *err, size_t errlen)
{
    if (n <= 0)
        return 0;
    if (ensure_step(e, n) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        es_stream *s = streams[i];
        if (s->e != e || es_chunker_peek(s->chunker, &e->chunks[i]) != 0) {
            snprintf(err, errlen, "stream %d of the step has no chunk ready", i);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (streams[j] == s) {
                snprintf(err, errlen, "a stream appears twice in one step");
                return -1;
            }
        es_chunk *c = &e->chunks[i];
        e->inputs[i] = (es_encoder_input){.features = c->features, .width = c->width, .length = c->width,
                                          .lookahead = s->lookahead, .drop_extra = c->drop_extra,
                                          .keep_all = c->keep_all, .slot = s->slot};
    }
#ifdef EARSHOT_HAVE_CUDA
    if (e->cuda) {
        if (step_cuda(e, streams, n, err, errlen) != 0)
            return -1;
    } else
#endif
    {
        if (es_encoder_step(e->encoder, e->inputs, n, e->outputs, err, errlen) != 0)
            return -1;
        if (decode_ctc_streams(e, streams, n, 0) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    int rnnt_done = 0; /* decoded on the GPU already */
#ifdef EARSHOT_HAVE_CUDA
    rnnt_done = e->cuda && es_cuda_rnnt_on(e->cuda);
#endif
    if (!rnnt_done && decode_rnnt(e, streams, n) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        es_stream *s = streams[i];
        s->frames += e->outputs[i].n_frames;
        es_chunker_consume(s->chunker);
        if (finish_beam(s) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

char *es_engine_tokens_text(const es_engine *e, const es_token *tokens, int n)
{
    return es_tokens_to_text(e->model, tokens, n);
}

int es_engine_tokens_words(const es_engine *e, const es_token *tokens, int n, es_word **words)
{
    return es_tokens_to_words(e->model, tokens, n, words);
}

char *es_stream_text(const es_stream *s)
{
    return es_tokens_to_text(s->e->model, s->tokens, s->n_tokens);
}
