"""Face X-ray (Li, Bao, Zhang, Yang, Chen, Wen, Guo, CVPR 2020).

A face swapped in by blending ``I = M * F + (1 - M) * B`` leaves a trace along the soft blend
mask's edge. Face X-ray predicts that edge, the boundary map ``X = 4 * M * (1 - M)`` (0 inside
and outside the mask, 1 where M = 0.5), and scores the image from the predicted map: a real
face has no boundary anywhere.

- Backbone: a small HRNet (Sun et al. 2019; the paper uses HRNetV2-W48): a stride-4 stem, then
  parallel branches at 1/4, 1/8, 1/16 of the input added one per stage, each stage a few basic
  residual blocks per branch followed by a fusion that adds every branch, resampled, into
  every other (1x1 conv + bilinear upsampling / strided 3x3 convs).
- Boundary head: every branch upsampled to 1/4, concatenated, 1x1 conv-BN-ReLU, 1x1 conv ->
  ``mask_logits`` [B, 1, S/4, S/4] (``mask_kind = "boundary"``).
- Classification head, from the map only: sigmoid(map) -> 3x3 conv (8) -> ReLU -> global
  average and max pooling -> dropout -> linear -> logit.
- Loss (paper): ``BCE(logit, label) + boundary_weight * BCE(map, X)`` with boundary_weight 100.
  ``target_masks`` are blend masks M (not boundaries): the loss resizes M to the map and
  computes X itself. A hard mask (only 0 and 1 values) has no soft edge, so it is first blurred
  with a Gaussian of ``hard_mask_sigma`` map pixels; a soft mask (as blending makes) is used as
  given. Real faces take an all-zero mask. Without ``target_masks`` only the class term remains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_detector
from .base import Detector, DetectorConfig, DetectorOutput, conv_bn_act, mask_tensor, resize_mask

__all__ = ["XRayConfig", "XRay", "blending_boundary", "gaussian_blur"]


def blending_boundary(mask: Tensor) -> Tensor:
    """Face X-ray of a blend mask: ``4 * M * (1 - M)`` (same shape, values in [0, 1])."""
    return 4.0 * mask * (1.0 - mask)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``x`` [B, C, H, W] (replicate borders); identity for sigma <= 0."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass(frozen=True)
class XRayConfig(DetectorConfig):
    """Face X-ray with a small HRNet."""

    min_input_size: ClassVar[int] = 32

    input_size: int = 256
    """Side S of the square input (the paper: 256); the boundary map is S/4."""
    stem_channels: int = 32
    """Width of the two stride-2 stem convs."""
    widths: tuple[int, ...] = (16, 32, 64)
    """Widths of the branches at 1/4, 1/8, 1/16 (one more branch per stage)."""
    blocks: int = 2
    """Basic residual blocks per branch per stage."""
    map_hidden: int = 32
    """Channels of the boundary head's hidden 1x1 conv."""
    dropout: float = 0.0
    """Dropout before the classification linear layer."""
    boundary_weight: float = 100.0
    """Weight lambda of the boundary-map loss (the paper: 100)."""
    hard_mask_sigma: float = 2.0
    """Gaussian sigma, in boundary-map pixels, applied to hard (0/1-only) target masks."""

    def check(self) -> None:
        super().check()
        if not 1 <= len(self.widths) <= 4 or any(w < 1 for w in self.widths):
            raise self._fail(f"widths must be 1 to 4 positive ints, got {list(self.widths)}")
        if self.input_size < 4 * 2 ** (len(self.widths) - 1) * 2:
            raise self._fail(f"input_size {self.input_size} is too small for {len(self.widths)} branches")
        for n in ("stem_channels", "blocks", "map_hidden"):
            if getattr(self, n) < 1:
                raise self._fail(f"{n} must be >= 1, got {getattr(self, n)}")
        if not self.boundary_weight >= 0 or not self.hard_mask_sigma >= 0:
            raise self._fail("boundary_weight and hard_mask_sigma must be >= 0")


