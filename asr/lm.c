/*
 * lm.c - the ARPA n-gram language model (see lm.h).
 *
 * Words are numbered in the order of the 1-gram section, and a hash table maps their text to
 * that id. Each order n has a table of its own holding exactly n ids per entry (a trigram
 * model's bigrams, its largest order by far, then take 16 bytes each rather than the highest
 * order's width) with a hash index over the id sequences; the 1-grams need no index, since
 * entry k is always word k. A back-off query is at most 2 x order lookups.
 * The tables grow with what the file holds; the counts in its \data\ header are only checked
 * against the sections as they are read, so a truncated or inconsistent file is refused, not
 * half-used, and a header that claims billions of n-grams costs nothing (a fuzzer's find).
 */
#include "lm.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define LN10 2.302585092994046f
/* ln P of a word the model does not know, when the file has no <unk> of its own */
#define UNK_FLOOR (-7.0f * LN10)
/* the most n-grams one file may declare: beyond this a "count" is surely corruption (the
   tables are sized by what the file holds, so a smaller false count costs nothing) */
#define MAX_NGRAMS 400000000L

/* The n-grams of one order, n word ids each (see the top of the file). */
typedef struct {
    int n;
    int32_t *ids; /* n per entry; none for n = 1, whose entry k is word k */
    float *logp, *bow; /* natural logs; bow is 0 where the file gives none */
    size_t count, cap;
    uint32_t *index; /* entry + 1, 0 = empty */
    size_t mask;
} gram_table;

struct es_lm {
    int order;
    /* words */
    char **words;
    int n_words, words_cap;
    uint32_t *word_index; /* id + 1, 0 = empty */
    size_t word_mask;
    int unk, bos, eos;
    gram_table grams[ES_LM_MAX_ORDER + 1]; /* [n] for n = 1 .. order */
    /* The vocabulary trie in compressed rows: node k's edges are first[k] .. first[k + 1] - 1,
       each a byte and the child it leads to. Nodes have few children (letters), so a scan of
       their bytes is as quick as a hash probe and far smaller. */
    uint32_t *first;
    unsigned char *edge_byte;
    int32_t *edge_child;
    int32_t *node_word; /* the word a node ends, or -1 */
    int n_nodes;
};

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t hash_text(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return mix64(h);
}

static uint64_t hash_ids(const int32_t *w, int n)
{
    uint64_t h = (uint64_t)n;
    for (int i = 0; i < n; i++)
        h = mix64(h * 31 + (uint32_t)w[i]);
    return h;
}

/* A power of two at least twice n, so the tables stay at most half full. */
static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s *= 2;
    return s;
}

static int find_word(const es_lm *lm, const char *s, size_t n)
{
    for (size_t i = hash_text(s, n) & lm->word_mask;; i = (i + 1) & lm->word_mask) {
        uint32_t k = lm->word_index[i];
        if (!k)
            return -1;
        const char *w = lm->words[k - 1];
        if (strlen(w) == n && memcmp(w, s, n) == 0)
            return (int)k - 1;
    }
}

/* The entry of an n-gram in its table, or -1. */
static long find_gram(const es_lm *lm, const int32_t *w, int n)
{
    const gram_table *t = &lm->grams[n];
    if (n == 1)
        return w[0] >= 0 && (size_t)w[0] < t->count ? w[0] : -1;
    if (!t->index)
        return -1;
    for (size_t i = hash_ids(w, n) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t k = t->index[i];
        if (!k)
            return -1;
        if (memcmp(t->ids + (size_t)(k - 1) * (size_t)n, w, sizeof(int32_t) * (size_t)n) == 0)
            return (long)k - 1;
    }
}

