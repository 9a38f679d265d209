/*
 * test_ctc_beam - the ARPA language model (asr/lm.c) and the CTC beam search (asr/ctc_beam.c).
 *
 *   test_ctc_beam BUILT_ARPA LEXICON_ARPA TMPDIR [GOLDEN_DIR MODELS_DIR]
 *
 * BUILT_ARPA is an LM that models/train/build_lm.py made from tests/data/lm_sentences.txt;
 * LEXICON_ARPA the same with tests/data/lm_lexicon.txt's words added (--lexicon);
 * TMPDIR is a scratch folder for hand-written files. Checked:
 *   - a hand-written ARPA: stored n-grams, back-off through one and two orders, unknown words,
 *     long contexts, and the vocabulary trie, against values worked out by hand;
 *   - malformed files (truncated, inconsistent counts, unknown words, bad numbers, too high an
 *     order, corrupt gzip) are refused with a message that names the problem;
 *   - the built LM is a proper distribution: for every context, P(w | context) sums to 1, with
 *     and without a lexicon; a lexicon word the text never used is a known word, and the search
 *     writes it where without the lexicon it writes the nearest word the text had;
 *   - without an LM and with a beam wider than the prefixes can be, the search finds exactly
 *     the labelling a brute-force sum over all alignments finds most probable;
 *   - the result does not depend on how the frames are cut into chunks; settled tokens only
 *     grow, none lands before the frontier (es_ctc_beam_frontier) reported earlier, and no
 *     pending token is older than the delay allows;
 *   - the LM changes the result where it should: a likelier word, and a word boundary greedy
 *     decoding loses;
 *   - through the engine (with the golden models): a missing LM or an RNNT-only model is
 *     refused; a CTC stream gives the same tokens however its audio is pushed, settles
 *     everything at the end, and its tokens' frames increase.
 * The last line printed is "N passed, N failed"; the exit status is non-zero on any failure.
 */
#include "check.h"
#include "decoder.h"
#include "earshot.h"
#include "wav16.h"
#include "lm.h"
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN10 2.302585092994046

static const char *tmpdir;

static char *write_file(const char *name, const char *text, size_t len)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static const char HAND_ARPA[] = "\\data\\\n"
                                "ngram 1=5\n"
                                "ngram 2=3\n"
                                "ngram 3=1\n"
                                "\n\\1-grams:\n"
                                "-99\t<s>\t-0.5\n"
                                "-1.0\t</s>\n"
                                "-2.0\t<unk>\n"
                                "-0.5\tthe\t-0.3\n"
                                "-0.7\tcat\t-0.2\n"
                                "\n\\2-grams:\n"
                                "-0.2\t<s> the\t-0.1\n"
                                "-0.4\tthe cat\t-0.25\n"
                                "-0.6\tcat </s>\n"
                                "\n\\3-grams:\n"
                                "-0.05\t<s> the cat\n"
                                "\n\\end\\\n";

static void check_score(const es_lm *lm, const int *ctx, int n, int w, double want_log10, const char *what)
{
    double got = es_lm_score(lm, ctx, n, w) / LN10;
    CHECK(fabs(got - want_log10) < 1e-5, "%s: log10 P = %.6f, want %.6f", what, got, want_log10);
}

static void test_hand_lm(void)
{
    printf("hand-written ARPA\n");
    char err[512] = "";
    const char *path = write_file("hand.arpa", HAND_ARPA, sizeof HAND_ARPA - 1);
    es_lm *lm = es_lm_load(path, err, sizeof err);
    CHECK(lm != NULL, "load: %s", err);
    if (!lm)
        return;
    int bos = es_lm_bos(lm), the = es_lm_word(lm, "the", 3), cat = es_lm_word(lm, "cat", 3);
    int eos = es_lm_eos(lm), unk = es_lm_unk(lm);
    CHECK(es_lm_order(lm) == 3 && es_lm_words(lm) == 5, "order %d, words %d", es_lm_order(lm), es_lm_words(lm));
    CHECK(es_lm_word(lm, "dog", 3) == unk, "an unknown word is <unk>");
    CHECK(es_lm_word(lm, "cats", 3) == cat, "the length given is respected");
    int c1[] = {bos, the};
    check_score(lm, c1, 2, cat, -0.05, "stored 3-gram");
    check_score(lm, c1, 2, the, -0.1 - 0.3 - 0.5, "back-off to the 1-gram");
    int c2[] = {the, cat};
    check_score(lm, c2, 2, eos, -0.25 - 0.6, "back-off to a 2-gram");
    check_score(lm, c1 + 1, 1, unk, -0.3 - 2.0, "unknown word");
    int c3[] = {cat, the};
    check_score(lm, c3, 2, cat, -0.4, "context never seen: no back-off weight");
    int c4[] = {cat, cat, bos, the};
    check_score(lm, c4, 4, cat, -0.05, "only the last order-1 words count");
    check_score(lm, NULL, 0, cat, -0.7, "no context");

    int n = es_lm_trie_next(lm, 0, 'c');
    n = es_lm_trie_next(lm, n, 'a');
    CHECK(n > 0 && es_lm_trie_word(lm, n) == -1, "\"ca\" is a prefix, not a word");
    n = es_lm_trie_next(lm, n, 't');
    CHECK(es_lm_trie_word(lm, n) == cat, "\"cat\" is the word cat");
    CHECK(es_lm_trie_next(lm, n, 's') == -1, "no word continues \"cat\" with s");
    CHECK(es_lm_trie_next(lm, 0, 'x') == -1 && es_lm_trie_next(lm, 0, '<') == -1,
          "no word starts with x, and markers are no words");
    CHECK(es_lm_trie_next(lm, -1, 'c') == -1, "nothing continues an unknown word");
    es_lm_free(lm);
}

