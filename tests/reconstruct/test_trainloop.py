"""The trainers' shared loop: cadence, log, checkpoint on the way out, time budget, resume."""

from __future__ import annotations

import json

import pytest

from reconstruct._trainloop import TrainLoop


def test_loop_logs_checkpoints_and_stops(tmp_path):
    saved = []
    loop = TrainLoop(tmp_path, steps=7, checkpoint=lambda s, e: saved.append(s), ckpt_every=3, desc="t",
                     progress=False)
    seen = []
    with loop:
        for step in loop:
            seen.append(step)
            loop.end_step(record={"x": step} if step % 2 == 0 else None)
    assert seen == list(range(7)) and loop.step == 7
    assert saved == [3, 6, 7]  # the cadence, then once on the way out
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 3, 5, 7] and all("elapsed_s" in r for r in lines)


def test_loop_checkpoints_when_the_step_fails_and_resumes(tmp_path):
    saved = []
    loop = TrainLoop(tmp_path, steps=10, checkpoint=lambda s, e: saved.append(s), ckpt_every=100, desc="t",
                     progress=False)
    with pytest.raises(KeyboardInterrupt):
        with loop:
            for step in loop:
                if step == 4:
                    raise KeyboardInterrupt
                loop.end_step()
    assert saved == [4]  # what was trained is kept
    again = TrainLoop(tmp_path, steps=10, step=4, elapsed=loop.elapsed, checkpoint=lambda s, e: saved.append(s),
                      ckpt_every=100, desc="t", progress=False)
    with again:
        assert next(iter(again)) == 4


def test_loop_time_budget(tmp_path):
    loop = TrainLoop(tmp_path, steps=10**6, elapsed=5.0, max_seconds=5.0, checkpoint=lambda s, e: None,
                     ckpt_every=10, desc="t", progress=False)
    with loop:
        assert list(loop) == []


def test_end_step_is_required(tmp_path):
    loop = TrainLoop(tmp_path, steps=3, checkpoint=lambda s, e: None, ckpt_every=10, desc="t", progress=False)
    with pytest.raises(RuntimeError, match="end_step"):
        with loop:
            for _ in loop:
                pass