/* Rebuilds a hash index at twice its size once it is half full (entries keep their ids). */
static int grow_word_index(es_lm *lm)
{
    if (2 * (size_t)(lm->n_words + 1) <= lm->word_mask + 1)
        return 0;
    size_t mask = (lm->word_mask + 1) * 2 - 1;
    uint32_t *index = calloc(mask + 1, sizeof *index);
    if (!index)
        return -1;
    for (int id = 0; id < lm->n_words; id++) {
        size_t i = hash_text(lm->words[id], strlen(lm->words[id])) & mask;
        while (index[i])
            i = (i + 1) & mask;
        index[i] = (uint32_t)id + 1;
    }
    free(lm->word_index);
    lm->word_index = index;
    lm->word_mask = mask;
    return 0;
}

static int grow_gram_index(gram_table *t)
{
    if (t->index && 2 * (t->count + 1) <= t->mask + 1)
        return 0;
    size_t mask = t->index ? (t->mask + 1) * 2 - 1 : table_size(16) - 1;
    if (mask >= UINT32_MAX)
        return -1;
    uint32_t *index = calloc(mask + 1, sizeof *index);
    if (!index)
        return -1;
    for (size_t k = 0; k < t->count; k++) {
        size_t i = hash_ids(t->ids + k * (size_t)t->n, t->n) & mask;
        while (index[i])
            i = (i + 1) & mask;
        index[i] = (uint32_t)k + 1;
    }
    free(t->index);
    t->index = index;
    t->mask = mask;
    return 0;
}

/* Gives an n-gram table room for cap entries. */
static int reserve_grams(gram_table *t, size_t cap)
{
    int32_t *ids = t->n == 1 ? NULL : realloc(t->ids, sizeof *ids * (size_t)t->n * cap);
    if (ids)
        t->ids = ids;
    float *logp = ids || t->n == 1 ? realloc(t->logp, sizeof *logp * cap) : NULL;
    if (logp)
        t->logp = logp;
    float *bow = logp ? realloc(t->bow, sizeof *bow * cap) : NULL;
    if (bow)
        t->bow = bow;
    if (!bow)
        return -1;
    t->cap = cap;
    return 0;
}

/* Adds a word (it must be new); returns its id, or -1 when out of memory. The tables grow
   with what the file really holds, not with the counts its header claims. */
static int add_word(es_lm *lm, const char *s, size_t n)
{
    if (lm->n_words == lm->words_cap) {
        int cap = lm->words_cap * 2;
        char **w = cap > lm->words_cap ? realloc(lm->words, sizeof *w * (size_t)cap) : NULL;
        if (!w)
            return -1;
        lm->words = w;
        lm->words_cap = cap;
    }
    if (grow_word_index(lm) != 0)
        return -1;
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, n);
    copy[n] = '\0';
    int id = lm->n_words++;
    lm->words[id] = copy;
    size_t i = hash_text(s, n) & lm->word_mask;
    while (lm->word_index[i])
        i = (i + 1) & lm->word_mask;
    lm->word_index[i] = (uint32_t)id + 1;
    return id;
}

/* Adds an n-gram; 0 when added, 1 when it was there already, -1 when out of memory. A 1-gram
   must be the newest word's: every word is added together with its 1-gram. */
static int add_gram(es_lm *lm, const int32_t *w, int n, float logp, float bow)
{
    gram_table *t = &lm->grams[n];
    if (find_gram(lm, w, n) >= 0)
        return 1;
    if (t->count == t->cap && reserve_grams(t, t->cap ? t->cap * 2 : 1024) != 0)
        return -1;
    if (n == 1) {
        if ((size_t)w[0] != t->count)
            return -1; /* cannot happen: words and 1-grams are added in step */
        t->logp[t->count] = logp;
        t->bow[t->count++] = bow;
        return 0;
    }
    if (grow_gram_index(t) != 0)
        return -1;
    size_t i = hash_ids(w, n) & t->mask;
    while (t->index[i])
        i = (i + 1) & t->mask;
    memcpy(t->ids + t->count * (size_t)n, w, sizeof(int32_t) * (size_t)n);
    t->logp[t->count] = logp;
    t->bow[t->count] = bow;
    t->index[i] = (uint32_t)(++t->count);
    return 0;
}

