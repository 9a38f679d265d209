#!/usr/bin/env python3
"""test_bench_decode.py - earshot-bench-decode on the shipped model and LM (standard library only).

Usage: test_bench_decode.py --bench BIN --no-lm-model MODEL

Checks that each stream count gives a greedy row and an LM row whose figures are sane and agree
(the same audio takes the same number of steps whichever the decoder), that --beams gives a row
per width, and that bad input is refused with its reason: a bad --streams or --beams, a missing
audio file, a model with no LM beside it.
Prints "N passed, N failed" last; exits 1 on failure.
"""
import argparse, os, re, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (the shared check, counting in ts.passed / ts.failed)

check = ts.check


def rows(out):
    """The table's data rows as lists of cells."""
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in out.splitlines()
            if re.match(r"^\| \d+ \| ", l)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--no-lm-model", required=True, help="a model with no .arpa.gz beside it")
    a = ap.parse_args()
    r = subprocess.run([a.bench, "--streams", "1,3", "--seconds", "3", "--threads", "2"],
                       capture_output=True, text=True, timeout=240)
    check("shipped model, streams 1 and 3: exit 0", r.returncode == 0, r.stderr[-800:])
    got = rows(r.stdout)
    check("a greedy and an LM row per stream count",
          [(x[0], x[1].split()[0]) for x in got] == [("1", "greedy"), ("1", "beam"), ("3", "greedy"), ("3", "beam")],
          r.stdout)
    for x in got:
        steps, p50, p99, speed = int(x[2]), float(x[3].split()[0]), float(x[4].split()[0]), float(x[5])
        check("streams %s, %s: steps, p50 <= p99, audio per wall second > 0" % (x[0], x[1]),
              steps > 0 and 0 < p50 <= p99 and speed > 0, x)
    if len(got) == 4:
        # 3 s at 560 ms chunks: the same chunks, so the same steps, whichever the decoder
        check("greedy and LM take the same steps", got[0][2] == got[1][2] and got[2][2] == got[3][2], got)
        check("the LM rows say what the search costs", all(re.match(r"^[+-]\d+ %$", x[6]) for x in (got[1], got[3])),
              got)

    # several widths: a row per width, in the order given, each timed on the same steps
    r = subprocess.run([a.bench, "--streams", "2", "--seconds", "2", "--threads", "2", "--beams", "8,32"],
                       capture_output=True, text=True, timeout=240)
    got = rows(r.stdout)
    check("--beams 8,32: exit 0, greedy then beam 8 then beam 32",
          r.returncode == 0 and [x[1] for x in got] == ["greedy CTC (baseline)", "beam 8 + LM", "beam 32 + LM"],
          (r.returncode, r.stdout, r.stderr[-400:]))
    check("--beams 8,32: the same steps for every decoder", len({x[2] for x in got}) == 1, got)

    r = subprocess.run([a.bench, "--streams", "0"], capture_output=True, text=True, timeout=60)
    check("--streams 0: exit 2 with the reason", r.returncode == 2 and "--streams" in r.stderr, r.stderr)
    for bad in ("0", "64,", "8,16,32,64,128", "2000"):
        r = subprocess.run([a.bench, "--beams", bad], capture_output=True, text=True, timeout=60)
        check("--beams %s: exit 2 with the reason" % bad, r.returncode == 2 and "--beams" in r.stderr, r.stderr)
    r = subprocess.run([a.bench, "--streams", "1", "--seconds", "1", "--audio", "/nonexistent/a.wav"],
                       capture_output=True, text=True, timeout=60)
    check("a missing audio file: exit 1, the file named", r.returncode == 1 and "/nonexistent/a.wav" in r.stderr,
          (r.returncode, r.stderr))
    r = subprocess.run([a.bench, "--model", a.no_lm_model], capture_output=True, text=True, timeout=60)
    check("a model with no LM: exit 2, asks for --lm", r.returncode == 2 and "--lm" in r.stderr, r.stderr)

    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
