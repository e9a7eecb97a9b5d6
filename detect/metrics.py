"""Detector evaluation metrics, from scratch with numpy: AUC, EER, TPR at a fixed FPR, accuracy,
calibration error, one summary dict, and frame-to-video score pooling.

Conventions (the same in every function):

- ``y_true`` holds 0 (real, negative) or 1 (fake, positive); ``score`` is "how fake": higher means
  more likely fake. Booleans are accepted for ``y_true``.
- A sample is called fake when ``score >= threshold`` (ties go to "fake").
- Malformed input is a bug in the caller and raises ``ValueError`` naming the problem: not 1-D,
  lengths that differ, labels other than 0/1, NaN or infinite scores, probabilities outside
  [0, 1]. A metric that is *undefined for this data* (no samples, or only one class where it needs
  both) returns ``None``; :func:`undefined_reason` and :func:`summary` say why.

Example::

    >>> y = [0, 0, 1, 1]; s = [0.1, 0.4, 0.35, 0.8]
    >>> roc_auc(y, s)
    0.75
    >>> summary(y, s)["eer"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "accuracy",
    "check_inputs",
    "ece",
    "eer",
    "roc_auc",
    "roc_curve",
    "summary",
    "tpr_at_fpr",
    "undefined_reason",
    "video_scores",
    "VIDEO_POOLING",
]

VIDEO_POOLING = ("mean", "max", "top-k mean")


# ----------------------------------------------------------------------------- input checks

def check_inputs(y_true, score, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, s)`` as int8 / float64 1-D arrays, or raise ``ValueError`` naming the problem.

    ``probabilities=True`` also requires ``0 <= score <= 1``.
    """
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true and score must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true and score differ in length: {y.shape[0]} != {s.shape[0]}")
    if y.dtype == bool:
        y = y.astype(np.int8)
    elif y.size:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"y_true must be 0/1 numbers, got dtype {y.dtype}")
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            raise ValueError(f"y_true must hold only 0 (real) and 1 (fake); found {y[bad][:5].tolist()}")
    y = y.astype(np.int8)
    if not np.isfinite(s).all():
        raise ValueError(f"score has {int((~np.isfinite(s)).sum())} NaN or infinite values")
    if probabilities and s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], got [{s.min():.4g}, {s.max():.4g}]")
    return y, s


def undefined_reason(y_true, score=None, *, need_both: bool = True) -> str | None:
    """Why a metric is undefined for this data (``None`` when it is defined).

    ``need_both``: the metric needs real and fake samples (AUC, EER, TPR at FPR). Accuracy and ECE
    only need one sample.
    """
    y = np.asarray(y_true)
    if y.size == 0:
        return "no samples"
    if need_both:
        n_pos = int((y == 1).sum())
        n_neg = int(y.size - n_pos)
        if n_pos == 0:
            return f"only real samples (n_real={n_neg}, n_fake=0): needs both classes"
        if n_neg == 0:
            return f"only fake samples (n_real=0, n_fake={n_pos}): needs both classes"
    return None


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of ``s`` with ties given the mean of the ranks they span."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of (start+1 .. end) 1-based
    run_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = mean_rank[run_of]
    return ranks


# ----------------------------------------------------------------------------- ranking metrics

