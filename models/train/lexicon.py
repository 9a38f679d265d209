#!/usr/bin/env python3
# lexicon.py - an English word list for build_lm.py's --lexicon, from Debian's own word lists.
#
# The LM's text names about 46,000 words; new sentences keep bringing words it never saw, mostly
# inflections of words it knows ("reddened", "guillemots") and rare dictionary words. The search
# can spell such a word only at a high price, so it nearly never does. This script gathers the
# words a dictionary would know:
#   - a plain word list, by default /usr/share/dict/american-english (Debian's wamerican);
#   - WordNet's lemmas of one word (wordnet-base's index.noun/verb/adj/adv) and the irregular
#     forms of its exception lists (noun.exc: "geese"; verb.exc: "swam");
#   - the regular inflections of WordNet's nouns (plural) and verbs (-s, -ed, -ing), made by
#     English spelling rules. A rule may make a form English does not use ("goed"); that costs
#     little, since the LM gives a lexicon word a small share and the audio must also fit it.
# One word per line, sorted, lower case, letters and inner apostrophes only.
#
#   /usr/bin/python3 models/train/lexicon.py --out /tmp/lexicon.txt
#   /usr/bin/python3 models/train/build_lm.py --order 4 --prune 2 --lexicon /tmp/lexicon.txt \
#       --lexicon-weight 0.1 --out models/earshot-en-small.arpa.gz

import argparse
import os
import re
import sys

WORD = re.compile(r"[a-z]+('[a-z]+)*")
VOWELS = set("aeiou")


def plain_words(path):
    """The lines of a word list that are one word (others, e.g. "Asunción", are skipped)."""
    out = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.strip().lower()
            if WORD.fullmatch(w):
                out.add(w)
    return out


def wordnet_lemmas(wordnet_dir, pos):
    """One-word lemmas of a part of speech (index.POS; multi-word lemmas hold '_')."""
    out = set()
    with open(os.path.join(wordnet_dir, "index." + pos), encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" "):  # the licence header
                continue
            lemma = line.split(" ", 1)[0]
            if WORD.fullmatch(lemma):
                out.add(lemma)
    return out


def wordnet_exceptions(wordnet_dir, pos):
    """Irregular forms (first field of each line of POS.exc)."""
    out = set()
    path = os.path.join(wordnet_dir, pos + ".exc")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if fields and WORD.fullmatch(fields[0]):
                out.add(fields[0])
    return out


def s_form(w):
    """The plural of a noun or the third person of a verb: cat -> cats, box -> boxes, fly -> flies."""
    if w.endswith(("s", "x", "z", "ch", "sh")):
        return w + "es"
    if len(w) > 1 and w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ies"
    return w + "s"


def ed_form(w):
    """Regular past: bake -> baked, carry -> carried, walk -> walked (no consonant doubling:
    the dictionary holds the common doubled ones)."""
    if w.endswith("e"):
        return w + "d"
    if len(w) > 1 and w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ied"
    return w + "ed"


def ing_form(w):
    """Present participle: bake -> baking, tie -> tying, see -> seeing, walk -> walking."""
    if w.endswith("ie"):
        return w[:-2] + "ying"
    if w.endswith("e") and not w.endswith(("ee", "ye", "oe")) and len(w) > 2:
        return w[:-1] + "ing"
    return w + "ing"


def build_lexicon(word_lists, wordnet_dir):
    words = set()
    for path in word_lists:
        words |= plain_words(path)
    if wordnet_dir:
        for pos in ("noun", "verb", "adj", "adv"):
            words |= wordnet_lemmas(wordnet_dir, pos)
            words |= wordnet_exceptions(wordnet_dir, pos)
        for noun in wordnet_lemmas(wordnet_dir, "noun"):
            words.add(s_form(noun))
        for verb in wordnet_lemmas(wordnet_dir, "verb"):
            words.update((s_form(verb), ed_form(verb), ing_form(verb)))
    return sorted(words)


def main(argv=None):
    ap = argparse.ArgumentParser(description="an English word list for build_lm.py --lexicon")
    ap.add_argument("--out", required=True, help="output word list, one word per line")
    ap.add_argument("--words", nargs="*", default=["/usr/share/dict/american-english"],
                    help="plain word lists (default: Debian's wamerican)")
    ap.add_argument("--wordnet", default="/usr/share/wordnet",
                    help="WordNet's database folder (wordnet-base); empty to leave WordNet out")
    a = ap.parse_args(argv)
    try:
        words = build_lexicon(a.words, a.wordnet)
    except OSError as e:
        print("lexicon: %s (Debian: apt-get install wamerican wordnet-base)" % e, file=sys.stderr)
        return 1
    with open(a.out, "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + "\n")
    print("lexicon: %d words -> %s" % (len(words), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
