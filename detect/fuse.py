"""Evidence (+ content) -> one label and the reasons that led to it.

The only place that decides a label. Provenance evidence comes from ``provenance.evidence``;
the content section is the face-forgery check's (until a detector is installed it says
``not_run`` and never changes the label). Reasons are plain sentences, in the order they were
weighed.
"""

from __future__ import annotations

from provenance.evidence import Evidence

GENERATED_SOURCE_TYPES = {
    "trainedAlgorithmicMedia",
    "algorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "compositeSynthetic",
    "trainedAlgorithmicData",
    "algorithmicallyEnhanced",
}

LABELS = {
    "signed-generated-intact": "Signed by a trusted signer, declared AI/algorithm-generated, content unchanged since signing.",
    "signed-intact": "Signed by a trusted signer, content unchanged since signing (not declared as generated).",
    "signed-certificate-expired": "Content unchanged since signing, but the signing certificate has expired and no trusted timestamp shows the signature was made while it was valid.",
    "signed-tampered": "A manifest is present but validation failed: the content or the manifest changed after signing.",
    "untrusted-signer": "The manifest is intact but its signer is not in the trust list.",
    "remote-manifest-not-fetched": "The file points to a remote manifest; dhstudio never fetches it.",
    "manifest-unreadable": "A manifest is present but cannot be validated (unsupported or malformed).",
    "watermarked-manifest-stripped": "No manifest in the file, but the invisible watermark was found and the registry returned the original manifest.",
    "watermarked-unregistered": "No manifest; an invisible watermark was found but this registry has no record of its id.",
    "unsigned-unmarked": "No manifest and no watermark: nothing says where this file came from.",
    "unreadable": "The file could not be parsed as any supported media.",
}

# failure codes that say nothing about the bytes or the manifest having changed
_CREDENTIAL_ONLY = {"signingCredential.untrusted", "signingCredential.expired"}


def decide(ev: Evidence, content=None) -> tuple[str, list[str]]:
    """The label and its reasons for the evidence of one file (``content`` is not weighed yet)."""
    if ev.file.size == 0:
        return "unreadable", ["file is empty"]
    label, reasons = _decide_provenance(ev.file.media_type, ev.provenance.to_dict(), ev.watermark.to_dict(),
                                        ev.registry.to_dict())
    for lim in ev.limits:
        reasons.append(f"limit applied: {lim.get('message')}")
    return label, reasons


def _signer_name(signer: dict | None) -> str:
    signer = signer or {}
    return signer.get("organization") or signer.get("common_name") or signer.get("subject") or "unknown signer"