static void expect_refused(const char *name, const char *text, size_t len, const char *phrase)
{
    char err[512] = "";
    const char *path = len ? write_file(name, text, len) : name;
    es_lm *lm = es_lm_load(path, err, sizeof err);
    CHECK(!lm && strstr(err, phrase), "%s: refused with \"%s\" (got %s: %s)", name, phrase, lm ? "a model" : "NULL",
          err);
    es_lm_free(lm);
}

/* HAND_ARPA with one piece replaced. */
static void expect_refused_edit(const char *name, const char *from, const char *to, const char *phrase)
{
    char text[2048];
    const char *at = strstr(HAND_ARPA, from);
    if (!at) {
        CHECK(0, "%s: the test's edit does not apply", name);
        return;
    }
    int n = snprintf(text, sizeof text, "%.*s%s%s", (int)(at - HAND_ARPA), HAND_ARPA, to, at + strlen(from));
    expect_refused(name, text, (size_t)n, phrase);
}

static void test_bad_lm(void)
{
    printf("malformed language models\n");
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/no-such.arpa", tmpdir);
    expect_refused(missing, NULL, 0, "cannot open");
    expect_refused("text.arpa", "hello\nworld\n", 12, "no \\data\\");
    expect_refused_edit("short.arpa", "-0.7\tcat\t-0.2\n\n", "", "the 1-gram section ends before its 5 entries");
    expect_refused_edit("fewer.arpa", "-0.7\tcat\t-0.2\n", "", "promises 5 1-grams but the file has 4");
    size_t cut = (size_t)(strstr(HAND_ARPA, "-0.5\tthe") - HAND_ARPA);
    expect_refused("truncated.arpa", HAND_ARPA, cut, "promises 5 1-grams but the file has 3");
    expect_refused_edit("noend.arpa", "\\end\\\n", "", "no \\end\\");
    expect_refused_edit("unknown.arpa", "-0.6\tcat </s>", "-0.6\tdog </s>", "\"dog\" has no 1-gram");
    expect_refused_edit("number.arpa", "-0.4\tthe cat", "x.4\tthe cat", "not a log10 probability");
    expect_refused_edit("positive.arpa", "-0.4\tthe cat", "0.4\tthe cat", "not a log10 probability");
    expect_refused_edit("fields.arpa", "-0.05\t<s> the cat", "-0.05\t<s> the", "needs a log-probability, 3 words");
    expect_refused_edit("twice.arpa", "-0.7\tcat\t-0.2", "-0.7\tthe\t-0.2", "\"the\" is listed twice");
    expect_refused_edit("order.arpa", "ngram 3=1\n", "ngram 3=1\nngram 4=1\nngram 5=1\nngram 6=1\nngram 7=1\n",
                        "beyond the supported order");
    expect_refused_edit("huge.arpa", "ngram 2=3", "ngram 2=99999999999", "positive count");
    /* a header may lie: memory follows what the file holds (under ASan, a 10 GB table fails) */
    expect_refused_edit("liar.arpa", "ngram 2=3", "ngram 2=300000000", "promises 300000000 2-grams but the file has 3");
    expect_refused_edit("nobos.arpa", "-99\t<s>", "-99\t<S>", "\"<s>\" has no 1-gram");
    /* a gzip header followed by garbage: zlib must report it, not crash */
    static const char bad_gz[] = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-garbage-garbage";
    char err[512] = "";
    es_lm *lm = es_lm_load(write_file("bad.arpa.gz", bad_gz, sizeof bad_gz - 1), err, sizeof err);
    CHECK(!lm && err[0], "corrupt gzip refused: %s", err);
    es_lm_free(lm);
}