void es_lm_free(es_lm *lm)
{
    if (!lm)
        return;
    for (int i = 0; i < lm->n_words; i++)
        free(lm->words[i]);
    free(lm->words);
    free(lm->word_index);
    for (int n = 1; n <= ES_LM_MAX_ORDER; n++) {
        free(lm->grams[n].ids);
        free(lm->grams[n].logp);
        free(lm->grams[n].bow);
        free(lm->grams[n].index);
    }
    free(lm->first);
    free(lm->edge_byte);
    free(lm->edge_child);
    free(lm->node_word);
    free(lm);
}

/* Builds the vocabulary trie (the markers <s>, </s>, <unk> are no words to spell): first with
   a hash of edges, which makes insertion simple, then packed into rows, and the hash freed. */
static int build_trie(es_lm *lm)
{
    size_t edges = 0;
    for (int i = 0; i < lm->n_words; i++)
        edges += strlen(lm->words[i]);
    size_t mask = table_size(edges) - 1;
    uint64_t *key_of = calloc(mask + 1, sizeof *key_of); /* (node << 8 | byte) + 1, 0 = empty */
    int32_t *child_of = calloc(mask + 1, sizeof *child_of);
    lm->node_word = malloc((edges + 1) * sizeof *lm->node_word);
    lm->first = calloc(edges + 2, sizeof *lm->first);
    if (!key_of || !child_of || !lm->node_word || !lm->first) {
        free(key_of);
        free(child_of);
        return -1;
    }
    lm->node_word[0] = -1;
    lm->n_nodes = 1;
    for (int w = 0; w < lm->n_words; w++) {
        if (w == lm->bos || w == lm->eos || w == lm->unk)
            continue;
        int node = 0;
        for (const unsigned char *p = (const unsigned char *)lm->words[w]; *p; p++) {
            uint64_t key = ((uint64_t)node << 8 | *p) + 1;
            size_t i = mix64(key) & mask;
            while (key_of[i] && key_of[i] != key)
                i = (i + 1) & mask;
            if (!key_of[i]) {
                key_of[i] = key;
                child_of[i] = lm->n_nodes;
                lm->first[node + 1]++; /* counted per parent, summed below */
                lm->node_word[lm->n_nodes++] = -1;
            }
            node = child_of[i];
        }
        lm->node_word[node] = w;
    }
    size_t n_edges = (size_t)lm->n_nodes - 1; /* every node but the root has one parent edge */
    lm->edge_byte = malloc(n_edges ? n_edges : 1);
    lm->edge_child = malloc((n_edges ? n_edges : 1) * sizeof *lm->edge_child);
    uint32_t *fill = calloc((size_t)lm->n_nodes, sizeof *fill);
    int ok = lm->edge_byte && lm->edge_child && fill;
    if (ok) {
        for (int k = 0; k < lm->n_nodes; k++)
            lm->first[k + 1] += lm->first[k];
        for (size_t i = 0; i <= mask; i++) {
            if (!key_of[i])
                continue;
            size_t parent = (size_t)((key_of[i] - 1) >> 8);
            size_t at = lm->first[parent] + fill[parent]++;
            lm->edge_byte[at] = (unsigned char)((key_of[i] - 1) & 0xff);
            lm->edge_child[at] = child_of[i];
        }
    }
    free(fill);
    free(key_of);
    free(child_of);
    /* the word lengths counted every letter as a node; shared prefixes made far fewer */
    int32_t *words_fit = realloc(lm->node_word, (size_t)lm->n_nodes * sizeof *lm->node_word);
    if (words_fit)
        lm->node_word = words_fit;
    uint32_t *first_fit = realloc(lm->first, ((size_t)lm->n_nodes + 1) * sizeof *lm->first);
    if (first_fit)
        lm->first = first_fit;
    return ok ? 0 : -1;
}

