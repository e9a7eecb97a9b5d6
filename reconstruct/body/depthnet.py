"""Front/back depth maps of a person from one image: a U-Net depth prior for PIFu.

PIFu reads a point's occupancy from the pixel-aligned image feature and the point's depth alone;
with a small network and a CPU training budget it learns the silhouette well but not where along
each ray the body lies (BENCHMARKS.md: a slab twice the body's depth). Predicting, for every pixel
of the person, the depth of the first and the last surface along its ray ("double-sided" depth,
as in Gabeur et al., "Moulding Humans", ICCV 2019) is a dense image-to-image task: every pixel of
every training image supervises it, where PIFu's occupancy loss sees a few thousand points per
image. PIFuHD does the same with front/back *normal* maps fed to its implicit function; here the
maps are depths, and PIFu's MLP gets the point's depth relative to them (``z - front``,
``back - z``; see ``PIFuConfig.depth_net``).

- Input: the framed image (background exactly 0.5 grey, as PIFu's input) in [-1, 1], at
  ``image_size``; the network adds the mask (+-1: the pixels that are not exactly the background
  grey, which no 8-bit colour is) and two coordinate channels (x, y in [-1, 1]);
- output: front and back depth in PIFu's normalised z (``Camera.normalise``: depth minus the
  subject's centre, in units of half the image height), parametrised as a middle depth and a
  positive thickness (softplus), so back >= front;
- loss: L1 on both maps over the pixels whose ray meets the body.

Shapes: B batch, H = W = image_size.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SCHEMA = "dhstudio.body-depthnet/1"


@dataclass
class DepthNetConfig:
    """Sizes of a depth U-Net."""

    image_size: int = 128
    """Side of the square input and output maps."""
    channels: tuple[int, ...] = (24, 48, 96, 160, 192)
    """Channels of the encoder levels (one 2x down-sampling between levels)."""
    groups: int = 8
    """GroupNorm groups."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)  # as it reads back from JSON
        d["schema"] = SCHEMA
        return d

    @staticmethod
    def from_dict(d: dict) -> "DepthNetConfig":
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a depth-net config (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        kw = {f.name: d[f.name] for f in dataclasses.fields(DepthNetConfig) if f.name in d}
        if "channels" in kw:
            kw["channels"] = tuple(int(c) for c in kw["channels"])
        return DepthNetConfig(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _block(cin: int, cout: int, groups: int) -> nn.Sequential:
    g = max(1, min(groups, cout // 4))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU(inplace=True))


class DepthNet(nn.Module):
    """U-Net: (B, 3, S, S) image in [-1, 1], background exactly 0 -> (B, 2, S, S) front, back depth.

    >>> net = DepthNet(DepthNetConfig(image_size=32, channels=(8, 16)))
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    """

    def __init__(self, cfg: DepthNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DepthNetConfig()
        ch, g = cfg.channels, cfg.groups
        if cfg.image_size % (2 ** (len(ch) - 1)):
            raise ValueError(f"image_size {cfg.image_size} must be divisible by {2 ** (len(ch) - 1)}")
        self.down = nn.ModuleList()
        cin = 6
        for c in ch:
            self.down.append(_block(cin, c, g))
            cin = c
        self.up = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i], g) for i in reversed(range(len(ch) - 1)))
        self.head = nn.Conv2d(ch[0], 2, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # start as a slab 0.1 (about 9 cm) either side of the centre
            self.head.bias.copy_(torch.tensor([0.0, float(torch.log(torch.expm1(torch.tensor(0.2))))]))

    @staticmethod
    def mask_of(img: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float 1 on the person: pixels not exactly the background (0 in [-1, 1])."""
        return (img != 0).any(1, keepdim=True).to(img.dtype)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"need img (B, 3, H, W), got {tuple(img.shape)}")
        b, _, h, w = img.shape
        mask = self.mask_of(img)
        ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=img.dtype, device=img.device)
        xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=img.dtype, device=img.device)
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy")).expand(b, 2, h, w)
        x = torch.cat([img, mask * 2 - 1, coords], 1)
        skips = []
        for i, blk in enumerate(self.down):
            if i:
                x = F.avg_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        for blk, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], 1))
        out = self.head(x)
        mid, th = out[:, :1], F.softplus(out[:, 1:])
        return torch.cat([mid - 0.5 * th, mid + 0.5 * th], 1)


def depth_l1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean L1 of front and back over the pixels whose ray meets the body. pred (B, 2, S, S),
    gt (B, 3, S, S) = front, back, hit."""
    hit = gt[:, 2:3]
    return (torch.abs(pred - gt[:, :2]) * hit).sum() / (hit.sum().clamp_min(1.0) * 2)


def shift_invariant_l1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``depth_l1`` after moving each view's prediction by the depth offset that best aligns it
    (the mean difference over the body's pixels), as MiDaS-style relative-depth losses do: the
    body's shape, without where the whole body sits along the view axis (which a single image
    of a person in an unusual pose says least about)."""
    hit = gt[:, 2:3]
    n = hit.sum((1, 2, 3)).clamp_min(1.0)
    off = ((gt[:, :2] - pred) * hit).sum((1, 2, 3)) / (2 * n)
    return depth_l1(pred + off.view(-1, 1, 1, 1), gt)