/* The built LM must be a distribution over the next word for any context. */
static void test_built_lm(const char *path)
{
    printf("LM built by build_lm.py: %s\n", path);
    char err[512] = "";
    es_lm *lm = es_lm_load(path, err, sizeof err);
    CHECK(lm != NULL, "load %s: %s", path, err);
    if (!lm)
        return;
    CHECK(es_lm_order(lm) == 3, "order %d", es_lm_order(lm));
    int bos = es_lm_bos(lm), unk = es_lm_unk(lm);
    const char *contexts[][2] = {{NULL, NULL},     {"<s>", NULL},   {"<s>", "the"}, {"the", "cat"},
                                 {"cat", "sat"},   {"on", "the"},   {"a", "red"},   {"red", "hat"},
                                 {"<unk>", "the"}, {"zebra", "ate"}, {"the", "old"}};
    for (size_t c = 0; c < sizeof contexts / sizeof contexts[0]; c++) {
        int ctx[2], n = 0;
        for (int k = 0; k < 2; k++)
            if (contexts[c][k])
                ctx[n++] = es_lm_word(lm, contexts[c][k], strlen(contexts[c][k]));
        double sum = 0.0;
        for (int w = 0; w < es_lm_words(lm); w++)
            if (w != bos)
                sum += exp(es_lm_score(lm, ctx, n, w));
        CHECK(fabs(sum - 1.0) < 1e-3, "context \"%s %s\": probabilities sum to %.6f", contexts[c][0] ? contexts[c][0] : "",
              contexts[c][1] ? contexts[c][1] : "", sum);
    }
    int the = es_lm_word(lm, "the", 3), cat = es_lm_word(lm, "cat", 3), fish = es_lm_word(lm, "fish", 4);
    int ctx[] = {bos, the};
    CHECK(cat != unk && es_lm_score(lm, ctx, 2, cat) > es_lm_score(lm, ctx, 2, fish),
          "\"the cat\" is likelier than \"the fish\" at the start");
    es_lm_free(lm);
}

/* ---- the search ---- */

static es_model fake_model(const char **pieces, int n)
{
    es_model m;
    memset(&m, 0, sizeof m);
    m.n_vocab = n;
    m.vocab = (char **)pieces;
    return m;
}

static unsigned rng_state = 12345;
static double uniform(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((rng_state >> 8) & 0xffffff) / 16777216.0;
}

/* T x (V+1) random log-probs (a softmax of spread-out logits). */
static void random_log_probs(float *lp, int T, int V1, double spread)
{
    for (int t = 0; t < T; t++) {
        double z = 0.0, logit[64];
        for (int v = 0; v < V1; v++) {
            logit[v] = spread * (uniform() - 0.5);
            z += exp(logit[v]);
        }
        for (int v = 0; v < V1; v++)
            lp[t * V1 + v] = (float)(logit[v] - log(z));
    }
}

/* The labelling with the highest total probability over all its alignments (exhaustive). */
static int brute_force_best(const float *lp, int T, int V1, int *best, int max)
{
    int blank = V1 - 1, n_paths = 1, best_n = 0;
    for (int t = 0; t < T; t++)
        n_paths *= V1;
    /* labelling -> probability, in a small list (few distinct labellings at this size) */
    enum { MAXL = 8192 };
    static int lab[MAXL][16], lab_n[MAXL];
    static double prob[MAXL];
    int n_lab = 0;
    for (int p = 0; p < n_paths; p++) {
        int seq[16], n = 0, prev = -1, code = p;
        double lpp = 0.0;
        for (int t = 0; t < T; t++) {
            int v = code % V1;
            code /= V1;
            lpp += lp[t * V1 + v];
            if (v != blank && v != prev)
                seq[n++] = v;
            prev = v;
        }
        int k = 0;
        while (k < n_lab && !(lab_n[k] == n && memcmp(lab[k], seq, sizeof(int) * (size_t)n) == 0))
            k++;
        if (k == n_lab) {
            if (n_lab == MAXL)
                return -1;
            memcpy(lab[k], seq, sizeof(int) * (size_t)n);
            lab_n[k] = n;
            prob[k] = 0.0;
            n_lab++;
        }
        prob[k] += exp(lpp);
    }
    int arg = 0;
    for (int k = 1; k < n_lab; k++)
        if (prob[k] > prob[arg])
            arg = k;
    best_n = lab_n[arg] < max ? lab_n[arg] : max;
    memcpy(best, lab[arg], sizeof(int) * (size_t)best_n);
    return best_n;
}

