/*
 * lm.h - a word n-gram language model read from an ARPA file, for the CTC beam search.
 *
 * ARPA is the plain-text form every n-gram toolkit writes (KenLM's lmplz, SRILM, and the
 * project's own models/train/build_lm.py): per order, one line per n-gram with its log10
 * probability and, below the highest order, its log10 back-off weight. The file may be
 * gzip-compressed. Scores come back as natural logs so they add to the acoustic model's.
 *
 * A query follows the back-off rule: P(w | h) is the stored probability of the n-gram h w when
 * it exists, else the back-off weight of h times P(w | h without its oldest word). Words the
 * model does not know score as <unk> (the file's, or a fixed floor when it has none).
 *
 * The model also holds its vocabulary as a trie of bytes, so a decoder can tell, letter by
 * letter, whether the word it is spelling can still become a known word.
 */
#ifndef EARSHOT_LM_H
#define EARSHOT_LM_H

#include <stddef.h>

#define ES_LM_MAX_ORDER 6

typedef struct es_lm es_lm;

/* Reads an ARPA file (optionally .gz). NULL with one sentence in err when the file is missing
   or malformed (the message names the line). */
es_lm *es_lm_load(const char *path, char *err, size_t errlen);
void es_lm_free(es_lm *lm);

int es_lm_order(const es_lm *lm);
/* Bytes of memory the model holds (its tables and words). */
size_t es_lm_bytes(const es_lm *lm);
/* Word ids are 0 .. es_lm_words() - 1, including <s>, </s> and <unk>. */
int es_lm_words(const es_lm *lm);
/* The id of a word (len bytes, not NUL-terminated), or the id of <unk> when unknown. */
int es_lm_word(const es_lm *lm, const char *word, size_t len);
int es_lm_unk(const es_lm *lm);
int es_lm_bos(const es_lm *lm); /* <s> */
int es_lm_eos(const es_lm *lm); /* </s> */

/* ln P(word | context): context holds n_context word ids, oldest first (only the last
   order-1 are used). */
float es_lm_score(const es_lm *lm, const int *context, int n_context, int word);

/* The vocabulary trie. Node 0 is the empty word. */
/* The node reached from `node` by one more byte, or -1 when no known word continues so. */
int es_lm_trie_next(const es_lm *lm, int node, unsigned char byte);
/* The word id spelled by the path to node, or -1 when it is only a prefix. */
int es_lm_trie_word(const es_lm *lm, int node);

#endif
