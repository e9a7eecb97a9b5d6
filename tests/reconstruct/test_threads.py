"""choose_threads: the cores idle now, at least one, at most the usable ones."""

import sys

import pytest

from reconstruct import _threads


def test_requested_wins_and_is_checked():
    assert _threads.choose_threads(3) == 3
    with pytest.raises(ValueError, match=">= 1"):
        _threads.choose_threads(0)


@pytest.mark.parametrize("idle, cores, want", [(0.1, 2, 1), (0.9, 2, 1), (1.2, 2, 1), (1.6, 2, 2), (2.0, 2, 2),
                                               (7.9, 8, 8), (3.4, 8, 3), (None, 4, 4)])
def test_rounding(monkeypatch, idle, cores, want):
    monkeypatch.setattr(_threads, "idle_cores", lambda interval=0.25: idle)
    monkeypatch.setattr(_threads, "usable_cores", lambda: cores)
    assert _threads.choose_threads() == want


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_idle_cores_is_measured():
    idle = _threads.idle_cores(0.1)
    assert idle is not None and 0.0 <= idle <= _threads.usable_cores() + 1e-6
