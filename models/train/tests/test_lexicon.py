#!/usr/bin/env python3
# test_lexicon.py - lexicon.py gathers the words a dictionary knows, and build_lm.py --lexicon
# adds them to the LM without breaking it as a distribution.
#
# Checked, on small hand-written inputs (a fake WordNet folder and word list in a temporary
# folder, so the test needs neither wamerican nor wordnet-base):
#   - English spelling rules for the regular forms (plural, -s, -ed, -ing) on words chosen to
#     hit each rule;
#   - lexicon.py keeps one-word lines, lower-cased, and skips phrases, hyphens and letters
#     outside a-z; it adds WordNet's one-word lemmas, its irregular forms, and the regular forms
#     of its nouns and verbs, but no verb forms of nouns;
#   - build_lm.py --lexicon: a lexicon word the text never used gets exactly --lexicon-weight
#     times <unk>'s probability, words the text used keep theirs up to the leftover's new
#     spread, and the 1-grams still sum to 1; a bad weight, an empty or a missing lexicon is refused.
# Plain script: prints one line per check, then "N passed, N failed"; exits 1 on any failure.
#
#   python3 models/train/tests/test_lexicon.py

import io
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.dirname(HERE)
sys.path.insert(0, TRAIN)

import lexicon  # noqa: E402

passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("  ok   " if ok else "  FAIL ") + what)
    if ok:
        passed += 1
    else:
        failed += 1


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read_unigrams(path):
    """{word: log10 prob} of an ARPA file's 1-grams."""
    out = {}
    with open(path, encoding="utf-8") as f:
        section = None
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("\\"):
                section = line
                continue
            if section == "\\1-grams:" and line:
                fields = line.split("\t")
                out[fields[1]] = float(fields[0])
    return out


def test_rules():
    print("spelling rules")
    cases = [(lexicon.s_form, "cat", "cats"), (lexicon.s_form, "box", "boxes"), (lexicon.s_form, "church", "churches"),
             (lexicon.s_form, "fly", "flies"), (lexicon.s_form, "day", "days"), (lexicon.s_form, "bus", "buses"),
             (lexicon.ed_form, "bake", "baked"), (lexicon.ed_form, "carry", "carried"), (lexicon.ed_form, "play", "played"),
             (lexicon.ed_form, "walk", "walked"), (lexicon.ing_form, "bake", "baking"), (lexicon.ing_form, "see", "seeing"),
             (lexicon.ing_form, "tie", "tying"), (lexicon.ing_form, "walk", "walking"), (lexicon.ing_form, "be", "being"),
             (lexicon.ing_form, "dye", "dyeing")]
    for rule, word, want in cases:
        got = rule(word)
        check(got == want, "%s(%s) = %s, want %s" % (rule.__name__, word, got, want))


def fake_wordnet(folder):
    header = "  1 This software and database is being provided to you, the LICENSEE\n"
    write(os.path.join(folder, "index.noun"), header + "guillemot n 1 1 @ 1 0 01234567\nsea_eagle n 1 0 1 0 01234568\n"
          "church n 2 1 @ 2 1 01234569 01234570\n")
    write(os.path.join(folder, "index.verb"), header + "realign v 1 1 @ 1 0 00000001\ncarry v 1 1 @ 1 0 00000002\n")
    write(os.path.join(folder, "index.adj"), header + "reddish a 1 0 1 0 00000003\n")
    write(os.path.join(folder, "index.adv"), header + "swiftly r 1 0 1 0 00000004\n")
    write(os.path.join(folder, "noun.exc"), "geese goose\n")
    write(os.path.join(folder, "verb.exc"), "swam swim\nwent go\n")
    write(os.path.join(folder, "adj.exc"), "redder red\n")
    write(os.path.join(folder, "adv.exc"), "better well\n")


