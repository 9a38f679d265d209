/*
 * decoder.h - turning encoder frames into tokens, text and timed words.
 *
 * Three small parts, one file each:
 *
 *   ctc.c     The CTC head (a linear layer and log-softmax per frame) and greedy CTC: per-frame
 *             argmax, repeats merged, blanks dropped. The only state a stream carries across
 *             chunks is the id of its last frame, so a run of one token that straddles a chunk
 *             border is emitted once, at the frame where it started.
 *
 *   ctc_beam.c  CTC prefix beam search with a word n-gram language model (lm.h), for models whose
 *             greedy output is spelled right in sound but wrong in letters. It settles tokens as
 *             the hypotheses agree on them, so the stream's token list still only grows.
 *
 *   rnnt.c    Greedy RNNT exactly as NeMo's GreedyRNNTInfer: per frame, ask the joint up to
 *             max_symbols times; a non-blank answer is emitted and advances the prediction
 *             network (embedding + one LSTM layer), blank moves to the next frame. A stream's
 *             decoder state (last token, LSTM state, and the prediction network's output for
 *             them, cached because it only changes when a token is emitted) lives in caller
 *             memory, so it can sit in the session's cache slot; all-zero bytes mean "start of
 *             stream", which is what a fresh slot holds. The batched variant runs many streams
 *             frame by frame in lock step so every matrix product is one GEMM over the streams
 *             still active.
 *
 *   tokens.c  SentencePiece-style detokenisation and word grouping with times.
 *
 * Blank is id m->n_vocab in both heads. Token frames are global encoder frame indices since the
 * stream's start; the caller passes the index of a chunk's first frame.
 */
#ifndef EARSHOT_DECODER_H
#define EARSHOT_DECODER_H

#include <stddef.h>

#include "earshot.h" /* es_token, es_word, es_words_free: part of the public interface */
#include "lm.h"
#include "model.h"

/* ---- CTC (ctc.c) ---- */

/* CTC head: log_softmax(W x + b) per frame, W = m->ctc.w [V+1][d], b = m->ctc.b.
   frames [n_frames][d_model]; writes [n_frames][V+1] log-probs into logprobs (caller-sized). */
void es_ctc_log_probs(const es_model *m, const float *frames, int n_frames, float *logprobs);

/* Greedy CTC over one chunk: per-frame argmax of the log-probs (first max wins on ties); repeats
   are merged ACROSS chunks through *prev_id (start it at -1; it is left at the last frame's id);
   blanks are dropped. frame_ids[n_frames] (optional, may be NULL) gets the per-frame argmax.
   Appends at most max_out tokens to out, each with frame = first_frame + t of the frame that
   started its run, and returns how many it appended (-1 when out of memory). scratch is a
   caller buffer of n_frames*(V+1) floats, or NULL to allocate one for the call; a caller's
   scratch holds the chunk's log-probs afterwards. */
int es_ctc_greedy(const es_model *m, const float *frames, int n_frames, int first_frame, int *prev_id,
                  int *frame_ids, es_token *out, int max_out, float *scratch);

/* ---- CTC beam search with a language model (ctc_beam.c) ---- */

typedef struct {
    int beam;             /* hypotheses kept per frame (1..1024) */
    float lm_weight;      /* the language model's weight against the acoustic log-probs */
    float word_bonus;     /* added per word, against the LM's bias towards fewer words */
    int silence_frames;   /* frames with no new token after which the best hypothesis is settled */
    int max_delay_frames; /* a token is settled at most this many frames after it was emitted */
} es_beam_params;

typedef struct es_ctc_beam es_ctc_beam;

es_beam_params es_beam_default_params(void);
/* One stream's search. lm may be NULL (a plain prefix beam search). The model and the LM must
   outlive it. NULL when out of memory or a parameter is out of range. */
es_ctc_beam *es_ctc_beam_create(const es_model *m, const es_lm *lm, const es_beam_params *params);
void es_ctc_beam_free(es_ctc_beam *b);
/* Searches n_frames frames of CTC log-probs [n_frames][V+1] (es_ctc_log_probs), the first of
   which is the stream's frame first_frame. *settled points at the tokens that became final
   (valid until the next call); returns their count, or -1 when out of memory. */
int es_ctc_beam_step(es_ctc_beam *b, const float *logprobs, int n_frames, int first_frame, const es_token **settled);
/* The stream ended: the best hypothesis, with its last word and the sentence end scored,
   settles the rest. Same return as es_ctc_beam_step. */
int es_ctc_beam_finish(es_ctc_beam *b, const es_token **settled);
/* Settles the best hypothesis now, as at a pause (a client's finalize). Same return. */
int es_ctc_beam_settle(es_ctc_beam *b, const es_token **settled);
/* The first frame at which a token may still be settled, given that `frames` frames have been
   searched: the earliest unsettled token of any hypothesis kept, else frames. */
int es_ctc_beam_frontier(const es_ctc_beam *b, int frames);
/* The best hypothesis' tokens that are not settled yet (they may still change). */
const es_token *es_ctc_beam_pending(const es_ctc_beam *b, int *n);

/* ---- RNNT (rnnt.c) ---- */

/* Bytes of one stream's RNNT decoder state. The memory must start zeroed (= start of stream)
   and be suitably aligned for float. */
size_t es_rnnt_state_bytes(const es_model *m);

/* Greedy RNNT over one chunk of frames [n_frames][d_model] of one stream, carrying *state.
   Appends at most max_out tokens (frame = first_frame + t) and returns how many, or -1 when out
   of memory. Tokens beyond max_out are decoded (the state stays right) but not stored. */
int es_rnnt_greedy(const es_model *m, void *state, const float *frames, int n_frames, int first_frame,
                   es_token *out, int max_out);

/* The same over B streams at once, each with its own state, frames, length and output buffer.
   At each frame index the LSTM and joint products of all streams still active are one GEMM
   each. Token results are those of es_rnnt_greedy per stream. n_out[b] gets the count appended
   to out[b]. Returns 0, or -1 when out of memory (no state is changed then). */
int es_rnnt_greedy_batch(const es_model *m, void **states, const float *const *frames, const int *n_frames,
                         const int *first_frame, int B, es_token **out, const int *max_out, int *n_out);

/* ---- tokens (tokens.c) ---- */

/* Detokenises like SentencePiece's decode: pieces concatenated, U+2581 becomes a space, the
   leading space of the text dropped, byte pieces <0xNN> emitted as the byte, <unk> as " ⁇ ".
   Returns a malloc'd string (NULL when out of memory). */
char *es_tokens_to_text(const es_model *m, const es_token *t, int n);

/* Groups tokens into words: a word starts at a token whose piece begins with U+2581 (or at the
   first token). start = frame of its first token * frame_seconds, end = (frame of its last
   token + 1) * frame_seconds, frame_seconds = hop_length * subsampling_factor / sample_rate.
   Words whose text is empty are skipped. Returns the count (-1 when out of memory); *words is
   malloc'd (NULL when the count is 0); free it with es_words_free (declared in earshot.h). */
int es_tokens_to_words(const es_model *m, const es_token *t, int n, es_word **words);

#endif