int es_lm_trie_next(const es_lm *lm, int node, unsigned char byte)
{
    if (node < 0 || node >= lm->n_nodes)
        return -1;
    const unsigned char *row = lm->edge_byte + lm->first[node];
    const unsigned char *hit = memchr(row, byte, lm->first[node + 1] - lm->first[node]);
    return hit ? lm->edge_child[lm->first[node] + (size_t)(hit - row)] : -1;
}

int es_lm_trie_word(const es_lm *lm, int node)
{
    return node < 0 || node >= lm->n_nodes ? -1 : lm->node_word[node];
}

/* ---- reading ---- */

typedef struct {
    gzFile f;
    char *line;
    size_t cap;
    long number; /* 1-based line number of the current line */
} reader;

/* The next line without its newline and trailing blanks, or NULL at the end of the file. */
static char *next_line(reader *r)
{
    size_t len = 0;
    for (;;) {
        if (r->cap - len < 2) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            char *p = realloc(r->line, cap);
            if (!p)
                return NULL;
            r->line = p;
            r->cap = cap;
        }
        if (!gzgets(r->f, r->line + len, (int)(r->cap - len))) {
            if (len == 0)
                return NULL;
            break;
        }
        len += strlen(r->line + len);
        if (len > 0 && r->line[len - 1] == '\n')
            break;
    }
    r->number++;
    while (len > 0 && (r->line[len - 1] == '\n' || r->line[len - 1] == '\r' || r->line[len - 1] == ' ' ||
                       r->line[len - 1] == '\t'))
        r->line[--len] = '\0';
    return r->line;
}

/* Splits a line at blanks into at most max fields; returns how many (max + 1 when more). */
static int split_fields(char *s, char **f, int max)
{
    int n = 0;
    char *save;
    for (char *p = strtok_r(s, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
        if (n == max)
            return max + 1;
        f[n++] = p;
    }
    return n;
}

/* A log10 number as a natural log. Probabilities are at most 1; back-off weights may exceed it. */
static int parse_log10(const char *s, int may_be_positive, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v) || (!may_be_positive && v > 1e-4f))
        return -1;
    *out = v * LN10;
    return 0;
}

/* Reads the section of order n (its header line already read); 0 or -1 with err written. */
static int read_section(es_lm *lm, reader *r, int n, long count, const char *path, char *err, size_t errlen)
{
    char *f[ES_LM_MAX_ORDER + 3];
    long seen = 0;
    for (char *s; (s = next_line(r));) {
        if (!*s)
            break;
        if (s[0] == '\\') {
            snprintf(err, errlen, "%s line %ld: the %d-gram section ends before its %ld entries (has %ld)", path,
                     r->number, n, count, seen);
            return -1;
        }
        int k = split_fields(s, f, n + 2);
        int32_t ids[ES_LM_MAX_ORDER];
        float logp, bow = 0.0f;
        if (k != n + 1 && k != n + 2) {
            snprintf(err, errlen, "%s line %ld: a %d-gram line needs a log-probability, %d words and an optional "
                     "back-off weight", path, r->number, n, n);
            return -1;
        }
        if (parse_log10(f[0], 0, &logp) != 0 || (k == n + 2 && parse_log10(f[n + 1], 1, &bow) != 0)) {
            snprintf(err, errlen, "%s line %ld: not a log10 probability (<= 0) or back-off weight", path, r->number);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            int id = find_word(lm, f[1 + i], strlen(f[1 + i]));
            if (n == 1) {
                if (id >= 0) {
                    snprintf(err, errlen, "%s line %ld: the word \"%s\" is listed twice", path, r->number, f[1]);
                    return -1;
                }
                if (seen >= count || (id = add_word(lm, f[1], strlen(f[1]))) < 0) {
                    snprintf(err, errlen, seen >= count ? "%s line %ld: more 1-grams than the header's count"
                                                        : "%s line %ld: out of memory", path, r->number);
                    return -1;
                }
            } else if (id < 0) {
                snprintf(err, errlen, "%s line %ld: the word \"%s\" has no 1-gram", path, r->number, f[1 + i]);
                return -1;
            }
            ids[i] = id;
        }
        if (seen >= count) {
            snprintf(err, errlen, "%s line %ld: more %d-grams than the header's count", path, r->number, n);
            return -1;
        }
        int added = add_gram(lm, ids, n, logp, bow);
        if (added != 0) {
            snprintf(err, errlen, added > 0 ? "%s line %ld: this %d-gram is listed twice" : "%s line %ld: out of memory",
                     path, r->number, n);
            return -1;
        }
        seen++;
    }
    if (seen != count) {
        snprintf(err, errlen, "%s: the header promises %ld %d-grams but the file has %ld", path, count, n, seen);
        return -1;
    }
    return 0;
}

