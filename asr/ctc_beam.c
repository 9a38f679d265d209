/*
 * ctc_beam.c - CTC prefix beam search with a word n-gram language model (see decoder.h).
 *
 * The search (Hannun et al. 2014, "first-pass large vocabulary continuous speech recognition
 * using bi-directional recurrent DNNs") keeps the `beam` most likely label prefixes. For each
 * prefix it tracks two probabilities: of all alignments so far that end in blank (pb) and that
 * end in the prefix's last token (pnb); a repeated token extends a prefix only after a blank.
 * A prefix's score adds the language model's view: lm_weight x ln P(words) + word_bonus x words.
 * A known word is scored when the next word begins (a piece starting with U+2581), or at the end.
 *
 * Unknown words are scored as they are spelled, not when they end: the LM's vocabulary trie
 * says, letter by letter, whether the word in progress can still become a known word. The
 * moment it cannot, the hypothesis pays ln P(<unk>) and from then on OOV_LETTER per letter, as
 * if an unknown word's spelling came from a uniform letter model. Without this, gluing several
 * words into one unknown word ("longlacefor") costs one <unk> where the right reading pays for
 * every word, and the search learns to drop spaces.
 *
 * A bare word-start piece (U+2581 alone) begins a word whose letters come in later pieces. The LM
 * sees no word until letters come, so a second bare piece, or one that ends the text, would cost
 * it nothing and read as an extra space. The search therefore starts no word while the last one
 * has no letters yet, and a hypothesis ending in a bare piece never wins at the end. At a pause
 * it may: models often emit the next word's mark right after a word, before the pause, and
 * letters follow it after the pause. Before the first word none of this applies (the text drops
 * leading marks), so a leading mark never forces the first word to be spelled without one.
 *
 * Streaming: the engine must hand out tokens that no longer change, so each hypothesis keeps
 * only the tokens since the last commit (its "tail"). After every frame:
 *   - tokens every kept hypothesis agrees on are settled (committed);
 *   - when the best hypothesis has said nothing new for silence_frames, it wins outright: a
 *     pause is where a finished phrase should be settled, so the endpointer sees its tokens;
 *     hypotheses holding a token from before the pause are dropped, so that the decoding is
 *     final up to silence_frames ago (es_ctc_beam_frontier) and an endpoint waits no longer;
 *   - a token older than max_delay_frames in the best hypothesis is forced: hypotheses that
 *     disagree with the best up to it are dropped. This bounds how late a final can come.
 * Prefixes are identified by a 64-bit rolling hash of all their token ids since the stream
 * began, which is how two ways of reaching one prefix are merged.
 */
#include "decoder.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WS "\xE2\x96\x81" /* U+2581, the word-start mark */
#define WS_LEN 3
#define OOV_LETTER (-3.33f)  /* ln(1/28): a letter of an unknown word, uniform over 26 + ' + end */
#define TOKEN_PRUNE 8.0f    /* tokens this far (ln) below a frame's best label, blank included, are not tried */
#define NEG_INF (-INFINITY)

typedef struct {
    float pb, pnb;          /* ln P of the prefix's alignments ending in blank / in its last token */
    float lm;               /* ln P_lm of the words completed so far */
    int n_words;
    uint64_t hash;          /* of the whole prefix since the stream began */
    int last;               /* the prefix's last token, -1 when empty */
    int last_frame;         /* frame where that token was emitted */
    int ctx[ES_LM_MAX_ORDER];
    int n_ctx;              /* language-model context: the last words, oldest first */
    int word_len;           /* bytes of the word in progress (0: none) */
    int node;               /* its node in the LM's trie; -1 once it cannot be a known word */
    float unk_lm;           /* ln P_lm(<unk> | ctx), NAN until first needed */
    int n_tail;
    es_token *tail;         /* tokens not yet settled, tail_cap of room */
} hyp;

/* A way to extend a hypothesis by one frame: stay (token -1) or add a token. */
typedef struct {
    int parent, token;
    hyp state;   /* the prefix after the token (its tail is the parent's: copied when kept) */
    size_t slot; /* its slot in the hash table, cleared before the next frame */
} candidate;

/* A candidate's place in the ranking: by score, best first; ties go to the earlier candidate,
   so the search is deterministic. */
