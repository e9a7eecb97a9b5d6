"""The one interface every face-forgery detector has: config dataclass, preprocess, forward,
loss, predict_proba, save.

Shape letters: B batch, C channels, H/W height/width, S the model's square input side
(``config.input_size``); h/w the localisation map's size.

- ``preprocess(images) -> x``: uint8 images (numpy or torch; ``[B,H,W,C]``, one ``[H,W,C]`` /
  ``[H,W]`` image, or a list of them, any size) to float ``[B,C,S,S]`` on the model's device.
  Each image is resized to ``S x S`` (bilinear, antialiased; the aspect ratio is not kept: give
  square face crops), greyscale is repeated to 3 channels (RGB is turned to luma for a
  1-channel model, alpha is dropped), then ``x = (pixel / 255 - mean) / std``.
- ``forward(x) -> DetectorOutput``: ``logits [B]`` (fake is positive: ``sigmoid(logits)`` is
  P(fake)) and, for models that localise, ``mask_logits [B,1,h,w]`` (``mask_kind`` says what
  the map is: the manipulated region, or the blending boundary).
- ``loss(output, target_labels, target_masks=None) -> {name: scalar}`` with ``"total"`` the one
  to minimise. Labels ``[B]`` in [0, 1] (1 = fake); masks ``[B,1,H,W]`` / ``[B,H,W]`` at any
  size (resized to the map; float in [0, 1], bool, or uint8 0..255), all zero for real faces.
  Terms that need a mask are left out when none is given.
- ``predict_proba(images) -> np.ndarray [B]``: P(fake), in eval mode and without gradients.

The interface follows DeepfakeBench's detector (features -> classifier -> losses, registered by
name); the code is ours.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DetectorConfig", "DetectorOutput", "Detector", "check_shape", "mask_tensor", "resize_mask",
           "conv_bn_act"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def check_shape(x: Any, spec: str, what: str = "input", **sizes: int) -> None:
    """Raise ValueError naming the bad shape unless ``x`` is a tensor shaped like ``spec``
    (space-separated letters, e.g. ``"B C H W"``); letters given in ``sizes`` must match."""
    letters = spec.split()
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor shaped [{', '.join(letters)}], got {type(x).__name__}")
    bad = x.dim() != len(letters) or any(
        letter in sizes and x.shape[i] != sizes[letter] for i, letter in enumerate(letters))
    if bad:
        want = ", ".join(f"{l}={sizes[l]}" if l in sizes else l for l in letters)
        raise ValueError(f"{what} must be shaped [{want}], got {list(x.shape)}")


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B,1,H,W]`` float mask resized to ``size`` (area average when shrinking, bilinear when
    growing): the fraction of each output cell that is covered."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]:
        return F.interpolate(mask, size=size, mode="area")
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, *, groups: int = 1, dilation: int = 1,
                act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias: BN has one) -> BatchNorm -> activation, 'same' padding for odd ``k``."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups,
                  bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class DetectorConfig:
    """Fields every detector has. A family subclasses it (``XConfig`` for detector ``X``) and
    overrides defaults; every field has a default, so ``XConfig()`` is the paper's setting.
    Frozen: the model is built from it, and a saved config must describe the saved weights
    (use ``dataclasses.replace`` for a variant)."""

    min_input_size: ClassVar[int] = 32
    """Smallest ``input_size`` the architecture accepts (its total downsampling)."""

    input_size: int = 256
    """Side S of the square input in pixels: ``preprocess`` resizes every image to S x S."""
    in_channels: int = 3
    """Input channels: 3 (RGB) or 1 (luma)."""
    mean: float = 0.5
    """Subtracted from every channel after scaling pixels to [0, 1]."""
    std: float = 0.5
    """Divides every channel after ``mean`` (0.5 / 0.5 maps pixels to [-1, 1])."""
    dropout: float = 0.0
    """Dropout probability before the classifier, in [0, 1)."""

    def __post_init__(self) -> None:
        self._check_types()
        self.check()

    # ----------------------------------------------------------------- validation
    def _fail(self, msg: str) -> ValueError:
        return ValueError(f"{type(self).__name__}: {msg}")

    def _check_types(self) -> None:
        for f in dataclasses.fields(self):
            v, default = getattr(self, f.name), f.default
            if default is dataclasses.MISSING:
                continue
            if isinstance(default, tuple):
                if isinstance(v, list):
                    v = tuple(v)
                    object.__setattr__(self, f.name, v)  # frozen: normalise in place once
                kind = type(default[0]) if default else object
                ok = isinstance(v, tuple) and all(_is(x, kind) for x in v)
                if ok and kind is float:
                    object.__setattr__(self, f.name, tuple(float(x) for x in v))
            else:
                ok = _is(v, type(default))
                if ok and isinstance(default, float):
                    object.__setattr__(self, f.name, float(v))
            if not ok:
                raise self._fail(f"{f.name} must be {_type_name(default)}, got {v!r}")

    def check(self) -> None:
        """Value checks (ValueError naming the field); subclasses extend it."""
        if self.input_size < self.min_input_size or self.input_size > 4096:
            raise self._fail(f"input_size must be in [{self.min_input_size}, 4096], got {self.input_size}")
        if self.in_channels not in (1, 3):
            raise self._fail(f"in_channels must be 1 or 3, got {self.in_channels}")
        if not (self.std > 0 and math.isfinite(self.std) and math.isfinite(self.mean)):
            raise self._fail(f"std must be > 0 and mean/std finite, got mean={self.mean}, std={self.std}")
        self.check_prob("dropout")

    def check_prob(self, *names: str) -> None:
        for n in names:
            v = getattr(self, n)
            if not 0.0 <= v < 1.0:
                raise self._fail(f"{n} must be in [0, 1), got {v}")

    def check_positive(self, *names: str) -> None:
        for n in names:
            v = getattr(self, n)
            vals = v if isinstance(v, tuple) else (v,)
            if not vals or any(not (x > 0 and math.isfinite(x)) for x in vals):
                raise self._fail(f"{n} must be > 0, got {v}")

    # ----------------------------------------------------------------- plain data
    def to_dict(self) -> dict:
        """Plain JSON-ready data (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict, *, what: str | None = None) -> "DetectorConfig":
        """Build from plain data; an unknown key is a ValueError listing the valid keys."""
        if not isinstance(d, dict):
            raise ValueError(f"{what or cls.__name__}: config must be a dict, got {type(d).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(k for k in d if k not in valid)
        if unknown:
            raise ValueError(f"{what or cls.__name__}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                             f"valid keys: {', '.join(valid)}")
        return cls(**d)


def _is(v: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, kind)


def _type_name(default: Any) -> str:
    if isinstance(default, tuple):
        return f"a list of {type(default[0]).__name__}" if default else "a list"
    return {bool: "true/false", int: "an int", float: "a number", str: "a string"}.get(type(default),
                                                                                       type(default).__name__)


@dataclass
class DetectorOutput:
    """What ``Detector.forward`` returns."""

    logits: Tensor
    """[B] fake-vs-real logit: positive means fake; ``sigmoid(logits)`` is P(fake)."""
    mask_logits: Tensor | None = None
    """[B,1,h,w] localisation logits (``Detector.mask_kind`` says what they mark), or None."""
    aux: dict[str, Tensor] = field(default_factory=dict)
    """Model-specific tensors the loss needs or a user may inspect (capsule vectors, a
    reconstruction...); not part of the common contract."""

    @property
    def probs(self) -> Tensor:
        """[B] P(fake)."""
        return torch.sigmoid(self.logits)

    @property
    def mask_probs(self) -> Tensor | None:
        """[B,1,h,w] sigmoid of ``mask_logits``, or None."""
        return None if self.mask_logits is None else torch.sigmoid(self.mask_logits)


class Detector(nn.Module):
    """Base class of every registered face-forgery detector (see the module docstring for the
    contract). A subclass sets ``config_class``, builds its layers in ``__init__(config)``, and
    implements ``forward``; it overrides ``loss`` when its training objective is not
    binary cross-entropy on the logits (+ a mask term when it localises)."""

    name: ClassVar[str] = ""
    """Registry name, set by ``register_detector``."""
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    mask_kind: ClassVar[str | None] = None
    """None (no map), "manipulation" (the manipulated region) or "boundary" (blending boundary)."""
    tiny_config: ClassVar[dict[str, Any]] = {"input_size": 64}
    """Overrides giving a CPU-tiny version of the model (the generated tests use it)."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} wants a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        self.metadata: dict[str, Any] = {}

    # ----------------------------------------------------------------- the contract
    def forward(self, x: Tensor) -> DetectorOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: DetectorOutput, target_labels, target_masks=None) -> dict[str, Tensor]:
        """``{"cls": BCE on the logits, ["mask": BCE on the map], "total"}``."""
        y = self._labels(target_labels, output.logits)
        losses = {"cls": F.binary_cross_entropy_with_logits(output.logits, y)}
        if output.mask_logits is not None and target_masks is not None:
            m = self._masks(target_masks, output.mask_logits)
            losses["mask"] = F.binary_cross_entropy_with_logits(output.mask_logits, m)
        losses["total"] = sum(losses.values())
        return losses

    @property
    def n_params(self) -> int:
        """Number of parameters (all of them; buffers such as BN statistics not counted)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write this detector to the safetensors file ``path``: weights + JSON config (schema,
        name, config, metadata) in its header; see ``detect.registry.save_detector``."""
        from ..registry import save_detector

        return save_detector(self, path, metadata)

    # ----------------------------------------------------------------- input
    def check_input(self, x: Tensor) -> None:
        cfg = self.config
        check_shape(x, "B C H W", f"{self.name or type(self).__name__} input", C=cfg.in_channels,
                    H=cfg.input_size, W=cfg.input_size)
        if not x.is_floating_point():
            raise ValueError(f"{self.name} input must be a float tensor (use preprocess() on uint8 images), "
                             f"got {x.dtype}")

    def preprocess(self, images) -> Tensor:
        """uint8 images -> float ``[B,C,S,S]`` on the model's device (module docstring)."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("preprocess got an empty list of images")
            return torch.cat([self.preprocess(im) for im in images], 0)
        t = _as_uint8_tensor(images)
        if t.dim() == 2:
            t = t[None, :, :, None]
        elif t.dim() == 3:
            if t.shape[-1] not in (1, 3, 4):
                raise ValueError(f"a 3-D image must be [H, W, C] with C in 1, 3, 4; got {list(t.shape)} "
                                 f"(a greyscale batch is [B, H, W, 1])")
            t = t[None]
        elif t.dim() != 4 or t.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images must be [B, H, W, C] (C in 1, 3, 4), [H, W, C] or [H, W]; got {list(t.shape)}")
        if t.shape[0] == 0 or t.shape[1] == 0 or t.shape[2] == 0:
            raise ValueError(f"images must not be empty; got {list(t.shape)}")
        x = t.to(self.device).permute(0, 3, 1, 2).to(torch.float32) / 255.0  # B C H W
        if x.shape[1] == 4:
            x = x[:, :3]
        if self.config.in_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.config.in_channels == 1 and x.shape[1] == 3:
            x = (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        s = self.config.input_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.config.mean) / self.config.std).contiguous()

    @torch.no_grad()
    def predict_proba(self, images, batch_size: int = 32) -> np.ndarray:
        """P(fake) ``[B]`` (float32) for uint8 ``images`` (anything ``preprocess`` takes) or an
        already preprocessed float tensor ``[B,C,S,S]``. Runs in eval mode, restoring the mode."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        floats = isinstance(images, Tensor) and images.is_floating_point()
        batched = floats or isinstance(images, (list, tuple)) or getattr(images, "ndim", 0) == 4
        chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)] if batched else [images]
        was_training = self.training
        self.eval()
        try:  # preprocess chunk by chunk: a long video's faces never sit in memory as floats at once
            out = [torch.sigmoid(self(c.to(self.device) if floats else self.preprocess(c)).logits) for c in chunks]
        finally:
            self.train(was_training)
        return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)

    @torch.no_grad()
    def predict_with_maps(self, images, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """``(P(fake) [B], localisation map [B,h,w] in [0, 1] or None)`` from one forward pass:
        the map is ``mask_probs`` for a model that localises (``mask_kind``), None for one that
        does not. Takes what ``predict_proba`` takes; eval mode, no gradients, mode restored."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        floats = isinstance(images, Tensor) and images.is_floating_point()
        batched = floats or isinstance(images, (list, tuple)) or getattr(images, "ndim", 0) == 4
        chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)] if batched else [images]
        was_training = self.training
        self.eval()
        probs, maps = [], []
        try:
            for c in chunks:
                out = self(c.to(self.device) if floats else self.preprocess(c))
                probs.append(out.probs.float().cpu())
                if out.mask_logits is not None:
                    maps.append(out.mask_probs[:, 0].float().cpu())
        finally:
            self.train(was_training)
        p = torch.cat(probs).numpy() if probs else np.zeros(0, np.float32)
        m = torch.cat(maps).numpy() if maps and len(maps) == len(probs) else None
        return p, m

    # ----------------------------------------------------------------- loss helpers
    @staticmethod
    def _labels(target_labels, logits: Tensor) -> Tensor:
        y = torch.as_tensor(np.asarray(target_labels) if not isinstance(target_labels, Tensor) else target_labels)
        y = y.to(device=logits.device, dtype=logits.dtype)
        if y.shape != logits.shape:
            raise ValueError(f"target_labels must be shaped [B] = {list(logits.shape)}, got {list(y.shape)}")
        if not bool(((y >= 0) & (y <= 1)).all()):
            raise ValueError("target_labels must be in [0, 1] (1 = fake)")
        return y

    @staticmethod
    def _masks(target_masks, like: Tensor) -> Tensor:
        """Target masks (see :func:`mask_tensor`) resized to ``like`` [B,1,h,w]."""
        m = mask_tensor(target_masks, like.device, batch=like.shape[0])
        return resize_mask(m, tuple(like.shape[-2:])).to(like.dtype)