/* Reads the whole file into lm; 0 or -1 with err written. */
static int read_arpa(es_lm *lm, reader *r, const char *path, char *err, size_t errlen)
{
    char *s;
    while ((s = next_line(r)) && strcmp(s, "\\data\\") != 0)
        ;
    if (!s) {
        snprintf(err, errlen, "%s is not an ARPA language model (no \\data\\ line)", path);
        return -1;
    }
    long counts[ES_LM_MAX_ORDER + 1] = {0}, total = 0;
    while ((s = next_line(r)) && *s) {
        int n;
        long c;
        char tail;
        if (sscanf(s, "ngram %d=%ld%c", &n, &c, &tail) != 2 || n != lm->order + 1 || c < 1 ||
            c > MAX_NGRAMS - total) {
            snprintf(err, errlen, "%s line %ld: expected \"ngram %d=COUNT\" with a positive count", path, r->number,
                     lm->order + 1);
            return -1;
        }
        if (n > ES_LM_MAX_ORDER) {
            snprintf(err, errlen, "%s: %d-grams are beyond the supported order %d", path, n, ES_LM_MAX_ORDER);
            return -1;
        }
        counts[n] = c;
        total += c;
        lm->order = n;
    }
    if (lm->order == 0) {
        snprintf(err, errlen, "%s: the \\data\\ header lists no n-gram counts", path);
        return -1;
    }
    /* a start the size of small files; the tables grow with what the file really holds */
    lm->words_cap = 1024;
    lm->words = malloc(sizeof *lm->words * (size_t)lm->words_cap);
    lm->word_mask = table_size((size_t)lm->words_cap) - 1;
    lm->word_index = calloc(lm->word_mask + 1, sizeof *lm->word_index);
    for (int n = 1; n <= lm->order; n++)
        lm->grams[n].n = n;
    if (!lm->words || !lm->word_index) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int n = 1; n <= lm->order; n++) {
        char want[32];
        snprintf(want, sizeof want, "\\%d-grams:", n);
        while ((s = next_line(r)) && !*s)
            ;
        if (!s || strcmp(s, want) != 0) {
            snprintf(err, errlen, "%s line %ld: expected the \"%s\" section", path, r->number, want);
            return -1;
        }
        if (read_section(lm, r, n, counts[n], path, err, errlen) != 0)
            return -1;
    }
    /* give back the room the last doubling left over */
    for (int n = 1; n <= lm->order; n++)
        if (lm->grams[n].count > 0 && lm->grams[n].count < lm->grams[n].cap)
            reserve_grams(&lm->grams[n], lm->grams[n].count); /* shrinking keeps the data if it fails */
    while ((s = next_line(r)) && !*s)
        ;
    if (!s || strcmp(s, "\\end\\") != 0) {
        snprintf(err, errlen, "%s: no \\end\\ after the %d-grams (the file may be truncated)", path, lm->order);
        return -1;
    }
    return 0;
}

