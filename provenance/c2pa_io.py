"""Sign and read C2PA manifests (c2pa-python / c2pa-rs), offline.

Signing embeds a manifest built by :mod:`provenance.manifest` into JPEG, PNG,
WebP, MP4 and WAV. GLB (glTF binary) has no C2PA embedding, so a GLB is
copied unchanged and its manifest goes into an external manifest store next to
it, ``model.glb.c2pa``: a standard C2PA manifest store (JUMBF,
``application/c2pa``) whose hard binding is a ``c2pa.hash.data`` assertion
over *every* byte of the GLB (no exclusions), made by c2pa-rs itself with
``Builder.set_no_embed()``. It also carries ``io.dhstudio.asset-hash``
(sha256 of the GLB) that our reader checks independently.

Reading never touches the network: remote manifests are reported
(``remote_url``) but not fetched, OCSP is not fetched, and
``core.allowed_network_hosts`` is empty so nothing in c2pa-rs can reach out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import c2pa

from . import media
from .errors import InputError, OutputError, SigningError
from .keys import SigningIdentity
from .manifest import (
    ASSET_HASH_LABEL,
    GENERATION_LABEL,
    SOFT_BINDING_LABEL,
    GenerationSpec,
    build_manifest_definition,
    decode_watermark_id,
)

__all__ = [
    "SUPPORTED",
    "SIDECAR_SUFFIX",
    "HARD_BINDING_CODES",
    "ProvenanceResult",
    "media_type_of",
    "sidecar_path",
    "c2pa_settings",
    "sign_file",
    "read_file",
    "read_snapshot",
    "read_manifest_store",
]

# extension -> media type of every signable format (from the one table in provenance.media)
SUPPORTED = {ext: mt for mt, exts in media.EXTENSIONS.items() for ext in exts}
GLB_TYPE = "model/gltf-binary"
SIDECAR_SUFFIX = ".c2pa"
# Codes that depend on the asset bytes: meaningless for a stand-alone store.
HARD_BINDING_PREFIXES = (
    "assertion.dataHash.",
    "assertion.bmffHash.",
    "assertion.boxesHash.",
    "assertion.collectionHash.",
)
HARD_BINDING_CODES = HARD_BINDING_PREFIXES  # backwards-friendly alias
ASSET_HASH_MISMATCH = "io.dhstudio.assetHash.mismatch"

_READ_ONLY_TYPES = {"image/tiff", "image/gif", "image/heic", "image/avif", "video/quicktime",
                    "audio/mp4", "audio/mpeg", "audio/flac", "application/pdf", "image/svg+xml"}


# --------------------------------------------------------------------------- media types


def media_type_of(path: Path) -> str:
    """Media type of a signable file: magic bytes first, extension second.

    Raises InputError when the file is missing or not one of :data:`SUPPORTED`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    sniffed = media.sniff_media_type(path)
    supported = set(SUPPORTED.values())
    if sniffed in supported:
        return sniffed
    if sniffed is not None:
        raise InputError(f"{path}: {sniffed} is not supported for signing "
                         f"(supported: {', '.join(sorted(SUPPORTED))})", code="input.unsupported")
    by_ext = SUPPORTED.get(path.suffix.lower())
    if by_ext is not None and by_ext != GLB_TYPE:
        # unknown magic but a known extension: let c2pa judge the bytes
        return by_ext
    raise InputError(f"{path}: unsupported or unrecognised file type "
                     f"(supported: {', '.join(sorted(SUPPORTED))})", code="input.unsupported")


