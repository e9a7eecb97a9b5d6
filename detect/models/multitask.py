"""Multi-task detection + segmentation (Nguyen, Fang, Yamagishi, Echizen, BTAS 2019).

A Y-shaped autoencoder: one shared encoder; its latent code feeds a segmentation decoder
(the manipulated-region mask) and a reconstruction decoder (the input image back). The
classification head is the paper's: the latent channels are split in two halves, "real" and
"fake"; each half's activation a_k = mean |h_k| is that class's score, trained with the
activation loss |a_fake - y| + |a_real - (1 - y)| (after Cozzolino et al.'s ForensicTransfer).

- Encoder: 3x3 conv-BN-ReLU at full resolution, then ``len(channels) - 1`` stages of a 3x3
  stride-2 conv-BN-ReLU + a 3x3 conv-BN-ReLU, doubling widths (16, 32, 64, 128 by default: a
  128-channel latent at S/8).
- Decoders (two, same shape): per stage a 3x3 stride-2 transposed conv-BN-ReLU + a 3x3
  conv-BN-ReLU back to S, then a 1x1 conv: 1 channel (mask logits) or ``in_channels``
  (reconstruction, in the preprocessed value range).
- Logit: ``log(a_fake + eps) - log(a_real + eps)``, so that ``sigmoid(logit) =
  a_fake / (a_fake + a_real)`` (ours: the paper compares the two activations).
- Loss: ``w_act * activation + w_seg * BCE(mask) + w_rec * MSE(reconstruction, input)``;
  the mask term needs ``target_masks`` (zeros for real faces) and is left out without them.
  The reconstruction decoder only shapes the encoder during training, so it runs in training
  mode only (half the inference cost); an eval-mode loss has no ``rec`` term.
  ``aux``: ``activations`` [B, 2] (real, fake); in training mode also ``reconstruction`` and
  ``input`` [B, C, S, S].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_detector
from .base import Detector, DetectorConfig, DetectorOutput, conv_bn_act

__all__ = ["MultitaskConfig", "Multitask"]

_EPS = 1e-4


@dataclass(frozen=True)
class MultitaskConfig(DetectorConfig):
    """Y-shaped autoencoder: classify (latent activations) + segment + reconstruct."""

    min_input_size: ClassVar[int] = 16

    input_size: int = 256
    """Side S of the square input; it must be divisible by 2^(len(channels) - 1)."""
    channels: tuple[int, ...] = (16, 32, 64, 128)
    """Encoder widths, full resolution first; the last (even) one is the latent, split in two."""
    w_act: float = 1.0
    """Weight of the activation (classification) loss."""
    w_seg: float = 1.0
    """Weight of the segmentation loss (BCE on the mask)."""
    w_rec: float = 1.0
    """Weight of the reconstruction loss (MSE to the preprocessed input)."""

    def check(self) -> None:
        super().check()
        if len(self.channels) < 2 or any(c < 1 for c in self.channels) or self.channels[-1] % 2:
            raise self._fail(f"channels must be >= 2 positive ints, the last even, got {list(self.channels)}")
        f = 2 ** (len(self.channels) - 1)
        if self.input_size % f:
            raise self._fail(f"input_size must be divisible by {f} for {len(self.channels) - 1} "
                             f"downsamplings, got {self.input_size}")
        for n in ("w_act", "w_seg", "w_rec"):
            if not getattr(self, n) >= 0:
                raise self._fail(f"{n} must be >= 0, got {getattr(self, n)}")


def _decoder(channels: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    rev = channels[::-1]
    for cin, cout in zip(rev[:-1], rev[1:]):
        layers += [nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(), conv_bn_act(cout, cout, 3)]
    layers.append(nn.Conv2d(rev[-1], out, 1))
    return nn.Sequential(*layers)


@register_detector("multitask")
class Multitask(Detector):
    """Shared encoder -> (latent activations: class; decoder: mask; decoder: reconstruction)."""

    config_class = MultitaskConfig
    mask_kind: ClassVar[str | None] = "manipulation"
    tiny_config: ClassVar[dict] = {"input_size": 64, "channels": [8, 16, 32]}

    def __init__(self, config: MultitaskConfig) -> None:
        super().__init__(config)
        ch = config.channels
        layers: list[nn.Module] = [conv_bn_act(config.in_channels, ch[0], 3)]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [conv_bn_act(cin, cout, 3, 2), conv_bn_act(cout, cout, 3)]
        self.encoder = nn.Sequential(*layers)
        self.drop = nn.Dropout2d(config.dropout)
        self.segment = _decoder(ch, 1)
        self.reconstruct = _decoder(ch, config.in_channels)

    def forward(self, x: Tensor) -> DetectorOutput:
        """x [B,C,S,S] -> logits [B], mask_logits [B,1,S,S]; aux: activations [B,2] (+ reconstruction,
        input when training)."""
        self.check_input(x)
        h = self.encoder(x)  # [B, L, S/f, S/f], >= 0 after ReLU
        half = h.shape[1] // 2
        act = torch.stack([h[:, :half].abs().mean((1, 2, 3)), h[:, half:].abs().mean((1, 2, 3))], 1)
        logits = torch.log(act[:, 1] + _EPS) - torch.log(act[:, 0] + _EPS)
        h = self.drop(h)
        aux = {"activations": act}
        if self.training:  # the reconstruction only trains the encoder: skipped at inference
            aux.update(reconstruction=self.reconstruct(h), input=x)
        return DetectorOutput(logits=logits, mask_logits=self.segment(h), aux=aux)

    def loss(self, output: DetectorOutput, target_labels, target_masks=None) -> dict[str, Tensor]:
        """``{"act", ["rec"], ["seg"], "total"}``: ``rec`` for outputs made in training mode,
        ``seg`` only with ``target_masks``."""
        cfg = self.config
        y = self._labels(target_labels, output.logits)
        act = output.aux["activations"]
        losses = {"act": ((act[:, 1] - y).abs() + (act[:, 0] - (1 - y)).abs()).mean()}
        total = cfg.w_act * losses["act"]
        if "reconstruction" in output.aux:
            losses["rec"] = F.mse_loss(output.aux["reconstruction"], output.aux["input"].detach())
            total = total + cfg.w_rec * losses["rec"]
        if target_masks is not None:
            m = self._masks(target_masks, output.mask_logits)
            losses["seg"] = F.binary_cross_entropy_with_logits(output.mask_logits, m)
            total = total + cfg.w_seg * losses["seg"]
        losses["total"] = total
        return losses
