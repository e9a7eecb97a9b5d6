/* dhstudio verifier page: drop a file, watch the upload and the job, read the Verdict.
 *
 * Plain JavaScript, no framework, no build step, nothing fetched from outside this server.
 * Every string that comes from the Verdict (and so possibly from a hostile file's manifest) is
 * put on the page as text (textContent / createTextNode), never parsed as HTML; URLs the page
 * follows come from the server's own response and must be same-origin paths ("/v1/...").
 *
 * API (studio/api/app.py): POST /v1/verify (multipart "file") answers 200 with the verdict
 * (images, meshes, audio) or 202 with a job (videos); GET /v1/jobs/<id> gives the job's state and
 * progress; GET /v1/reports/<id> the finished job's verdict; errors are {"detail": "..."}.
 */
(function () {
  "use strict";

  const POLL_MS = 400;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TRACK_COLOURS = ["#1f6fd1", "#c2185b", "#00897b", "#ef6c00", "#6a1b9a", "#827717", "#2e7d32", "#455a64"];
  // label -> family (colour): the same grouping as detect/report.py's HTML report
  const LABEL_FAMILY = {
    "signed-generated-intact": "ok",
    "signed-intact": "ok",
    "watermarked-manifest-stripped": "warn",
    "watermarked-unregistered": "warn",
    "untrusted-signer": "warn",
    "signed-certificate-expired": "warn",
    "remote-manifest-not-fetched": "warn",
    "manifest-unreadable": "warn",
    "signed-tampered": "bad",
    "unreadable": "bad",
    "no-provenance-looks-manipulated": "bad",
    "signed-capture-looks-manipulated": "bad",
    "unsigned-unmarked": "none",
    "no-provenance-no-evidence": "none",
  };
  const SPLIT = { val: "validation", train: "training", test: "test" };
  const HTTP_WHAT = {
    400: "Bad upload",
    404: "Not found",
    409: "Not ready",
    413: "File too large",
    415: "Unsupported file type",
    422: "Bad request",
    429: "Too many requests",
    503: "Server busy",
  };

  let busy = false;
  let generation = 0; // bumps with every new upload: a stale poll never paints over a newer result

  // ------------------------------------------------------------------ small DOM helpers

  /** An element; attrs are set with setAttribute; children: nodes or strings (as text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      e.setAttribute(k, v === true ? "" : String(v));
    }
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    append(e, children);
    return e;
  }

  function append(parent, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return parent;
  }

  function $(id) { return document.getElementById(id); }

  /** A finite number or null (the Verdict's numbers are drawn only after this). */
  function num(v) {
    if (v === null || v === undefined || v === "" || typeof v === "boolean") return null;
    const f = Number(v);
    return Number.isFinite(f) ? f : null;
  }

  function fmt(v, digits) {
    const f = num(v);
    return f === null ? "-" : f.toFixed(digits);
  }

  function fmtSci(v) {
    const f = num(v);
    if (f === null) return "-";
    return f !== 0 && Math.abs(f) < 1e-3 ? f.toExponential(2) : String(f);
  }

  function pct(v) {
    const f = num(v);
    return f === null ? "an unknown rate of" : `${+(100 * f).toPrecision(3)} %`;
  }

  function bytes(n) {
    const f = num(n);
    if (f === null) return "-";
    if (f < 1024) return `${f} B`;
    if (f < 1024 * 1024) return `${(f / 1024).toFixed(1)} KiB`;
    return `${(f / 1024 / 1024).toFixed(1)} MiB`;
  }

  function str(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  /** The last segment of an IPTC digitalSourceType IRI ("trainedAlgorithmicMedia"). */
  function shortIri(v) {
    const s = str(v);
    const i = s.lastIndexOf("/");
    return i >= 0 && i < s.length - 1 ? s.slice(i + 1) : s;
  }

  /** A same-origin path from the server ("/v1/reports/..."), or null for anything else. */
  function localUrl(u) {
    return typeof u === "string" && /^\/(?!\/)[A-Za-z0-9._~\-\/%?=&]*$/.test(u) ? u : null;
  }

  /** "code: message" of a Verdict error dict, as a <p class="why">. */
  function why(err, fallback) {
    if (err && typeof err === "object") {
      return el("p", { class: "why", "data-testid": "why" },
        el("code", {}, str(err.code || "error")), ": ", str(err.message || fallback || "no message given"));
    }
    return el("p", { class: "why", "data-testid": "why" }, fallback || "no reason given");
  }

  function facts(rows) {
    const dl = el("dl", { class: "facts" });
    for (const row of rows) {
      if (!row) continue;
      const [term, value, testid, cls] = row;
      dl.appendChild(el("dt", {}, term));
      dl.appendChild(el("dd", { "data-testid": testid || null, class: cls || null }, value));
    }
    return dl;
  }

  function section(testid, title, wide) {
    const s = el("section", { class: wide ? "section wide" : "section", "data-testid": testid,
      "aria-label": title });
    s.appendChild(el("h3", {}, title));
    return s;
  }

  function yesNo(b) {
    return el("span", { class: b ? "yes" : "no" }, b ? "yes" : "no");
  }

  // ------------------------------------------------------------------ status, progress, errors

  function setProgress(value, text) {
    const row = $("progress-row");
    const bar = $("progress");
    row.hidden = false;
    if (value === null || value === undefined) {
      bar.removeAttribute("value"); // indeterminate
      bar.dataset.state = "indeterminate";
    } else {
      bar.value = Math.max(0, Math.min(1, value));
      bar.dataset.state = "determinate";
    }
    $("status").textContent = text;
  }

  function showError(line) {
    const e = $("error");
    e.textContent = line;
    e.hidden = false;
    $("progress-row").hidden = true;
  }

  function clearError() {
    const e = $("error");
    e.textContent = "";
    e.hidden = true;
  }

  /** One readable line for an HTTP error answer ({"detail": "..."}, FastAPI's list, or not JSON). */
  function httpErrorLine(status, bodyText, retryAfter, statusText) {
    let detail = null;
    try {
      const body = JSON.parse(bodyText);
      detail = body && body.detail;
    } catch (_) { /* not JSON: a proxy's page, say */ }
    if (Array.isArray(detail)) {
      detail = detail.map((d) => (d && typeof d === "object" ? [str((d.loc || []).slice(-1)[0]), str(d.msg)].filter(Boolean).join(": ") : str(d))).join("; ");
    } else if (detail !== null && typeof detail !== "string") {
      detail = str(detail);
    }
    if (!detail) detail = statusText || "no detail given";
    detail = detail.split(/\r?\n/)[0];
    const what = HTTP_WHAT[status] || (status >= 500 ? "Server error" : "Request refused");
    let line = `${what} (HTTP ${status}): ${detail}`;
    const ra = num(retryAfter);
    if (ra !== null && (status === 429 || status === 503)) line += ` (retry in ${ra} s)`;
    return line;
  }

  // ------------------------------------------------------------------ upload, job polling

  function upload(file) {
    if (busy) return;
    if (!file) return;
    busy = true;
    const gen = ++generation;
    clearError();
    const result = $("result");
    result.hidden = true;
    result.replaceChildren();
    $("dropzone").classList.add("busy");
    $("file").disabled = true;
    setProgress(0, `Uploading ${file.name} (${bytes(file.size)})…`);

    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/verify");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable && ev.total > 0) {
        setProgress(ev.loaded / ev.total, `Uploading ${file.name}: ${Math.round(100 * ev.loaded / ev.total)} %`);
      }
    });
    xhr.upload.addEventListener("load", () => {
      setProgress(null, "Uploaded; verifying (C2PA, watermark, registry, content)…");
    });
    xhr.addEventListener("error", () => finish(gen, () => showError("Network error: the server could not be reached.")));
    xhr.addEventListener("abort", () => finish(gen, () => showError("The upload was aborted.")));
    xhr.addEventListener("load", () => {
      if (gen !== generation) return;
      const status = xhr.status;
      if (status === 200 || status === 202) {
        let body;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (_) {
          finish(gen, () => showError(`Bad answer from the server (HTTP ${status}): not JSON.`));
          return;
        }
        if (status === 200) {
          finish(gen, () => render(file, body));
        } else {
          pollJob(gen, file, body);
        }
        return;
      }
      finish(gen, () => showError(httpErrorLine(status, xhr.responseText, xhr.getResponseHeader("Retry-After"), xhr.statusText)));
    });
    xhr.send(form);
  }

  function finish(gen, paint) {
    if (gen !== generation) return;
    busy = false;
    $("dropzone").classList.remove("busy");
    $("file").disabled = false;
    $("file").value = "";
    paint();
  }

  async function getJson(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const text = await r.text();
    return { status: r.status, ok: r.ok, text, retryAfter: r.headers.get("Retry-After"), statusText: r.statusText };
  }

  function pollJob(gen, file, accepted) {
    const statusUrl = localUrl(accepted.status_url) || (accepted.job ? `/v1/jobs/${encodeURIComponent(accepted.job)}` : null);
    const reportUrl = localUrl(accepted.report_url) || (accepted.job ? `/v1/reports/${encodeURIComponent(accepted.job)}` : null);
    if (!statusUrl || !reportUrl) {
      finish(gen, () => showError("Bad answer from the server (HTTP 202): no job to follow."));
      return;
    }
    setProgress(0, "Video queued for verification…");
    const tick = async () => {
      if (gen !== generation) return;
      let r;
      try {
        r = await getJson(statusUrl);
      } catch (_) {
        finish(gen, () => showError("Network error while following the job: the server could not be reached."));
        return;
      }
      if (!r.ok) {
        finish(gen, () => showError(httpErrorLine(r.status, r.text, r.retryAfter, r.statusText)));
        return;
      }
      let job;
      try { job = JSON.parse(r.text); } catch (_) { job = {}; }
      const p = num(job.progress);
      if (job.state === "queued") {
        setProgress(p === null ? 0 : p, "Video queued: waiting for a free worker…");
      } else if (job.state === "running") {
        setProgress(p, p === null ? "Verifying the video…" : `Verifying the video: ${Math.round(100 * p)} %`);
      } else if (job.state === "failed") {
        finish(gen, () => showError(`Verification failed: ${str(job.error || "the job failed").split(/\r?\n/)[0]}`));
        return;
      } else if (job.state === "finished") {
        setProgress(1, "Verified; fetching the report…");
        fetchReport(gen, file, accepted, reportUrl);
        return;
      }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS / 2);
  }

  async function fetchReport(gen, file, accepted, reportUrl) {
    let r;
    try {
      r = await getJson(reportUrl);
    } catch (_) {
      finish(gen, () => showError("Network error while fetching the report."));
      return;
    }
    if (r.status === 409) { // still being written: try again shortly
      setTimeout(() => fetchReport(gen, file, accepted, reportUrl), POLL_MS);
      return;
    }
    if (!r.ok) {
      finish(gen, () => showError(httpErrorLine(r.status, r.text, r.retryAfter, r.statusText)));
      return;
    }
    let body;
    try { body = JSON.parse(r.text); } catch (_) {
      finish(gen, () => showError("Bad report from the server: not JSON."));
      return;
    }
    const id = body.job || accepted.job;
    const merged = Object.assign({
      report: id,
      report_url: reportUrl,
      annotated_url: accepted.annotated_url !== undefined ? accepted.annotated_url
        : (id ? `/v1/reports/${encodeURIComponent(id)}/annotated` : null),
      html_url: accepted.html_url || (id ? `/v1/reports/${encodeURIComponent(id)}/html` : null),
    }, body);
    finish(gen, () => render(file, merged));
  }

  // ------------------------------------------------------------------ the verdict card

  function render(file, body) {
    const v = body && body.verdict;
    const result = $("result");
    result.replaceChildren();
    if (!v || typeof v !== "object") {
      showError("Bad answer from the server: no verdict in it.");
      return;
    }
    $("progress-row").hidden = true;
    const mediaType = str(body.media_type || (v.file || {}).media_type);
    const card = el("article", { class: "card", "data-testid": "verdict", "data-label": str(v.label) });
    const label = str(v.label || "unknown");
    const family = LABEL_FAMILY[label] || "none";
    card.appendChild(el("div", { class: "card-head" },
      el("h2", { "data-testid": "file-name" }, file ? file.name : "uploaded file"),
      el("span", { class: `label fam-${family}`, "data-testid": "label", "data-family": family }, label)));
    const f = v.file || {};
    card.appendChild(el("p", { class: "file-facts", "data-testid": "file-facts" },
      `${mediaType || "unknown type"} · ${bytes(f.size)} · sha256 `, el("span", { class: "mono" }, str(f.sha256) || "-"),
      num(v.elapsed_s) !== null ? ` · verified in ${fmt(v.elapsed_s, 2)} s` : "",
      ` · schema ${str(v.schema)}`));
    if (v.label_description) {
      card.appendChild(el("p", { class: "label-description", "data-testid": "label-description" }, str(v.label_description)));
    }
    const reasons = el("ul", { class: "reasons", "data-testid": "reasons", "aria-label": "reasons" });
    for (const r of Array.isArray(v.reasons) ? v.reasons : []) reasons.appendChild(el("li", {}, str(r)));
    if (!reasons.childElementCount) reasons.appendChild(el("li", {}, "the verdict gives no reasons"));
    card.appendChild(reasons);

    const grid = el("div", { class: "sections" });
    grid.appendChild(provenanceSection(v.provenance || {}, v.trust_anchors));
    grid.appendChild(watermarkSection(v.watermark || {}));
    grid.appendChild(registrySection(v.registry || {}, v.watermark || {}));
    grid.appendChild(contentSection(v.content || {}));
    grid.appendChild(annotatedSection(body, v, mediaType));
    if (Array.isArray(v.limits) && v.limits.length) {
      const s = section("limits", "Limits applied", true);
      for (const lim of v.limits) s.appendChild(why(lim));
      grid.appendChild(s);
    }
    card.appendChild(grid);
    card.appendChild(linksRow(body, v));
    result.appendChild(card);
    result.hidden = false;
  }

  function signerRows(sig, prefix) {
    if (!sig || typeof sig !== "object") return [["signer", "not given in the manifest", `${prefix}signer`]];
    return [
      ["signer", str(sig.subject || sig.common_name || "-"), `${prefix}signer-subject`],
      ["issuer", str(sig.issuer || "-"), `${prefix}signer-issuer`],
      sig.not_after ? ["certificate valid until", str(sig.not_after), null] : null,
      sig.time ? ["signed at", str(sig.time), null] : null,
    ];
  }

  function actionsList(actions, testid) {
    const ul = el("ul", { class: "plain", "data-testid": testid });
    for (const a of Array.isArray(actions) ? actions : []) {
      if (a && typeof a === "object") {
        const agent = a.softwareAgent && typeof a.softwareAgent === "object"
          ? [a.softwareAgent.name, a.softwareAgent.version].filter(Boolean).map(str).join(" ") : str(a.softwareAgent);
        const bits = [str(a.action || "?")];
        if (a.description) bits.push(`: ${str(a.description)}`);
        if (agent) bits.push(` (by ${agent})`);
        if (a.digitalSourceType) bits.push(` [${shortIri(a.digitalSourceType)}]`);
        ul.appendChild(el("li", {}, bits.join("")));
      } else {
        ul.appendChild(el("li", {}, str(a)));
      }
    }
    if (!ul.childElementCount) ul.appendChild(el("li", { class: "no" }, "none declared"));
    return ul;
  }

  function ingredientsList(ingredients) {
    const ul = el("ul", { class: "plain", "data-testid": "ingredients" });
    for (const g of Array.isArray(ingredients) ? ingredients : []) {
      if (g && typeof g === "object") {
        const bits = [str(g.title || g.label || g.instance_id || "ingredient")];
        const extra = [g.relationship, g.format].filter(Boolean).map(str);
        if (extra.length) bits.push(` (${extra.join(", ")})`);
        if (g.sha256) bits.push(`, sha256 ${str(g.sha256).slice(0, 12)}…`);
        if (g.has_manifest === true) bits.push(`, has its own manifest${g.manifest_label ? " " + str(g.manifest_label) : ""}`);
        else if (g.has_manifest === false) bits.push(", no manifest of its own");
        const fails = g.validation_failures || g.validation_status;
        if (Array.isArray(fails) && fails.length) bits.push(`; validation failures: ${fails.map(str).join(", ")}`);
        ul.appendChild(el("li", {}, bits.join("")));
      } else {
        ul.appendChild(el("li", {}, str(g)));
      }
    }
    if (!ul.childElementCount) ul.appendChild(el("li", { class: "no" }, "none declared"));
    return ul;
  }

  function manifestFacts(p, prefix, trustAnchors) {
    const state = str(p.state || "unknown");
    const failures = Array.isArray(p.failures) ? p.failures.map(str) : [];
    const gen = p.generator && typeof p.generator === "object" ? p.generator : null;
    const rows = [
      ["validation", el("span", { class: `state-${state.replace(/[^A-Za-z]/g, "")}` }, state), `${prefix}validation-state`],
      failures.length ? ["failures", failures.join(", "), `${prefix}failures`] : null,
      trustAnchors !== undefined ? ["trust anchors", str(trustAnchors), `${prefix}trust-anchors`] : null,
      ...signerRows(p.signer, prefix),
      ["claim generator", str(p.claim_generator || "-"), `${prefix}claim-generator`],
      ["digitalSourceType", shortIri(p.digital_source_type) || "not declared", `${prefix}source-type`],
      gen && (gen.model_name || gen.model_version)
        ? ["model", [gen.model_name, gen.model_version].filter((x) => x !== null && x !== undefined).map(str).join(" "), `${prefix}model`] : null,
      p.remote_url ? ["remote manifest", `${str(p.remote_url)} (never fetched)`, null] : null,
    ];
    return facts(rows);
  }

  function provenanceSection(p, trustAnchors) {
    const s = section("provenance", "Provenance chain (C2PA)");
    if (!p.manifest_found) {
      s.appendChild(p.error ? why(p.error) : why(null, "No C2PA manifest in this file."));
      if (p.remote_url) s.appendChild(facts([["remote manifest", `${str(p.remote_url)} (never fetched)`, null]]));
      return s;
    }
    s.appendChild(manifestFacts(p, "", trustAnchors));
    if (p.error) s.appendChild(why(p.error));
    const acts = el("div", { class: "sub" }, el("h4", {}, "Actions"), actionsList(p.actions, "actions"));
    const ings = el("div", { class: "sub" }, el("h4", {}, "Ingredients"), ingredientsList(p.ingredients));
    s.appendChild(acts);
    s.appendChild(ings);
    return s;
  }

  function watermarkSection(w) {
    const s = section("watermark", "Invisible watermark");
    if (w.error) {
      s.appendChild(why(w.error));
      return s;
    }
    s.appendChild(facts([
      ["found", yesNo(!!w.found), "watermark-found"],
      w.found ? ["id", el("span", { class: "mono" }, str(w.id_hex || w.id)), "watermark-id"] : null,
      w.found ? ["bit errors", w.bit_errors === null || w.bit_errors === undefined ? "-" : str(num(w.bit_errors)), "watermark-bit-errors"] : null,
      w.found ? ["confidence", fmt(w.confidence, 2), "watermark-confidence"] : null,
      ["false-positive bound", fmtSci(w.false_positive_bound), "watermark-fp-bound"],
      ["algorithm", str(w.algorithm || "-"), null],
    ]));
    if (!w.found) s.appendChild(why(null, "No watermark was detected in this file."));
    return s;
  }

  function registrySection(r, w) {
    const s = section("registry", "Registry");
    if (!r.hit) {
      if (r.error) {
        s.appendChild(why(r.error));
      } else if (w.found) {
        s.appendChild(why(null, "No record: neither the watermark id nor this file's sha256 is registered here."));
      } else {
        s.appendChild(why(null, "No record: this file's sha256 is not registered here (and there is no watermark id to look up)."));
      }
      return s;
    }
    const rec = r.record && typeof r.record === "object" ? r.record : {};
    s.appendChild(facts([
      ["hit", yesNo(true), "registry-hit"],
      ["found by", r.lookup === "watermark-id" ? "watermark id" : r.lookup === "asset-sha256" ? "file sha256" : str(r.lookup || "-"), "registry-lookup"],
      ["this copy", r.asset_unchanged === true ? "is the registered asset, byte for byte"
        : r.asset_unchanged === false ? "differs from the registered asset" : "-", "registry-asset-unchanged"],
      rec.registered_at ? ["registered", str(rec.registered_at), null] : null,
      rec.signer ? ["registered by", str(rec.signer), null] : null,
    ]));
    const m = r.manifest_summary;
    const sub = el("div", { class: "sub", "data-testid": "registry-manifest" }, el("h4", {}, "Recovered manifest"));
    if (m && typeof m === "object" && m.manifest_found !== false) {
      sub.appendChild(manifestFacts(m, "registry-"));
      sub.appendChild(el("h4", {}, "Actions"));
      sub.appendChild(actionsList(m.actions, "registry-actions"));
    } else if (r.error) {
      sub.appendChild(why(r.error));
    } else {
      sub.appendChild(why(m && m.error ? m.error : null, "The record holds no manifest."));
    }
    s.appendChild(sub);
    if (r.error && m) s.appendChild(why(r.error));
    return s;
  }

  // ------------------------------------------------------------------ content check

  function scoreClass(score, thr) {
    if (score === null || thr === null) return null;
    return score >= thr ? "over" : "under";
  }

  function contentSection(c) {
    const s = section("content", "Content check (face forgery)", true);
    const status = str(c.status || "not_run");
    const err = c.error && typeof c.error === "object" ? c.error : null;
    if (status === "not_run" || status === "not_applicable") {
      s.appendChild(why(err, status === "not_run" ? "The content check did not run." : "The content check does not apply to this file."));
      return s;
    }
    const who = [c.detector || "detector", c.version].filter(Boolean).map(str).join(" ");
    const score = num(c.score);
    const thr = c.calibration ? num(c.threshold) : null;
    const cal = c.calibration && typeof c.calibration === "object" ? c.calibration : null;
    s.appendChild(facts([
      ["detector", who, "content-detector"],
      ["status", status, "content-status"],
      ["score P(fake)", score === null ? "-" : el("span", { class: scoreClass(score, thr) }, fmt(score, 3)), "content-score"],
      ["threshold", thr === null ? "uncalibrated: the score is reported, not weighed"
        : `${fmt(thr, 3)} (set at ${pct(cal.fpr_target)} false positives on real ${SPLIT[cal.split] || str(cal.split || "")} faces)`,
        "content-threshold"],
    ]));
    if (status !== "ok" || score === null) s.appendChild(why(err, "No face was scored."));
    if (Array.isArray(c.faces) && c.faces.length) s.appendChild(facesTable(c.faces, thr));
    if (Array.isArray(c.tracks) && c.tracks.length) {
      s.appendChild(tracksTable(c.tracks, thr));
      const video = c.video && typeof c.video === "object" ? c.video : {};
      s.appendChild(timeline(c.tracks, thr, num(video.duration)));
      if (video.sampling && typeof video.sampling === "object") {
        s.appendChild(el("p", { class: "file-facts" },
          `frames decoded ${str(video.frames_decoded)}, scored ${str(video.frames_sampled)}, with faces ${str(video.frames_with_faces)}; sampling: ${str(video.sampling.rule)}`));
      }
    } else if (c.video) {
      s.appendChild(why(null, "No face track in this video: there is no score timeline to draw."));
    }
    for (const n of Array.isArray(c.notes) ? c.notes : []) s.appendChild(why(n));
    return s;
  }

  function facesTable(faces, thr) {
    const t = el("table", { class: "grid", "data-testid": "faces" },
      el("caption", { class: "visually-hidden" }, "faces scored"),
      el("tr", {}, el("th", { scope: "col" }, "face"), el("th", { scope: "col" }, "box (x0, y0, x1, y1)"),
        el("th", { scope: "col" }, "P(fake)"), el("th", { scope: "col" }, "detection")));
    faces.slice(0, 64).forEach((f, i) => {
      f = f && typeof f === "object" ? f : {};
      const box = Array.isArray(f.box) ? f.box.slice(0, 4).map((b) => fmt(b, 0)).join(", ") : "-";
      const sc = num(f.score);
      t.appendChild(el("tr", {}, el("td", {}, String(i)), el("td", {}, box),
        el("td", { class: scoreClass(sc, thr) }, fmt(sc, 3)), el("td", {}, fmt(f.detection_score, 2))));
    });
    return t;
  }

  function tracksTable(tracks, thr) {
    const t = el("table", { class: "grid", "data-testid": "tracks" },
      el("caption", { class: "visually-hidden" }, "face tracks"),
      el("tr", {}, el("th", { scope: "col" }, "track"), el("th", { scope: "col" }, "frames"),
        el("th", { scope: "col" }, "seen (s)"), el("th", { scope: "col" }, "P(fake) mean"),
        el("th", { scope: "col" }, "max"), el("th", { scope: "col" }, "counted")));
    for (const tr of tracks.slice(0, 64)) {
      const sc = num(tr.score);
      t.appendChild(el("tr", {}, el("td", {}, `#${str(tr.id)}`), el("td", {}, str(num(tr.frames) ?? "-")),
        el("td", {}, `${fmt(tr.first_time, 2)} – ${fmt(tr.last_time, 2)}`),
        el("td", { class: scoreClass(sc, thr) }, fmt(sc, 3)), el("td", {}, fmt(tr.max_score, 3)),
        el("td", {}, tr.counted ? "yes" : "no")));
    }
    return t;
  }

  /** P(fake) against time, one polyline per face track, the threshold dashed: an inline SVG. */
  function timeline(tracks, thr, duration) {
    const W = 640, H = 200, left = 40, right = W - 12, top = 10, bottom = H - 30;
    const series = [];
    let tMax = duration || 0;
    tracks.slice(0, 32).forEach((tr, i) => {
      const pts = [];
      for (const e of Array.isArray(tr.timeline) ? tr.timeline.slice(0, 5000) : []) {
        if (!Array.isArray(e) || e.length < 2) continue;
        const t = num(e[0]), sc = num(e[1]);
        if (t === null || sc === null) continue;
        pts.push([t, Math.min(Math.max(sc, 0), 1)]);
      }
      if (pts.length) {
        series.push({ id: str(tr.id ?? i), pts, colour: TRACK_COLOURS[i % TRACK_COLOURS.length] });
        tMax = Math.max(tMax, pts[pts.length - 1][0]);
      }
    });
    tMax = Math.max(tMax, 1e-3);
    const X = (t) => left + (right - left) * Math.min(Math.max(t / tMax, 0), 1);
    const Y = (s) => bottom - (bottom - top) * s;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": "P(fake) per face track over time", "data-testid": "timeline-svg" });
    root.appendChild(svg("title", {}, "P(fake) per face track over time"));
    root.appendChild(svg("rect", { x: left, y: top, width: right - left, height: bottom - top, fill: "#fafafa", stroke: "#bbb" }));
    for (const v of [0, 0.5, 1]) {
      root.appendChild(svg("line", { x1: left, x2: right, y1: Y(v), y2: Y(v), stroke: "#e3e3e3" }));
      root.appendChild(svg("text", { x: left - 6, y: Y(v) + 4, "text-anchor": "end", fill: "#666" }, v.toFixed(1)));
    }
    const decimals = tMax < 2 ? 2 : tMax < 20 ? 1 : 0;
    for (let k = 0; k <= 4; k++) {
      const t = tMax * k / 4;
      root.appendChild(svg("text", { x: X(t), y: bottom + 15, "text-anchor": "middle", fill: "#666" }, t.toFixed(decimals)));
    }
    root.appendChild(svg("text", { x: right, y: H - 2, "text-anchor": "end", fill: "#666" }, "seconds"));
    if (thr !== null) {
      root.appendChild(svg("line", { x1: left, x2: right, y1: Y(thr), y2: Y(thr), stroke: "#b3261e",
        "stroke-dasharray": "5,4", "data-testid": "timeline-threshold" }));
      root.appendChild(svg("text", { x: right - 4, y: Y(thr) + (thr > 0.9 ? 14 : -4), "text-anchor": "end", fill: "#b3261e" },
        `threshold ${thr.toFixed(2)}`));
    }
    for (const sr of series) {
      if (sr.pts.length === 1) {
        root.appendChild(svg("circle", { cx: X(sr.pts[0][0]), cy: Y(sr.pts[0][1]), r: 3, fill: sr.colour,
          "data-testid": "timeline-track" }));
      } else {
        root.appendChild(svg("polyline", { points: sr.pts.map(([t, s]) => `${X(t).toFixed(1)},${Y(s).toFixed(1)}`).join(" "),
          fill: "none", stroke: sr.colour, "stroke-width": 1.6, "data-testid": "timeline-track",
          "data-points": sr.pts.length }));
      }
      const [lt, ls] = sr.pts[sr.pts.length - 1];
      root.appendChild(svg("text", { x: Math.min(X(lt) + 4, right - 24), y: Y(ls) - 4, fill: sr.colour }, `#${sr.id}`));
    }
    if (!series.length) {
      root.appendChild(svg("text", { x: (left + right) / 2, y: (top + bottom) / 2, "text-anchor": "middle", fill: "#666" },
        "no scored frames"));
    }
    return el("figure", { class: "timeline", "data-testid": "timeline" }, root,
      el("figcaption", {}, "P(fake) per face track over time" + (thr !== null ? "; dashed: the calibrated threshold" : "")));
  }

  // ------------------------------------------------------------------ annotated media, links

  function annotatedSection(body, v, mediaType) {
    const s = section("annotated", mediaType.startsWith("video/") ? "Annotated video"
      : mediaType.startsWith("image/") ? "Annotated image" : "Annotated view", true);
    s.classList.add("annotated");
    const url = localUrl(body.annotated_url);
    const c = v.content || {};
    if (!url) {
      const err = c.status !== "ok" && c.error ? c.error : null;
      s.appendChild(why(err, c.status === "ok"
        ? "The server gave no annotated copy of this file."
        : "No annotated copy: the content check scored no face."));
      return s;
    }
    const isVideo = mediaType.startsWith("video/");
    const media = isVideo
      ? el("video", { controls: true, preload: "auto", src: url, "data-testid": "annotated-media",
        "aria-label": "the video with each face's box and score" })
      : el("img", { src: url, alt: "the image with each scored face's box and P(fake)", "data-testid": "annotated-media" });
    media.addEventListener("error", async () => {
      // an <img>/<video> cannot read the error's body: ask once more for the {"detail"} line
      let line = "the annotated copy could not be loaded";
      try {
        const r = await getJson(url);
        if (!r.ok) line = httpErrorLine(r.status, r.text, r.retryAfter, r.statusText);
      } catch (_) { /* keep the generic line */ }
      const err = c.status !== "ok" && c.error ? c.error : null;
      media.replaceWith(err ? why(err) : why(null, `No annotated copy: ${line}`));
    }, { once: true });
    s.appendChild(media);
    return s;
  }

  function linksRow(body, v) {
    const row = el("nav", { class: "links", "data-testid": "links", "aria-label": "reports" });
    const json = localUrl(body.report_url);
    if (json) {
      row.appendChild(el("a", { href: json, target: "_blank", rel: "noopener", "data-testid": "json-link" }, "JSON report"));
    } else {
      const blob = new Blob([JSON.stringify(v, null, 2)], { type: "application/json" });
      row.appendChild(el("a", { href: URL.createObjectURL(blob), download: "verdict.json", "data-testid": "json-link" },
        "Verdict JSON (download)"));
    }
    const html = localUrl(body.html_url);
    if (html) row.appendChild(el("a", { href: html, target: "_blank", rel: "noopener", "data-testid": "html-link" }, "HTML report"));
    return row;
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    const zone = $("dropzone");
    const input = $("file");
    input.addEventListener("change", () => {
      if (input.files && input.files.length) upload(input.files[0]);
    });
    let depth = 0;
    zone.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; zone.classList.add("dragover"); });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = "copy"; });
    zone.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) zone.classList.remove("dragover"); });
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      depth = 0;
      zone.classList.remove("dragover");
      const files = e.dataTransfer && e.dataTransfer.files;
      if (!files || !files.length) return;
      if (files.length > 1) {
        showError("One file at a time, please: drop a single file.");
        return;
      }
      upload(files[0]);
    });
    // a file dropped next to the zone must not make the browser navigate away to it
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
    document.body.dataset.ready = "1";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