def sidecar_path(path: Path) -> Path:
    """``model.glb`` -> ``model.glb.c2pa``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _sidecar_candidates(path: Path) -> list[Path]:
    path = Path(path)
    c = [sidecar_path(path)]
    alt = path.with_suffix(SIDECAR_SUFFIX)  # c2pa-rs / c2patool convention
    if alt != c[0] and alt != path:
        c.append(alt)
    return c


# --------------------------------------------------------------------------- settings


def c2pa_settings(trust_anchors: bytes | str | None = None) -> dict:
    """The c2pa-rs settings every dhstudio Reader/Builder uses (no network, ever)."""
    s: dict = {
        "version": 1,
        "verify": {
            "verify_after_reading": True,
            "verify_after_sign": True,
            "verify_trust": True,
            "verify_timestamp_trust": True,
            "ocsp_fetch": False,
            "remote_manifest_fetch": False,
        },
        "core": {"allowed_network_hosts": []},
        "builder": {
            "thumbnail": {"enabled": True, "ignore_errors": True, "long_edge": 512},
            "auto_timestamp_assertion": {"enabled": False},
            "certificate_status_fetch": None,
        },
    }
    if trust_anchors:
        pem = trust_anchors.decode("ascii") if isinstance(trust_anchors, bytes) else str(trust_anchors)
        s["trust"] = {"trust_anchors": pem}
    return s


def _context(trust_anchors: bytes | str | None = None) -> "c2pa.Context":
    return c2pa.Context.from_dict(c2pa_settings(trust_anchors))


# --------------------------------------------------------------------------- result


@dataclass
class ProvenanceResult:
    manifest_found: bool = False
    state: str | None = None  # "Invalid" | "Valid" | "Trusted" | None
    failures: list[str] = field(default_factory=list)
    signer: dict | None = None
    claim_generator: str | None = None
    digital_source_type: str | None = None
    generator: dict | None = None
    actions: list = field(default_factory=list)
    ingredients: list = field(default_factory=list)
    soft_binding: dict | None = None
    remote_url: str | None = None
    error: dict | None = None
    sidecar: str | None = None
    manifest_bytes: bytes | None = None
    # extras
    binding_checked: bool = True  # False for a stand-alone store (no asset to hash)
    media_type: str | None = None
    manifest_label: str | None = None
    assertions: list[str] = field(default_factory=list)  # labels in the active manifest
    training_mining: dict | None = None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "manifest_bytes"}
        return json.loads(json.dumps(d, default=str))


# --------------------------------------------------------------------------- errors


def _remote_url_from(msg: str) -> str | None:
    m = re.search(r"https?://[^\s\"']+", msg)
    return m.group(0).rstrip(".,)") if m else None


def _error_code(msg: str, exc: BaseException | None = None) -> str:
    low = msg.lower()
    if "unknown algorithm" in low:
        return "c2pa.unknown_algorithm"
    if "prerelease" in low:
        return "c2pa.prerelease"
    if low.startswith("remote") or "remote manifest" in low:
        return "c2pa.remote_manifest"
    if "could not be parsed" in low or "invalid riff" in low or "too deply nested" in low:
        return "input.malformed"
    if low.startswith("notsupported") or "type is unsupported" in low:
        return "input.unsupported"
    if low.startswith("io") or "io error" in low:
        return "input.unreadable"
    kind = msg.split(":", 1)[0].strip() if ":" in msg else ""
    if kind and re.fullmatch(r"[A-Za-z]+", kind):
        return "c2pa." + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()
    return "c2pa.error"


def _one_line(msg: str, limit: int = 300) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# --------------------------------------------------------------------------- parsing a Reader


def _codes(entries) -> list[str]:
    out = []
    for e in entries or []:
        c = e.get("code") if isinstance(e, dict) else None
        if c:
            out.append(c)
    return out


def _dedup(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _assertion(manifest: dict, *labels: str):
    for a in manifest.get("assertions") or []:
        lab = a.get("label", "")
        base = re.sub(r"__\d+$", "", lab)
        if lab in labels or base in labels:
            return a.get("data")
    return None


def _all_actions(manifest: dict) -> list:
    acts = []
    for a in manifest.get("assertions") or []:
        lab = re.sub(r"__\d+$", "", a.get("label", ""))
        if lab in ("c2pa.actions", "c2pa.actions.v2"):
            data = a.get("data") or {}
            acts.extend(data.get("actions") or [])
    return acts


def _dst_of(manifest: dict) -> str | None:
    for act in _all_actions(manifest):
        dst = act.get("digitalSourceType")
        if dst:
            return dst
    return None


def _claim_generator(m: dict) -> str | None:
    if m.get("claim_generator"):
        return str(m["claim_generator"])
    info = m.get("claim_generator_info") or []
    if isinstance(info, dict):
        info = [info]
    if info:
        first = info[0] or {}
        name = first.get("name")
        ver = first.get("version")
        if name:
            return f"{name}/{ver}" if ver else str(name)
    return None


def _signer(m: dict, crjson: dict | None, label: str | None) -> dict | None:
    si = m.get("signature_info") or {}
    if not si and not crjson:
        return None
    out = {
        "common_name": si.get("common_name"),
        "organization": si.get("issuer"),  # c2pa-rs reports the signer's O= as "issuer"
        "issuer": None,
        "subject": None,
        "alg": si.get("alg"),
        "time": si.get("time"),
        "serial": si.get("cert_serial_number"),
    }
    try:
        for cm in (crjson or {}).get("manifests") or []:
            if label and cm.get("label") != label:
                continue
            ci = ((cm.get("signature") or {}).get("certificateInfo")) or {}
            subj, iss = ci.get("subject") or {}, ci.get("issuer") or {}
            if subj:
                out["subject"] = ", ".join(f"{k}={v}" for k, v in subj.items())
                out["common_name"] = out["common_name"] or subj.get("CN")
                out["organization"] = subj.get("O") or out["organization"]
            if iss:
                out["issuer"] = ", ".join(f"{k}={v}" for k, v in iss.items())
            validity = ci.get("validity") or {}
            if validity:
                out["not_after"] = validity.get("notAfter")
            break
    except Exception:
        pass
    if out["subject"] is None and (out["common_name"] or out["organization"]):
        parts = []
        if out["organization"]:
            parts.append(f"O={out['organization']}")
        if out["common_name"]:
            parts.append(f"CN={out['common_name']}")
        out["subject"] = ", ".join(parts)
    return out


def _ingredients(m: dict, store: dict) -> list[dict]:
    out = []
    for ing in m.get("ingredients") or []:
        meta = ing.get("metadata") or {}
        vr = ing.get("validation_results") or {}
        ing_fail = _codes(((vr.get("activeManifest") or {}).get("failure")))
        if not ing_fail and ing.get("validation_status"):
            ing_fail = [s.get("code") for s in ing["validation_status"] if s.get("code")]
        label = ing.get("active_manifest")
        entry = {
            "title": ing.get("title"),
            "relationship": ing.get("relationship"),
            "format": ing.get("format"),
            "sha256": meta.get("io.dhstudio.sha256"),
            "hash": ing.get("hash"),
            "has_manifest": bool(label and label in (store.get("manifests") or {})) or bool(label),
            "manifest_label": label,
            "validation_failures": [c for c in ing_fail if c != "signingCredential.untrusted"],
        }
        if label and label in (store.get("manifests") or {}):
            im = store["manifests"][label]
            entry["claim_generator"] = _claim_generator(im)
            entry["digital_source_type"] = _dst_of(im)
        out.append(entry)
    return out


def _fill_from_store(res: ProvenanceResult, store: dict, crjson: dict | None, *, standalone: bool) -> None:
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    m = manifests.get(label) or {}
    res.manifest_found = True
    res.manifest_label = label
    vr = store.get("validation_results") or {}
    active = vr.get("activeManifest") or {}
    failures = _codes(active.get("failure"))
    successes = _codes(active.get("success"))
    if not vr and store.get("validation_status"):
        failures = _codes(store.get("validation_status"))
    state = store.get("validation_state")
    if standalone:
        res.binding_checked = False
        failures = [c for c in failures if not c.startswith(HARD_BINDING_PREFIXES)]
        if any(c != "signingCredential.untrusted" for c in failures):
            state = "Invalid"
        elif "signingCredential.trusted" in successes and "signingCredential.untrusted" not in failures:
            state = "Trusted"
        else:
            state = "Valid"
    res.state = state
    res.failures = _dedup(failures)
    res.claim_generator = _claim_generator(m)
    res.signer = _signer(m, crjson, label)
    res.actions = _all_actions(m)
    res.assertions = [a.get("label") for a in (m.get("assertions") or []) if a.get("label")]
    dst = _dst_of(m)
    res.ingredients = _ingredients(m, store)
    if dst is None:
        # an edit of our own earlier version: the generation step is in the parent
        for ing in m.get("ingredients") or []:
            if ing.get("relationship") == "parentOf" and ing.get("active_manifest") in manifests:
                dst = _dst_of(manifests[ing["active_manifest"]])
                if dst:
                    break
    res.digital_source_type = dst
    gen = _assertion(m, GENERATION_LABEL)
    agent = None
    for act in res.actions:
        if act.get("softwareAgent"):
            agent = act["softwareAgent"]
            break
    if gen is not None:
        g = dict(gen)
        if agent is not None:
            g["softwareAgent"] = agent
        res.generator = g
    elif agent is not None:
        name = agent.get("name") if isinstance(agent, dict) else str(agent)
        ver = agent.get("version") if isinstance(agent, dict) else None
        res.generator = {"name": name, "version": ver, "softwareAgent": agent}
    else:
        res.generator = None
    sb = _assertion(m, SOFT_BINDING_LABEL)
    if isinstance(sb, dict):
        blocks = sb.get("blocks") or []
        value = blocks[0].get("value") if blocks and isinstance(blocks[0], dict) else None
        res.soft_binding = {"alg": sb.get("alg"), "id": decode_watermark_id(value), "value": value}
    tm = _assertion(m, "cawg.training-mining", "c2pa.training-mining")
    if isinstance(tm, dict):
        res.training_mining = tm.get("entries") or tm


def _read_with(reader_factory, res: ProvenanceResult, *, standalone: bool = False) -> ProvenanceResult:
    try:
        reader = reader_factory()
    except c2pa.C2paError.ManifestNotFound:
        res.manifest_found = False
        return res
    except c2pa.C2paError as e:
        msg = str(e)
        code = _error_code(msg, e)
        if code == "c2pa.remote_manifest":
            res.remote_url = _remote_url_from(msg)
            res.error = {"code": "manifest.remote_not_fetched",
                         "message": f"the manifest is stored remotely at {res.remote_url}; "
                                    "not fetched (dhstudio never uses the network to verify)"}
        else:
            res.error = {"code": code, "message": _one_line(msg)}
        return res
    except (OSError, ValueError, TypeError) as e:
        res.error = {"code": "input.unreadable", "message": _one_line(str(e))}
        return res
    try:
        with reader:
            store = json.loads(reader.json())
            try:
                crj = json.loads(reader.crjson())
            except Exception:
                crj = None
            try:
                url = reader.get_remote_url()
                if url:
                    res.remote_url = url
            except Exception:
                pass
        _fill_from_store(res, store, crj, standalone=standalone)
    except c2pa.C2paError as e:
        res.error = {"code": _error_code(str(e), e), "message": _one_line(str(e))}
    except (ValueError, KeyError, TypeError) as e:
        res.error = {"code": "c2pa.report_unreadable", "message": _one_line(str(e))}
    return res


def _check_asset_hash(res: ProvenanceResult, asset_sha256: str, store_json_assertion: dict | None) -> None:
    if not store_json_assertion:
        return
    want = store_json_assertion.get("sha256")
    if not want:
        return
    if asset_sha256 != want:
        if ASSET_HASH_MISMATCH not in res.failures:
            res.failures.append(ASSET_HASH_MISMATCH)
        res.state = "Invalid"


def find_sidecar(path: Path) -> Path | None:
    """The external manifest store next to ``path`` (``<name>.c2pa``, else ``<stem>.c2pa``), if any."""
    for sc in _sidecar_candidates(Path(path)):
        if sc.is_file():
            return sc
    return None


def read_bytes(
    data: bytes,
    *,
    media_type: str | None,
    name: str | os.PathLike | None = None,
    sidecar: bytes | None = None,
    sidecar_name: str | None = None,
    trust_anchors: bytes | None = None,
) -> ProvenanceResult:
    """Read and validate the C2PA provenance of a file's bytes (offline).

    Embedded manifest first; when there is none and ``sidecar`` (the bytes of an external store
    found next to the file) is given, that store bound to ``data``. Never raises for bad content:
    problems land in ``error``. ``name`` only lends its extension when the bytes have no known
    magic (c2pa-rs then judges the bytes).
    """
    res = ProvenanceResult()
    fmt = media_type or (SUPPORTED.get(Path(name).suffix.lower()) if name else None)
    res.media_type = fmt
    try:
        ctx = _context(trust_anchors)
    except c2pa.C2paError as e:
        res.error = {"code": "c2pa.settings", "message": _one_line(f"bad trust anchors: {e}")}
        return res

    if fmt != GLB_TYPE:
        if fmt in _readable_types():
            _read_with(lambda: c2pa.Reader(fmt, io.BytesIO(data), context=ctx), res)
        else:
            res.error = {"code": "input.unsupported",
                         "message": f"c2pa-rs reads no manifest from {fmt or 'this unknown file type'}"}
        if res.manifest_found or res.remote_url or (res.error and sidecar is None):
            return res
        if res.error and res.error.get("code") == "input.unsupported":
            res.error = None

    if sidecar is not None:
        res.error = None
        res.sidecar = sidecar_name
        res.manifest_bytes = sidecar
        _read_with(lambda: c2pa.Reader(fmt or "application/octet-stream", io.BytesIO(data),
                                       manifest_data=sidecar, context=ctx), res)
        if res.manifest_found:
            try:
                with c2pa.Reader("application/c2pa", io.BytesIO(sidecar), context=ctx) as r:
                    m = json.loads(r.json())
                am = (m.get("manifests") or {}).get(m.get("active_manifest")) or {}
                _check_asset_hash(res, media.sha256_bytes(data), _assertion(am, ASSET_HASH_LABEL))
            except Exception:
                pass
    return res


def read_snapshot(snap: "media.Snapshot", *, trust_anchors: bytes | None = None) -> ProvenanceResult:
    """:func:`read_bytes` on a file read once (``media.read_snapshot``), with the sidecar store found
    next to its path (``<name>.c2pa`` / ``<stem>.c2pa``). Never raises for bad content."""
    try:
        sc = find_sidecar(snap.path)
        sc_bytes = media.read_regular(sc, what="manifest store") if sc is not None else None
    except InputError as e:
        return ProvenanceResult(error=e.to_dict())
    return read_bytes(snap.data, media_type=snap.media_type, name=snap.path, sidecar=sc_bytes,
                      sidecar_name=str(sc) if sc is not None else None, trust_anchors=trust_anchors)


def read_file(path: Path, *, trust_anchors: bytes | None = None) -> ProvenanceResult:
    """Read and validate the C2PA provenance of ``path`` (offline): the file is read once, then
    :func:`read_snapshot`."""
    try:
        snap = media.read_snapshot(Path(path))
    except InputError as e:
        return ProvenanceResult(error=e.to_dict())
    return read_snapshot(snap, trust_anchors=trust_anchors)


_READABLE_CACHE: set | None = None


def _readable_types() -> set:
    global _READABLE_CACHE
    if _READABLE_CACHE is None:
        try:
            _READABLE_CACHE = set(c2pa.Reader.get_supported_mime_types())
        except Exception:
            _READABLE_CACHE = set(SUPPORTED.values()) | _READ_ONLY_TYPES
    return _READABLE_CACHE


def read_manifest_store(manifest_bytes: bytes, *, trust_anchors: bytes | None = None) -> ProvenanceResult:
    """Validate a stand-alone manifest store (e.g. recovered from the registry).

    Signatures, assertion hashes and trust are checked; the hard binding to an
    asset cannot be (there is no asset), so its codes are dropped and
    ``binding_checked`` is False.
    """
    res = ProvenanceResult(manifest_bytes=bytes(manifest_bytes) if manifest_bytes else None)
    if not manifest_bytes:
        res.error = {"code": "input.empty", "message": "empty manifest store"}
        return res
    try:
        ctx = _context(trust_anchors)
    except c2pa.C2paError as e:
        res.error = {"code": "c2pa.settings", "message": _one_line(f"bad trust anchors: {e}")}
        return res
    data = bytes(manifest_bytes)
    return _read_with(lambda: c2pa.Reader("application/c2pa", io.BytesIO(data), context=ctx), res,
                      standalone=True)


def active_manifest_label(store: bytes) -> str | None:
    """The active manifest's label (``urn:c2pa:...``) of a manifest store's bytes, or None when
    the bytes are empty or not a store c2pa-rs can parse. Parses only: nothing is validated."""
    if not store:
        return None
    settings = c2pa_settings(None)
    settings["verify"].update(verify_after_reading=False, verify_trust=False, verify_timestamp_trust=False)
    try:
        ctx = c2pa.Context.from_dict(settings)
        with c2pa.Reader("application/c2pa", io.BytesIO(bytes(store)), context=ctx) as r:
            label = json.loads(r.json()).get("active_manifest")
    except (c2pa.C2paError, OSError, ValueError, TypeError):
        return None
    return label if isinstance(label, str) and label else None


# --------------------------------------------------------------------------- signing


def has_manifest(path: Path, fmt: str) -> bool:
    """True when ``path`` carries a C2PA manifest c2pa-rs can parse (embedded or, for GLB, a sidecar).

    Only presence matters here (is the input an earlier signed version to keep as the parent?):
    the read skips validation, so it costs a parse, not a full verification.
    """
    if fmt == GLB_TYPE:
        return sidecar_path(path).is_file()
    if fmt not in _readable_types():
        return False
    settings = c2pa_settings(None)
    settings["verify"].update(verify_after_reading=False, verify_trust=False, verify_timestamp_trust=False)
    try:
        ctx = c2pa.Context.from_dict(settings)
        with open(path, "rb") as f:
            r = c2pa.Reader(fmt, f, context=ctx)
            r.close()
        return True
    except c2pa.C2paError.ManifestNotFound:
        return False
    except Exception:
        # a manifest that c2pa-rs cannot read (remote, prerelease...) is not a usable parent
        return False


def _glb_parent_manifest(parent: Path) -> tuple[bytes, str, dict]:
    """The external store of a signed GLB parent, its active label and validation results."""
    sc = sidecar_path(parent)
    if not sc.is_file():
        raise InputError(f"parent {parent}: no {SIDECAR_SUFFIX} manifest next to it", code="input.no_manifest")
    store = sc.read_bytes()
    try:
        with c2pa.Reader(GLB_TYPE, str(parent), manifest_data=store, context=_context(None)) as r:
            report = json.loads(r.json())
    except c2pa.C2paError as e:
        raise InputError(f"parent {parent}: unreadable manifest ({_one_line(str(e))})",
                         code="input.bad_manifest") from None
    label = report.get("active_manifest")
    if not label:
        raise InputError(f"parent {parent}: manifest store has no active manifest", code="input.bad_manifest")
    return store, label, report.get("validation_results") or {}


def _make_signer(identity: SigningIdentity) -> "c2pa.Signer":
    info = c2pa.C2paSignerInfo(identity.alg, identity.cert_chain_pem, identity.private_key_pem, None)
    return c2pa.Signer.from_info(info)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def sign_file(
    src: Path,
    dst: Path,
    spec: GenerationSpec,
    identity: SigningIdentity,
    *,
    parent: Path | None = None,
) -> bytes:
    """Sign ``src`` into ``dst`` with a manifest describing ``spec``; return the manifest store bytes.

    Atomic: the output is written to a temporary file in ``dst``'s folder and
    renamed into place; on any failure nothing is left behind.

    ``parent``: an earlier signed version (e.g. before re-encoding), kept as a
    ``parentOf`` ingredient with its manifest. When ``src`` itself already
    carries a manifest and no parent is given, ``src`` is the parent.
    GLB: ``dst`` is a byte copy of ``src`` and the manifest goes to
    ``sidecar_path(dst)``.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if _same_file(src, dst):
        raise OutputError(f"output {dst} is the input: write the signed copy elsewhere")
    fmt = media_type_of(src)
    if parent is not None:
        parent = Path(parent)
        if not parent.is_file():
            raise InputError(f"parent {parent}: no such file")
    elif has_manifest(src, fmt):
        parent = src
    ingredients = [Path(p) for p in (spec.ingredients or [])]
    for p in ingredients:
        if not p.is_file():
            raise InputError(f"ingredient {p}: no such file")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {dst.parent}: {e.strerror or e}") from None
    if not os.access(dst.parent, os.W_OK):
        raise OutputError(f"output folder {dst.parent} is not writable")

    parent_fmt = None
    if parent is not None:
        parent_fmt = media.sniff_media_type(parent) or SUPPORTED.get(parent.suffix.lower())
        if parent_fmt is None:
            raise InputError(f"parent {parent}: unrecognised file type")

    # inputs: referenced by sha256; their stream is attached only when they carry
    # their own C2PA manifest (so their provenance is kept). Plain inputs (e.g. a
    # photo of a real person) are not embedded, not even as a thumbnail.
    ingredient_defs: list[dict] = []
    ingredient_streams: list[tuple[dict, str, Path]] = []
    hashes: list[dict] = []
    for i, p in enumerate(ingredients):
        digest = media.sha256_file(p)
        hashes.append({"title": p.name, "sha256": digest})
        ifmt = media.sniff_media_type(p)
        entry = {
            "title": p.name,
            "relationship": "inputTo",
            "metadata": {"io.dhstudio.sha256": digest},
            "format": ifmt or "application/octet-stream",
            "label": f"dhstudio-input-{i}",
        }
        if ifmt and ifmt != GLB_TYPE and ifmt in _readable_types() and has_manifest(p, ifmt):
            ingredient_streams.append((entry, ifmt, p))
        else:
            ingredient_defs.append(entry)

    extra = []
    if fmt == GLB_TYPE:
        extra.append({"label": ASSET_HASH_LABEL,
                      "data": {"alg": "sha256", "sha256": media.sha256_file(src), "size": src.stat().st_size}})
    parent_label = "dhstudio-parent" if parent is not None else None
    try:
        definition = build_manifest_definition(
            spec, media_type=fmt, title=dst.name, parent_label=parent_label,
            ingredient_hashes=hashes, extra_assertions=extra,
        )
    except ValueError as e:
        raise SigningError(f"bad generation spec: {e}", code="signing.bad_spec") from None
    definition["ingredients"] = list(ingredient_defs)

    parent_json = None
    parent_store = None
    if parent is not None:
        parent_json = {
            "title": parent.name,
            "relationship": "parentOf",
            "label": parent_label,
            "metadata": {"io.dhstudio.sha256": media.sha256_file(parent)},
        }
        if parent_fmt == GLB_TYPE:
            # no C2PA embedding for GLB: the parent's manifest is its external store,
            # given to c2pa-rs as the ingredient's manifest_data resource
            parent_store, label, vres = _glb_parent_manifest(parent)
            parent_json.update({
                "format": GLB_TYPE,
                "active_manifest": label,
                "validation_results": vres,
                "manifest_data": {"format": "application/c2pa", "identifier": "dhstudio-parent.c2pa"},
            })
            definition["ingredients"].append(parent_json)

    try:
        ctx = _context(None)
        builder = c2pa.Builder(definition, context=ctx)
    except c2pa.C2paError as e:
        raise SigningError(f"cannot build the manifest: {_one_line(str(e))}") from None
    with contextlib.ExitStack() as stack:
        # the sidecar's context is entered last, so it is renamed into place before the GLB
        tmp = stack.enter_context(media.atomic_target(dst))
        tmp_sidecar = stack.enter_context(media.atomic_target(sidecar_path(dst))) if fmt == GLB_TYPE else None
        with builder:
            if fmt == GLB_TYPE:
                builder.set_no_embed()
            if parent is not None:
                try:
                    if parent_store is not None:
                        builder.add_resource("dhstudio-parent.c2pa", io.BytesIO(parent_store))
                    else:
                        with open(parent, "rb") as pf:
                            builder.add_ingredient(parent_json, parent_fmt, pf)
                except c2pa.C2paError as e:
                    raise SigningError(f"cannot add parent {parent.name}: {_one_line(str(e))}") from None
            for entry, ifmt, p in ingredient_streams:
                try:
                    with open(p, "rb") as f:
                        builder.add_ingredient(entry, ifmt, f)
                except c2pa.C2paError as e:
                    raise SigningError(f"cannot add ingredient {p.name}: {_one_line(str(e))}") from None
            try:
                signer = _make_signer(identity)
            except (c2pa.C2paError, ValueError, TypeError) as e:
                raise SigningError(f"cannot create the signer ({identity.alg}): {_one_line(str(e))}",
                                   code="signing.bad_identity") from None
            with signer:
                try:
                    with open(src, "rb") as fsrc, open(tmp, "w+b") as fdst:
                        store = builder.sign(signer, fmt, fsrc, fdst)
                except c2pa.C2paError as e:
                    msg = _one_line(str(e))
                    code = _error_code(msg)
                    if code.startswith("input.") or "failed to fill whole buffer" in msg:
                        raise InputError(f"{src}: malformed {fmt} file, cannot be signed ({msg})",
                                         code="input.malformed") from None
                    raise SigningError(f"signing {src.name} failed: {msg}") from None
        if not store:
            raise SigningError(f"signing {src.name} produced no manifest")
        if fmt == GLB_TYPE:
            # the signed output of a no-embed sign is the unchanged GLB; be sure of it
            if tmp.stat().st_size != src.stat().st_size:
                shutil.copyfile(src, tmp)
            tmp_sidecar.write_bytes(store)
    return bytes(store)