def _decide_provenance(media_type, prov: dict, wm: dict, reg: dict) -> tuple[str, list[str]]:
    reasons: list[str] = []
    failures = list(prov.get("failures") or [])
    state = prov.get("state")
    if prov.get("manifest_found"):
        who = _signer_name(prov.get("signer"))
        dst = short_source_type(prov.get("digital_source_type"))
        if prov.get("remote_url") and state is None:
            reasons.append(f"manifest is remote at {prov['remote_url']} and was not fetched (offline verifier)")
            return "remote-manifest-not-fetched", reasons
        if state == "Invalid" and "signingCredential.expired" in failures and set(failures) <= _CREDENTIAL_ONLY:
            not_after = (prov.get("signer") or {}).get("not_after")
            reasons.append(f"signed by {who} with a certificate that has expired"
                           + (f" (valid until {not_after})" if not_after else ""))
            reasons.append("no trusted timestamp shows the signature was made while the certificate was valid, "
                           "so the signer cannot be trusted")
            reasons.append("the content and the manifest are unchanged since signing (every hash matches)")
            if dst:
                reasons.append(f"declares digitalSourceType {dst}")
            _watermark_consistency(prov, wm, reasons)
            return "signed-certificate-expired", reasons
        if state == "Invalid":
            hard = [f for f in failures if f not in _CREDENTIAL_ONLY]
            reasons.append("C2PA validation failed: " + ", ".join(hard or failures or ["unknown failure"]))
            return "signed-tampered", reasons
        if state in ("Valid", "Trusted"):
            _watermark_consistency(prov, wm, reasons)
            if state == "Valid":
                reasons.append(f"manifest intact, signed by {who}, but the signer is not trusted "
                               f"({', '.join(failures) or 'no trust anchor'})")
                if dst:
                    reasons.append(f"declares digitalSourceType {dst}")
                return "untrusted-signer", reasons
            reasons.append(f"manifest intact and signed by trusted signer {who}")
            if dst in GENERATED_SOURCE_TYPES:
                gen = prov.get("generator") or {}
                name = gen.get("model_name") or gen.get("name")
                reasons.append(f"declared generated: digitalSourceType {dst}" + (f", model {name}" if name else ""))
                return "signed-generated-intact", reasons
            reasons.append(f"digitalSourceType {dst or 'not declared'}")
            return "signed-intact", reasons
        err = prov.get("error") or {}
        reasons.append(f"manifest present but not validated: {err.get('message', 'unknown error')}")
        return "manifest-unreadable", reasons

    perr = prov.get("error") or {}
    if perr.get("code") in ("remote_manifest", "c2pa.remote_manifest") or prov.get("remote_url"):
        reasons.append(f"manifest is remote ({prov.get('remote_url') or perr.get('message')}) "
                       "and was not fetched (offline verifier)")
        return "remote-manifest-not-fetched", reasons
    pcode = perr.get("code") or ""
    if pcode.startswith("c2pa.") and pcode not in ("c2pa.manifest_not_found", "c2pa.settings"):
        # a manifest is there but c2pa-rs refuses to validate it (unknown algorithm, prerelease...)
        reasons.append(f"a C2PA manifest is present but cannot be validated: {perr.get('message')}")
        if wm.get("found"):
            reasons.append(f"invisible watermark found: id {wm.get('id_hex')}")
        return "manifest-unreadable", reasons
    if pcode in ("input.malformed", "input.corrupt") and not wm.get("found"):
        reasons.append(f"malformed file: {perr.get('message')}")
        return "unreadable", reasons
    if perr and pcode not in ("ManifestNotFound", "manifest_not_found"):
        reasons.append(f"C2PA reader: {perr.get('message')}")
    if wm.get("found"):
        reasons.append(
            f"invisible watermark found: id {wm.get('id_hex')} (confidence {float(wm.get('confidence') or 0):.2f}, "
            f"false-positive bound {wm.get('false_positive_bound')})"
        )
        if reg.get("hit"):
            summ = reg.get("manifest_summary") or {}
            gen = summ.get("generator") or {}
            reasons.append(
                f"registry returned the original manifest: signed by {_signer_name(summ.get('signer'))}, "
                f"digitalSourceType {short_source_type(summ.get('digital_source_type'))}"
                + (f", model {gen.get('model_name')}" if gen.get("model_name") else "")
            )
            if not reg.get("asset_unchanged"):
                reasons.append("this copy differs from the signed asset (re-encoded, resized or edited after signing)")
            return "watermarked-manifest-stripped", reasons
        if reg.get("error"):
            reasons.append(f"registry lookup failed: {reg['error'].get('message')}")
        else:
            reasons.append("the registry has no record of this watermark id")
        return "watermarked-unregistered", reasons
    if media_type is None:
        reasons.append("not a supported image, video, audio or mesh file")
        return "unreadable", reasons
    werr = wm.get("error") or {}
    if werr.get("code") in ("input.invalid", "input.corrupt", "watermark.decode_failed", "input.unreadable"):
        reasons.append(f"media could not be decoded: {werr.get('message')}")
        return "unreadable", reasons
    reasons.append("no C2PA manifest")
    if werr:
        reasons.append(f"watermark not checked: {werr.get('message')}")
    else:
        reasons.append("no invisible watermark detected")
    return "unsigned-unmarked", reasons


def _watermark_consistency(prov: dict, wm: dict, reasons: list[str]) -> None:
    sb = prov.get("soft_binding") or {}
    if not sb:
        return
    if wm.get("found"):
        try:
            same = int(sb.get("id")) == int(wm.get("id"))
        except (TypeError, ValueError):
            same = False
        if same:
            reasons.append(f"watermark id {wm.get('id_hex')} matches the manifest's soft binding")
        else:
            reasons.append(f"watermark id {wm.get('id_hex')} differs from the manifest's soft binding {sb.get('id')}")
    elif not wm.get("error"):
        reasons.append("the manifest declares a watermark but none was detected")


def short_source_type(v: str | None) -> str | None:
    if not v:
        return None
    return v.rstrip("/").rsplit("/", 1)[-1]
