/*
 * wer.c - see wer.h. The edit distance keeps two rows of the dynamic programme, so it costs
 * O(n_ref) memory and O(n_ref x n_hyp) time: a few thousand words a pass at most.
 */
#include "wer.h"

#include <stdlib.h>
#include <string.h>

static int is_punct(unsigned char c)
{
    return c < 0x80 && c > ' ' && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

int wer_add_words(const char *text, char ***words, int *n, int *cap)
{
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
            p++;
        const char *b = p;
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v'))
            p++;
        const char *e = p;
        while (b < e && is_punct((unsigned char)*b))
            b++;
        while (e > b && is_punct((unsigned char)e[-1]))
            e--;
        if (b == e)
            continue;
        if (*n == *cap) {
            int nc = *cap ? *cap * 2 : 16;
            char **nw = realloc(*words, sizeof(char *) * (size_t)nc);
            if (!nw)
                return -1;
            *words = nw;
            *cap = nc;
        }
        char *w = malloc((size_t)(e - b) + 1);
        if (!w)
            return -1;
        for (size_t i = 0; i < (size_t)(e - b); i++)
            w[i] = (b[i] >= 'A' && b[i] <= 'Z') ? (char)(b[i] - 'A' + 'a') : b[i];
        w[e - b] = '\0';
        (*words)[(*n)++] = w;
    }
    return 0;
}

void wer_free_words(char **words, int n)
{
    for (int i = 0; i < n; i++)
        free(words[i]);
    free(words);
}

long wer_edits(char *const *ref, int n_ref, char *const *hyp, int n_hyp)
{
    if (n_ref == 0)
        return n_hyp;
    if (n_hyp == 0)
        return n_ref;
    long *prev = malloc(sizeof(long) * (size_t)(n_ref + 1)), *cur = malloc(sizeof(long) * (size_t)(n_ref + 1));
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return -1;
    }
    for (int i = 0; i <= n_ref; i++)
        prev[i] = i;
    for (int j = 1; j <= n_hyp; j++) {
        cur[0] = j;
        for (int i = 1; i <= n_ref; i++) {
            long sub = prev[i - 1] + (strcmp(ref[i - 1], hyp[j - 1]) != 0);
            long del = cur[i - 1] + 1, ins = prev[i] + 1;
            cur[i] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        long *t = prev;
        prev = cur;
        cur = t;
    }
    long d = prev[n_ref];
    free(prev);
    free(cur);
    return d;
}
