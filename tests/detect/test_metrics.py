"""detect.metrics: hand-computed cases, brute force on random data, degenerate and bad input."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from detect import metrics as M


# ----------------------------------------------------------------------------- brute-force references

def auc_pairs(y, s):
    pos = [b for a, b in zip(y, s) if a == 1]
    neg = [b for a, b in zip(y, s) if a == 0]
    win = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return win / (len(pos) * len(neg))


def operating_points(y, s):
    """(fpr, fnr, threshold) for +inf and every distinct score, by counting (score >= t -> fake)."""
    y = list(y)
    n_pos = sum(y)
    n_neg = len(y) - n_pos
    pts = []
    for t in [math.inf] + sorted(set(s), reverse=True):
        tp = sum(1 for a, b in zip(y, s) if a == 1 and b >= t)
        fp = sum(1 for a, b in zip(y, s) if a == 0 and b >= t)
        pts.append((fp / n_neg, 1 - tp / n_pos, t))
    return pts


def random_case(rng, n, ties):
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes
    s = rng.normal(size=n) + 0.8 * y
    if ties:
        s = np.round(s, 1)
    return y, s


# ----------------------------------------------------------------------------- AUC

def test_auc_hand_cases():
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert M.roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert M.roc_auc([0, 1], [0.9, 0.2]) == 0.0
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: half credit
    # one tie between a real and a fake: 3 wins + 0.5 out of 4 pairs
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)
    assert M.roc_auc([False, True], [0, 1]) == 1.0  # booleans as labels


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_brute_force(ties):
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 40, 151):
        y, s = random_case(rng, n, ties)
        assert M.roc_auc(y, s) == pytest.approx(auc_pairs(y, s), abs=1e-12)


def test_auc_invariant_to_monotone_transform():
    rng = np.random.default_rng(1)
    y, s = random_case(rng, 200, ties=True)
    assert M.roc_auc(y, s) == pytest.approx(M.roc_auc(y, np.exp(3 * s) - 7))
    assert M.roc_auc(y, -s) == pytest.approx(1 - M.roc_auc(y, s))


# ----------------------------------------------------------------------------- ROC / EER / TPR@FPR

def test_roc_curve_matches_counting():
    rng = np.random.default_rng(2)
    y, s = random_case(rng, 60, ties=True)
    fpr, tpr, thr = M.roc_curve(y, s)
    ref = operating_points(y, s)
    assert len(ref) == len(thr)
    for (f, fn, t), f2, t2, th in zip(ref, fpr, tpr, thr):
        assert f == pytest.approx(f2) and 1 - fn == pytest.approx(t2) and t == th
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(thr) < 0)


def test_eer_hand_cases():
    # separable: EER 0, threshold the lowest fake score
    assert M.eer([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == (0.0, 0.7)
    # crossing exactly on an operating point (threshold 0.4: FPR = FNR = 0.5)
    assert M.eer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == (0.5, 0.4)
    # perfectly wrong: EER 1
    assert M.eer([0, 1], [0.9, 0.1])[0] == 1.0
    # interpolated crossing: 3 reals, 1 fake in the middle. Points (fpr, fnr):
    # inf (0,1), 0.9 (1/3,1), 0.5 (1/3,0), 0.2 (2/3,0): the crossing is on the vertical step at 1/3
    e, t = M.eer([0, 1, 0, 0], [0.9, 0.5, 0.2, 0.1])
    assert e == pytest.approx(1 / 3) and t == 0.5
    # all tied: the segment (0,1)->(1,0) crosses at 0.5; both ends are as far from it, and the
    # tie goes to the higher threshold (just above every score: nothing called fake)
    e, t = M.eer([0, 1, 0, 1], [0.3] * 4)
    assert e == pytest.approx(0.5) and t == np.nextafter(0.3, np.inf)


@pytest.mark.parametrize("ties", [False, True])
def test_eer_brute_force_bounds(ties):
    """For every operating point, min(FPR, FNR) <= EER <= max(FPR, FNR); and the returned
    threshold really is an operating point next to the crossing."""
    rng = np.random.default_rng(3)
    for n in (2, 5, 30, 120):
        y, s = random_case(rng, n, ties)
        e, t = M.eer(y, s)
        pts = operating_points(y, s)
        lo = max(min(f, fn) for f, fn, _ in pts)
        hi = min(max(f, fn) for f, fn, _ in pts)
        assert lo - 1e-12 <= e <= hi + 1e-12
        # the threshold's operating point is the best of all points by |FPR - FNR| (none closer)
        at_t = [(f, fn) for f, fn, th in pts if th == t or (th == math.inf and t > max(s))]
        assert at_t
        f, fn = at_t[0]
        assert abs(f - fn) <= min(abs(a - b) for a, b, _ in pts) + 1e-12


def test_tpr_at_fpr_hand_cases():
    y = [0] * 10 + [1] * 4
    s = list(range(10)) + [8.5, 9.5, 20, 3]  # reals 0..9; fakes 8.5, 9.5, 20, 3
    # FPR 0: the lowest threshold above every real is 9.5 -> fakes 9.5, 20 -> TPR 2/4
    assert M.tpr_at_fpr(y, s, 0.0) == (0.5, 9.5)
    # FPR <= 0.1 (one real allowed): the lowest such threshold is 8.5 (real 9; fakes 8.5, 9.5, 20)
    assert M.tpr_at_fpr(y, s, 0.1) == (0.75, 8.5)
    assert M.tpr_at_fpr(y, s, 0.2) == (0.75, 8.0)  # threshold 8: reals 8, 9 -> FPR 0.2; fakes 8.5 9.5 20
    assert M.tpr_at_fpr(y, s, 1.0) == (1.0, 0.0)
    # the top score is real: at FPR 0 nothing can be called fake; the threshold sits above every score
    tpr, thr = M.tpr_at_fpr([0, 1], [0.9, 0.1], 0.0)
    assert tpr == 0.0 and thr > 0.9 and math.isfinite(thr)
    with pytest.raises(ValueError, match="fpr"):
        M.tpr_at_fpr(y, s, 1.5)


def test_tpr_at_fpr_brute_force():
    rng = np.random.default_rng(4)
    for ties in (False, True):
        y, s = random_case(rng, 300, ties)
        for target in (0.0, 0.01, 0.05, 0.3):
            tpr, thr = M.tpr_at_fpr(y, s, target)
            pts = operating_points(y, s)
            best = max(1 - fn for f, fn, _ in pts if f <= target)
            assert tpr == pytest.approx(best)
            pred = s >= thr
            assert (pred & (y == 0)).sum() / (y == 0).sum() <= target + 1e-12
            assert (pred & (y == 1)).sum() / (y == 1).sum() == pytest.approx(tpr)


# ----------------------------------------------------------------------------- accuracy / ECE

def test_accuracy_threshold_is_inclusive():
    assert M.accuracy([0, 1, 1], [0.49, 0.5, 0.7]) == 1.0
    assert M.accuracy([0, 1, 1], [0.5, 0.5, 0.7]) == pytest.approx(2 / 3)
    assert M.accuracy([0, 1], [0.2, 0.3], threshold=0.25) == 1.0
    assert M.accuracy([1, 1], [0.9, 0.1]) == 0.5  # one class is fine for accuracy
    assert M.accuracy([], []) is None


def test_ece_hand_cases():
    assert M.ece([1, 1, 0, 0], [1.0, 1.0, 0.0, 0.0]) == 0.0
    assert M.ece([1, 0, 1, 0], [0.8] * 4) == pytest.approx(0.3)  # one bin: |0.8 - 0.5|
    # two bins of two: |0.2 - 0| and |0.9 - 1| -> (2*0.2 + 2*0.1) / 4
    assert M.ece([0, 0, 1, 1], [0.2, 0.2, 0.9, 0.9], n_bins=10) == pytest.approx(0.15)
    # bin edges, 2 bins: 0.4 -> [0, 0.5); 0.5 and 1.0 -> [0.5, 1] (closed): (0.4 + 2 * |0.75 - 0.5|) / 3
    assert M.ece([0, 0, 1], [0.4, 0.5, 1.0], n_bins=2) == pytest.approx(0.3)
    # top-label: p=0.2 predicts real with confidence 0.8, right 1 of 2 -> gap 0.3
    assert M.ece([0, 1], [0.2, 0.2], how="top-label") == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.ece([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match="how"):
        M.ece([0, 1], [0.2, 0.3], how="other")


def test_ece_brute_force():
    rng = np.random.default_rng(5)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p ** 1.5).astype(int)
    n_bins = 15
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = [(pi, yi) for pi, yi in zip(p, y) if lo <= pi < hi or (b == n_bins - 1 and pi == 1.0)]
        if sel:
            total += len(sel) * abs(np.mean([a for a, _ in sel]) - np.mean([c for _, c in sel]))
    assert M.ece(y, p, n_bins) == pytest.approx(total / len(p))


# ----------------------------------------------------------------------------- summary / validation

def test_summary_keys_and_json():
    rng = np.random.default_rng(6)
    y, s = random_case(rng, 100, ties=False)
    p = 1 / (1 + np.exp(-s))
    out = M.summary(y, p)
    json.dumps(out, allow_nan=False)  # plain JSON-able
    assert out["n"] == 100 and out["n_real"] + out["n_fake"] == 100
    assert out["auc"] == pytest.approx(M.roc_auc(y, p))
    assert (out["eer"], out["eer_threshold"]) == M.eer(y, p)
    assert (out["tpr@fpr=0.01"], out["threshold@fpr=0.01"]) == M.tpr_at_fpr(y, p, 0.01)
    assert out["accuracy"] == M.accuracy(y, p, 0.5)
    assert out["ece"] == M.ece(y, p)
    assert out["undefined"] == {}
    # raw logits are not probabilities: ECE undefined, with its reason
    out = M.summary(y, s * 5)
    assert out["ece"] is None and "probabilities" in out["undefined"]["ece"]


def test_one_class_gives_none_with_reason():
    for y in ([0, 0, 0], [1, 1]):
        s = [0.1] * len(y)
        assert M.roc_auc(y, s) is None and M.eer(y, s) is None and M.tpr_at_fpr(y, s) is None
        assert M.roc_curve(y, s) is None
        assert "both classes" in M.undefined_reason(y)
        out = M.summary(y, s)
        assert out["auc"] is None and "both classes" in out["undefined"]["auc"]
        assert out["accuracy"] is not None and "accuracy" not in out["undefined"]
    out = M.summary([], [])
    assert out["n"] == 0 and out["accuracy"] is None and out["undefined"]["accuracy"] == "no samples"


@pytest.mark.parametrize("y, s, match", [
    ([0, 1, 1], [0.1, 0.2], "length"),
    ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ([0, 2], [0.1, 0.2], "0 \\(real\\) and 1"),
    ([0, 1], [0.1, float("nan")], "NaN"),
    ([0, 1], [0.1, float("inf")], "infinite"),
    (["a", "b"], [0.1, 0.2], "0/1"),
])
def test_bad_input_raises_with_reason(y, s, match):
    for fn in (M.roc_auc, M.eer, M.tpr_at_fpr, M.accuracy, M.summary):
        with pytest.raises(ValueError, match=match):
            fn(y, s)


# ----------------------------------------------------------------------------- video pooling

def test_video_scores():
    f = [0.1, 0.9, float("nan"), 0.5, 0.3]
    assert M.video_scores(f) == pytest.approx(0.45)
    assert M.video_scores(f, "max") == 0.9
    assert M.video_scores(f, "top-k mean", k=2) == pytest.approx(0.7)
    assert M.video_scores(f, "top-k mean", k=50) == pytest.approx(0.45)
    out = M.video_scores({"a": [0.2, 0.4], "b": [], "c": [float("nan")]}, "mean")
    assert out == {"a": pytest.approx(0.3), "b": None, "c": None}
    with pytest.raises(ValueError, match="how"):
        M.video_scores(f, "median")
    with pytest.raises(ValueError, match="k must"):
        M.video_scores(f, "top-k mean", k=0)


def test_metrics_module_is_light():
    import subprocess
    import sys
    code = "import sys, detect.metrics; assert 'torch' not in sys.modules; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
