"""The paired verifier: ``detect.verify(path, options) -> Verdict`` is the one way in.

Provenance evidence comes from ``provenance`` (C2PA, watermark, registry); the content check
(face-forgery detectors) is not part of this release yet; ``detect.fuse`` decides the label.
"""

from .verifier import SCHEMA, ContentSection, Verdict, VerifyOptions, verify

__all__ = ["SCHEMA", "ContentSection", "Verdict", "VerifyOptions", "verify"]
