"""Evidence + content -> one label and the reasons that led to it.

The only place that decides a label. Provenance is weighed first (``provenance.evidence``: C2PA,
watermark, registry); the content section (``detect.content``: the face-forgery detector) after
it, and only where it was computed with a calibrated threshold:

- no manifest and no watermark (provenance says ``unsigned-unmarked``): a face at or above the
  threshold -> ``no-provenance-looks-manipulated``; every face below it ->
  ``no-provenance-no-evidence``;
- a trusted, intact manifest declaring a capture source type (``digitalCapture``,
  ``computationalCapture``, film, print, minor human edits) whose content scores at or above the
  threshold -> ``signed-capture-looks-manipulated``;
- every other label stays what provenance says (a declared generation keeps saying generated);
  the content check adds one reason line.

Where the content check did not run or cannot be weighed (turned off, no face, extra not
installed, no calibration record in the weights, audio, a mesh) the label is exactly
provenance's, with one reason line saying why. Every content line names the threshold and the
false-positive rate it was set at. Reasons are plain sentences, in the order they were weighed:
provenance's first (the reasons of a provenance-only verdict are always a prefix).
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

# a manifest with one of these says "a camera (or film, or a print) took this": content that looks
# manipulated contradicts it (minorHumanEdits: a capture with minor edits, still a capture)
CAPTURE_SOURCE_TYPES = {
    "digitalCapture",
    "computationalCapture",
    "negativeFilm",
    "positiveFilm",
    "print",
    "minorHumanEdits",
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
    "no-provenance-looks-manipulated": "No manifest and no watermark, and the face-forgery detector scores a face at or above its calibrated threshold: the content looks generated or manipulated.",
    "no-provenance-no-evidence": "No manifest and no watermark; the face-forgery detector scored every face below its calibrated threshold. Nothing says where this file came from, and the detector found no sign of manipulation (not a proof of authenticity).",
    "signed-capture-looks-manipulated": "Signed by a trusted signer as a camera capture and unchanged since signing, but the face-forgery detector scores a face at or above its calibrated threshold: the capture claim and the content disagree.",
    "unreadable": "The file could not be parsed as any supported media.",
}

# failure codes that say nothing about the bytes or the manifest having changed
_CREDENTIAL_ONLY = {"signingCredential.untrusted", "signingCredential.expired"}


def decide(ev: Evidence, content=None) -> tuple[str, list[str]]:
    """The label and its reasons for the evidence of one file and its content section
    (``detect.content.ContentSection`` or its dict; None: provenance alone, no content line)."""
    if ev.file.size == 0:
        label, reasons = "unreadable", ["file is empty"]
    else:
        label, reasons = _decide_provenance(ev.file.media_type, ev.provenance.to_dict(), ev.watermark.to_dict(),
                                            ev.registry.to_dict())
        for lim in ev.limits:
            reasons.append(f"limit applied: {lim.get('message')}")
    if content is None:
        return label, reasons
    c = content.to_dict() if hasattr(content, "to_dict") else dict(content)
    label = _weigh_content(label, ev.provenance.to_dict(), ev.registry.to_dict(), c, reasons)
    seen = {lim.get("code") for lim in ev.limits}
    for note in c.get("notes") or []:
        if str(note.get("code", "")).startswith("limit.") and note.get("code") not in seen:
            reasons.append(f"limit applied (content check): {note.get('message')}")
    return label, reasons


def limits_applied(ev: Evidence, content=None) -> list[dict]:
    """The limits that bounded the work: provenance's, then the content check's ``limit.*`` notes
    whose code provenance did not already report (one entry per code and section)."""
    out = [dict(x) for x in ev.limits]
    seen = {x.get("code") for x in out}
    c = content.to_dict() if content is not None and hasattr(content, "to_dict") else (content or {})
    for note in c.get("notes") or []:
        if str(note.get("code", "")).startswith("limit.") and note.get("code") not in seen:
            out.append(dict(note))
            seen.add(note.get("code"))
    return out


def fpr_phrase(cal: dict) -> str:
    """"1 % false positives on real validation faces" (+ what was measured there, when known)."""
    split = {"val": "validation", "train": "training", "test": "test"}.get(cal.get("split"), cal.get("split") or "")
    text = f"{_pct(cal.get('fpr_target'))} false positives on real {split} faces".replace("  ", " ")
    if cal.get("fpr_measured") is not None and cal.get("n_real"):
        text += f" (measured {_pct(cal['fpr_measured'])} on {cal['n_real']} faces)"
    return text


def _pct(v) -> str:
    try:
        return f"{100.0 * float(v):.3g} %"
    except (TypeError, ValueError):
        return "an unknown rate of"


def _detector_name(c: dict) -> str:
    name = c.get("detector") or "face-forgery detector"
    return f"{name} {c['version']}" if c.get("version") else name


def _not_weighed(c: dict) -> str | None:
    """Why the content section cannot change the label, or None when it can."""
    status = c.get("status")
    err = c.get("error") or {}
    if status != "ok":
        msg = err.get("message") or "no reason given"
        if status == "not_run":
            return f"the content check did not run ({msg})"
        if status == "not_applicable":
            return f"the content check does not apply ({msg})"
        return f"the content check could not run: {msg} ({err.get('code', 'content.error')})"
    if c.get("score") is None:
        return "the content check scored no face"
    if c.get("threshold") is None or not c.get("calibration"):
        return (f"the {_detector_name(c)} detector's threshold is uncalibrated (its weights carry no calibration "
                f"record), so its score {float(c['score']):.3f} is reported but not weighed")
    return None


def _content_line(c: dict, fired: bool) -> str:
    score, thr = float(c["score"]), float(c["threshold"])
    if c.get("tracks"):
        k = len(c["tracks"])
        worst = max((t for t in c["tracks"] if t.get("counted")), key=lambda t: t.get("score") or 0.0, default=None)
        n = (worst or {}).get("frames")
        what = "the most suspicious face track" + (f" of {k}" if k > 1 else "")
        how = f" (mean over {n} frame{'s' if n != 1 else ''})" if n else ""
    else:
        k = len(c.get("faces") or [])
        what, how = "the most suspicious face" + (f" of {k}" if k > 1 else ""), ""
    rel = "at or above" if fired else "below"
    return (f"content check ({_detector_name(c)}): {what} scores {score:.3f}{how}, {rel} the threshold {thr:.3f} "
            f"set at {fpr_phrase(c['calibration'])}")


def _weigh_content(label: str, prov: dict, reg: dict, c: dict, reasons: list[str]) -> str:
    why = _not_weighed(c)
    if why is not None:
        reasons.append(f"content not weighed: {why}")
        return label
    fired = float(c["score"]) >= float(c["threshold"])
    line = _content_line(c, fired)
    if label == "unsigned-unmarked":
        reasons.append(line)
        return "no-provenance-looks-manipulated" if fired else "no-provenance-no-evidence"
    dst = short_source_type(prov.get("digital_source_type"))
    if label == "signed-intact" and dst in CAPTURE_SOURCE_TYPES:
        if fired:
            reasons.append(f"{line}: the manifest declares a capture ({dst}), the content looks manipulated")
            return "signed-capture-looks-manipulated"
        reasons.append(f"{line}: consistent with the declared capture ({dst})")
        return label
    generated = label == "signed-generated-intact" or (
        label == "watermarked-manifest-stripped"
        and short_source_type((reg.get("manifest_summary") or {}).get("digital_source_type")) in GENERATED_SOURCE_TYPES)
    if generated:
        reasons.append(f"{line}: " + ("consistent with the declared generation" if fired else
                                      "the declared generation stands (the detector does not know every generator)"))
        return label
    reasons.append(line)
    return label


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
