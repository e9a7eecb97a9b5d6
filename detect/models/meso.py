"""MesoNet: Meso-4 and MesoInception-4 (Afchar, Nozick, Yamagishi, Echizen, WIFS 2018).

Small networks that look at mesoscopic image properties (neither single-pixel noise nor
whole-face semantics). Both take a 256 x 256 RGB face scaled to [0, 1], end in four max-pools
(x2, x2, x2, x4: 256 -> 8) and a two-layer classifier (dropout, 16 units, LeakyReLU 0.1,
dropout, 1 output).

- Meso-4: four conv blocks, conv -> ReLU -> BatchNorm -> max-pool; 3x3 x 8, 5x5 x 8,
  5x5 x 16, 5x5 x 16.
- MesoInception-4: the first two blocks are Inception modules with four branches (1x1; 1x1 ->
  3x3; 1x1 -> 3x3 dilation 2; 1x1 -> 3x3 dilation 3) of widths (1, 4, 4, 2) then (2, 4, 4, 2),
  concatenated -> BatchNorm -> max-pool; then the two 5x5 x 16 blocks of Meso-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..registry import register_detector
from .base import Detector, DetectorConfig, DetectorOutput

__all__ = ["Meso4Config", "Meso4", "MesoInception4Config", "MesoInception4"]

_POOLS = (2, 2, 2, 4)


@dataclass(frozen=True)
class Meso4Config(DetectorConfig):
    """Meso-4 (paper defaults: 256 x 256 RGB in [0, 1], dropout 0.5)."""

    min_input_size: ClassVar[int] = 32

    input_size: int = 256
    """Side S of the square input; the flattened features are 16 x (S // 32)^2."""
    mean: float = 0.0
    """0 with std 1: pixels in [0, 1], as in the paper."""
    std: float = 1.0
    """See ``mean``."""
    dropout: float = 0.5
    """Dropout before each of the two dense layers."""
    hidden: int = 16
    """Units of the hidden dense layer."""
    leaky_slope: float = 0.1
    """Negative slope of the LeakyReLU after the hidden layer."""

    def check(self) -> None:
        super().check()
        if self.hidden < 1:
            raise self._fail(f"hidden must be >= 1, got {self.hidden}")
        if not 0 <= self.leaky_slope < 1:
            raise self._fail(f"leaky_slope must be in [0, 1), got {self.leaky_slope}")


@dataclass(frozen=True)
class MesoInception4Config(Meso4Config):
    """MesoInception-4 (same head and defaults as Meso-4)."""

    inception_widths: tuple[int, ...] = (1, 4, 4, 2, 2, 4, 4, 2)
    """Branch widths (a, b, c, d) of the first Inception module, then of the second."""

    def check(self) -> None:
        super().check()
        if len(self.inception_widths) != 8 or any(w < 1 for w in self.inception_widths):
            raise self._fail(f"inception_widths must be 8 positive ints, got {list(self.inception_widths)}")


class _MesoBlock(nn.Sequential):
    """conv -> ReLU -> BatchNorm -> max-pool (the paper's order: BN after the activation)."""

    def __init__(self, cin: int, cout: int, k: int, pool: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(), nn.BatchNorm2d(cout),
                         nn.MaxPool2d(pool))


class _Inception(nn.Module):
    """Four parallel branches, concatenated -> BatchNorm -> max-pool."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int, pool: int) -> None:
        super().__init__()

        def conv(ci: int, co: int, k: int, dil: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(ci, co, k, padding=dil * (k // 2), dilation=dil), nn.ReLU())

        self.b1 = conv(cin, a, 1)
        self.b2 = nn.Sequential(conv(cin, b, 1), conv(b, b, 3))
        self.b3 = nn.Sequential(conv(cin, c, 1), conv(c, c, 3, 2))
        self.b4 = nn.Sequential(conv(cin, d, 1), conv(d, d, 3, 3))
        self.bn = nn.BatchNorm2d(a + b + c + d)
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)
        return self.pool(self.bn(y))


class _MesoNet(Detector):
    """Shared classifier head: flatten -> dropout -> dense(hidden) -> LeakyReLU -> dropout -> dense(1)."""

    features: nn.Module

    def _head(self, cfg: Meso4Config, channels: int) -> nn.Sequential:
        s = cfg.input_size
        for p in _POOLS:
            s //= p
        return nn.Sequential(nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(channels * s * s, cfg.hidden),
                             nn.LeakyReLU(cfg.leaky_slope), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1))

    def forward(self, x: Tensor) -> DetectorOutput:
        """x [B,C,S,S] -> logits [B]."""
        self.check_input(x)
        return DetectorOutput(logits=self.classifier(self.features(x)).squeeze(1))


@register_detector("meso4")
class Meso4(_MesoNet):
    """Meso-4 (Afchar et al. 2018): 4 conv blocks + 2 dense layers, ~28 k parameters at 256."""

    config_class = Meso4Config

    def __init__(self, config: Meso4Config) -> None:
        super().__init__(config)
        c = config.in_channels
        self.features = nn.Sequential(_MesoBlock(c, 8, 3, _POOLS[0]), _MesoBlock(8, 8, 5, _POOLS[1]),
                                      _MesoBlock(8, 16, 5, _POOLS[2]), _MesoBlock(16, 16, 5, _POOLS[3]))
        self.classifier = self._head(config, 16)


@register_detector("mesoinception4")
class MesoInception4(_MesoNet):
    """MesoInception-4 (Afchar et al. 2018): 2 Inception modules + 2 conv blocks + 2 dense layers."""

    config_class = MesoInception4Config

    def __init__(self, config: MesoInception4Config) -> None:
        super().__init__(config)
        w = config.inception_widths
        c1 = sum(w[:4])
        self.features = nn.Sequential(_Inception(config.in_channels, *w[:4], pool=_POOLS[0]),
                                      _Inception(c1, *w[4:], pool=_POOLS[1]),
                                      _MesoBlock(sum(w[4:]), 16, 5, _POOLS[2]), _MesoBlock(16, 16, 5, _POOLS[3]))
        self.classifier = self._head(config, 16)