def roc_auc(y_true, score) -> float | None:
    """Area under the ROC curve, by the Mann-Whitney U statistic.

    AUC = P(score of a random fake > score of a random real) + 0.5 * P(equal): ties count half,
    which is the area under the piecewise-linear ROC through every operating point. ``None`` when
    a class is missing.
    """
    y, s = check_inputs(y_true, score)
    if undefined_reason(y) is not None:
        return None
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    ranks = _average_ranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every operating point: ``(fpr, tpr, thresholds)``, thresholds strictly decreasing.

    Point k calls fake every sample with ``score >= thresholds[k]``. The first point is
    ``threshold = +inf`` (nothing called fake: FPR = TPR = 0), then one point per distinct score;
    the last one calls everything fake (FPR = TPR = 1). ``None`` when a class is missing.
    """
    y, s = check_inputs(y_true, score)
    if undefined_reason(y) is not None:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    # the last index of each run of equal scores: the operating point after taking the whole run
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    thr = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thr


def eer(y_true, score) -> tuple[float, float] | None:
    """Equal error rate and a threshold near it: ``(eer, threshold)``.

    The ROC is taken as the piecewise-linear curve through every operating point (see
    :func:`roc_curve`). As the threshold falls FPR rises and FNR = 1 - TPR falls, so the curve
    crosses FPR = FNR exactly once; ``eer`` is the error rate at that crossing (linear
    interpolation between the two operating points that bracket it). For every operating point
    ``min(FPR, FNR) <= eer <= max(FPR, FNR)``.

    ``threshold`` is a score that can actually be used (``score >= threshold`` -> fake): of the two
    bracketing operating points, the one with the smaller ``|FPR - FNR|`` (the higher threshold on a
    tie); +inf is never returned (a threshold above every score is returned as the next float up).
    ``None`` when a class is missing.
    """
    curve = roc_curve(y_true, score)
    if curve is None:
        return None
    fpr, tpr, thr = curve
    fnr = 1.0 - tpr
    d = fnr - fpr  # starts at 1 (threshold +inf), ends at -1, never increases
    j = int(np.flatnonzero(d <= 0)[0])  # first point at or past the crossing; j >= 1
    i = j - 1
    if d[j] == 0:
        value = float(fpr[j])
    else:
        # point on the segment i->j where fnr == fpr: t = d_i / (d_i - d_j)
        t = d[i] / (d[i] - d[j])
        value = float(fpr[i] + t * (fpr[j] - fpr[i]))
    k = j if abs(d[j]) < abs(d[i]) else i
    return value, _finite_threshold(thr[k], thr)


def _finite_threshold(t: float, thr: np.ndarray) -> float:
    if np.isinf(t):
        return float(np.nextafter(thr[1], np.inf))  # above the highest score: nothing called fake
    return float(t)


def tpr_at_fpr(y_true, score, fpr: float = 0.01) -> tuple[float, float] | None:
    """True-positive rate at a false-positive rate no higher than ``fpr``: ``(tpr, threshold)``.

    Convention: the *lowest* threshold (``score >= threshold`` -> fake) whose empirical FPR on this
    data is ``<= fpr``; never interpolated. With n real samples the smallest FPR the data can
    resolve is 1/n: with fewer than 1/fpr real samples this is the TPR at FPR = 0 (check
    ``n_real`` in :func:`summary`). When even the highest score has a real sample on it the
    threshold is just above every score and the TPR is 0. ``None`` when a class is missing.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    curve = roc_curve(y_true, score)
    if curve is None:
        return None
    f, t, thr = curve
    k = int(np.flatnonzero(f <= fpr)[-1])  # f is non-decreasing and f[0] == 0
    return float(t[k]), _finite_threshold(thr[k], thr)


# ----------------------------------------------------------------------------- threshold / calibration

def accuracy(y_true, score, threshold: float = 0.5) -> float | None:
    """Fraction of samples where ``(score >= threshold) == y_true``. ``None`` when there are none."""
    y, s = check_inputs(y_true, score)
    if y.size == 0:
        return None
    return float(((s >= threshold).astype(np.int8) == y).mean())


def ece(y_true, prob, n_bins: int = 15, *, how: str = "fake") -> float | None:
    """Expected calibration error of probabilities, equal-width bins.

    ``how="fake"`` (default): ``prob`` is P(fake); bins over [0, 1] by ``prob``, and ECE is the
    sample-weighted mean over non-empty bins of ``|mean(prob) - fraction fake|`` (the
    reliability diagram of the fake class). ``how="top-label"``: Guo et al. (2017) on the
    predicted class, confidence ``max(p, 1-p)`` against "prediction correct" (``p >= 0.5`` ->
    fake). Bin b is ``[b/n, (b+1)/n)``, the last one closed. ``None`` when there are no samples.
    """
    y, p = check_inputs(y_true, prob, probabilities=True)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if y.size == 0:
        return None
    if how == "fake":
        conf, hit = p, y.astype(np.float64)
    elif how == "top-label":
        pred = (p >= 0.5).astype(np.int8)
        conf = np.where(pred == 1, p, 1.0 - p)
        hit = (pred == y).astype(np.float64)
    else:
        raise ValueError(f"how must be 'fake' or 'top-label', got {how!r}")
    b = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(b, weights=hit, minlength=n_bins)
    nz = count > 0
    gap = np.abs(sum_conf[nz] - sum_hit[nz])  # = count * |mean conf - mean hit|
    return float(gap.sum() / y.size)