es_lm *es_lm_load(const char *path, char *err, size_t errlen)
{
    reader r = {.f = gzopen(path, "rb")};
    if (!r.f) {
        snprintf(err, errlen, "cannot open the language model %s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    es_lm *lm = calloc(1, sizeof *lm);
    int ok = lm && read_arpa(lm, &r, path, err, errlen) == 0;
    if (!lm)
        snprintf(err, errlen, "out of memory");
    if (ok && gzclose(r.f) != Z_OK) {
        snprintf(err, errlen, "%s: the compressed data is corrupt", path);
        ok = 0;
    } else if (!ok) {
        gzclose(r.f);
    }
    free(r.line);
    if (!ok) {
        es_lm_free(lm);
        return NULL;
    }
    lm->bos = find_word(lm, "<s>", 3);
    lm->eos = find_word(lm, "</s>", 4);
    lm->unk = find_word(lm, "<unk>", 5);
    if (lm->bos < 0 || lm->eos < 0) {
        snprintf(err, errlen, "%s: the model has no <s> or </s> 1-gram", path);
        es_lm_free(lm);
        return NULL;
    }
    if (lm->unk < 0) {
        lm->unk = add_word(lm, "<unk>", 5);
        int32_t unk = lm->unk;
        if (lm->unk < 0 || add_gram(lm, &unk, 1, UNK_FLOOR, 0.0f) != 0) {
            snprintf(err, errlen, "out of memory");
            es_lm_free(lm);
            return NULL;
        }
    }
    if (build_trie(lm) != 0) {
        snprintf(err, errlen, "out of memory");
        es_lm_free(lm);
        return NULL;
    }
    return lm;
}

int es_lm_order(const es_lm *lm)
{
    return lm->order;
}

size_t es_lm_bytes(const es_lm *lm)
{
    size_t b = sizeof *lm + (size_t)lm->words_cap * sizeof *lm->words + (lm->word_mask + 1) * sizeof *lm->word_index;
    for (int n = 1; n <= lm->order; n++) {
        const gram_table *t = &lm->grams[n];
        size_t ids = n == 1 ? 0 : (size_t)n; /* 1-grams need no ids: entry k is word k */
        b += t->cap * (sizeof(int32_t) * ids + sizeof *t->logp + sizeof *t->bow) +
             (t->index ? (t->mask + 1) * sizeof *t->index : 0);
    }
    size_t n_edges = lm->n_nodes > 0 ? (size_t)lm->n_nodes - 1 : 0;
    b += ((size_t)lm->n_nodes + 1) * sizeof *lm->first + n_edges * (sizeof *lm->edge_byte + sizeof *lm->edge_child) +
         (size_t)lm->n_nodes * sizeof *lm->node_word;
    for (int i = 0; i < lm->n_words; i++)
        b += strlen(lm->words[i]) + 1;
    return b;
}

int es_lm_words(const es_lm *lm)
{
    return lm->n_words;
}

int es_lm_word(const es_lm *lm, const char *word, size_t len)
{
    int id = find_word(lm, word, len);
    return id < 0 ? lm->unk : id;
}

int es_lm_unk(const es_lm *lm)
{
    return lm->unk;
}

int es_lm_bos(const es_lm *lm)
{
    return lm->bos;
}

int es_lm_eos(const es_lm *lm)
{
    return lm->eos;
}

float es_lm_score(const es_lm *lm, const int *context, int n_context, int word)
{
    int32_t seq[ES_LM_MAX_ORDER];
    int k = n_context < lm->order - 1 ? n_context : lm->order - 1;
    if (k < 0)
        k = 0;
    float backoff = 0.0f;
    for (; k >= 0; k--) {
        /* the last k words of the context, then the word */
        for (int i = 0; i < k; i++)
            seq[i] = context[n_context - k + i];
        seq[k] = word;
        long g = find_gram(lm, seq, k + 1);
        if (g >= 0)
            return backoff + lm->grams[k + 1].logp[g];
        if (k > 0) {
            long h = find_gram(lm, seq, k);
            if (h >= 0)
                backoff += lm->grams[k].bow[h];
        }
    }
    return backoff + UNK_FLOOR; /* only for an id that is no word of the model */
}
