"""The paired verifier: ``detect.verify(path, options) -> Verdict`` is the one way in.

Provenance evidence comes from ``provenance`` (C2PA, watermark, registry); the content check
(``detect.content``: the face-forgery detector on the faces of images and videos) from the same
bytes; ``detect.fuse`` decides the label, provenance first, content after.
"""

from .verifier import SCHEMA, ContentSection, Verdict, VerifyOptions, verify

__all__ = ["SCHEMA", "ContentSection", "Verdict", "VerifyOptions", "verify"]
