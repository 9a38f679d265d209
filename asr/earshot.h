/*
 * earshot.h - the public interface of libearshot, Earshot's streaming speech recognizer.
 *
 * An engine holds one model (a file written by earshot-convert), a compute backend and a pool
 * of stream slots. A stream is one live audio source: you feed it 16 kHz mono samples as they
 * arrive; it computes features incrementally and cuts them into the chunks NeMo's cache-aware
 * streaming defines. When a stream has a chunk ready, hand it (with other ready streams) to
 * es_engine_step, which encodes every chunk in one batched cache-aware step and runs each
 * stream's decoder. Each audio frame is featurised, encoded and decoded exactly once.
 *
 * Typical use (see clients/transcribe for a complete program):
 *
 *     es_engine_params ep = es_engine_default_params();
 *     es_engine *e = es_engine_create("model.safetensors", &ep, err, sizeof err);
 *     es_stream_params sp = es_stream_default_params(e);
 *     es_stream *s = es_stream_create(e, &sp, err, sizeof err);
 *     while (more audio) {
 *         es_stream_accept_audio(s, samples, n);
 *         while (es_stream_ready(s)) es_engine_step(e, &s, 1, err, sizeof err);
 *     }
 *     es_stream_end_audio(s);
 *     while (es_stream_ready(s)) es_engine_step(e, &s, 1, err, sizeof err);
 *     char *text = es_stream_text(s);
 *
 * Threading: an engine and its streams belong to one thread at a time. Functions that can fail
 * return NULL or a negative value and write one sentence into the caller's err buffer.
 */
#ifndef EARSHOT_H
#define EARSHOT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_engine es_engine;
typedef struct es_stream es_stream;

typedef enum { ES_BACKEND_CPU = 0, ES_BACKEND_CUDA = 1 } es_backend;
typedef enum { ES_DECODER_DEFAULT = 0, ES_DECODER_CTC = 1, ES_DECODER_RNNT = 2 } es_decoder_kind;

/* A decoded token: its id in the vocabulary and the encoder frame (counted from the start of
   the stream) at which it was emitted. */
typedef struct {
    int id;
    int frame;
} es_token;

/* A word with its time span in seconds of the stream's audio. */
typedef struct {
    char *word;
    double start, end;
} es_word;

typedef struct {
    es_backend backend;
    int n_threads;   /* compute threads; 0 = one per core */
    int max_streams; /* stream slots (cache memory is reserved for all of them) */
    /* A word n-gram language model (ARPA, optionally .gz) for CTC streams: with one, CTC
       decoding is a prefix beam search that weighs each word by the LM instead of greedy.
       NULL = greedy. Settled text reaches es_stream_tokens a little later than greedy's (at
       pauses, or after lm_max_delay_ms); es_stream_pending_tokens shows the rest meanwhile. */
    const char *lm_path;
    float lm_weight;     /* the LM's weight (alpha) */
    float lm_word_bonus; /* added per word (beta) */
    int lm_beam;         /* hypotheses kept */
    int lm_max_delay_ms; /* the longest a token waits to be settled */
} es_engine_params;

es_engine_params es_engine_default_params(void);
/* A model's own language model: the file beside it with the model's name and .arpa.gz (or
   .arpa) instead of .safetensors or .nemo, e.g. models/earshot-en-small.arpa.gz. Returns 1 and
   its path in out when it exists, else 0. */
int es_lm_beside_model(const char *model_path, char *out, size_t outlen);
/* 1 when the backend can run here; else 0 and one sentence in msg saying why. */
int es_backend_available(es_backend backend, char *msg, size_t msglen);
/* Fails with the reason es_backend_available gives when the backend cannot run here. */
es_engine *es_engine_create(const char *model_path, const es_engine_params *params, char *err, size_t errlen);
void es_engine_free(es_engine *e);

/* Call first thing in main(), before anything else runs: restarts the program once (same pid,
   same arguments) with OMP_WAIT_POLICY=passive, unless the environment already chooses a wait
   policy. An engine step passes many OpenMP barriers, and OpenMP's default of spinning at them
   collapses when another process shares the cores: a 16-stream step that takes 9 ms took 300 ms
   beside one busy process on 2 cores (bench/README.md). Returns when no restart happened. */