/* Runs a whole stream through a search, chunk frames at a time; returns the settled tokens
   (malloc'd) and checks the streaming promises on the way. */
static es_token *run_search(es_ctc_beam *b, const float *lp, int T, int V1, int chunk, int max_delay, int *n_out,
                            int *promises_kept)
{
    es_token *all = malloc(sizeof *all * (size_t)(T + 1));
    int n = 0, frontier = 0;
    *promises_kept = 1;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int len = T - t0 < chunk ? T - t0 : chunk;
        const es_token *s;
        int got = es_ctc_beam_step(b, lp + (size_t)t0 * V1, len, t0, &s);
        if (got < 0 || n + got > T) {
            *promises_kept = 0;
            break;
        }
        for (int i = 0; i < got; i++) /* nothing is settled before a frontier given earlier */
            if (s[i].frame < frontier)
                *promises_kept = 0;
        memcpy(all + n, s, sizeof *s * (size_t)got);
        n += got;
        frontier = es_ctc_beam_frontier(b, t0 + len);
        int np;
        const es_token *pend = es_ctc_beam_pending(b, &np);
        int last = t0 + len - 1;
        for (int i = 0; i < np; i++)
            if (pend[i].frame <= last - max_delay)
                *promises_kept = 0;
    }
    const es_token *s;
    int got = es_ctc_beam_finish(b, &s), left;
    for (int i = 0; i < got; i++)
        if (s[i].frame < frontier)
            *promises_kept = 0;
    if (got >= 0 && n + got <= T) {
        memcpy(all + n, s, sizeof *s * (size_t)got);
        n += got;
    } else {
        *promises_kept = 0;
    }
    es_ctc_beam_pending(b, &left);
    if (left != 0) /* the end settles everything */
        *promises_kept = 0;
    for (int i = 1; i < n; i++)
        if (all[i].frame <= all[i - 1].frame)
            *promises_kept = 0;
    *n_out = n;
    return all;
}

static void test_exact_search(void)
{
    printf("beam search without an LM = exhaustive search\n");
    const char *pieces[] = {"\xE2\x96\x81" "a", "\xE2\x96\x81" "b", "c"};
    es_model m = fake_model(pieces, 3);
    es_beam_params p = es_beam_default_params();
    p.beam = 1024;
    p.lm_weight = 0.0f;
    p.word_bonus = 0.0f;
    p.silence_frames = 1000;
    p.max_delay_frames = 1000;
    enum { T = 6, V1 = 4 };
    int agree = 0, trials = 40;
    for (int trial = 0; trial < trials; trial++) {
        float lp[T * V1];
        random_log_probs(lp, T, V1, 4.0);
        int want[16];
        int n_want = brute_force_best(lp, T, V1, want, 16);
        es_ctc_beam *b = es_ctc_beam_create(&m, NULL, &p);
        int n_got, kept;
        es_token *got = run_search(b, lp, T, V1, T, 1000, &n_got, &kept);
        int same = kept && n_got == n_want;
        for (int i = 0; same && i < n_got; i++)
            same = got[i].id == want[i];
        agree += same;
        free(got);
        es_ctc_beam_free(b);
    }
    CHECK(agree == trials, "%d of %d random 6-frame inputs decoded to the most probable labelling", agree, trials);
}

