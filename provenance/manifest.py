"""What dhstudio says about a generated asset: the C2PA manifest definition.

``build_manifest_definition`` turns a :class:`GenerationSpec` into the JSON
manifest definition c2pa-python's ``Builder`` takes. Ingredient *files* are
attached by :mod:`provenance.c2pa_io` (it needs the streams); this module only
describes them.

Assertions written:

* ``c2pa.actions.v2``: ``c2pa.created`` with the IPTC ``digitalSourceType``
  and ``softwareAgent`` {name: dhstudio, version}; when an earlier signed
  version is the parent, ``c2pa.opened`` on it comes first and the
  generation step is a ``c2pa.edited`` action carrying the same fields.
* ``io.dhstudio.generation``: model name / version / weights sha256,
  parameters, seed, and the sha256 of every input.
* ``c2pa.soft-binding`` (when a watermark id is given): C2PA soft-binding
  map ``{alg, blocks: [{scope: {}, value: base64(id as 6 big-endian bytes)}]}``.
* ``cawg.training-mining``: the same choice for the four CAWG uses.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from .media import sha256_file

__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "IPTC_DST_PREFIX",
    "GENERATION_LABEL",
    "ASSET_HASH_LABEL",
    "SOFT_BINDING_LABEL",
    "TRAINING_MINING_LABEL",
    "TRAINING_MINING_USES",
    "GenerationSpec",
    "build_manifest_definition",
    "digital_source_type_iri",
    "dhstudio_version",
    "encode_watermark_id",
    "decode_watermark_id",
]

IPTC_DST_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"

_DST_NAMES = [
    "trainedAlgorithmicMedia",
    "algorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "compositeSynthetic",
    "composite",
    "algorithmicallyEnhanced",
    "digitalCreation",
    "digitalCapture",
    "computationalCapture",
    "minorHumanEdits",
    "humanEdits",
    "softwareImage",
    "digitalArt",
    "dataDrivenMedia",
    "screenCapture",
    "virtualRecording",
    "compositeCapture",
    "negativeFilm",
    "positiveFilm",
    "print",
]
DIGITAL_SOURCE_TYPES: dict[str, str] = {n: IPTC_DST_PREFIX + n for n in _DST_NAMES}

GENERATION_LABEL = "io.dhstudio.generation"
ASSET_HASH_LABEL = "io.dhstudio.asset-hash"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
TRAINING_MINING_LABEL = "cawg.training-mining"
TRAINING_MINING_USES = (
    "cawg.ai_generative_training",
    "cawg.ai_training",
    "cawg.ai_inference",
    "cawg.data_mining",
)
_TRAINING_MINING_VALUES = ("allowed", "notAllowed", "constrained")
WATERMARK_ID_BITS = 48


@dataclass
class GenerationSpec:
    """Everything the manifest says about how an asset was made."""

    model_name: str = "dhstudio-procedural"
    model_version: str = "0"
    weights_sha256: str | None = None
    parameters: dict = field(default_factory=dict)
    seed: int | None = None
    digital_source_type: str = "trainedAlgorithmicMedia"  # short name or full IRI
    ingredients: list[Path] = field(default_factory=list)  # inputs -> relationship "inputTo"
    watermark_alg: str | None = None  # e.g. "io.dhstudio.watermark.image.v1"
    watermark_id: int | None = None  # 48-bit id -> c2pa.soft-binding
    training_mining: str = "notAllowed"  # allowed / notAllowed / constrained
    title: str | None = None


def dhstudio_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("dhstudio")
        except PackageNotFoundError:
            return "0+unknown"
    except Exception:  # pragma: no cover - importlib.metadata always exists on 3.11
        return "0+unknown"


def digital_source_type_iri(value: str) -> str:
    """Short IPTC name or full IRI -> full IRI. Unknown short names raise ValueError."""
    if not value:
        raise ValueError("digital_source_type must not be empty")
    if "://" in value:
        return value
    try:
        return DIGITAL_SOURCE_TYPES[value]
    except KeyError:
        raise ValueError(
            f"unknown digitalSourceType {value!r} (one of: {', '.join(sorted(DIGITAL_SOURCE_TYPES))}, or a full IRI)"
        ) from None


def encode_watermark_id(wid: int) -> str:
    """48-bit id -> base64 of its 6 big-endian bytes (the soft-binding ``value``)."""
    if not isinstance(wid, int) or isinstance(wid, bool) or not (0 <= wid < (1 << WATERMARK_ID_BITS)):
        raise ValueError(f"watermark_id must be an integer in [0, 2**{WATERMARK_ID_BITS})")
    return base64.b64encode(wid.to_bytes(WATERMARK_ID_BITS // 8, "big")).decode("ascii")


def decode_watermark_id(value) -> int | None:
    """Inverse of :func:`encode_watermark_id`; also accepts a decimal string or int."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (bytes, bytearray, list)):
        return int.from_bytes(bytes(value), "big")
    if isinstance(value, str):
        s = value.strip()
        if s.isdigit() and len(s) != 8:  # 8 chars is the base64 length of 6 bytes
            return int(s)
        try:
            raw = base64.b64decode(s, validate=True)
        except Exception:
            return int(s) if s.isdigit() else None
        return int.from_bytes(raw, "big") if raw else None
    return None