typedef struct {
    float score;
    int index;
} ranked;

struct es_ctc_beam {
    const es_lm *lm;
    es_beam_params p;
    int V1, blank;
    unsigned char *starts_word; /* per token: its piece begins with U+2581 */
    const char **text;          /* per token: its piece without the mark */
    int *text_len;
    hyp *hyps, *next;
    int n_hyps;
    es_token *tail_store;       /* 2 x beam x tail_cap */
    int tail_cap;
    candidate *cands;
    int n_cands, cands_cap;
    int *table;                 /* candidate index + 1 by hash, table_mask + 1 slots */
    size_t table_mask;
    ranked *order;              /* candidates ranked */
    int *tokens;                /* this frame's tokens worth trying */
    int *ref_ids;               /* keep_agreeing's copy of the reference tokens */
    es_token *settled;          /* what the last call settled */
    int n_settled, settled_cap;
};

static float lse(float a, float b)
{
    if (a == NEG_INF)
        return b;
    if (b == NEG_INF)
        return a;
    return a > b ? a + log1pf(expf(b - a)) : b + log1pf(expf(a - b));
}

static uint64_t extend_hash(uint64_t h, int token)
{
    h = (h ^ (uint64_t)(token + 1)) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

es_beam_params es_beam_default_params(void)
{
    es_beam_params p = {.beam = 128, .lm_weight = 0.6f, .word_bonus = 0.5f, .silence_frames = 8,
                        .max_delay_frames = 50};
    return p;
}

void es_ctc_beam_free(es_ctc_beam *b)
{
    if (!b)
        return;
    free(b->starts_word);
    free(b->text);
    free(b->text_len);
    free(b->hyps);
    free(b->next);
    free(b->tail_store);
    free(b->cands);
    free(b->table);
    free(b->order);
    free(b->tokens);
    free(b->ref_ids);
    free(b->settled);
    free(b);
}

static void reset_hyp(es_ctc_beam *b, hyp *h)
{
    es_token *tail = h->tail;
    memset(h, 0, sizeof *h);
    h->tail = tail;
    h->pb = 0.0f;
    h->pnb = NEG_INF;
    h->last = -1;
    h->last_frame = -1;
    h->unk_lm = NAN;
    if (b->lm) {
        h->ctx[0] = es_lm_bos(b->lm);
        h->n_ctx = 1;
    }
}

es_ctc_beam *es_ctc_beam_create(const es_model *m, const es_lm *lm, const es_beam_params *params)
{
    es_beam_params p = params ? *params : es_beam_default_params();
    if (p.beam < 1 || p.beam > 1024 || p.max_delay_frames < 1 || p.max_delay_frames > 100000 ||
        p.silence_frames < 1 || !isfinite(p.lm_weight) || !isfinite(p.word_bonus))
        return NULL;
    es_ctc_beam *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->lm = lm;
    b->p = p;
    b->V1 = m->n_vocab + 1;
    b->blank = m->n_vocab;
    /* a tail holds at most one token per frame of the delay window, plus the frame being added */
    b->tail_cap = p.max_delay_frames + 2;
    int K = p.beam < m->n_vocab ? p.beam : m->n_vocab; /* tokens tried per frame */
    b->cands_cap = p.beam * (K + 2);
    size_t slots = 16;
    while (slots < 2 * (size_t)b->cands_cap)
        slots *= 2;
    b->table_mask = slots - 1;
    b->starts_word = calloc((size_t)m->n_vocab, 1);
    b->text = calloc((size_t)m->n_vocab, sizeof *b->text);
    b->text_len = calloc((size_t)m->n_vocab, sizeof *b->text_len);
    b->hyps = calloc((size_t)p.beam, sizeof *b->hyps);
    b->next = calloc((size_t)p.beam, sizeof *b->next);
    b->tail_store = calloc((size_t)2 * p.beam * b->tail_cap, sizeof *b->tail_store);
    b->cands = calloc((size_t)b->cands_cap, sizeof *b->cands);
    b->table = calloc(slots, sizeof *b->table);
    b->order = calloc((size_t)b->cands_cap, sizeof *b->order);
    b->tokens = calloc((size_t)m->n_vocab, sizeof *b->tokens);
    b->ref_ids = calloc((size_t)b->tail_cap, sizeof *b->ref_ids);
    b->settled_cap = b->tail_cap + 16;
    b->settled = calloc((size_t)b->settled_cap, sizeof *b->settled);
    if (!b->starts_word || !b->text || !b->text_len || !b->hyps || !b->next || !b->tail_store ||
        !b->cands || !b->table || !b->order || !b->tokens || !b->ref_ids || !b->settled) {
        es_ctc_beam_free(b);
        return NULL;
    }
    for (int v = 0; v < m->n_vocab; v++) {
        const char *piece = m->vocab && m->vocab[v] ? m->vocab[v] : "";
        b->starts_word[v] = strncmp(piece, WS, WS_LEN) == 0;
        b->text[v] = piece + (b->starts_word[v] ? WS_LEN : 0);
        b->text_len[v] = (int)strlen(b->text[v]);
    }
    for (int i = 0; i < p.beam; i++) {
        b->hyps[i].tail = b->tail_store + (size_t)i * b->tail_cap;
        b->next[i].tail = b->tail_store + (size_t)(p.beam + i) * b->tail_cap;
    }
    reset_hyp(b, &b->hyps[0]);
    b->n_hyps = 1;
    return b;
}

/* The LM word id of h's word in progress (<unk> when it is none of the model's words). */
static int word_id(const es_ctc_beam *b, const hyp *h)
{
    int id = es_lm_trie_word(b->lm, h->node);
    return id >= 0 ? id : es_lm_unk(b->lm);
}

/* Ends h's word in progress: scores it (unless it was charged as unknown while spelled) and
   moves it into the LM context. */
static void end_word(const es_ctc_beam *b, hyp *h)
{
    if (h->word_len == 0)
        return;
    if (b->lm) {
        int id = word_id(b, h);
        if (h->node >= 0) {
            h->lm += es_lm_score(b->lm, h->ctx, h->n_ctx, id);
            if (id == es_lm_unk(b->lm)) /* a prefix of known words, but no word itself */
                h->lm += OOV_LETTER * (float)h->word_len;
        }
        int keep = es_lm_order(b->lm) - 1;
        if (keep < 1)
            keep = 1;
        if (h->n_ctx >= keep) {
            memmove(h->ctx, h->ctx + (h->n_ctx - keep + 1), sizeof(int) * (size_t)(keep - 1));
            h->n_ctx = keep - 1;
        }
        h->ctx[h->n_ctx++] = id;
        h->unk_lm = NAN;
    }
    h->n_words++;
    h->word_len = 0;
    h->node = 0;
}

/* ln P_lm(<unk> | h's context), looked up once per context: hypotheses inherit it from the
   hypothesis they extend. Charging a letter that leaves the vocabulary needs it, and nearly every
   unlikely letter a frame offers does; looking it up anew each time was a third of the search. */
static float unk_score(const es_ctc_beam *b, hyp *h)
{
    if (isnan(h->unk_lm))
        h->unk_lm = es_lm_score(b->lm, h->ctx, h->n_ctx, es_lm_unk(b->lm));
    return h->unk_lm;
}

/* Spells one more byte of h's word. */
static void add_letter(const es_ctc_beam *b, hyp *h, unsigned char c)
{
    h->word_len++;
    if (!b->lm)
        return;
    if (h->node < 0) {
        h->lm += OOV_LETTER;
        return;
    }
    h->node = es_lm_trie_next(b->lm, h->node, c);
    if (h->node < 0) /* no known word starts like this: charge it as unknown, now */
        h->lm += unk_score(b, h) + OOV_LETTER * (float)h->word_len;
}

/* h extended by token v (everything but the tail and the probabilities). */
static void add_token(const es_ctc_beam *b, hyp *h, int v, int frame)
{
    if (b->starts_word[v])
        end_word(b, h);
    for (int i = 0; i < b->text_len[v]; i++)
        add_letter(b, h, (unsigned char)b->text[v][i]);
    h->last = v;
    h->last_frame = frame;
}

/* True when h's last token is a bare word-start piece ("▁" alone) after some word, and no
   letters came after it: the text so far ends in a space. Such a hypothesis may not start
   another word (that would be a second space, which the LM cannot charge for) and does not read
   as finished. Before the first word the marks are harmless: the text drops its leading ones. */
static int awaits_letters(const es_ctc_beam *b, const hyp *h)
{
    return h->n_words > 0 && h->last >= 0 && b->starts_word[h->last] && h->word_len == 0;
}

static float hyp_score(const es_ctc_beam *b, const hyp *h)
{
    return lse(h->pb, h->pnb) + b->p.lm_weight * h->lm + b->p.word_bonus * (float)h->n_words;
}

/* The score h would have if its word in progress (and, with_eos, the sentence) ended here. */
static float closing_score(const es_ctc_beam *b, const hyp *h, int with_eos)
{
    if (with_eos && awaits_letters(b, h)) /* a trailing space: any other reading wins */
        return NEG_INF;
    hyp t = *h;
    end_word(b, &t);
    float s = hyp_score(b, &t);
    if (with_eos && b->lm)
        s += b->p.lm_weight * es_lm_score(b->lm, t.ctx, t.n_ctx, es_lm_eos(b->lm));
    return s;
}

/* The candidate for prefix `hash`, created from (parent, token) when new; NULL when full. */
static candidate *candidate_for(es_ctc_beam *b, uint64_t hash, int parent, int token, int frame)
{
    size_t i = (size_t)hash & b->table_mask;
    for (; b->table[i]; i = (i + 1) & b->table_mask)
        if (b->cands[b->table[i] - 1].state.hash == hash)
            return &b->cands[b->table[i] - 1];
    if (b->n_cands == b->cands_cap)
        return NULL;
    candidate *c = &b->cands[b->n_cands];
    c->parent = parent;
    c->token = token;
    c->slot = i;
    c->state = b->hyps[parent];
    c->state.hash = hash;
    c->state.pb = c->state.pnb = NEG_INF;
    if (token >= 0)
        add_token(b, &c->state, token, frame);
    b->table[i] = ++b->n_cands;
    return c;
}

/* a ranks before b */
static int ranks_before(ranked a, ranked b)
{
    return a.score > b.score || (a.score == b.score && a.index < b.index);
}

static int compare_ranked(const void *x, const void *y)
{
    ranked a = *(const ranked *)x, b = *(const ranked *)y;
    return ranks_before(a, b) ? -1 : ranks_before(b, a);
}

/* Moves the k best of r[0..n) to the front, in no particular order (Hoare's selection). */
static void select_best(ranked *r, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        ranked pivot = r[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (ranks_before(r[i], pivot))
                i++;
            while (ranks_before(pivot, r[j]))
                j--;
            if (i <= j) {
                ranked t = r[i];
                r[i++] = r[j];
                r[j--] = t;
            }
        }
        /* now r[lo..j] rank before or with the pivot, r[i..hi] after or with it */
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

/* Ranks the candidates into b->order, best first, keeping the top `beam`. Returns how many were
   kept. Selecting the top `beam` and sorting only those costs about n + beam log beam, where
   keeping a sorted list of the best while scanning cost up to n x beam: with 256 hypotheses and
   their thousands of candidates, that list was a sixth of the search's time. */
static int rank_candidates(es_ctc_beam *b)
{
    for (int i = 0; i < b->n_cands; i++) {
        float score = hyp_score(b, &b->cands[i].state);
        b->order[i] = (ranked){.score = isnan(score) ? NEG_INF : score, .index = i}; /* a total order */
    }
    int keep = b->n_cands < b->p.beam ? b->n_cands : b->p.beam;
    if (keep < b->n_cands)
        select_best(b->order, b->n_cands, keep);
    qsort(b->order, (size_t)keep, sizeof *b->order, compare_ranked);
    return keep;
}

/* Makes hypothesis `to` from a candidate: its state, and the parent's tail plus its token. */
static void materialize(es_ctc_beam *b, const candidate *c, hyp *to)
{
    const hyp *from = &b->hyps[c->parent];
    es_token *tail = to->tail;
    *to = c->state;
    to->tail = tail;
    memcpy(to->tail, from->tail, sizeof(es_token) * (size_t)from->n_tail);
    to->n_tail = from->n_tail;
    if (c->token >= 0)
        to->tail[to->n_tail++] = (es_token){.id = c->token, .frame = to->last_frame};
}

/* Appends n tokens to the settled list. */
static int settle(es_ctc_beam *b, const es_token *t, int n)
{
    if (b->n_settled + n > b->settled_cap) {
        int cap = (b->n_settled + n) * 2;
        es_token *p = realloc(b->settled, sizeof *p * (size_t)cap);
        if (!p)
            return -1;
        b->settled = p;
        b->settled_cap = cap;
    }
    memcpy(b->settled + b->n_settled, t, sizeof *t * (size_t)n);
    b->n_settled += n;
    return 0;
}

/* Keeps only the hypotheses that agree with hypothesis `ref` on its first k tail tokens and hold
   no other token from before min_frame. Order is kept, so the best stays first. */
static void keep_agreeing(es_ctc_beam *b, int ref, int k, int min_frame)
{
    for (int j = 0; j < k; j++)
        b->ref_ids[j] = b->hyps[ref].tail[j].id;
    int n = 0;
    for (int i = 0; i < b->n_hyps; i++) {
        hyp *h = &b->hyps[i];
        int agree = h->n_tail >= k && (h->n_tail == k || h->tail[k].frame >= min_frame);
        for (int j = 0; agree && j < k; j++)
            agree = h->tail[j].id == b->ref_ids[j];
        if (!agree)
            continue;
        if (i != n) { /* swap, so every slot keeps a tail buffer of its own */
            hyp t = b->hyps[n];
            b->hyps[n] = *h;
            *h = t;
        }
        n++;
    }
    b->n_hyps = n;
}

/* Settles the tail tokens every hypothesis shares (hypotheses are ranked, best first). */
static int settle_common(es_ctc_beam *b)
{
    hyp *best = &b->hyps[0];
    int k = best->n_tail;
    for (int i = 1; i < b->n_hyps && k > 0; i++) {
        const hyp *h = &b->hyps[i];
        int j = 0;
        while (j < k && j < h->n_tail && h->tail[j].id == best->tail[j].id)
            j++;
        k = j;
    }
    if (k == 0)
        return 0;
    if (settle(b, best->tail, k) != 0)
        return -1;
    for (int i = 0; i < b->n_hyps; i++) {
        hyp *h = &b->hyps[i];
        memmove(h->tail, h->tail + k, sizeof(es_token) * (size_t)(h->n_tail - k));
        h->n_tail -= k;
    }
    return 0;
}

/* One frame of the search; `frame` is its global index. */
static void search_frame(es_ctc_beam *b, const float *lp, int frame)
{
    /* the tokens worth trying: the frame's likeliest token, and any other close enough to the
       frame's best label (blank included), at most `beam` of them */
    int top = 0;
    for (int v = 1; v < b->blank; v++)
        if (lp[v] > lp[top])
            top = v;
    float floor_lp = (lp[b->blank] > lp[top] ? lp[b->blank] : lp[top]) - TOKEN_PRUNE;
    int K = 0, max_k = b->p.beam < b->blank ? b->p.beam : b->blank;
    for (int v = 0; v < b->blank; v++) {
        if (v != top && lp[v] < floor_lp)
            continue;
        if (K < max_k) {
            b->tokens[K++] = v;
            continue;
        }
        int worst = 0; /* full: replace the weakest if this one beats it */
        for (int j = 1; j < K; j++)
            if (lp[b->tokens[j]] < lp[b->tokens[worst]])
                worst = j;
        if (lp[v] > lp[b->tokens[worst]])
            b->tokens[worst] = v;
    }

    /* clear only the slots the last frame used: the whole table is far larger */
    for (int i = 0; i < b->n_cands; i++)
        b->table[b->cands[i].slot] = 0;
    b->n_cands = 0;
    /* staying first, so a prefix that exists keeps the frames of its own tokens */
    for (int i = 0; i < b->n_hyps; i++) {
        hyp *h = &b->hyps[i];
        if (b->lm && h->node >= 0) /* before any candidate copies h, so that all share one lookup */
            unk_score(b, h);
        candidate *c = candidate_for(b, h->hash, i, -1, frame);
        if (!c)
            continue; /* cannot happen: the table is sized for beam x (K + 2) */
        c->state.pb = lse(c->state.pb, lse(h->pb, h->pnb) + lp[b->blank]);
        if (h->last >= 0)
            c->state.pnb = lse(c->state.pnb, h->pnb + lp[h->last]);
    }
    for (int i = 0; i < b->n_hyps; i++) {
        const hyp *h = &b->hyps[i];
        float total = lse(h->pb, h->pnb);
        int no_new_word = awaits_letters(b, h);
        for (int k = 0; k < K; k++) {
            int v = b->tokens[k];
            if (no_new_word && b->starts_word[v])
                continue;
            candidate *c = candidate_for(b, extend_hash(h->hash, v), i, v, frame);
            if (!c)
                continue; /* cannot happen: the table is sized for beam x (K + 2) */
            /* a repeat of the last token is a new token only after a blank */
            c->state.pnb = lse(c->state.pnb, (v == h->last ? h->pb : total) + lp[v]);
        }
    }

    int keep = rank_candidates(b);
    for (int i = 0; i < keep; i++)
        materialize(b, &b->cands[b->order[i].index], &b->next[i]);
    hyp *t = b->hyps;
    b->hyps = b->next;
    b->next = t;
    b->n_hyps = keep;
}

/* Index of the best hypothesis if every one ended its word now (the first, when none reads as
   finished). */
static int best_closing(const es_ctc_beam *b, int with_eos)
{
    int best = 0;
    float s = closing_score(b, &b->hyps[0], with_eos);
    for (int i = 1; i < b->n_hyps; i++) {
        float si = closing_score(b, &b->hyps[i], with_eos);
        if (si > s) {
            s = si;
            best = i;
        }
    }
    return best;
}

int es_ctc_beam_step(es_ctc_beam *b, const float *logprobs, int n_frames, int first_frame, const es_token **settled)
{
    b->n_settled = 0;
    for (int t = 0; t < n_frames; t++) {
        int frame = first_frame + t;
        search_frame(b, logprobs + (size_t)t * b->V1, frame);
        const hyp *best = &b->hyps[0];
        if (frame - best->last_frame >= b->p.silence_frames) {
            /* a pause: the hypothesis that reads best as finished words wins, and no other
               keeps a token from before the pause began */
            int w = best_closing(b, 0);
            keep_agreeing(b, w, b->hyps[w].n_tail, frame - b->p.silence_frames + 1);
        }
        /* tokens older than the delay allows are the best's, or nobody's */
        int min_frame = frame - b->p.max_delay_frames + 1, k = 0;
        best = &b->hyps[0];
        while (k < best->n_tail && best->tail[k].frame < min_frame)
            k++;
        keep_agreeing(b, 0, k, min_frame);
        if (settle_common(b) != 0)
            return -1;
    }
    *settled = b->settled;
    return b->n_settled;
}

/* Settles the hypothesis that reads best as finished words (and, with_eos, a finished
   sentence), and drops all others, its own extensions too: nothing is left pending. */
static int settle_best(es_ctc_beam *b, int with_eos, const es_token **settled)
{
    b->n_settled = 0;
    int w = best_closing(b, with_eos);
    if (w != 0) { /* swap, so every slot keeps a tail buffer of its own */
        hyp t = b->hyps[0];
        b->hyps[0] = b->hyps[w];
        b->hyps[w] = t;
    }
    b->n_hyps = 1;
    if (settle_common(b) != 0)
        return -1;
    *settled = b->settled;
    return b->n_settled;
}

int es_ctc_beam_finish(es_ctc_beam *b, const es_token **settled)
{
    return settle_best(b, 1, settled);
}

int es_ctc_beam_settle(es_ctc_beam *b, const es_token **settled)
{
    return settle_best(b, 0, settled);
}

int es_ctc_beam_frontier(const es_ctc_beam *b, int frames)
{
    int f = frames;
    for (int i = 0; i < b->n_hyps; i++)
        if (b->hyps[i].n_tail > 0 && b->hyps[i].tail[0].frame < f)
            f = b->hyps[i].tail[0].frame;
    return f;
}

const es_token *es_ctc_beam_pending(const es_ctc_beam *b, int *n)
{
    *n = b->hyps[0].n_tail;
    return b->hyps[0].tail;
}