# ----------------------------------------------------------------------------- summary

def summary(y_true, score, *, threshold: float = 0.5, fprs: Sequence[float] = (0.01, 0.001),
            n_bins: int = 15) -> dict:
    """Every metric at once, as plain JSON-able data.

    Keys: ``n``, ``n_real``, ``n_fake``, ``auc``, ``eer``, ``eer_threshold``,
    ``tpr@fpr=<f>`` and ``threshold@fpr=<f>`` for each f in ``fprs``, ``accuracy`` (at
    ``threshold``), ``threshold``, ``ece`` (only when every score is in [0, 1], else ``None``),
    ``score_min``/``score_max``, and ``undefined``: ``{metric: reason}`` for every metric that is
    ``None``.
    """
    y, s = check_inputs(y_true, score)
    n_fake = int(y.sum())
    out: dict = {"n": int(y.size), "n_real": int(y.size - n_fake), "n_fake": n_fake,
                 "score_min": float(s.min()) if s.size else None,
                 "score_max": float(s.max()) if s.size else None}
    undefined: dict[str, str] = {}
    both = undefined_reason(y, need_both=True)
    one = undefined_reason(y, need_both=False)

    out["auc"] = roc_auc(y, s)
    e = eer(y, s)
    out["eer"], out["eer_threshold"] = (e if e is not None else (None, None))
    for f in fprs:
        r = tpr_at_fpr(y, s, f)
        out[f"tpr@fpr={f:g}"], out[f"threshold@fpr={f:g}"] = (r if r is not None else (None, None))
    if both is not None:
        for k in ["auc", "eer"] + [f"tpr@fpr={f:g}" for f in fprs]:
            undefined[k] = both
    out["threshold"] = float(threshold)
    out["accuracy"] = accuracy(y, s, threshold)
    if one is not None:
        undefined["accuracy"] = one
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        out["ece"] = None
        undefined["ece"] = "scores are not probabilities (outside [0, 1])"
    else:
        out["ece"] = ece(y, s, n_bins)
        if one is not None:
            undefined["ece"] = one
    out["undefined"] = undefined
    return out


# ----------------------------------------------------------------------------- video pooling

def _pool(frames, how: str, k: int) -> float | None:
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"frame scores must be 1-D, got shape {x.shape}")
    if np.isinf(x).any():
        raise ValueError("frame scores contain infinite values")
    x = x[~np.isnan(x)]  # NaN = no face scored in that frame
    if x.size == 0:
        return None
    if how == "mean":
        return float(x.mean())
    if how == "max":
        return float(x.max())
    top = np.sort(x)[::-1][: min(k, x.size)]
    return float(top.mean())


def video_scores(frame_scores, how: str = "mean", *, k: int = 5):
    """Pool per-frame scores into one score per video.

    ``frame_scores``: one video's frame scores (a 1-D sequence -> a float), or
    ``{video_id: frame scores}`` (-> ``{video_id: float}``). NaN marks a frame where no face was
    scored and is dropped; a video with no scored frame gets ``None``.
    ``how``: ``"mean"``, ``"max"`` or ``"top-k mean"`` (the mean of the ``k`` highest frames, all
    of them when there are fewer than ``k``).
    """
    if how not in VIDEO_POOLING:
        raise ValueError(f"how must be one of {VIDEO_POOLING}, got {how!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if isinstance(frame_scores, Mapping):
        return {vid: _pool(v, how, k) for vid, v in frame_scores.items()}
    return _pool(frame_scores, how, k)