static void test_streaming(const char *lm_path)
{
    printf("streaming: chunking, settling, delay bound\n");
    const char *pieces[] = {"\xE2\x96\x81", "t", "h", "e", "c", "a"};
    es_model m = fake_model(pieces, 6);
    char err[512];
    es_lm *lm = es_lm_load(lm_path, err, sizeof err);
    CHECK(lm != NULL, "load: %s", err);
    es_beam_params p = es_beam_default_params();
    p.beam = 8;
    p.silence_frames = 3;
    p.max_delay_frames = 5;
    enum { T = 200, V1 = 7 };
    static float lp[T * V1];
    random_log_probs(lp, T, V1, 6.0);
    int chunks[] = {1, 4, 7, T};
    es_token *ref = NULL;
    int n_ref = 0;
    for (int c = 0; c < 4; c++) {
        es_ctc_beam *b = es_ctc_beam_create(&m, lm, &p);
        int n, kept;
        es_token *got = run_search(b, lp, T, V1, chunks[c], p.max_delay_frames, &n, &kept);
        CHECK(kept, "chunks of %d: settled tokens only grow, frames increase, none before the frontier given "
              "earlier, nothing pending beyond %d frames nor at the end",
              chunks[c], p.max_delay_frames);
        es_ctc_beam_free(b);
        if (c == 0) {
            ref = got;
            n_ref = n;
            CHECK(n > 20, "the random input decodes to %d tokens", n);
            continue;
        }
        CHECK(n == n_ref && memcmp(got, ref, sizeof *got * (size_t)n) == 0,
              "chunks of %d give the same tokens and frames as chunks of 1 (%d vs %d tokens)", chunks[c], n, n_ref);
        free(got);
    }
    free(ref);

    /* speech, then a pause: within silence_frames of the pause the decoding is final (the
       frontier catches up), long before the delay bound would force it */
    p.max_delay_frames = 100;
    enum { SPEECH = 60, PAUSE = 40 };
    static float lp2[(SPEECH + PAUSE) * V1];
    random_log_probs(lp2, SPEECH, V1, 6.0);
    for (int t = SPEECH; t < SPEECH + PAUSE; t++)
        for (int v = 0; v < V1; v++)
            lp2[t * V1 + v] = v == V1 - 1 ? logf(0.97f) : logf(0.03f / (V1 - 1));
    es_ctc_beam *b = es_ctc_beam_create(&m, lm, &p);
    const es_token *settled;
    es_ctc_beam_step(b, lp2, SPEECH + PAUSE, 0, &settled);
    int frontier = es_ctc_beam_frontier(b, SPEECH + PAUSE);
    CHECK(frontier >= SPEECH + PAUSE - p.silence_frames, "after a pause the decoding is final up to frame %d of %d",
          frontier, SPEECH + PAUSE);
    es_ctc_beam_free(b);
    es_lm_free(lm);
}

/* Frames given as (token, probability) pairs; the rest of each frame's mass goes to blank. */
static void frames_from(float *lp, int V1, const float (*spec)[4], int T)
{
    for (int t = 0; t < T; t++) {
        float rest = 1.0f;
        for (int v = 0; v < V1; v++)
            lp[t * V1 + v] = -30.0f;
        for (int k = 0; k < 4; k += 2)
            if (spec[t][k] >= 0) {
                lp[t * V1 + (int)spec[t][k]] = logf(spec[t][k + 1]);
                rest -= spec[t][k + 1];
            }
        lp[t * V1 + V1 - 1] = logf(rest > 1e-6f ? rest : 1e-6f);
    }
}

static char *decode_text(es_model *m, const es_lm *lm, float weight, const float *lp, int T)
{
    es_beam_params p = es_beam_default_params();
    p.lm_weight = weight;
    p.word_bonus = 0.0f;
    es_ctc_beam *b = es_ctc_beam_create(m, lm, &p);
    int n, kept;
    es_token *t = run_search(b, lp, T, m->n_vocab + 1, T, p.max_delay_frames, &n, &kept);
    char *text = es_tokens_to_text(m, t, n);
    free(t);
    es_ctc_beam_free(b);
    return text;
}

/* Checks that the search, given these frames, writes `want`. */
static void check_decodes(es_model *m, const es_lm *lm, float weight, const float *lp, int T, const char *want,
                          const char *what)
{
    char *text = decode_text(m, lm, weight, lp, T);
    CHECK(text && !strcmp(text, want), "%s: \"%s\", want \"%s\"", what, text ? text : "", want);
    free(text);
}

