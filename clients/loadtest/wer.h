/*
 * wer.h - word error rate for the load test: the words of a transcript, normalised the same
 * way for the reference and the hypothesis, and the word-level edit distance between them.
 *
 * Normalising: split at white space, lower-case ASCII letters, strip punctuation from both
 * ends of each word (not apostrophes inside: "don't" stays), drop words left empty. Bytes
 * above ASCII are kept as they are, so any language's words compare exactly.
 */
#ifndef EARSHOT_LT_WER_H
#define EARSHOT_LT_WER_H

/* Appends the normalised words of text to *words (malloc'd strings in a malloc'd array of
   *n, capacity *cap). -1 when out of memory (what was added stays valid). */
int wer_add_words(const char *text, char ***words, int *n, int *cap);
void wer_free_words(char **words, int n);

/* Substitutions + insertions + deletions turning ref into hyp (Levenshtein over words).
   -1 when out of memory. */
long wer_edits(char *const *ref, int n_ref, char *const *hyp, int n_hyp);

#endif
