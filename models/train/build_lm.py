#!/usr/bin/env python3
# build_lm.py - a word n-gram language model (ARPA) for Earshot's CTC beam search.
#
# Interpolated Kneser-Ney (Chen & Goodman 1998, with one discount per order): the highest
# order uses raw counts, lower orders use continuation counts (how many different words precede
# an n-gram), so a word that is frequent only after one other word does not get a high
# probability everywhere. The interpolated model is written in ARPA's back-off form: each
# stored n-gram carries its interpolated probability, each context the weight its leftover
# mass gives the next lower order. <unk> gets the leftover of the 1-grams spread uniformly.
#
# A lexicon (--lexicon, a word list such as Debian's /usr/share/dict/american-english) adds
# words the text never used. They share that same leftover of the 1-grams, each with
# --lexicon-weight times a seen word's share, so the model stays a distribution. Why: the
# search spells an unknown word letter by letter at a high price, so an inflection the text
# lacks ("reddened" where it had "redden") is almost never written; as a lexicon word it costs
# about what a word seen once costs.
#
# Text: by default the training split of make_data.py's sentences (the Debian texts it reads,
# split by the same hash), so the LM never sees a dev or test sentence. Or any text files:
# one sentence per line, lower-cased and stripped of punctuation like the references.
#
#   /usr/bin/python3 models/train/build_lm.py --out models/earshot-en-small.arpa.gz
#   /usr/bin/python3 models/train/build_lm.py --text corpus.txt --order 4 --out my.arpa
#
# Never point --text at an evaluation set.

import argparse
import collections
import gzip
import io
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the recipe's own modules, beside this one
import lexicon  # noqa: E402

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def normalise(line):
    """Lower case, letters and inner apostrophes only, as the evaluation's references."""
    words = []
    for w in re.split(r"[^a-z']+", line.lower().replace("-", " ")):
        w = w.strip("'")
        if w:
            words.append(w)
    return words


def make_data_sentences():
    import make_data  # here, not at the top: it loads numpy and soundfile, which --text does not need
    sents = make_data.collect_sentences()
    return [ref.split() for ref in sorted(sents) if make_data.split_of(ref) == "train"]


def text_sentences(paths):
    out = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = normalise(line)
                if words:
                    out.append(words)
    return out


def lexicon_words(paths):
    """The words of word-list files (lexicon.py's rule: one word of letters per line, lower-cased;
    other lines are skipped)."""
    words = set()
    for path in paths:
        words |= lexicon.plain_words(path)
    return words


def count_ngrams(sentences, order):
    """Raw counts per order: counts[n][tuple] for n = 1..order."""
    counts = [None] + [collections.Counter() for _ in range(order)]
    for words in sentences:
        seq = [BOS] + words + [EOS]
        for n in range(1, order + 1):
            c = counts[n]
            for i in range(len(seq) - n + 1):
                g = tuple(seq[i:i + n])
                if n == 1 and g[0] == BOS:
                    continue  # <s> is never predicted
                c[g] += 1
    return counts


def adjusted_counts(counts, order):
    """Kneser-Ney counts: raw at the highest order and for n-grams that begin with <s> (nothing
    can precede them); elsewhere the number of distinct words seen before the n-gram."""
    adj = [None] * (order + 1)
    adj[order] = dict(counts[order])
    for n in range(order - 1, 0, -1):
        left = collections.Counter(g[1:] for g in adj[n + 1])
        a = {}
        for g, c in counts[n].items():
            a[g] = c if g[0] == BOS else left.get(g, 0)
        adj[n] = {g: c for g, c in a.items() if c > 0}
    return adj


def discount(adj_n):
    n1 = sum(1 for c in adj_n.values() if c == 1)
    n2 = sum(1 for c in adj_n.values() if c == 2)
    if n1 == 0:
        return 0.5
    d = n1 / (n1 + 2.0 * n2)
    return min(max(d, 0.1), 0.95)


def build(sentences, order, lexicon=(), lexicon_weight=1.0):
    """(prob, gamma): prob[n][ngram] is the interpolated probability, gamma[n][context] the
    weight of the next lower order. The 1-grams' leftover is spread over the vocabulary: one
    share for each seen word and <unk>, lexicon_weight shares for each lexicon word unseen."""
    counts = count_ngrams(sentences, order)
    adj = adjusted_counts(counts, order)
    seen = {g[0] for g in adj[1]} | {UNK}
    extra = sorted(set(lexicon) - seen)
    shares = len(seen) + lexicon_weight * len(extra)
    prob = [None] + [{} for _ in range(order)]
    gamma = [None] + [{} for _ in range(order)]  # gamma[n][context of n-1 words]

    for n in range(1, order + 1):
        d = discount(adj[n])
        total = collections.Counter()
        types = collections.Counter()
        for g, c in adj[n].items():
            total[g[:-1]] += c
            types[g[:-1]] += 1
        for h in total:
            gamma[n][h] = d * types[h] / total[h]
        for g, c in adj[n].items():
            h = g[:-1]
            p = max(c - d, 0.0) / total[h]
            if n == 1:
                p += gamma[1][()] / shares
            else:
                p += gamma[n][h] * lower_prob(prob, gamma, g[1:], shares)
            prob[n][g] = p
        if n == 1:
            prob[1][(UNK,)] = prob[1].get((UNK,), 0.0) + (0.0 if (UNK,) in adj[1] else gamma[1][()] / shares)
            for w in extra:
                prob[1][(w,)] = gamma[1][()] * lexicon_weight / shares
    return prob, gamma