static void test_lm_decides(void)
{
    printf("the LM changes what it should\n");
    char err[512] = "";
    es_lm *lm = es_lm_load(write_file("hand2.arpa", HAND_ARPA, sizeof HAND_ARPA - 1), err, sizeof err);
    CHECK(lm != NULL, "load: %s", err);
    if (!lm)
        return;
    /* whole-word pieces: the acoustics slightly prefer "hat", which the LM does not know */
    const char *words[] = {"\xE2\x96\x81the", "\xE2\x96\x81" "cat", "\xE2\x96\x81hat"};
    es_model m = fake_model(words, 3);
    const float spec[][4] = {{0, 0.9f, -1, 0}, {-1, 0, -1, 0}, {2, 0.5f, 1, 0.4f}, {-1, 0, -1, 0}};
    float lp[4 * 4];
    frames_from(lp, 4, spec, 4);
    check_decodes(&m, lm, 0.0f, lp, 4, "the hat", "weight 0");
    check_decodes(&m, lm, 1.0f, lp, 4, "the cat", "weight 1");

    /* letters and a separate space piece: greedy drops the weak second space and glues
       "the" to "cat"; the LM knows "thecat" is no word and keeps the space */
    const char *letters[] = {"\xE2\x96\x81", "t", "h", "e", "c", "a"};
    es_model ml = fake_model(letters, 6);
    const float spec2[][4] = {{0, 0.9f, -1, 0}, {1, 0.9f, -1, 0}, {2, 0.9f, -1, 0}, {3, 0.9f, -1, 0},
                              {0, 0.3f, -1, 0}, {4, 0.9f, -1, 0}, {5, 0.9f, -1, 0}, {1, 0.9f, -1, 0}};
    float lp2[8 * 7];
    frames_from(lp2, 7, spec2, 8);
    check_decodes(&ml, lm, 0.0f, lp2, 8, "thecat", "weight 0");
    check_decodes(&ml, lm, 1.0f, lp2, 8, "the cat", "weight 1");

    /* bare word-start pieces the acoustics like where no letters follow: twice between "the" and
       "cat" (a blank between), once at the end, once before a pause. The LM cannot charge for
       an empty word, so only the search's rule keeps them from reading as extra spaces. */
    const float spec3[][4] = {{0, 0.9f, -1, 0}, {1, 0.9f, -1, 0}, {2, 0.9f, -1, 0}, {3, 0.9f, -1, 0},
                              {0, 0.9f, -1, 0}, {-1, 0, -1, 0}, {0, 0.9f, -1, 0}, {4, 0.9f, -1, 0},
                              {5, 0.9f, -1, 0}, {1, 0.9f, -1, 0}, {0, 0.9f, -1, 0}};
    float lp3[11 * 7];
    frames_from(lp3, 7, spec3, 11);
    check_decodes(&ml, lm, 0.0f, lp3, 11, "the cat", "weight 0, spaces the acoustics repeat");
    check_decodes(&ml, lm, 1.0f, lp3, 11, "the cat", "weight 1, spaces the acoustics repeat");
    enum { PAUSE_T = 5 + 12 + 4 };
    float lp4[PAUSE_T * 7];
    float spec4[PAUSE_T][4];
    for (int t = 0; t < PAUSE_T; t++)
        spec4[t][0] = -1, spec4[t][1] = 0, spec4[t][2] = -1, spec4[t][3] = 0;
    const int said[] = {0, 1, 2, 3, 0}, after[] = {0, 4, 5, 1}; /* "▁the▁", a pause, "▁cat" */
    for (int i = 0; i < 5; i++)
        spec4[i][0] = (float)said[i], spec4[i][1] = 0.9f;
    for (int i = 0; i < 4; i++)
        spec4[17 + i][0] = (float)after[i], spec4[17 + i][1] = 0.9f;
    frames_from(lp4, 7, (const float(*)[4])spec4, PAUSE_T);
    check_decodes(&ml, lm, 1.0f, lp4, PAUSE_T, "the cat", "a space before a pause");
    es_lm_free(lm);
}

/* Words of a lexicon (build_lm.py --lexicon) the text never used: "hats" and "birds" are there,
   "e-mail" and "Asunción" are not words of letters, "two words" is not one word. */
static void test_lexicon_lm(const char *plain_path, const char *lexicon_path)
{
    printf("LM built with a lexicon\n");
    char err[512] = "";
    es_lm *plain = es_lm_load(plain_path, err, sizeof err), *lex = es_lm_load(lexicon_path, err, sizeof err);
    CHECK(plain && lex, "load: %s", err);
    if (!plain || !lex) {
        es_lm_free(plain);
        es_lm_free(lex);
        return;
    }
    const char *added[] = {"hats", "birds", "zebra's"}, *not_added[] = {"e-mail", "email", "asunción", "two"};
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++) {
        int w = es_lm_word(lex, added[i], strlen(added[i]));
        CHECK(es_lm_word(plain, added[i], strlen(added[i])) == es_lm_unk(plain) && w != es_lm_unk(lex),
              "\"%s\" is known only with the lexicon", added[i]);
    }
    for (size_t i = 0; i < sizeof not_added / sizeof not_added[0]; i++)
        CHECK(es_lm_word(lex, not_added[i], strlen(not_added[i])) == es_lm_unk(lex), "\"%s\" is not added",
              not_added[i]);
    CHECK(es_lm_words(lex) == es_lm_words(plain) + 3, "%d words with the lexicon, %d without", es_lm_words(lex),
          es_lm_words(plain));
    /* built with --lexicon-weight 0.5: half the unseen <unk>'s share of the 1-grams' leftover */
    int hats = es_lm_word(lex, "hats", 4);
    double ratio = exp(es_lm_score(lex, NULL, 0, hats) - es_lm_score(lex, NULL, 0, es_lm_unk(lex)));
    CHECK(fabs(ratio - 0.5) < 1e-3, "P(hats) / P(<unk>) = %.4f, want 0.5", ratio);

    /* letters: "▁the▁hat" then a clear "s" over two frames. Without the lexicon "hats" is an
       unknown word and pays ln P(<unk>) plus a price per letter, more than the "s" is worth;
       with the lexicon it pays what a rare word pays, and the audio wins. */
    const char *letters[] = {"\xE2\x96\x81", "t", "h", "e", "a", "s"};
    es_model m = fake_model(letters, 6);
    const float spec[][4] = {{0, 0.9f, -1, 0}, {1, 0.9f, -1, 0}, {2, 0.9f, -1, 0}, {3, 0.9f, -1, 0}, {0, 0.9f, -1, 0},
                             {2, 0.9f, -1, 0}, {4, 0.9f, -1, 0}, {1, 0.9f, -1, 0}, {5, 0.95f, -1, 0}, {5, 0.95f, -1, 0}};
    float lp[10 * 7];
    frames_from(lp, 7, spec, 10);
    check_decodes(&m, plain, 1.0f, lp, 10, "the hat", "without the lexicon");
    check_decodes(&m, lex, 1.0f, lp, 10, "the hats", "with the lexicon");
    es_lm_free(plain);
    es_lm_free(lex);
}

