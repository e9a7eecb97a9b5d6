"""PIFu: pixel-aligned implicit function for single- and multi-view body reconstruction.

Saito et al., "PIFu: Pixel-Aligned Implicit Function for High-Resolution Clothed Human
Digitization", ICCV 2019. Written from the paper's description:

- an image encoder (stacked hourglass) turns the image (B, 3, H, W) into feature maps
  (B, C, H/4, W/4), one per stack;
- for each 3D point, the caller projects it into every view (``uv`` in [-1, 1], x to the right,
  y down, the convention of ``torch.nn.functional.grid_sample`` with ``align_corners=False``) and
  gives its normalised depth ``z`` in that view;
- the feature at ``uv`` (bilinear), concatenated with ``z``, goes through an MLP with skip
  connections from its input to every hidden layer, ending in a sigmoid: occupancy in [0, 1];
- with several views, the MLP's hidden features are averaged over the views at the middle layer
  (PIFu's multi-view fusion); the rest of the MLP runs on the average;
- Tex-PIFu: a second, lighter image encoder whose features, together with the (detached)
  geometry features, predict RGB at points near the surface.

Optional, not in PIFu (``PIFuConfig.depth_head``): a 1x1 convolution on each stack's features
predicts the view's front and back depth maps (trained on ray-cast depth), and the occupancy MLP
also gets the point's depth relative to them, ``z - front`` and ``back - z``, at its ``uv``.

Training uses the loss of every stack (intermediate supervision); inference uses the last stack.
Projection is outside the network so the same model serves orthographic and perspective cameras.

Shapes: B batch, V views, N points, C channels, H, W image size.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SCHEMA = "dhstudio.pifu/1"
DEPTH_INIT = 0.12  # initial front/back depth of the depth head (normalised z, ~12 cm)
DEPTH_FEATURE_SCALE = 5.0  # relative depths enter the MLP times this (order 1 near the body)


@dataclass
class PIFuConfig:
    """Sizes of a PIFu network. ``paper()`` gives the sizes of the PIFu paper."""

    name: str = "small"
    """Config name, saved in checkpoints."""
    n_stacks: int = 2
    """Hourglass stacks; each stack's features are supervised during training."""
    hg_depth: int = 2
    """Down-sampling levels inside one hourglass."""
    hg_channels: int = 64
    """Channels of the hourglass features (the MLP's pixel-aligned feature size)."""
    stem_channels: int = 32
    """Channels after the first 7x7 convolution."""
    norm: str = "group"
    """'group' (GroupNorm, batch-size independent, PIFu's choice for small batches) or 'batch'."""
    mlp: tuple[int, ...] = (128, 64, 32)
    """Hidden widths of the occupancy MLP (input hg_channels + 1, output 1)."""
    tex_channels: int = 32
    """Channels of the colour encoder's features."""
    tex_mlp: tuple[int, ...] = (128, 64, 32)
    """Hidden widths of the colour MLP (input hg_channels + tex_channels + 1, output 3)."""
    image_size: int = 512
    """Input image side the model is trained at."""
    z_frequencies: int = 0
    """Fourier bands of the depth fed to the MLPs: 0 gives PIFu's plain ``z``; K > 0 adds
    ``sin(2^k pi z), cos(2^k pi z)`` for k < K (as NeRF's positional encoding), so a small MLP can
    resolve the surface's depth to a few cm."""
    depth_head: bool = False
    """Add a depth head: each stack's features also predict the view's front and back depth maps
    (normalised z of the first and last surface along every pixel's ray, trained on ray-cast
    depth), and the occupancy MLP gets, per view, the point's depth relative to them
    (``z - front``, ``back - z``), as extra inputs. Off: PIFu as published."""
    depth_net: dict | None = None
    """Config (``DepthNetConfig.to_dict()``) of a front/back depth U-Net
    (:mod:`reconstruct.body.depthnet`, trained separately, frozen here) whose maps give the
    occupancy MLP the point's depth relative to them (``z - front``, ``back - z``), as the depth
    head does, but from a network that sees the whole image at once and was trained on every
    pixel. None: no depth net (PIFu as published). Exclusive with ``depth_head``."""
    prior_size: int = 0
    """Side of the body-prior maps (:mod:`reconstruct.body.prior`: a MakeHuman body fitted to
    the photo, its front and back depth and a hit mask in the view, ICON-style) given to
    ``forward``/``query``; the occupancy MLP then gets, per view, ``z - front``, ``back - z``
    and the hit flag at the point's ``uv``. 0: no prior (PIFu as published)."""

    @staticmethod
    def paper() -> "PIFuConfig":
        """PIFu's sizes: 4 stacks of 256 channels, MLP 257-1024-512-256-128-1, Tex 513-...-3."""
        return PIFuConfig(name="paper", n_stacks=4, hg_depth=2, hg_channels=256, stem_channels=64,
                          mlp=(1024, 512, 256, 128), tex_channels=256, tex_mlp=(1024, 512, 256, 128))

    @staticmethod
    def small() -> "PIFuConfig":
        """A model that trains on 2 CPU cores in a couple of hours."""
        return PIFuConfig()

    @staticmethod
    def named(name: str) -> "PIFuConfig":
        if name == "paper":
            return PIFuConfig.paper()
        if name == "small":
            return PIFuConfig.small()
        raise ValueError(f"unknown PIFu config {name!r}; choose 'small' or 'paper'")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["schema"] = SCHEMA
        return d

    @staticmethod
    def from_dict(d: dict) -> "PIFuConfig":
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a PIFu config (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        kw = {f.name: d[f.name] for f in dataclasses.fields(PIFuConfig) if f.name in d}
        for k in ("mlp", "tex_mlp"):
            if k in kw:
                kw[k] = tuple(int(x) for x in kw[k])
        if kw.get("depth_net") is not None and not isinstance(kw["depth_net"], dict):
            raise ValueError("depth_net must be a depth-net config")
        return PIFuConfig(**kw)

    @property
    def depth_inputs(self) -> int:
        """Extra MLP inputs from depth maps: 2 (``z - front``, ``back - z``) with a depth head
        or a depth net, else 0."""
        return (2 if (self.depth_head or self.depth_net) else 0) + (3 if self.prior_size else 0)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(min(32, max(1, c // 4)), c)
    raise ValueError(f"unknown norm {kind!r}")


class ResBlock(nn.Module):
    """Pre-activation residual block with three 3x3 convolutions whose outputs (C/2, C/4, C/4)
    are concatenated, as in PIFu's hourglass; 1x1 projection on the skip when C changes."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        c1, c2 = cout // 2, cout // 4
        c3 = cout - c1 - c2
        self.n1, self.c1 = _norm(norm, cin), nn.Conv2d(cin, c1, 3, padding=1, bias=False)
        self.n2, self.c2 = _norm(norm, c1), nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.n3, self.c3 = _norm(norm, c2), nn.Conv2d(c2, c3, 3, padding=1, bias=False)
        self.skip = (nn.Sequential(_norm(norm, cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False))
                     if cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(F.relu(self.n1(x)))
        b = self.c2(F.relu(self.n2(a)))
        c = self.c3(F.relu(self.n3(b)))
        return torch.cat([a, b, c], 1) + self.skip(x)


class Hourglass(nn.Module):
    """Recursive hourglass: skip branch at this scale + (pool, inner, upsample)."""

    def __init__(self, depth: int, c: int, norm: str):
        super().__init__()
        self.up = ResBlock(c, c, norm)
        self.low1 = ResBlock(c, c, norm)
        self.inner = Hourglass(depth - 1, c, norm) if depth > 1 else ResBlock(c, c, norm)
        self.low3 = ResBlock(c, c, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        low = self.low3(self.inner(self.low1(F.avg_pool2d(x, 2))))
        return up + F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)


class HourglassEncoder(nn.Module):
    """Stacked hourglass image encoder: (B, 3, H, W) -> list of n_stacks maps (B, C, H/4, W/4)."""

    def __init__(self, cfg: PIFuConfig):
        super().__init__()
        c, s, nm = cfg.hg_channels, cfg.stem_channels, cfg.norm
        self.stem = nn.Sequential(
            nn.Conv2d(3, s, 7, stride=2, padding=3), _norm(nm, s), nn.ReLU(inplace=True),
            ResBlock(s, 2 * s, nm), nn.AvgPool2d(2), ResBlock(2 * s, 2 * s, nm), ResBlock(2 * s, c, nm))
        self.hgs = nn.ModuleList(Hourglass(cfg.hg_depth, c, nm) for _ in range(cfg.n_stacks))
        self.tops = nn.ModuleList(
            nn.Sequential(ResBlock(c, c, nm), nn.Conv2d(c, c, 1), _norm(nm, c), nn.ReLU(inplace=True))
            for _ in range(cfg.n_stacks))
        self.merge = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(cfg.n_stacks - 1))

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(img)
        outs = []
        for i, (hg, top) in enumerate(zip(self.hgs, self.tops)):
            y = top(hg(x))
            outs.append(y)
            if i < len(self.merge):
                x = x + self.merge[i](y)
        return outs


class ColourEncoder(nn.Module):
    """Tex-PIFu's lighter encoder: a few residual blocks, output at H/4."""

    def __init__(self, cfg: PIFuConfig):
        super().__init__()
        c, nm = cfg.tex_channels, cfg.norm
        self.net = nn.Sequential(
            nn.Conv2d(3, c // 2, 7, stride=2, padding=3), _norm(nm, c // 2), nn.ReLU(inplace=True),
            ResBlock(c // 2, c, nm), nn.AvgPool2d(2), ResBlock(c, c, nm), ResBlock(c, c, nm))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img)


class SkipMLP(nn.Module):
    """Point-wise MLP (as 1x1 Conv1d) whose every hidden layer also sees the input features.

    ``forward(x: (B*V, Cin, N), n_views)`` averages the hidden features over the V views after
    layer ``merge_at`` (the middle), as PIFu's multi-view fusion does.
    """

    def __init__(self, cin: int, hidden: tuple[int, ...], cout: int):
        super().__init__()
        dims = [cin, *hidden, cout]
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            extra = cin if i > 0 else 0
            self.layers.append(nn.Conv1d(dims[i] + extra, dims[i + 1], 1))
        self.merge_at = len(self.layers) // 2

    def forward(self, x: torch.Tensor, n_views: int = 1) -> torch.Tensor:
        inp, y = x, x
        for i, layer in enumerate(self.layers):
            y = layer(y if i == 0 else torch.cat([y, inp], 1))
            if i < len(self.layers) - 1:
                y = F.leaky_relu(y, 0.2)
            if n_views > 1 and i == self.merge_at - 1:
                bv, c, n = y.shape
                y = y.view(bv // n_views, n_views, c, n).mean(1)
                inp = inp.view(bv // n_views, n_views, -1, n).mean(1)
        return y


def sample_features(feat: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear features at ``uv``: feat (B, C, H, W), uv (B, N, 2) in [-1, 1] -> (B, C, N).
    Points outside the image get zeros."""
    return F.grid_sample(feat, uv.unsqueeze(2), mode="bilinear", padding_mode="zeros",
                         align_corners=False)[..., 0]


class PIFu(nn.Module):
    """Occupancy (and optional colour) of 3D points seen in one or more images.

    >>> m = PIFu(PIFuConfig(image_size=64))
    >>> img = torch.zeros(1, 1, 3, 64, 64)            # (B, V, 3, H, W)
    >>> uv, z = torch.zeros(1, 1, 10, 2), torch.zeros(1, 1, 10, 1)
    >>> m(img, uv, z)[-1].shape                       # occupancy of the last stack
    torch.Size([1, 10])
    """

    def __init__(self, cfg: PIFuConfig | None = None, *, with_colour: bool = True):
        super().__init__()
        self.cfg = cfg or PIFuConfig()
        c = self.cfg.hg_channels
        self.encoder = HourglassEncoder(self.cfg)
        nz = 1 + 2 * self.cfg.z_frequencies
        if self.cfg.depth_head and self.cfg.depth_net:
            raise ValueError("a PIFu has a depth head or a depth net, not both")
        self.occ_mlp = SkipMLP(c + nz + self.cfg.depth_inputs, self.cfg.mlp, 1)
        self.depth_net = None
        if self.cfg.depth_net:
            from .depthnet import DepthNet, DepthNetConfig

            self.depth_net = DepthNet(DepthNetConfig.from_dict(self.cfg.depth_net))
            self.depth_net.requires_grad_(False)
        if self.cfg.depth_head:
            self.depth_heads = nn.ModuleList(nn.Conv2d(c, 2, 1) for _ in range(self.cfg.n_stacks))
            for h in self.depth_heads:  # start as a slab +-DEPTH_INIT around the subject's centre
                nn.init.zeros_(h.weight)
                with torch.no_grad():
                    h.bias.copy_(torch.tensor([-DEPTH_INIT, DEPTH_INIT]))
        self.with_colour = with_colour
        if with_colour:
            self.colour_encoder = ColourEncoder(self.cfg)
            self.colour_mlp = SkipMLP(c + self.cfg.tex_channels + nz, self.cfg.tex_mlp, 3)

    def z_features(self, zf: torch.Tensor) -> torch.Tensor:
        """(B*V, 1, N) depth -> (B*V, 1 + 2K, N): z, then its sines and cosines (K = z_frequencies)."""
        k = self.cfg.z_frequencies
        if not k:
            return zf
        freq = (2.0 ** torch.arange(k, dtype=zf.dtype, device=zf.device) * torch.pi).view(1, k, 1)
        a = zf * freq
        return torch.cat([zf, torch.sin(a), torch.cos(a)], 1)

    @staticmethod
    def _check(img: torch.Tensor, uv: torch.Tensor, z: torch.Tensor) -> None:
        if img.dim() != 5 or img.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(img.shape)}")
        b, v = img.shape[:2]
        if uv.dim() != 4 or uv.shape[:2] != (b, v) or uv.shape[-1] != 2:
            raise ValueError(f"uv must be (B={b}, V={v}, N, 2), got {tuple(uv.shape)}")
        if z.shape != (*uv.shape[:3], 1):
            raise ValueError(f"z must be (B, V, N, 1) = {(*uv.shape[:3], 1)}, got {tuple(z.shape)}")

    def encode(self, img: torch.Tensor) -> list[torch.Tensor]:
        """img (B, V, 3, H, W) in [-1, 1] -> per-stack features (B*V, C, H/4, W/4); with a depth
        net, (B*V, C + 2, H/4, W/4): its front and back maps ride along as two last channels."""
        b, v = img.shape[:2]
        x = img.reshape(b * v, *img.shape[2:])
        feats = self.encoder(x)
        if self.depth_net is None:
            return feats
        d = F.interpolate(self.net_depth(x), size=feats[0].shape[-2:], mode="bilinear", align_corners=False,
                          antialias=True)
        return [torch.cat([f, d], 1) for f in feats]

    def net_depth(self, x: torch.Tensor) -> torch.Tensor:
        """The depth net's front and back maps (B*V, 2, S, S) for images (B*V, 3, H, W) in
        [-1, 1] with the background exactly 0: the mask is down-sampled to the net's size S
        (area, >= 0.5 is the person, as the training views were made) and the image with it."""
        s = self.depth_net.cfg.image_size
        with torch.no_grad():
            if x.shape[-1] != s:
                m = F.interpolate(self.depth_net.mask_of(x), size=(s, s), mode="area") >= 0.5
                x = F.interpolate(x, size=(s, s), mode="area") * m
            return self.depth_net(x)

    def depth_maps(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Front and back depth maps (B*V, 2, H/4, W/4), normalised z, one per stack (depth head)."""
        if not self.cfg.depth_head:
            raise RuntimeError("this PIFu has no depth head")
        return [h(f) for h, f in zip(self.depth_heads[self.cfg.n_stacks - len(feats):], feats)]

    def query(self, feats: list[torch.Tensor], uv: torch.Tensor, z: torch.Tensor,
              stacks: str = "all", prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Occupancy from encoded features. uv (B, V, N, 2), z (B, V, N, 1) -> list of (B, N)
        (one per stack, or only the last with ``stacks='last'``). ``prior`` (B, V, 3, P, P): the
        body prior's front, back (normalised z, filled outside the hit mask) and hit maps, for a
        model with ``prior_size``."""
        b, v, n = uv.shape[:3]
        pri = None
        if self.cfg.prior_size:
            if prior is None or prior.dim() != 5 or prior.shape[:3] != (b, v, 3):
                raise ValueError(f"this PIFu needs body-prior maps (B={b}, V={v}, 3, P, P), got "
                                 f"{None if prior is None else tuple(prior.shape)}")
            pz = sample_features(prior.reshape(b * v, *prior.shape[2:]), uv.reshape(b * v, n, 2))
            pri = (pz[:, :1], pz[:, 1:2], pz[:, 2:3])
        elif prior is not None:
            raise ValueError("this PIFu was trained without a body prior")
        z1 = z.reshape(b * v, n, 1).transpose(1, 2)
        uvf, zf = uv.reshape(b * v, n, 2), self.z_features(z1)
        use = list(range(len(feats))) if stacks == "all" else [len(feats) - 1]
        # ``feats`` may hold only the last stacks (inference keeps the last one): align to the end
        first = self.cfg.n_stacks - len(feats)
        out = []
        c = self.cfg.hg_channels
        for i in use:
            f = feats[i]
            parts = [sample_features(f[:, :c], uvf), zf]
            d = None
            if self.cfg.depth_head:
                d = sample_features(self.depth_heads[first + i](f), uvf)  # (B*V, 2, N): front, back
            elif self.depth_net is not None:
                d = sample_features(f[:, c:], uvf)
            if d is not None:
                parts.append(DEPTH_FEATURE_SCALE * torch.cat([z1 - d[:, :1], d[:, 1:] - z1], 1))
            if pri is not None:
                parts.append(torch.cat([DEPTH_FEATURE_SCALE * (z1 - pri[0]), DEPTH_FEATURE_SCALE * (pri[1] - z1),
                                        pri[2]], 1))
            out.append(torch.sigmoid(self.occ_mlp(torch.cat(parts, 1), v))[:, 0])
        return out

    def forward(self, img: torch.Tensor, uv: torch.Tensor, z: torch.Tensor,
                prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        self._check(img, uv, z)
        return self.query(self.encode(img), uv, z, prior=prior)

    def colour(self, img: torch.Tensor, uv: torch.Tensor, z: torch.Tensor,
               feats: list[torch.Tensor] | None = None,
               cfeat: torch.Tensor | None = None) -> torch.Tensor:
        """RGB in [0, 1] at points near the surface: (B, N, 3). The geometry features are
        detached, as Tex-PIFu trains the colour head with the geometry fixed."""
        if not self.with_colour:
            raise RuntimeError("this PIFu was built without the colour head")
        self._check(img, uv, z)
        b, v, n = uv.shape[:3]
        if feats is None:
            feats = self.encode(img)
        if cfeat is None:
            cfeat = self.colour_encoder(img.reshape(b * v, *img.shape[2:]))
        uvf, zf = uv.reshape(b * v, n, 2), self.z_features(z.reshape(b * v, n, 1).transpose(1, 2))
        geo = feats[-1][:, :self.cfg.hg_channels].detach()
        x = torch.cat([sample_features(geo, uvf), sample_features(cfeat, uvf), zf], 1)
        return torch.sigmoid(self.colour_mlp(x, v)).transpose(1, 2)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
