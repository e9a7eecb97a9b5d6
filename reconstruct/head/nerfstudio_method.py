"""nerfstudio method ``dhstudio-head``: our expression-conditioned hash-grid head field inside ``ns-train``.

Installed by the ``[nerfstudio]`` extra (in its own environment: nerfstudio 1.1.5 pins numpy<2
and opencv 4.10; see the README) and registered through the ``nerfstudio.method_configs``
entry point, so::

    ns-train dhstudio-head --data CAPTURE_DIR

trains :class:`reconstruct.head.field.HeadField` (the same module ``dhstudio head train`` uses)
with nerfstudio's data manager, trainer, viewer and evaluation. A dhstudio capture is a plain
nerfstudio dataset (``transforms.json`` with ``train/val/test_filenames``); the dataparser of this
method, :class:`DhstudioDataParser`, is nerfstudio's own ``Nerfstudio`` parser plus the per-frame
``expression`` objects {name: weight} that other tools ignore (and the capture's head box as the
scene box, when it has one): the expressions become a camera metadata tensor
(one row per camera, one column per name of the file's ``expression_names``), which nerfstudio
carries into every ray bundle, and the field is conditioned on it. Datasets without expressions
train an unconditioned field.

Rendering: two-pass sampling in the scene box (uniform, then importance samples from the first
pass's weights, both through the one field), volume rendering with nerfstudio's renderers.
This module imports nerfstudio: it is only importable where the extra is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Tuple, Type

import numpy as np
import torch
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.model_components.losses import MSELoss
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.io import load_from_json

from .data import CaptureError, name_hint
from .field import FieldConfig, HeadField

# nerfstudio 1.1.5's schedulers store learning rates as numpy float64, and torch >= 2.6 loads
# checkpoints with weights_only=True, so ns-eval / ns-viewer / resuming would refuse every checkpoint
# it writes. Allow exactly those numpy scalar types (plain data, no code) instead of turning the
# safe loader off.
torch.serialization.add_safe_globals([np.core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))])

EXPRESSION_KEY = "expression"
"""Camera / ray-bundle metadata key of the expression vectors."""


# ----------------------------------------------------------------------------- data


@dataclass
class DhstudioDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio's ``Nerfstudio`` dataparser, plus the per-frame ``expression`` objects."""

    _target: Type = field(default_factory=lambda: DhstudioDataParser)


@dataclass
class DhstudioDataParser(Nerfstudio):
    """Adds ``cameras.metadata["expression"]`` ``(n_cameras, E)`` and ``metadata["expression_names"]``."""

    config: DhstudioDataParserConfig

    def _generate_dataparser_outputs(self, split="train"):
        out = super()._generate_dataparser_outputs(split)
        # nerfstudio samples only the pixels inside a capture's masks, so the background (black in our
        # captures) would never be trained and the field could put matter in front of it: train on
        # whole images, as `dhstudio head train` does
        out.mask_filenames = None
        path = self.config.data
        meta = load_from_json(path if path.suffix == ".json" else path / "transforms.json")
        data_dir = path.parent if path.suffix == ".json" else path
        box = (meta.get("dhstudio") or {}).get("scene_box")
        if box is not None:
            out.scene_box = SceneBox(aabb=_transform_box(box, out.dataparser_transform, out.dataparser_scale))
        names = expression_names(meta)
        if not names:
            return out
        index = {n: k for k, n in enumerate(names)}
        by_file: Dict[Path, torch.Tensor] = {}
        for i, frame in enumerate(meta["frames"]):
            vec = torch.zeros(len(names))
            expr = frame.get("expression") or {}
            if not isinstance(expr, dict):
                raise CaptureError(f"transforms.json frame {i}: 'expression' must be an object {{name: weight}}")
            for name, w in expr.items():
                if name not in index:
                    raise CaptureError(f"transforms.json frame {i}: unknown expression name {name!r}; "
                                       f"{name_hint(name, names)}")
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                    raise CaptureError(f"transforms.json frame {i}: expression weight of {name!r} must be a finite number")
                vec[index[name]] = float(w)
            by_file[self._get_fname(Path(frame["file_path"]), data_dir)] = vec
        rows = torch.stack([by_file[f] for f in out.image_filenames])
        cams = out.cameras
        cams.metadata = {**(cams.metadata or {}), EXPRESSION_KEY: rows}
        out.metadata = {**out.metadata, "expression_names": tuple(names)}
        return out


def _transform_box(box, transform: torch.Tensor, scale: float) -> torch.Tensor:
    """Our capture's world-space head box -> the dataparser's frame (its 3x4 transform, then scale)."""
    b = torch.tensor(box, dtype=torch.float32)
    if b.shape != (2, 3) or not torch.isfinite(b).all() or not (b[1] > b[0]).all():
        raise CaptureError("transforms.json: dhstudio.scene_box must be [[x0, y0, z0], [x1, y1, z1]] with x1 > x0 ...")
    corners = torch.stack(torch.meshgrid(*[b[:, k] for k in range(3)], indexing="ij"), -1).reshape(-1, 3)
    t = transform.float()
    c = (corners @ t[:3, :3].T + t[:3, 3]) * float(scale)
    return torch.stack([c.min(0).values, c.max(0).values])


def expression_names(meta: dict) -> List[str]:
    """The file's ``expression_names`` (our captures write them), else the sorted union over frames."""
    names = meta.get("expression_names")
    if names is None:
        found = set()
        for frame in meta.get("frames", []):
            e = frame.get("expression")
            if isinstance(e, dict):
                found.update(e)
        names = sorted(found)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise CaptureError("transforms.json: 'expression_names' must be a list of distinct strings")
    return list(names)


