"""EfficientNet-B0-class classifier (Tan & Le, ICML 2019), scalable down for the CPU.

Stem 3x3/2 conv (32) -> seven stages of MBConv blocks -> 1x1 conv (1280) -> global average
pool -> dropout -> linear (1 logit). MBConv (Sandler et al. 2018 + Hu et al. 2018): 1x1
expansion (ratio t) -> kxk depthwise conv (stride s) -> squeeze-and-excitation (ratio 0.25 of
the block's input channels) -> 1x1 projection; identity shortcut with stochastic depth when
s = 1 and the widths match. BatchNorm + SiLU throughout.

B0 stages (t, k, s, channels, repeats): (1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3)
(6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1). ``width_mult`` scales every width (rounded to a
multiple of 8, never below 90 % of the exact value), ``depth_mult`` every repeat count
(ceil), as the paper's compound scaling does; B0 is (1.0, 1.0) at 224.

"Lite" here means small for the CPU: squeeze-and-excitation and SiLU are kept (Google's
EfficientNet-Lite drops them for mobile accelerators). No pretrained weights exist here:
``pretrained=True`` is refused, not ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..registry import register_detector
from .base import Detector, DetectorConfig, DetectorOutput, conv_bn_act

__all__ = ["EfficientNetLiteConfig", "EfficientNetLite", "MBConv", "round_filters"]

# (expand ratio, kernel, stride, output channels, repeats)
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
             (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor``, at least 90 % of it."""
    c = channels * width_mult
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * c else new


@dataclass(frozen=True)
class EfficientNetLiteConfig(DetectorConfig):
    """EfficientNet-B0 by default; shrink ``width_mult`` / ``depth_mult`` / ``input_size`` for the CPU."""

    min_input_size: ClassVar[int] = 32

    input_size: int = 224
    """Side S of the square input (B0: 224; the network downsamples by 32)."""
    width_mult: float = 1.0
    """Multiplier on every layer's width (B0: 1.0)."""
    depth_mult: float = 1.0
    """Multiplier on every stage's number of blocks (B0: 1.0)."""
    se_ratio: float = 0.25
    """Squeeze-and-excitation bottleneck as a fraction of the block's input channels (0: no SE)."""
    dropout: float = 0.2
    """Dropout before the final linear layer (B0: 0.2)."""
    drop_path: float = 0.2
    """Stochastic-depth rate of the last block, growing linearly from 0 over the blocks (B0: 0.2)."""
    head_channels: int = 1280
    """Width of the final 1x1 conv before pooling (scaled by ``width_mult``)."""
    pretrained: bool = False
    """Must stay False: no ImageNet weights are available here (train it, or load_detector)."""

    def check(self) -> None:
        super().check()
        self.check_positive("width_mult", "depth_mult")
        if not 0 <= self.se_ratio <= 1:
            raise self._fail(f"se_ratio must be in [0, 1], got {self.se_ratio}")
        self.check_prob("drop_path")
        if self.head_channels < 1:
            raise self._fail(f"head_channels must be >= 1, got {self.head_channels}")
        if self.pretrained:
            raise self._fail("pretrained=True: no pretrained EfficientNet weights are available here; "
                             "train from scratch (pretrained=False) or load a saved detector with load_detector")


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted-residual block with squeeze-and-excitation and stochastic depth."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int, se_ratio: float,
                 drop_path: float) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn_act(cin, mid, 1, act=nn.SiLU) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn_act(mid, mid, k, stride, groups=mid, act=nn.SiLU)
        self.se = _SqueezeExcite(mid, max(1, int(cin * se_ratio))) if se_ratio > 0 else nn.Identity()
        self.project = conv_bn_act(mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            y = y * x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep) / keep
        return x + y


@register_detector("efficientnet_lite")
class EfficientNetLite(Detector):
    """EfficientNet-B0-class binary classifier (MBConv + SE), ~4.0 M parameters at (1.0, 1.0)."""

    config_class = EfficientNetLiteConfig
    tiny_config: ClassVar[dict] = {"input_size": 64, "width_mult": 0.25, "depth_mult": 0.25,
                                   "head_channels": 64, "drop_path": 0.0}

    def __init__(self, config: EfficientNetLiteConfig) -> None:
        super().__init__(config)
        w, d = config.width_mult, config.depth_mult
        stem = round_filters(32, w)
        self.stem = conv_bn_act(config.in_channels, stem, 3, 2, act=nn.SiLU)
        plan = []
        cin = stem
        for t, k, s, c, n in B0_STAGES:
            cout = round_filters(c, w)
            for i in range(int(math.ceil(n * d))):
                plan.append((cin, cout, t, k, s if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*(
            MBConv(ci, co, t, k, s, config.se_ratio, config.drop_path * i / max(1, len(plan) - 1))
            for i, (ci, co, t, k, s) in enumerate(plan)))
        head = round_filters(config.head_channels, w)
        self.head = conv_bn_act(cin, head, 1, act=nn.SiLU)
        self.drop = nn.Dropout(config.dropout)
        self.fc = nn.Linear(head, 1)

    def forward(self, x: Tensor) -> DetectorOutput:
        """x [B,C,S,S] -> logits [B]."""
        self.check_input(x)
        f = self.head(self.blocks(self.stem(x))).mean((2, 3))
        return DetectorOutput(logits=self.fc(self.drop(f)).squeeze(1))