def test_lexicon(tmp):
    print("lexicon.py")
    wn = os.path.join(tmp, "wordnet")
    os.mkdir(wn)
    fake_wordnet(wn)
    words_path = os.path.join(tmp, "words")
    write(words_path, "Aaron\nzebra's\nAsunción\ne-mail\ntwo words\n\nfish\n")
    out = os.path.join(tmp, "lexicon.txt")
    r = subprocess.run([sys.executable, os.path.join(TRAIN, "lexicon.py"), "--out", out, "--words", words_path,
                        "--wordnet", wn], capture_output=True, text=True)
    check(r.returncode == 0, "lexicon.py runs: %s" % r.stderr.strip())
    got = open(out, encoding="utf-8").read().split("\n")[:-1] if r.returncode == 0 else []
    check(got == sorted(got) and len(got) == len(set(got)), "sorted, one word per line, no repeats")
    want = {"aaron", "zebra's", "fish", "guillemot", "guillemots", "church", "churches", "realign", "realigns",
            "realigned", "realigning", "carry", "carries", "carried", "carrying", "reddish", "swiftly", "geese",
            "swam", "went", "redder", "better"}
    check(want <= set(got), "holds the word list's words, lemmas, irregular and regular forms (missing: %s)"
          % sorted(want - set(got)))
    unwanted = {"asunción", "asunci", "e-mail", "email", "two", "words", "sea_eagle", "sea", "guillemoted",
                "churching", "reddishes"}
    check(not (unwanted & set(got)), "no phrases, hyphenated or accented words, nor verb forms of nouns (found: %s)"
          % sorted(unwanted & set(got)))
    r = subprocess.run([sys.executable, os.path.join(TRAIN, "lexicon.py"), "--out", out, "--words",
                        os.path.join(tmp, "missing"), "--wordnet", wn], capture_output=True, text=True)
    check(r.returncode == 1 and "missing" in r.stderr, "a missing word list is named: %s" % r.stderr.strip())


def build_lm(tmp, name, *extra):
    out = os.path.join(tmp, name)
    r = subprocess.run([sys.executable, os.path.join(TRAIN, "build_lm.py"), "--text",
                        os.path.join(tmp, "text.txt"), "--order", "2", "--out", out] + list(extra),
                       capture_output=True, text=True)
    return r, out


def test_build_lm(tmp):
    print("build_lm.py --lexicon")
    write(os.path.join(tmp, "text.txt"), "the cat sat\nthe dog sat on the cat\na cat ran\n")
    lex = os.path.join(tmp, "lex.txt")
    write(lex, "cats\nran\nzebra\nnot a word\n")
    r, plain_path = build_lm(tmp, "plain.arpa")
    check(r.returncode == 0, "plain LM builds: %s" % r.stderr.strip())
    r, lex_path = build_lm(tmp, "lex.arpa", "--lexicon", lex, "--lexicon-weight", "0.25")
    check(r.returncode == 0 and "adds 2 words" in r.stdout, "LM with a lexicon builds and says what it adds: %s"
          % (r.stdout + r.stderr).strip())
    if r.returncode != 0:
        return
    plain, withlex = read_unigrams(plain_path), read_unigrams(lex_path)
    check(set(withlex) - set(plain) == {"cats", "zebra"}, "the 1-grams gain exactly the unseen lexicon words: %s"
          % sorted(set(withlex) - set(plain)))
    ratio = 10 ** (withlex["cats"] - withlex["<unk>"])
    check(abs(ratio - 0.25) < 1e-4, "P(cats) = 0.25 x P(<unk>): ratio %.5f" % ratio)
    total = sum(10 ** lp for w, lp in withlex.items() if w != "<s>")
    check(abs(total - 1.0) < 1e-4, "the 1-grams sum to 1: %.6f" % total)
    check(withlex["sat"] < plain["sat"] and withlex["sat"] > plain["sat"] - 0.05,
          "a seen word gives up a little of its leftover share: %.4f -> %.4f" % (plain["sat"], withlex["sat"]))
    r, _ = build_lm(tmp, "bad.arpa", "--lexicon", lex, "--lexicon-weight", "0")
    check(r.returncode != 0 and "--lexicon-weight must be positive" in r.stderr, "weight 0 refused")
    empty = os.path.join(tmp, "empty.txt")
    write(empty, "two words\n\n")
    r, _ = build_lm(tmp, "bad.arpa", "--lexicon", empty)
    check(r.returncode == 1 and "holds no words" in r.stderr, "a lexicon without words refused: %s" % r.stderr.strip())
    r, _ = build_lm(tmp, "bad.arpa", "--lexicon", os.path.join(tmp, "no-such-list"))
    check(r.returncode == 1 and "cannot read the lexicon" in r.stderr and "no-such-list" in r.stderr,
          "a missing lexicon named: %s" % r.stderr.strip())


def main():
    test_rules()
    with tempfile.TemporaryDirectory() as tmp:
        test_lexicon(tmp)
        test_build_lm(tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
