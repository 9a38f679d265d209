/*
 * tokens.c - token ids to text and to timed words (see decoder.h).
 *
 * Detokenisation follows SentencePiece's DecodeIds for the pieces NeMo's BPE tokenizers have:
 * ordinary pieces are concatenated with U+2581 ("▁", the word-boundary mark) turned into a
 * space, and the ▁s that begin the text are dropped (SentencePiece adds one as a dummy prefix
 * when encoding, and drops all of them when decoding). Byte-fallback pieces <0xNN> stand for
 * one raw byte; <unk> reads " ⁇ "; control pieces (<s>, </s>, <pad>) and ids outside the
 * vocabulary (blank) produce nothing.
 *
 * Words use the same boundary mark: a piece beginning with ▁ starts a new word. A word's time
 * span runs from the start of its first token's encoder frame to the end of its last token's.
 */
#include "decoder.h"

#include <stdlib.h>
#include <string.h>

#define WS "\xE2\x96\x81" /* U+2581 in UTF-8 */
#define WS_LEN 3

/* A growable string. A failed allocation sets oom and leaves the string as it was. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static int valid_id(const es_model *m, int id)
{
    return id >= 0 && id < m->n_vocab && m->vocab && m->vocab[id];
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte a "<0xNN>" piece stands for, or -1 when the piece is not one. */
static int byte_piece(const char *p)
{
    if (strlen(p) != 6 || strncmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int is_control(const char *p)
{
    return !strcmp(p, "<s>") || !strcmp(p, "</s>") || !strcmp(p, "<pad>");
}

/* Appends the surface of token id to b. *at_start is true until some text has been written:
   SentencePiece (remove_extra_whitespaces, its default and NeMo's) drops every ▁ while the
   text is still empty, so "▁" "▁a" reads "a", while ▁s after the first character are kept. */
static void add_piece(strbuf *b, const es_model *m, int id, int *at_start)
{
    if (!valid_id(m, id))
        return;
    const char *p = m->vocab[id];
    if (is_control(p))
        return;
    size_t before = b->len;
    int byte = byte_piece(p);
    if (byte >= 0) {
        char c = (char)byte;
        sb_add(b, &c, 1);
    } else if (!strcmp(p, "<unk>")) {
        sb_add(b, " \xE2\x81\x87 ", 5);
    } else {
        while (*at_start && !strncmp(p, WS, WS_LEN))
            p += WS_LEN;
        for (const char *q; (q = strstr(p, WS)) != NULL; p = q + WS_LEN) {
            sb_add(b, p, (size_t)(q - p));
            sb_add(b, " ", 1);
        }
        sb_add(b, p, strlen(p));
    }
    if (b->len > before)
        *at_start = 0;
}

char *es_tokens_to_text(const es_model *m, const es_token *t, int n)
{
    strbuf b = {0};
    int at_start = 1;
    sb_add(&b, "", 0); /* an empty result is "" , not NULL */
    for (int i = 0; i < n; i++)
        add_piece(&b, m, t[i].id, &at_start);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static int starts_word(const es_model *m, int id)
{
    return valid_id(m, id) && !strncmp(m->vocab[id], WS, WS_LEN);
}

int es_tokens_to_words(const es_model *m, const es_token *t, int n, es_word **words)
{
    double fs = m->sample_rate > 0 ? (double)m->hop_length * m->subsampling_factor / m->sample_rate : 0.0;
    *words = NULL;
    es_word *w = NULL;
    int nw = 0, cap = 0;
    for (int i = 0; i < n;) {
        if (!valid_id(m, t[i].id)) { /* blank or garbage: no text, no time */
            i++;
            continue;
        }
        int j = i + 1, last = i; /* the word is tokens [i, j); its last real token is `last` */
        while (j < n && !starts_word(m, t[j].id)) {
            if (valid_id(m, t[j].id))
                last = j;
            j++;
        }
        strbuf b = {0};
        int at_start = 1;
        sb_add(&b, "", 0);
        for (int k = i; k < j; k++)
            add_piece(&b, m, t[k].id, &at_start);
        if (b.oom) {
            free(b.s);
            goto oom;
        }
        /* trim the spaces an <unk> or an interior ▁ may leave at the ends */
        size_t s = 0, e = b.len;
        while (s < e && b.s[s] == ' ')
            s++;
        while (e > s && b.s[e - 1] == ' ')
            e--;
        if (e > s) {
            if (nw == cap) {
                int nc = cap ? 2 * cap : 16;
                es_word *nwp = realloc(w, (size_t)nc * sizeof *w);
                if (!nwp) {
                    free(b.s);
                    goto oom;
                }
                w = nwp;
                cap = nc;
            }
            memmove(b.s, b.s + s, e - s);
            b.s[e - s] = '\0';
            w[nw].word = b.s;
            w[nw].start = t[i].frame * fs;
            w[nw].end = (t[last].frame + 1) * fs;
            nw++;
        } else {
            free(b.s);
        }
        i = j;
    }
    if (nw == 0) {
        free(w);
        w = NULL;
    }
    *words = w;
    return nw;
oom:
    es_words_free(w, nw);
    return -1;
}

void es_words_free(es_word *w, int n)
{
    if (!w)
        return;
    for (int i = 0; i < n; i++)
        free(w[i].word);
    free(w);
}