static void test_bad_params(void)
{
    printf("search parameters\n");
    const char *pieces[] = {"a"};
    es_model m = fake_model(pieces, 1);
    es_beam_params p = es_beam_default_params();
    p.beam = 0;
    CHECK(es_ctc_beam_create(&m, NULL, &p) == NULL, "beam 0 refused");
    p = es_beam_default_params();
    p.max_delay_frames = 0;
    CHECK(es_ctc_beam_create(&m, NULL, &p) == NULL, "no delay refused");
    p = es_beam_default_params();
    p.lm_weight = NAN;
    CHECK(es_ctc_beam_create(&m, NULL, &p) == NULL, "a NaN weight refused");
}

/* The golden CTC audio through an engine with the LM, pushed in blocks of `block` samples. */
static es_token *engine_tokens(es_engine *e, const wav16 *w, size_t block, int *n, int *pending_left)
{
    char err[256];
    es_stream_params sp = es_stream_default_params(e);
    sp.decoder = ES_DECODER_CTC;
    es_stream *s = es_stream_create(e, &sp, err, sizeof err);
    if (!s)
        return NULL;
    for (size_t at = 0; at < w->n_samples; at += block) {
        size_t len = w->n_samples - at < block ? w->n_samples - at : block;
        es_stream_accept_audio(s, w->samples + at, len);
        while (es_stream_ready(s))
            es_engine_step(e, &s, 1, err, sizeof err);
    }
    es_stream_end_audio(s);
    while (es_stream_ready(s))
        es_engine_step(e, &s, 1, err, sizeof err);
    const es_token *t = es_stream_tokens(s, n);
    es_stream_pending_tokens(s, pending_left);
    es_token *copy = malloc(sizeof *copy * (size_t)(*n + 1));
    memcpy(copy, t, sizeof *copy * (size_t)*n);
    es_stream_free(s);
    return copy;
}