void es_prefer_passive_threads(char **argv);

/* One latency mode of the model (NeMo: one att_context_size). */
typedef struct {
    int chunk_ms;       /* audio per chunk after the first */
    int att_context[2]; /* [left, right] in encoder frames */
} es_lookahead_info;

int es_engine_lookahead_count(const es_engine *e);
es_lookahead_info es_engine_lookahead(const es_engine *e, int index);
/* The look-ahead with the largest chunk not above chunk_ms (the smallest if all are above). */
int es_engine_pick_lookahead(const es_engine *e, int chunk_ms);
int es_engine_has_decoder(const es_engine *e, es_decoder_kind kind);
int es_engine_sample_rate(const es_engine *e);
/* Seconds of audio per encoder frame (hop x subsampling factor). */
double es_engine_frame_seconds(const es_engine *e);
/* The file name the model was converted from, or the model path. */
const char *es_engine_model_name(const es_engine *e);
int es_engine_streams_in_use(const es_engine *e);
int es_engine_max_streams(const es_engine *e);
size_t es_engine_bytes_per_stream(const es_engine *e);
/* Host memory the engine's language model holds (0 without one); all streams share it. */
size_t es_engine_lm_bytes(const es_engine *e);
/* Device memory one stream slot takes (0 on the CPU backend). */
size_t es_engine_device_bytes_per_stream(const es_engine *e);
/* Device memory the engine holds in all: weights, slots, workspace (0 on the CPU). */
size_t es_engine_device_bytes(const es_engine *e);

typedef struct {
    int lookahead;           /* index from es_engine_pick_lookahead; default: the model's first */
    es_decoder_kind decoder; /* default: RNNT when the model has it, else CTC */
} es_stream_params;

es_stream_params es_stream_default_params(const es_engine *e);
/* NULL when every slot is taken or a parameter is invalid (the message says which). */
es_stream *es_stream_create(es_engine *e, const es_stream_params *params, char *err, size_t errlen);
void es_stream_free(es_stream *s);

/* Feeds 16 kHz mono samples in [-1, 1]. Returns 0, or -1 after es_stream_end_audio or when out
   of memory. */
int es_stream_accept_audio(es_stream *s, const float *samples, size_t n);
/* No more audio: the remaining features and chunks are flushed. */
int es_stream_end_audio(es_stream *s);
/* Whether a chunk waits to be encoded. */
int es_stream_ready(const es_stream *s);
/* Whether the stream ended and all its audio has been encoded and decoded. */
int es_stream_done(const es_stream *s);
/* Seconds of audio accepted so far. */
double es_stream_audio_seconds(const es_stream *s);

/* Encodes one chunk of each given stream (each must be ready) in one batched step and decodes
   it. Returns 0, or -1 with a message. */
int es_engine_step(es_engine *e, es_stream **streams, int n, char *err, size_t errlen);

/* Everything decoded so far: tokens that will not change. */
const es_token *es_stream_tokens(const es_stream *s, int *n);
/* Makes the decoder settle its current best guess now, so es_stream_tokens holds everything
   heard so far (for a client's finalize). 0, or -1 when out of memory. */
int es_stream_settle(es_stream *s);
/* Tokens after those that the decoder may still revise (only the LM beam search has any):
   its current best guess, for partial results. */
const es_token *es_stream_pending_tokens(const es_stream *s, int *n);
/* Encoder frames decoded so far. */
int es_stream_frames(const es_stream *s);
/* Encoder frames whose decoding is final: no token will be added before this frame any more.
   es_stream_frames for greedy decoders; with the LM search, the first frame of a token it has
   not settled (so a silence seen up to here is real, and an endpointer may act on it). */
int es_stream_settled_frames(const es_stream *s);

/* Text of a run of tokens (SentencePiece detokenisation). malloc'd; free() it. */
char *es_engine_tokens_text(const es_engine *e, const es_token *tokens, int n);
/* Words of a run of tokens with their times; returns the count, *words malloc'd. */
int es_engine_tokens_words(const es_engine *e, const es_token *tokens, int n, es_word **words);
void es_words_free(es_word *words, int n);

/* Convenience: the whole transcript so far. malloc'd; free() it. */
char *es_stream_text(const es_stream *s);

#ifdef __cplusplus
}
#endif

#endif
