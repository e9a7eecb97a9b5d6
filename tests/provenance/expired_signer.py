"""Test helper (no tests here): files signed by a leaf certificate that has since expired.

Issue F3, "expired is not tampered". c2pa-rs (0.91, through c2pa-python 0.38)
will not sign with a certificate outside its validity period: ``Builder.sign``
fails with "the certificate was not valid at time of signing", and it does so
with ``verify.verify_after_sign`` off as well (the check is part of signing,
not of the verify-after-sign pass). So a file "signed by an expired
certificate" cannot be made directly; we make it the way it happens in real
life: sign while the leaf is still valid, then let the leaf expire.

* :func:`make_expired_identity` -- a leaf whose validity ended a year ago
  (not_before = now-3y, not_after = now-1y), issued by the CA under
  ``home/keys``. Useful to test key handling; c2pa-rs refuses to sign with it.
* :func:`make_short_lived_identity` -- the same kind of leaf (not_before =
  now-3y) but with not_after only ``lifetime_s`` seconds ahead.
* :func:`sign_expired` / :func:`sign_expired_many` -- sign with a short-lived
  leaf through :func:`provenance.c2pa_io.sign_file` (unchanged settings,
  verify-after-sign on), then sleep until the leaf has expired. The returned
  file is an honest c2pa-rs signature made inside the validity period, with no
  timestamp (no TSA offline), read after the certificate's notAfter.

The CA is the one of ``home/keys`` (made with :func:`provenance.keys.init_keys`
when ``home`` has no identity yet), so the trust anchor is
``provenance.keys.trust_anchor_pem(home)``, the same one as for the home's
normal signer. Nothing is written to ``home/keys`` except by ``init_keys``;
the expired leaf lives only in memory.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Iterable

from provenance import c2pa_io, keys
from provenance.keys import SigningIdentity
from provenance.manifest import GenerationSpec

__all__ = [
    "EXPIRED_ORG",
    "make_expired_identity",
    "make_short_lived_identity",
    "wait_until_expired",
    "sign_expired",
    "sign_expired_many",
]

EXPIRED_ORG = "dhstudio expired-signer test"
_YEAR = _dt.timedelta(days=365)


def _home_ca(home: Path):
    """(ca_key, ca_cert) of ``home/keys``; a fresh CA + signer is made there when absent."""
    home = Path(home)
    paths = keys.KeyPaths.under(home)
    if not paths.ca_cert.exists() and not paths.signer_exists():
        keys.init_keys(home)
    if not paths.ca_key.exists():
        raise keys.KeyStoreError(f"{paths.dir} has no ca.key (an imported identity): cannot issue a test leaf")
    ca_cert = keys._load_chain(paths.ca_cert.read_bytes(), str(paths.ca_cert))[0]
    ca_key = keys._load_key(paths.ca_key.read_bytes(), keys._passphrase(None), str(paths.ca_key))
    return ca_key, ca_cert


def _leaf_identity(home: Path, not_before: _dt.datetime, not_after: _dt.datetime,
                   org: str) -> tuple[SigningIdentity, bytes]:
    ca_key, ca_cert = _home_ca(home)
    days = (not_after - not_before).total_seconds() / 86400.0  # _make_leaf: nb + timedelta(days=days)
    leaf_key, leaf_cert = keys._make_leaf(ca_key, ca_cert, org, days=days, not_before=not_before)
    certs = [leaf_cert, ca_cert]
    ident = keys._identity(certs, leaf_key, keys._chain_pem(certs))
    return ident, keys._pem(ca_cert)


def make_expired_identity(home: Path, *, org: str = EXPIRED_ORG) -> tuple[SigningIdentity, bytes]:
    """A signer whose leaf expired a year ago (valid now-3y .. now-1y) and the CA PEM (trust anchor).

    The leaf has the C2PA profile of :func:`provenance.keys._make_leaf`
    (digitalSignature, emailProtection + c2pa claimSigning EKU, SKI/AKI). The
    CA is valid now. c2pa-rs refuses to sign with this identity; use
    :func:`sign_expired` for a signed file.
    """
    now = keys._now().replace(microsecond=0)
    return _leaf_identity(home, now - 3 * _YEAR, now - _YEAR, org)


def make_short_lived_identity(home: Path, lifetime_s: float = 2.0, *,
                              org: str = EXPIRED_ORG) -> tuple[SigningIdentity, bytes]:
    """A signer valid from now-3y until ``lifetime_s`` seconds from now (whole seconds, as X.509 keeps them)."""
    now = keys._now().replace(microsecond=0)
    not_after = now + _dt.timedelta(seconds=max(1, round(lifetime_s)))
    return _leaf_identity(home, now - 3 * _YEAR, not_after, org)


def wait_until_expired(identity: SigningIdentity, margin_s: float = 1.0) -> None:
    """Sleep until the identity's leaf is past its notAfter (plus ``margin_s``)."""
    not_after = identity.leaf().not_valid_after_utc
    delay = (not_after - keys._now()).total_seconds() + margin_s
    if delay > 0:
        time.sleep(delay)
    assert keys._now() > not_after, "leaf certificate still valid"


def sign_expired_many(pairs: Iterable[tuple[Path, Path]], home: Path, *,
                      spec: GenerationSpec | None = None, lifetime_s: float = 2.0) -> list[bytes]:
    """Sign every ``(src, dst)`` with one short-lived leaf, then wait until it has expired.

    One wait for all files (about ``lifetime_s`` + 1 s in total). Returns the
    manifest store bytes of each, like :func:`provenance.c2pa_io.sign_file`.
    The trust anchor is ``provenance.keys.trust_anchor_pem(home)``.
    """
    ident, _anchor = make_short_lived_identity(home, lifetime_s)
    spec = spec or GenerationSpec(model_name="expired-signer-test")
    stores = []
    try:
        for src, dst in pairs:
            stores.append(c2pa_io.sign_file(Path(src), Path(dst), spec, ident))
    except Exception as e:
        if "not valid at time of signing" in str(e):
            raise RuntimeError(f"signing took longer than the leaf's {lifetime_s}s lifetime: "
                               f"raise lifetime_s ({e})") from e
        raise
    wait_until_expired(ident)
    return stores


def sign_expired(src: Path, dst: Path, home: Path, *, spec: GenerationSpec | None = None,
                 lifetime_s: float = 2.0) -> bytes:
    """Sign ``src`` into ``dst`` with a leaf that expires right after; return the manifest store bytes.

    Returns once the leaf has expired (about ``lifetime_s`` + 1 s). Any format
    :func:`provenance.c2pa_io.sign_file` signs (PNG, JPEG, WebP, MP4, WAV, GLB).
    """
    return sign_expired_many([(src, dst)], home, spec=spec, lifetime_s=lifetime_s)[0]
