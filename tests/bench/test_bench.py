#!/usr/bin/env python3
"""test_bench.py - earshot-bench on a tiny random model (Python 3 standard library only).

Usage: test_bench.py --bench BIN

Checks that the shape flags reach the model, that every latency mode (the random model's
look-aheads [70,13], [70,6], [70,1], [70,0]: 1120, 560, 160 and 80 ms) and every batch size gives
one markdown row whose figures agree with each other and with the JSON, that a kept --model is
reused, that an impossible shape is refused, and that --backend cuda either runs (a GPU) or
refuses with exit 2 and the reason. Prints "N passed, N failed" last; exits 1 on failure.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (the shared check, counting in ts.passed / ts.failed)

check = ts.check


TINY = ["--layers", "2", "--d-model", "64", "--heads", "2", "--ff", "128", "--conv-kernel", "5",
        "--sub-channels", "16", "--vocab", "32", "--threads", "1", "--seconds", "0.2", "--steps", "20"]


def rows(out):
    """The table's data rows as lists of cells."""
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in out.splitlines()
            if re.match(r"^\| \d+ ms \[", l)]


def num(cell):
    return float(cell.split()[0])


def mb(cell):
    v, unit = cell.split()
    return float(v) * (1024 if unit == "GB" else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="test_bench.")
    try:
        model, js = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "out.json")
        r = subprocess.run([a.bench, "--backend", "cpu", "--model", model, "--batch", "1,2,4", "--json", js] + TINY,
                           capture_output=True, text=True, timeout=240)
        check("cpu, tiny model, batches 1,2,4: exit 0", r.returncode == 0, r.stderr[-800:])
        check("the shape flags reach the model",
              "2 layers x d_model 64 (2 heads, ff 128, conv kernel 5, 16 subsampling channels, vocabulary 32)"
              in r.stdout, r.stdout[:400])
        rs = rows(r.stdout)
        modes = sorted({(int(x[0].split()[0]), x[0].split("[")[1].rstrip("]")) for x in rs})
        check("4 modes x 3 batches = 12 rows", len(rs) == 12, r.stdout)
        check("chunk modes: [70,13] 1120 ms, [70,6] 560, [70,1] 160, [70,0] 80",
              modes == [(80, "70,0"), (160, "70,1"), (560, "70,6"), (1120, "70,13")], modes)
        bad = []
        for x in rs:
            chunk_s, B = int(x[0].split()[0]) / 1000, int(x[1])
            p50, p99, streams, per, total, steps = num(x[2]), num(x[3]), num(x[4]), mb(x[5]), mb(x[6]), int(x[7])
            ok = (0 < p50 <= p99 and abs(streams - B * chunk_s / (p50 / 1000)) <= 0.5 + 0.01 * streams
                  and per > 0 and abs(total - per * B) <= 0.05 + 0.01 * per * B and 3 <= steps <= 20)
            ok = ok and len(x) == 12 and num(x[8]) > 0 and x[10].endswith("x")  # the buffered columns on the CPU
            if not ok:
                bad.append(x)
        check("each row: p50 <= p99, RT streams = B x chunk / p50, memory = B x state, 3..20 steps, buffered "
              "columns", rs and not bad, bad[:3])
        try:
            res = json.load(open(js))["results"]
        except (OSError, ValueError, KeyError) as e:
            res = repr(e)
        check("--json: 12 results matching the table's batches and modes",
              isinstance(res, list) and len(res) == 12
              and sorted((x["chunk_ms"], x["batch"]) for x in res)
              == sorted((int(y[0].split()[0]), int(y[1])) for y in rs)
              and all(x["cache_aware_p99_ms"] >= x["cache_aware_p50_ms"] > 0 and x["state_bytes_per_stream"] > 0
                      for x in res), res)

        r = subprocess.run([a.bench, "--model", model, "--modes", "160", "--batch", "2", "--no-buffered"] + TINY,
                           capture_output=True, text=True, timeout=120)
        rs = rows(r.stdout)
        check("a kept --model is reused; --modes 160 --batch 2 --no-buffered: one row, no buffered columns",
              r.returncode == 0 and "writing a random" not in r.stderr and len(rs) == 1 and rs[0][1] == "2"
              and len(rs[0]) == 9, (r.returncode, r.stderr[-300:], rs))

        r = subprocess.run([a.bench, "--model", os.path.join(tmp, "bad.safetensors"), "--heads", "3"] + TINY[2:4],
                           capture_output=True, text=True, timeout=60)
        check("--heads 3 with d_model 64: refused, exit 2, the reason named",
              r.returncode == 2 and "no such model" in r.stderr, (r.returncode, r.stderr[-300:]))
        r = subprocess.run([a.bench, "--backend", "tpu"], capture_output=True, text=True, timeout=60)
        check("--backend tpu: exit 2", r.returncode == 2 and "--backend" in r.stderr, r.stderr)

        r = subprocess.run([a.bench, "--backend", "cuda", "--model", model, "--modes", "160", "--batch", "1,2"] + TINY,
                           capture_output=True, text=True, timeout=240)
        if r.returncode == 2 and "--backend cuda is not available:" in r.stderr:
            print("skipped: no GPU")
            check("--backend cuda without a GPU: exit 2 with the reason",
                  len(r.stderr.split("not available:", 1)[1].strip()) > 5, r.stderr)
        else:
            rs = rows(r.stdout)
            check("--backend cuda with a GPU: a row per batch, p50 > 0, device memory > 0",
                  r.returncode == 0 and len(rs) == 2 and all(num(x[2]) > 0 and num(x[5]) > 0 for x in rs),
                  (r.returncode, r.stdout[-800:], r.stderr[-800:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (ts.passed, ts.failed))
    return 1 if ts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
