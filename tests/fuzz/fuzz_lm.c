/*
 * fuzz_lm.c - libFuzzer target: the ARPA language-model reader (es_lm_load) and, when a file
 * loads, queries on it (scores with contexts of every length, the vocabulary trie).
 *
 * A language model is a file a user points the server at, and ARPA is loosely written text:
 * counts that may disagree with the sections, n-grams with unknown words, numbers in any form.
 * Loading must succeed or fail with one sentence, never crash, hang or leak; a loaded model
 * must answer every query with a number. Input goes through a memfd, as es_lm_load wants a
 * path (it also reads gzip, which a gzip header in the corpus exercises).
 */
#define _GNU_SOURCE /* memfd_create */
#include "lm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_lm", 0);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    es_lm *lm = es_lm_load(path, err, sizeof err);
    if (!lm) {
        if (!err[0] || strchr(err, '\n'))
            abort(); /* a refusal must say why, in one line */
    } else {
        int n = es_lm_words(lm), ctx[ES_LM_MAX_ORDER + 2];
        for (int i = 0; i < ES_LM_MAX_ORDER + 2; i++)
            ctx[i] = (i * 7919) % n;
        for (int k = 0; k <= ES_LM_MAX_ORDER + 1; k++)
            for (int w = 0; w < n && w < 64; w++)
                if (isnan(es_lm_score(lm, ctx, k, w)))
                    abort();
        /* spell the input's first bytes through the trie */
        int node = 0;
        for (size_t i = 0; i < size && i < 32 && node >= 0; i++) {
            node = es_lm_trie_next(lm, node, data[i]);
            (void)es_lm_trie_word(lm, node);
        }
        (void)es_lm_bytes(lm);
        es_lm_free(lm);
    }
    close(fd);
    return 0;
}
