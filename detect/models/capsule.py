"""Capsule-Forensics (Nguyen, Yamagishi, Echizen, ICASSP 2019).

Image -> CNN feature maps -> P primary capsules -> dynamic routing -> 2 output capsules
(real, fake).

- Feature extractor. The paper uses the first layers of an ImageNet-pretrained VGG-19. No
  ImageNet weights are reachable here, so this is a small CNN trained from scratch with the
  rest of the network (three stages of 3x3 conv-BN-ReLU, features at 1/4 of the input side);
  expect it to need more data than the paper's pretrained front end.
- Primary capsule (one of P, in parallel on the same features): 3x3 conv-BN-ReLU, 3x3
  conv-BN-ReLU, statistical pooling (mean and variance of each channel over the map: [2, K]),
  a 1-D conv 2 -> 8 channels (BN, ReLU) and a 1-D conv 8 -> 1, giving a K-vector u_i, squashed.
- Routing (Sabour et al. 2017): predictions u_hat_{j|i} = W_ij u_i for the 2 output capsules;
  ``routing_iterations`` rounds of coupling softmax c_ij, v_j = squash(sum_i c_ij u_hat_{j|i}),
  agreement b_ij += u_hat_{j|i} . v_j. As in the paper, training adds Gaussian noise to W and
  dropout to u_hat (regularisers); eval mode is deterministic.
- Score: the capsule lengths |v_real|, |v_fake| are the class activations; the logit is
  ``scale * (|v_fake| - |v_real|)`` (a 2-class softmax over ``scale * |v_j|`` is the sigmoid of
  it), with ``scale = exp(log_scale)`` learned (ours: the length difference alone is bounded to
  (-1, 1), which would cap P(fake) in about (0.27, 0.73)). Loss: cross-entropy, i.e. BCE on
  the logit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..registry import register_detector
from .base import Detector, DetectorConfig, DetectorOutput, conv_bn_act

__all__ = ["CapsuleConfig", "Capsule", "squash", "dynamic_routing"]


def squash(s: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """Capsule non-linearity: ``|s|^2 / (1 + |s|^2) * s / |s|`` (length in [0, 1), direction kept)."""
    n2 = (s * s).sum(dim, keepdim=True)
    return s * (n2 / (1.0 + n2)) / torch.sqrt(n2 + eps)


def dynamic_routing(u_hat: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Routing by agreement. ``u_hat`` [B, P, J, D] predictions of the J output capsules from
    the P input capsules -> (v [B, J, D] output capsules, c [B, P, J] final coupling)."""
    b = u_hat.new_zeros(u_hat.shape[:3])
    for r in range(iterations):
        c = torch.softmax(b, dim=2)
        v = squash((c.unsqueeze(-1) * u_hat).sum(1))
        if r + 1 < iterations:
            b = b + (u_hat * v.unsqueeze(1)).sum(-1)
    return v, c


