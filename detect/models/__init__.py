"""Face-forgery detector families, one module each; importing this package registers them.

Use ``detect.registry.create_detector(name)`` rather than the classes: the registry is the one
way in. Every model has the interface of :class:`~detect.models.base.Detector`.

| name | module | paper |
|---|---|---|
| ``meso4``, ``mesoinception4`` | ``meso`` | MesoNet, Afchar et al., WIFS 2018 |
| ``capsule`` | ``capsule`` | Capsule-Forensics, Nguyen et al., ICASSP 2019 |
| ``efficientnet_lite`` | ``efficientnet`` | EfficientNet-B0 class, Tan & Le, ICML 2019 |
| ``multitask`` | ``multitask`` | classify + segment, Nguyen et al., BTAS 2019 |
| ``xray`` | ``xray`` | Face X-ray, Li et al., CVPR 2020 |
"""

from . import capsule, efficientnet, meso, multitask, xray  # noqa: F401  (registers the detectors)
from .base import Detector, DetectorConfig, DetectorOutput

__all__ = ["Detector", "DetectorConfig", "DetectorOutput", "capsule", "efficientnet", "meso", "multitask", "xray"]