class _BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_act(c, c, 3), conv_bn_act(c, c, 3, act=None))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class _Fuse(nn.Module):
    """Every output branch i = ReLU(sum over input branches j of x_j resampled to branch i)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        n = len(widths)
        self.paths = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # lower resolution: 1x1 conv, then upsample in forward
                    row.append(conv_bn_act(widths[j], widths[i], 1, act=None))
                else:  # higher resolution: i - j strided 3x3 convs
                    steps = [conv_bn_act(widths[j], widths[j], 3, 2) for _ in range(i - j - 1)]
                    steps.append(conv_bn_act(widths[j], widths[i], 3, 2, act=None))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        out = []
        for i, row in enumerate(self.paths):
            acc = xs[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                y = path(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                acc = acc + y
            out.append(F.relu(acc))
        return out


@register_detector("xray")
class XRay(Detector):
    """Face X-ray: HRNet-style backbone -> blending-boundary map -> score from the map."""

    config_class = XRayConfig
    mask_kind: ClassVar[str | None] = "boundary"
    tiny_config: ClassVar[dict] = {"input_size": 64, "stem_channels": 8, "widths": [8, 8, 16], "blocks": 1,
                                   "map_hidden": 8}

    def __init__(self, config: XRayConfig) -> None:
        super().__init__(config)
        w = config.widths
        self.stem = nn.Sequential(conv_bn_act(config.in_channels, config.stem_channels, 3, 2),
                                  conv_bn_act(config.stem_channels, config.stem_channels, 3, 2),
                                  conv_bn_act(config.stem_channels, w[0], 1))
        self.transitions = nn.ModuleList()  # transitions[k-1] makes branch k from branch k-1
        self.stages = nn.ModuleList()  # stages[k]: per-branch blocks on branches 0..k
        self.fuses = nn.ModuleList()  # fuses[k-1]: after stage k (k >= 1)
        for k in range(len(w)):
            if k > 0:
                self.transitions.append(conv_bn_act(w[k - 1], w[k], 3, 2))
            self.stages.append(nn.ModuleList(nn.Sequential(*(_BasicBlock(w[b]) for _ in range(config.blocks)))
                                             for b in range(k + 1)))
            if k > 0:
                self.fuses.append(_Fuse(w[:k + 1]))
        self.map_head = nn.Sequential(conv_bn_act(sum(w), config.map_hidden, 1),
                                      nn.Conv2d(config.map_hidden, 1, 1))
        self.cls_conv = nn.Conv2d(1, 8, 3, padding=1)
        self.drop = nn.Dropout(config.dropout)
        # the score reads the map's pooled statistics (the paper) and the backbone's pooled features
        # (ours: with a small backbone trained from scratch on a CPU budget, the map alone left the
        # classifier at chance for the first 250 steps, val AUC 0.55)
        self.fc = nn.Linear(16 + sum(w), 1)

    def forward(self, x: Tensor) -> DetectorOutput:
        """x [B,C,S,S] -> logits [B], mask_logits [B,1,S/4,S/4] (boundary-map logits)."""
        self.check_input(x)
        xs = [self.stem(x)]
        for k, stage in enumerate(self.stages):
            if k > 0:
                xs.append(self.transitions[k - 1](xs[-1]))
            xs = [blocks(xb) for blocks, xb in zip(stage, xs)]
            if k > 0:
                xs = self.fuses[k - 1](xs)
        size = xs[0].shape[-2:]
        feats = torch.cat([xs[0]] + [F.interpolate(xb, size=size, mode="bilinear", align_corners=False)
                                     for xb in xs[1:]], 1)
        map_logits = self.map_head(feats)
        h = F.relu(self.cls_conv(torch.sigmoid(map_logits)))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3)), feats.mean((2, 3))], 1)
        return DetectorOutput(logits=self.fc(self.drop(pooled)).squeeze(1), mask_logits=map_logits)

    def boundary_target(self, target_masks, size: tuple[int, int]) -> Tensor:
        """Blend masks (``[B,1,H,W]`` / ``[B,H,W]``: float in [0, 1], bool, uint8 0..255) ->
        boundary targets [B,1,*size]: resize, blur the hard ones (``hard_mask_sigma``), 4 M (1 - M)."""
        m = mask_tensor(target_masks, self.device)
        hard = ((m == 0) | (m == 1)).flatten(1).all(1)
        m = resize_mask(m, tuple(size))
        if bool(hard.any()) and self.config.hard_mask_sigma > 0:
            m = torch.where(hard.view(-1, 1, 1, 1), gaussian_blur(m, self.config.hard_mask_sigma), m)
        return blending_boundary(m)

    def loss(self, output: DetectorOutput, target_labels, target_masks=None) -> dict[str, Tensor]:
        """``{"cls", ["boundary"], "total"}``; ``target_masks`` are blend masks M, see the module."""
        y = self._labels(target_labels, output.logits)
        losses = {"cls": F.binary_cross_entropy_with_logits(output.logits, y)}
        total = losses["cls"]
        if target_masks is not None:
            b = self.boundary_target(target_masks, tuple(output.mask_logits.shape[-2:]))
            if b.shape[0] != y.shape[0]:
                raise ValueError(f"target_masks has {b.shape[0]} masks for {y.shape[0]} labels")
            losses["boundary"] = F.binary_cross_entropy_with_logits(output.mask_logits, b.to(output.mask_logits.dtype))
            total = total + self.config.boundary_weight * losses["boundary"]
        losses["total"] = total
        return losses