def mask_tensor(target_masks, device: torch.device | str, batch: int | None = None) -> Tensor:
    """Target masks as float32 ``[B,1,H,W]`` in [0, 1] on ``device``. Accepts ``[B,1,H,W]`` or
    ``[B,H,W]`` numpy / torch: float in [0, 1], bool, or uint8 read as 0..255 (a uint8 mask
    holding only 0 and 1 is refused: it would silently read as nearly empty)."""
    m = target_masks if isinstance(target_masks, Tensor) else torch.as_tensor(np.asarray(target_masks))
    if m.dtype == torch.uint8:
        if m.numel() and int(m.max()) == 1:
            raise ValueError("target_masks: a uint8 mask is read as 0..255, and this one only holds 0 and 1; "
                             "pass it as float or bool, or times 255")
        m = m.float() / 255.0
    m = m.to(device=device, dtype=torch.float32)
    if m.dim() == 3:
        m = m[:, None]
    if m.dim() != 4 or m.shape[1] != 1 or (batch is not None and m.shape[0] != batch):
        want = f" with B={batch}" if batch is not None else ""
        raise ValueError(f"target_masks must be shaped [B, 1, H, W] or [B, H, W]{want}, got {list(m.shape)}")
    if not bool(((m >= 0) & (m <= 1)).all()):
        raise ValueError("target_masks must be in [0, 1] (uint8 masks are divided by 255)")
    return m


def _as_uint8_tensor(images) -> Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0..255), got numpy {images.dtype}; a preprocessed float "
                             f"tensor goes to forward() or predict_proba()")
        a = np.ascontiguousarray(images)
        return torch.from_numpy(a if a.flags.writeable else a.copy())
    if isinstance(images, Tensor):
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (0..255), got torch {images.dtype}; a preprocessed float "
                             f"tensor goes to forward() or predict_proba()")
        return images
    raise ValueError(f"images must be a uint8 numpy array, torch tensor or a list of them, got {type(images).__name__}")