@dataclass(frozen=True)
class CapsuleConfig(DetectorConfig):
    """Capsule-Forensics with a from-scratch feature extractor."""

    min_input_size: ClassVar[int] = 16

    input_size: int = 256
    """Side S of the square input (statistical pooling makes the capsules independent of S)."""
    extractor_channels: tuple[int, ...] = (16, 32, 64)
    """Widths of the extractor's three stages (stride-2 conv, conv, 2x max-pool | two convs |
    one conv; 3x3 conv-BN-ReLU each: features at S/4); stands in for VGG-19's first layers."""
    primary_capsules: int = 3
    """Number P of primary capsules (the ICASSP 2019 paper uses 3, its journal version 10)."""
    capsule_hidden: int = 16
    """Channels of each primary capsule's first 3x3 conv."""
    capsule_dim: int = 16
    """Channels K of its second 3x3 conv = length of the primary capsule vector."""
    output_dim: int = 8
    """Length of each of the two output capsules."""
    routing_iterations: int = 2
    """Rounds of routing by agreement."""
    routing_noise_std: float = 0.01
    """Std of the Gaussian noise added to the routing matrices W during training."""
    dropout: float = 0.05
    """Dropout on the predictions u_hat during training."""
    logit_scale_init: float = 5.0
    """Initial value of the learned scale from capsule lengths to the logit."""

    def check(self) -> None:
        super().check()
        if len(self.extractor_channels) != 3 or any(c < 1 for c in self.extractor_channels):
            raise self._fail(f"extractor_channels must be 3 positive ints, got {list(self.extractor_channels)}")
        for n in ("primary_capsules", "capsule_hidden", "capsule_dim", "output_dim", "routing_iterations"):
            if getattr(self, n) < 1:
                raise self._fail(f"{n} must be >= 1, got {getattr(self, n)}")
        if not self.routing_noise_std >= 0:
            raise self._fail(f"routing_noise_std must be >= 0, got {self.routing_noise_std}")
        self.check_positive("logit_scale_init")


class _StatsPool(nn.Module):
    """[B, K, H, W] -> [B, 2, K]: mean and (biased) variance of each channel over the map."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([x.mean((2, 3)), x.var((2, 3), unbiased=False)], 1)


class _PrimaryCapsule(nn.Sequential):
    def __init__(self, cin: int, hidden: int, k: int) -> None:
        super().__init__(
            conv_bn_act(cin, hidden, 3), conv_bn_act(hidden, k, 3), _StatsPool(),
            nn.Conv1d(2, 8, 5, padding=2, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
            nn.Conv1d(8, 1, 3, padding=1), nn.Flatten(),  # [B, K]
        )


@register_detector("capsule")
class Capsule(Detector):
    """Capsule-Forensics: features -> primary capsules -> dynamic routing -> real/fake capsules.
    ``aux["capsules"]`` [B, 2, output_dim] holds (v_real, v_fake)."""

    config_class = CapsuleConfig
    tiny_config: ClassVar[dict] = {"input_size": 64, "extractor_channels": [8, 8, 16], "capsule_hidden": 8,
                                   "capsule_dim": 8}

    def __init__(self, config: CapsuleConfig) -> None:
        super().__init__(config)
        c1, c2, c3 = config.extractor_channels
        self.extractor = nn.Sequential(
            conv_bn_act(config.in_channels, c1, 3, 2), conv_bn_act(c1, c1, 3), nn.MaxPool2d(2),
            conv_bn_act(c1, c2, 3), conv_bn_act(c2, c2, 3), conv_bn_act(c2, c3, 3),
        )
        self.primary = nn.ModuleList(_PrimaryCapsule(c3, config.capsule_hidden, config.capsule_dim)
                                     for _ in range(config.primary_capsules))
        # W_ij: [P, J=2, D_out, K]
        self.route_weights = nn.Parameter(
            torch.randn(config.primary_capsules, 2, config.output_dim, config.capsule_dim)
            * (1.0 / math.sqrt(config.capsule_dim)))
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> DetectorOutput:
        """x [B,C,S,S] -> logits [B]; aux: capsules [B,2,D], coupling [B,P,2]."""
        self.check_input(x)
        f = self.extractor(x)
        u = squash(torch.stack([cap(f) for cap in self.primary], 1))  # [B, P, K]
        w = self.route_weights
        if self.training and self.config.routing_noise_std > 0:
            w = w + torch.randn_like(w) * self.config.routing_noise_std
        u_hat = self.drop(torch.einsum("pjok,bpk->bpjo", w, u))  # [B, P, 2, D]
        v, c = dynamic_routing(u_hat, self.config.routing_iterations)
        length = v.norm(dim=-1)  # [B, 2]
        logits = self.log_scale.exp() * (length[:, 1] - length[:, 0])
        return DetectorOutput(logits=logits, aux={"capsules": v, "coupling": c})