# ----------------------------------------------------------------------------- model


@dataclass
class DhstudioHeadModelConfig(ModelConfig):
    """Field and sampling settings of ``dhstudio-head`` (the field's are :class:`FieldConfig`'s)."""

    _target: Type = field(default_factory=lambda: DhstudioHeadModel)
    num_uniform_samples: int = 64
    """Samples per ray of the first (uniform) pass."""
    num_importance_samples: int = 64
    """Samples per ray drawn from the first pass's weights."""
    background_color: Literal["random", "last_sample", "black", "white"] = "black"
    """Background behind the head (dhstudio captures render on black)."""
    log2_hashmap_size: int = 16
    """log2 rows per hash-grid level."""
    max_resolution: int = 1024
    """Finest hash-grid resolution over the scene box."""
    hidden_dim: int = 64
    """Density MLP width."""
    color_hidden_dim: int = 64
    """Colour MLP width."""
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    """Hash-grid backend (tcnn where tiny-cuda-nn is installed)."""
    loss_coefficients: Dict[str, float] = field(default_factory=lambda: {"rgb_loss_coarse": 0.1, "rgb_loss_fine": 1.0})


class DhstudioHeadModel(Model):
    """:class:`HeadField` behind nerfstudio's samplers and renderers."""

    config: DhstudioHeadModelConfig

    def populate_modules(self):
        super().populate_modules()
        self.collider = AABBBoxCollider(self.scene_box, near_plane=0.0)
        names = tuple(self.kwargs.get("metadata", {}).get("expression_names", ()))
        aabb = self.scene_box.aabb
        cfg = FieldConfig(box_min=tuple(aabb[0].tolist()), box_max=tuple(aabb[1].tolist()),
                          expression_names=names, log2_hashmap_size=self.config.log2_hashmap_size,
                          max_resolution=self.config.max_resolution, hidden_dim=self.config.hidden_dim,
                          color_hidden_dim=self.config.color_hidden_dim)
        self.field = HeadField(cfg, backend=self.config.backend)
        self.sampler_uniform = UniformSampler(num_samples=self.config.num_uniform_samples)
        self.sampler_pdf = PDFSampler(num_samples=self.config.num_importance_samples)
        self.renderer_rgb = RGBRenderer(background_color=self.config.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer()
        self.rgb_loss = MSELoss()
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": list(self.field.parameters())}

    def _query(self, ray_samples, ray_bundle: RayBundle):
        pos = ray_samples.frustums.get_positions()  # (R, S, 3)
        r, s = pos.shape[:2]
        dirs = ray_samples.frustums.directions.reshape(-1, 3)
        cond = {}
        e = (ray_bundle.metadata or {}).get(EXPRESSION_KEY)
        if e is not None and self.field.cfg.n_expressions:
            cond["expression"] = e.reshape(r, 1, -1).expand(r, s, -1).reshape(r * s, -1)
        sigma, geo = self.field.query_density(pos.reshape(-1, 3), cond)
        rgb = self.field.query_color(geo, dirs, cond)
        weights = ray_samples.get_weights(sigma.reshape(r, s, 1))
        return weights, rgb.reshape(r, s, 3)

    def get_outputs(self, ray_bundle: RayBundle):
        samples_u = self.sampler_uniform(ray_bundle)
        w_u, rgb_u = self._query(samples_u, ray_bundle)
        samples_f = self.sampler_pdf(ray_bundle, samples_u, w_u)
        w_f, rgb_f = self._query(samples_f, ray_bundle)
        return {
            "rgb_coarse": self.renderer_rgb(rgb=rgb_u, weights=w_u),
            "rgb": self.renderer_rgb(rgb=rgb_f, weights=w_f),
            "accumulation_coarse": self.renderer_accumulation(w_u),
            "accumulation": self.renderer_accumulation(w_f),
            "depth": self.renderer_depth(w_f, samples_f),
        }

    def get_metrics_dict(self, outputs, batch):
        image = batch["image"].to(self.device)
        image = self.renderer_rgb.blend_background(image)
        return {"psnr": self.psnr(outputs["rgb"], image)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        image = batch["image"].to(self.device)
        losses = {}
        for key, out_key, acc_key in (("rgb_loss_coarse", "rgb_coarse", "accumulation_coarse"),
                                      ("rgb_loss_fine", "rgb", "accumulation")):
            pred, gt = self.renderer_rgb.blend_background_for_loss_computation(
                pred_image=outputs[out_key], pred_accumulation=outputs[acc_key], gt_image=image)
            losses[key] = self.config.loss_coefficients[key] * self.rgb_loss(gt, pred)
        return losses

    def get_image_metrics_and_images(self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                                     ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        image = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        rgb = outputs["rgb"]
        a = torch.moveaxis(image, -1, 0)[None]
        b = torch.moveaxis(rgb, -1, 0)[None]
        metrics = {"psnr": float(self.psnr(a, b).item()), "ssim": float(self.ssim(a, b))}
        return metrics, {"img": torch.cat([image, rgb], dim=1)}


# ----------------------------------------------------------------------------- method

dhstudio_head = MethodSpecification(
    config=TrainerConfig(
        method_name="dhstudio-head",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=20000,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=DhstudioDataParserConfig(auto_scale_poses=True, center_method="none",
                                                    orientation_method="none"),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=DhstudioHeadModelConfig(eval_num_rays_per_chunk=1 << 14),
        ),
        optimizers={
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=20000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
        vis="viewer",
    ),
    description="dhstudio: expression-conditioned hash-grid head avatar (reconstruct.head.field.HeadField)",
)