static void test_engine(const char *golden, const char *models, const char *lm_path)
{
    printf("the engine with a language model\n");
    char model[4096], audio[4096], err[512] = "";
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 1;
    ep.n_threads = 1;
    ep.lm_path = "/nonexistent/lm.arpa";
    snprintf(model, sizeof model, "%s/ctc_tiny.safetensors", models);
    es_engine *e = es_engine_create(model, &ep, err, sizeof err);
    CHECK(!e && strstr(err, "cannot open the language model"), "a missing LM is refused: %s", err);
    es_engine_free(e);
    ep.lm_path = lm_path;
    snprintf(model, sizeof model, "%s/rnnt_regular.safetensors", models);
    e = es_engine_create(model, &ep, err, sizeof err);
    CHECK(!e && strstr(err, "needs a model with a CTC decoder"), "an RNNT-only model is refused: %s", err);
    es_engine_free(e);
    ep.lm_beam = 0;
    snprintf(model, sizeof model, "%s/ctc_tiny.safetensors", models);
    e = es_engine_create(model, &ep, err, sizeof err);
    CHECK(!e && strstr(err, "beam must be"), "beam 0 is refused: %s", err);
    es_engine_free(e);

    ep.lm_beam = es_engine_default_params().lm_beam;
    e = es_engine_create(model, &ep, err, sizeof err);
    CHECK(e != NULL, "engine with the LM: %s", err);
    snprintf(audio, sizeof audio, "%s/ctc_tiny/audio.wav", golden);
    wav16 w;
    if (!e || wav16_load(audio, &w, err, sizeof err) != 0) {
        CHECK(0, "audio: %s", err);
        es_engine_free(e);
        return;
    }
    int n_all, n_small, left_all, left_small;
    es_token *all = engine_tokens(e, &w, w.n_samples, &n_all, &left_all);
    es_token *small = engine_tokens(e, &w, 1000, &n_small, &left_small);
    CHECK(all && small && n_all == n_small && memcmp(all, small, sizeof *all * (size_t)n_all) == 0,
          "one push and 1000-sample pushes give the same %d tokens", n_all);
    CHECK(left_all == 0 && left_small == 0, "nothing is pending at the end (%d, %d)", left_all, left_small);
    int increasing = 1;
    for (int i = 1; all && i < n_all; i++)
        increasing &= all[i].frame > all[i - 1].frame;
    CHECK(increasing, "token frames increase");
    es_engine_free(e);

    /* several streams in one step: their searches run in parallel, each on its own thread's
       scratch, and each must give what it gives alone. Each stream hears the audio from a
       different point, so a mix-up of streams or of scratch shows. */
    ep.max_streams = 4;
    ep.n_threads = 2;
    e = es_engine_create(model, &ep, err, sizeof err);
    CHECK(e != NULL, "engine with the LM, 4 streams, 2 threads: %s", err);
    wav16 part[4];
    es_token *alone[4] = {0};
    int n_alone[4] = {0}, left;
    for (int i = 0; i < 4; i++) {
        size_t skip = (size_t)i * 2400 < w.n_samples ? (size_t)i * 2400 : 0;
        part[i] = (wav16){.sample_rate = w.sample_rate, .n_samples = w.n_samples - skip, .samples = w.samples + skip};
        if (e)
            alone[i] = engine_tokens(e, &part[i], part[i].n_samples, &n_alone[i], &left);
    }
    CHECK(n_alone[0] != n_alone[3] ||
              (alone[0] && alone[3] && memcmp(alone[0], alone[3], sizeof *alone[0] * (size_t)n_alone[0]) != 0),
          "the first and last parts decode differently (%d and %d tokens)", n_alone[0], n_alone[3]);
    es_stream *s[4] = {0};
    es_stream_params sp = e ? es_stream_default_params(e) : (es_stream_params){0};
    sp.decoder = ES_DECODER_CTC;
    int made = 0;
    for (int i = 0; e && i < 4; i++)
        made += (s[i] = es_stream_create(e, &sp, err, sizeof err)) != NULL;
    CHECK(made == 4, "4 streams: %s", err);
    int steps_of_4 = 0;
    if (made == 4) {
        const size_t block = 4000;
        for (size_t at = 0; at < w.n_samples + block; at += block) {
            for (int i = 0; i < 4; i++) {
                if (at < part[i].n_samples)
                    es_stream_accept_audio(s[i], part[i].samples + at,
                                           part[i].n_samples - at < block ? part[i].n_samples - at : block);
                else
                    es_stream_end_audio(s[i]);
            }
            for (;;) {
                es_stream *ready[4];
                int n = 0;
                for (int i = 0; i < 4; i++)
                    if (es_stream_ready(s[i]))
                        ready[n++] = s[i];
                if (n == 0)
                    break;
                steps_of_4 += n == 4;
                if (es_engine_step(e, ready, n, err, sizeof err) != 0) {
                    CHECK(0, "step: %s", err);
                    break;
                }
            }
        }
        for (int i = 0; i < 4; i++) {
            int n;
            const es_token *t = es_stream_tokens(s[i], &n);
            CHECK(alone[i] && n == n_alone[i] && memcmp(t, alone[i], sizeof *t * (size_t)n) == 0,
                  "stream %d of 4 stepped together: the %d tokens it gives alone (got %d)", i, n_alone[i], n);
        }
    }
    CHECK(steps_of_4 > 0, "the streams shared %d steps", steps_of_4);
    for (int i = 0; i < 4; i++) {
        es_stream_free(s[i]);
        free(alone[i]);
    }
    free(all);
    free(small);
    wav16_free(&w);
    es_engine_free(e);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: test_ctc_beam BUILT_ARPA LEXICON_ARPA TMPDIR [GOLDEN_DIR MODELS_DIR]\n");
        return 2;
    }
    tmpdir = argv[3];
    test_hand_lm();
    test_bad_lm();
    test_built_lm(argv[1]);
    test_built_lm(argv[2]);
    test_lexicon_lm(argv[1], argv[2]);
    test_exact_search();
    test_streaming(argv[1]);
    test_lm_decides();
    test_bad_params();
    if (argc == 6)
        test_engine(argv[4], argv[5], argv[1]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