def _software_agent() -> dict:
    return {"name": "dhstudio", "version": dhstudio_version()}


def _generation_assertion(spec: GenerationSpec, ingredient_hashes: list[dict]) -> dict:
    data: dict = {
        "model_name": spec.model_name,
        "model_version": str(spec.model_version),
        "weights_sha256": spec.weights_sha256,
        "parameters": dict(spec.parameters or {}),
        "seed": int(spec.seed) if spec.seed is not None else None,
        "inputs": ingredient_hashes,
    }
    if spec.watermark_alg or spec.watermark_id is not None:
        data["watermark"] = {"alg": spec.watermark_alg, "id": spec.watermark_id}
    return {"label": GENERATION_LABEL, "data": data}


def training_mining_assertion(value: str) -> dict:
    if value not in _TRAINING_MINING_VALUES:
        raise ValueError(f"training_mining must be one of {', '.join(_TRAINING_MINING_VALUES)}")
    entries = {}
    for use in TRAINING_MINING_USES:
        e: dict = {"use": value}
        if value == "constrained":
            e["constraint_info"] = "contact the signer for licensing terms"
        entries[use] = e
    return {"label": TRAINING_MINING_LABEL, "data": {"entries": entries}}


def soft_binding_assertion(alg: str | None, wid: int) -> dict:
    return {
        "label": SOFT_BINDING_LABEL,
        "data": {
            "alg": alg or "io.dhstudio.watermark.v1",
            "blocks": [{"scope": {}, "value": encode_watermark_id(wid)}],
        },
    }


def ingredient_entry(path: Path, *, relationship: str = "inputTo", media_type: str | None = None,
                     sha256: str | None = None) -> dict:
    """The ingredient definition for one input file (title, format, relationship, sha256)."""
    path = Path(path)
    digest = sha256 or sha256_file(path)
    entry = {
        "title": path.name,
        "relationship": relationship,
        "metadata": {"io.dhstudio.sha256": digest},
    }
    if media_type:
        entry["format"] = media_type
    return entry


def build_manifest_definition(
    spec: GenerationSpec,
    *,
    media_type: str,
    title: str,
    parent_label: str | None = None,
    ingredient_hashes: list[dict] | None = None,
    extra_assertions: list[dict] | None = None,
) -> dict:
    """The c2pa-python manifest definition (a dict, JSON-serialisable).

    ``parent_label``: label of an already-added ``parentOf`` ingredient; the
    actions then open it first and record the generation as ``c2pa.edited``.
    ``ingredient_hashes``: ``[{"title", "sha256"}]`` for the inputs (computed
    from ``spec.ingredients`` when not given); the ingredient entries
    themselves are added by the caller (they need streams).
    """
    dst = digital_source_type_iri(spec.digital_source_type)
    if ingredient_hashes is None:
        ingredient_hashes = [
            {"title": Path(p).name, "sha256": sha256_file(Path(p))} for p in spec.ingredients
        ]
    agent = _software_agent()
    actions: list[dict] = []
    if parent_label:
        actions.append(
            {
                "action": "c2pa.opened",
                "softwareAgent": agent,
                "parameters": {"ingredientIds": [parent_label]},
            }
        )
        actions.append(
            {
                "action": "c2pa.edited",
                "softwareAgent": agent,
                "digitalSourceType": dst,
                "description": f"generated with {spec.model_name} {spec.model_version}",
            }
        )
    else:
        actions.append(
            {
                "action": "c2pa.created",
                "softwareAgent": agent,
                "digitalSourceType": dst,
                "description": f"generated with {spec.model_name} {spec.model_version}",
            }
        )
    if spec.watermark_id is not None:
        actions.append({"action": "c2pa.watermarked", "softwareAgent": agent})

    assertions = [
        {"label": "c2pa.actions.v2", "data": {"actions": actions}},
        _generation_assertion(spec, ingredient_hashes),
        training_mining_assertion(spec.training_mining),
    ]
    if spec.watermark_id is not None:
        assertions.append(soft_binding_assertion(spec.watermark_alg, spec.watermark_id))
    if extra_assertions:
        assertions.extend(extra_assertions)

    return {
        "claim_generator_info": [agent],
        "title": spec.title or title,
        "format": media_type,
        "assertions": assertions,
    }
