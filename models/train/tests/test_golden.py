#!/usr/bin/env python3
# test_golden.py - Test A: the recipe's PyTorch model reproduces NeMo's own numbers.
#
# For every golden case (../shared/golden/* and tests/golden-extra/*, or the folders given on the
# command line) it loads model.nemo into earshot_model.EncDecModel, with NeMo's state-dict names
# and strict=True, and checks against the arrays NeMo computed:
#   mel                    our preprocessor on audio.wav
#   la{i}_offline_encoded  encoder(mel, mel_length) with look-ahead i
#   la{i}_offline_full_encoded   the same with length = all mel frames
#   la{i}_offline_ctc_log_probs, _frame_ids, _tokens, and the text (CTC head)
#   la{i}_offline_rnnt_tokens   greedy RNNT
# Floats: max|err| <= TOL * max|ref| (TOL = 1e-4 as DESIGN.md section 4); integers: identical.
# Plain script: prints one line per check, then "N passed, N failed"; exits 1 on any failure.
#
#   /usr/bin/python3 models/train/tests/test_golden.py [CASE_DIR ...]

import glob
import json
import os
import sys
import wave

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import earshot_model  # noqa: E402
import nemo_io  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
TOL = 1e-4


def default_cases():
    golden = os.environ.get("EARSHOT_GOLDEN_DIR", os.path.join(REPO, "..", "shared", "golden"))
    dirs = sorted(glob.glob(os.path.join(golden, "*", "manifest.json")))
    dirs += sorted(glob.glob(os.path.join(REPO, "tests", "golden-extra", "*", "manifest.json")))
    return [os.path.dirname(d) for d in dirs]


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, label, detail):
        print("%s %s: %s" % ("PASS" if ok else "FAIL", label, detail))
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def close(self, label, got, ref):
        got = np.asarray(got, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            self.check(False, label, "shape %s, expected %s" % (got.shape, ref.shape))
            return
        err = float(np.max(np.abs(got - ref))) if got.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        rel = err / scale if scale else err
        self.check(rel <= TOL, label, "max|err| %.3g, max|ref| %.3g, relative %.2e (tol %.0e)"
                   % (err, scale, rel, TOL))

    def equal(self, label, got, ref):
        got = [int(x) for x in np.asarray(got).reshape(-1)]
        ref = [int(x) for x in np.asarray(ref).reshape(-1)]
        self.check(got == ref, label, "%d values %s" % (len(ref), "identical" if got == ref else
                                                         "differ (got %s... expected %s...)" % (got[:8], ref[:8])))


def run_case(case, res):
    name = os.path.basename(case.rstrip("/"))
    man = json.load(open(os.path.join(case, "manifest.json")))
    cfg, sd, _, tok_model = nemo_io.read_nemo(os.path.join(case, "model.nemo"))
    model = earshot_model.EncDecModel(cfg)
    # our own filterbank and window (what a freshly built model exports) against NeMo's
    fresh = model.state_dict()
    res.close("%s featurizer.fb (computed)" % name, fresh["preprocessor.featurizer.fb"].numpy(),
              sd["preprocessor.featurizer.fb"].numpy())
    res.close("%s featurizer.window (computed)" % name, fresh["preprocessor.featurizer.window"].numpy(),
              sd["preprocessor.featurizer.window"].numpy())
    missing, unexpected = model.load_state_dict(sd, strict=False)
    res.check(not missing and not unexpected, "%s state_dict" % name,
              "%d tensors, NeMo names; missing %s unexpected %s" % (len(sd), missing[:4], unexpected[:4]))
    model.eval()

    sp = None
    try:
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor()
        sp.LoadFromSerializedProto(tok_model)
    except Exception as e:  # text checks are extra; never fatal
        print("note: no SentencePiece text check (%s)" % e)
        sp = None

    audio = torch.from_numpy(read_wav(os.path.join(case, "audio.wav"))).unsqueeze(0)
    n = torch.tensor([audio.size(1)])
    mel_ref = np.load(os.path.join(case, "mel.npy"))
    with torch.no_grad():
        mel, mel_len = model.preprocessor(audio, n)
    res.close("%s mel" % name, mel[0].numpy(), mel_ref)
    res.equal("%s mel_length" % name, [int(mel_len[0])], [man["mel_length"]])

    feats = torch.from_numpy(mel_ref).unsqueeze(0)
    t_mel = feats.size(2)
    for la in man["lookaheads"]:
        p = la["prefix"]
        acs = list(la["att_context_size"])
        label = "%s %s%s" % (name, p, acs)
        with torch.no_grad():
            enc, enc_len = model.encoder(feats, torch.tensor([man["mel_length"]]), att_context_size=acs)
            full, full_len = model.encoder(feats, torch.tensor([t_mel]), att_context_size=acs)
        T = int(enc_len[0])
        res.close(label + " offline_encoded", enc[0, :, :T].numpy(), np.load(os.path.join(case, p + "offline_encoded.npy")))
        Tf = int(full_len[0])
        res.close(label + " offline_full_encoded", full[0, :, :Tf].numpy(),
                  np.load(os.path.join(case, p + "offline_full_encoded.npy")))
        # the whole chain from audio (our own mel) as well
        with torch.no_grad():
            enc2, _ = model.encoder(mel, mel_len, att_context_size=acs)
        res.close(label + " encoded_from_audio", enc2[0, :, :T].numpy(),
                  np.load(os.path.join(case, p + "offline_encoded.npy")))

        ctc = model.ctc_head
        f_lp = os.path.join(case, p + "offline_ctc_log_probs.npy")
        if ctc is not None and os.path.exists(f_lp):
            with torch.no_grad():
                lp = ctc(enc)[:, :T]
            res.close(label + " offline_ctc_log_probs", lp[0].numpy(), np.load(f_lp))
            res.equal(label + " offline_ctc_frame_ids", lp[0].argmax(-1).numpy(),
                      np.load(os.path.join(case, p + "offline_ctc_frame_ids.npy")))
            toks = model.ctc_greedy(lp, torch.tensor([T]))[0]
            res.equal(label + " offline_ctc_tokens", toks, np.load(os.path.join(case, p + "offline_ctc_tokens.npy")))
            if sp is not None and "offline_ctc_text" in la:
                text = sp.DecodeIds(toks)
                res.check(text == la["offline_ctc_text"], label + " offline_ctc_text", repr(text))
        f_rt = os.path.join(case, p + "offline_rnnt_tokens.npy")
        if model.kind in ("rnnt", "hybrid") and os.path.exists(f_rt):
            toks = model.rnnt_greedy(enc, torch.tensor([T]))[0]
            res.equal(label + " offline_rnnt_tokens", toks, np.load(f_rt))
            if sp is not None and "offline_rnnt_text" in la:
                text = sp.DecodeIds(toks)
                res.check(text == la["offline_rnnt_text"], label + " offline_rnnt_text", repr(text))

    # NeMo's state-dict names and order, round trip: our state_dict() has the same keys.
    ours = list(model.state_dict().keys())
    res.check(ours == list(sd.keys()), "%s state_dict names and order" % name,
              "%d keys %s" % (len(ours), "identical to NeMo's" if ours == list(sd.keys()) else
                             "differ: %s" % sorted(set(ours) ^ set(sd.keys()))[:6]))


def main(argv):
    torch.set_num_threads(int(os.environ.get("EARSHOT_TEST_THREADS", "1")))
    cases = argv or default_cases()
    if not cases:
        print("no golden cases found (set EARSHOT_GOLDEN_DIR)")
        return 1
    res = Results()
    for case in cases:
        try:
            run_case(case, res)
        except Exception as e:  # a crash in one case is a failure, not the end of the run
            import traceback
            traceback.print_exc()
            res.check(False, os.path.basename(case.rstrip("/")), "exception %s: %s" % (type(e).__name__, e))
    print("%d passed, %d failed" % (res.passed, res.failed))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
