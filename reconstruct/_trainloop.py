"""The loop the trainers share (PIFu, the depth net, the head): progress bar, JSONL log, step
timing, checkpoint cadence, a checkpoint on the way out (done, interrupted or failed), and an
optional time budget. Each trainer keeps its own model, data, loss and state format.

Example::

    loop = TrainLoop(out, steps=cfg.steps, step=step, elapsed=elapsed, checkpoint=save,
                     ckpt_every=cfg.ckpt_every, desc="train", progress=progress)
    with loop:
        for step in loop:                 # steps done so far, while step < steps (and the budget)
            loss = ...                    # one optimiser step
            loop.end_step(postfix={"loss": f"{loss:.4f}"},
                          record={"loss": loss} if (step + 1) % log_every == 0 else None)

``save(step, elapsed)`` writes the trainer's resumable state; the loop calls it every
``ckpt_every`` steps and once on exit. ``record`` dicts go to ``out/log.jsonl`` with the step and
the elapsed seconds added.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable


class TrainLoop:
    def __init__(self, out: Path, *, steps: int, step: int = 0, elapsed: float = 0.0,
                 checkpoint: Callable[[int, float], None], ckpt_every: int, desc: str,
                 progress: bool = True, max_seconds: float | None = None):
        self.out, self.steps, self.step, self.elapsed = Path(out), int(steps), int(step), float(elapsed)
        self.checkpoint, self.ckpt_every, self.max_seconds = checkpoint, int(ckpt_every), max_seconds
        self.desc, self.progress = desc, progress
        self._bar = self._log = None
        self._t0: float | None = None

    def __enter__(self) -> "TrainLoop":
        if self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps, initial=self.step, desc=self.desc, unit="step")
        self._log = open(self.out / "log.jsonl", "a")
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self.checkpoint(self.step, self.elapsed)  # done, interrupted or failed: keep what was trained
        finally:
            self._log.close()
            if self._bar is not None:
                self._bar.close()
        return False

    def running(self) -> bool:
        return self.step < self.steps and not (self.max_seconds and self.elapsed >= self.max_seconds)

    def __iter__(self):
        while self.running():
            self._t0 = time.perf_counter()
            yield self.step
            if self._t0 is not None:
                raise RuntimeError("TrainLoop: end_step() was not called for the step")

    def end_step(self, postfix: dict | None = None, record: dict | None = None) -> None:
        """Count the step just done: its time, the progress bar, a log line, the checkpoint cadence."""
        self.elapsed += time.perf_counter() - self._t0
        self._t0 = None
        self.step += 1
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix(**postfix)
        if record:
            self.log({"step": self.step, **record, "elapsed_s": round(self.elapsed, 2)})
        if self.step % self.ckpt_every == 0:
            self.checkpoint(self.step, self.elapsed)

    def log(self, record: dict) -> None:
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()