def lower_prob(prob, gamma, g, shares):
    """P(g[-1] | g[:-1]) of the interpolated model of order len(g)."""
    n = len(g)
    if g in prob[n]:
        return prob[n][g]
    if n == 1:
        return gamma[1][()] / shares
    return gamma[n].get(g[:-1], 1.0) * lower_prob(prob, gamma, g[1:], shares)


def prune(prob, order, min_count, counts):
    """Drops highest-order n-grams seen fewer than min_count times (the model then backs off)."""
    if min_count <= 1 or order < 2:
        return
    top = prob[order]
    for g in [g for g in top if counts[order][g] < min_count]:
        del top[g]


def _open_text(path):
    """A text file for writing; gzip-compressed for .gz, with no time stamp so that the same
    text gives the same bytes."""
    if not path.endswith(".gz"):
        return open(path, "w", encoding="utf-8")
    raw = open(path, "wb")
    return io.TextIOWrapper(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0), encoding="utf-8")


def write_arpa(path, prob, gamma, order):
    with _open_text(path) as f:
        f.write("\\data\\\n")
        sizes = [len(prob[1]) + 1] + [len(prob[n]) for n in range(2, order + 1)]  # +1: <s>
        for n, size in enumerate(sizes, 1):
            f.write("ngram %d=%d\n" % (n, size))
        for n in range(1, order + 1):
            f.write("\n\\%d-grams:\n" % n)
            entries = sorted(prob[n].items())
            if n == 1:
                entries = [((BOS,), None)] + entries
            for g, p in entries:
                lp = -99.0 if p is None else math.log10(p)
                line = "%.6f\t%s" % (lp, " ".join(g))
                if n < order and g in gamma[n + 1]:
                    line += "\t%.6f" % math.log10(gamma[n + 1][g])
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description="build a word n-gram LM (ARPA) for Earshot's CTC beam search")
    ap.add_argument("--out", required=True, help="output ARPA file (.gz compresses it)")
    ap.add_argument("--order", type=int, default=3, help="n-gram order, 1..6 (default 3)")
    ap.add_argument("--text", nargs="*", default=[],
                    help="plain-text files, one sentence per line (default: make_data.py's training split)")
    ap.add_argument("--prune", type=int, default=1,
                    help="drop highest-order n-grams seen fewer than this many times (default 1: keep all)")
    ap.add_argument("--lexicon", nargs="*", default=[],
                    help="word lists (one word per line) whose words join the vocabulary even if the text "
                         "never uses them, e.g. /usr/share/dict/american-english")
    ap.add_argument("--lexicon-weight", type=float, default=1.0,
                    help="a lexicon word's share of the 1-grams' leftover probability, against a seen "
                         "word's (default 1)")
    a = ap.parse_args(argv)
    if not 1 <= a.order <= 6:
        ap.error("--order must be between 1 and 6")
    if not a.lexicon_weight > 0.0:
        ap.error("--lexicon-weight must be positive")
    try:
        lexicon = lexicon_words(a.lexicon)
    except OSError as e:
        print("build_lm: cannot read the lexicon: %s" % e, file=sys.stderr)
        return 1
    if a.lexicon and not lexicon:
        print("build_lm: the lexicon holds no words (one word of letters per line)", file=sys.stderr)
        return 1
    sentences = text_sentences(a.text) if a.text else make_data_sentences()
    if not sentences:
        print("build_lm: no sentences in the text", file=sys.stderr)
        return 1
    print("build_lm: %d sentences, %d words" % (len(sentences), sum(len(s) for s in sentences)), flush=True)
    prob, gamma = build(sentences, a.order, lexicon, a.lexicon_weight)
    if lexicon:
        used = {w for words in sentences for w in words}
        print("build_lm: the lexicon adds %d words the text does not use" % len(lexicon - used), flush=True)
    prune(prob, a.order, a.prune, count_ngrams(sentences, a.order) if a.prune > 1 else None)
    write_arpa(a.out, prob, gamma, a.order)
    print("build_lm: wrote %s: %s" % (a.out, ", ".join("%d-grams %d" % (n, len(prob[n])) for n in range(1, a.order + 1))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
