"""Local signing identity: a small CA and a C2PA signing certificate.

Layout under ``home_dir()/keys``::

    ca.pem       the local CA certificate (the trust anchor a verifier adds)
    ca.key       the CA private key (PKCS#8, encrypted when a passphrase is set)
    signer.pem   the signing chain: leaf first, then the CA
    signer.key   the leaf private key (PKCS#8, encrypted when a passphrase is set)

and ``home_dir()/.keys.lock`` (mode 0600, empty), the lock that makes creating
or replacing an identity exclusive: writers (``init_keys``, ``import_keys``,
``load_identity(create=True)`` when it creates) hold an exclusive ``flock`` on
it while they check for an identity and write one; readers (``load_identity``,
``trust_anchor_pem``) hold a shared one while they read the files, so they never
see a half-written or half-replaced set. Concurrent first uses therefore make
exactly one identity; the others load it.

The leaf follows the C2PA certificate profile that c2pa-rs enforces: not
self-signed, an O= and CN= subject, critical KeyUsage digitalSignature, an
extended key usage of emailProtection plus the C2PA claim-signing OID, subject
and authority key identifiers.

Private keys never leave this module in clear except as the in-memory
``SigningIdentity.private_key_pem`` the signer needs; nothing here prints or
logs them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from . import media
from .errors import KeyStoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "KeyPaths",
    "SigningIdentity",
    "home_dir",
    "keys_dir",
    "init_keys",
    "load_identity",
    "import_keys",
    "trust_anchor_pem",
    "PASSPHRASE_ENV",
    "C2PA_CLAIM_SIGNING_OID",
]

PASSPHRASE_ENV = "DHSTUDIO_KEY_PASSPHRASE"
HOME_ENV = "DHSTUDIO_HOME"
#: id-kp-c2pa-claimSigning (C2PA 2.x certificate profile); c2pa-rs 0.91 accepts it.
C2PA_CLAIM_SIGNING_OID = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")

#: The lock file, in the home (not in keys/, so nothing listing keys/ sees it).
LOCK_NAME = ".keys.lock"

DEFAULT_ORGANIZATION = "dhstudio local studio"

CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 730


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class KeyPaths:
    """Where one identity lives on disk."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    signer_cert: Path
    signer_key: Path

    @classmethod
    def under(cls, home: Path) -> "KeyPaths":
        d = Path(home) / "keys"
        return cls(d, d / "ca.pem", d / "ca.key", d / "signer.pem", d / "signer.key")

    def signer_exists(self) -> bool:
        return self.signer_cert.exists() or self.signer_key.exists()


def home_dir() -> Path:
    """``$DHSTUDIO_HOME`` if set, else the per-user data dir; created with mode 0700."""
    env = os.environ.get(HOME_ENV)
    if env:
        p = Path(env).expanduser()
    else:
        import platformdirs

        p = Path(platformdirs.user_data_dir("dhstudio"))
    try:
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise KeyStoreError(f"cannot create dhstudio home {p}: {e.strerror or e}") from None
    return p


def keys_dir(home: Path | None = None) -> Path:
    return KeyPaths.under(Path(home) if home is not None else home_dir()).dir


def _resolve_home(home: Path | str | None) -> Path:
    if home is None:
        return home_dir()
    p = Path(home).expanduser()
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p


_NOFOLLOW_CLOEXEC = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def _keys_lock(paths: KeyPaths, *, exclusive: bool):
    """Hold ``flock`` on ``home/.keys.lock``: exclusive to create/replace, shared to read.

    A reader that cannot create the lock file (a read-only home) reads without
    it; a writer that cannot lock raises a one-line KeyStoreError.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = paths.dir.parent / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW_CLOEXEC, 0o600)
    except OSError as e:
        fd = -1
        if not exclusive:
            try:
                fd = os.open(lock, os.O_RDONLY | _NOFOLLOW_CLOEXEC)
            except OSError:
                fd = -1
        if fd < 0:
            if not exclusive:
                yield
                return
            raise KeyStoreError(f"cannot open key lock {lock}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError as e:
            raise KeyStoreError(f"cannot lock {lock}: {e.strerror or e}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _passphrase(passphrase: str | None) -> str | None:
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    return passphrase


def _key_encryption(passphrase: str | None):
    if passphrase:
        return serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    return serialization.NoEncryption()


def _key_pem(key, passphrase: str | None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _key_encryption(passphrase)
    )


# --------------------------------------------------------------------------- identity


@dataclass
class SigningIdentity:
    """Everything the C2PA signer needs, in memory.

    ``private_key_pem`` is unencrypted PKCS#8; it is never written anywhere by
    this package and is excluded from ``repr``.
    """

    cert_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    alg: str = "es256"
    subject: str = ""
    issuer: str = ""
    not_after: _dt.datetime | None = None
    fingerprint_sha256: str = ""
    created: bool = False

    @property
    def sha256(self) -> str:  # short alias
        return self.fingerprint_sha256

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert_chain_pem)[0]

    def summary(self) -> dict:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "alg": self.alg,
            "fingerprint_sha256": self.fingerprint_sha256,
        }


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _make_ca(org: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(org, f"{org} Root CA")
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(ca_key, ca_cert: x509.Certificate, org: str, *, claim_signing_eku: bool = True,
               days: int = LEAF_VALIDITY_DAYS, not_before: _dt.datetime | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    nb = not_before or (now - _dt.timedelta(minutes=5))
    ekus = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    if claim_signing_eku:
        ekus.append(C2PA_CLAIM_SIGNING_OID)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(org, f"{org} C2PA signer"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(nb + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def init_keys(
    home: Path | str | None = None,
    *,
    passphrase: str | None = None,
    organization: str = DEFAULT_ORGANIZATION,
    force: bool = False,
) -> KeyPaths:
    """Create a local CA and a C2PA signing certificate under ``home/keys``.

    Refuses to overwrite an existing identity unless ``force``. The private
    keys are written 0600, encrypted when a passphrase is given (argument or
    ``$DHSTUDIO_KEY_PASSPHRASE``).
    """
    if not organization or not organization.strip():
        raise KeyStoreError("organization must not be empty")
    paths = KeyPaths.under(_resolve_home(home))
    with _keys_lock(paths, exclusive=True):
        if not force and _any_key_exists(paths):
            raise KeyStoreError(f"keys already exist in {paths.dir} (use --force to replace them)")
        _write_new_identity(paths, _passphrase(passphrase), organization.strip())
    return paths


def _any_key_exists(paths: KeyPaths) -> bool:
    return paths.signer_exists() or paths.ca_cert.exists() or paths.ca_key.exists()


def _write_new_identity(paths: KeyPaths, passphrase: str | None, organization: str) -> None:
    """Make and write a fresh CA + signer; the caller holds the exclusive lock."""
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.dir, 0o700)

    ca_key, ca_cert = _make_ca(organization)
    leaf_key, leaf_cert = _make_leaf(ca_key, ca_cert, organization)

    # Keys first, certificates last: a half-written identity has no signer.pem.
    media.write_atomic(paths.ca_key, _key_pem(ca_key, passphrase), mode=0o600)
    media.write_atomic(paths.signer_key, _key_pem(leaf_key, passphrase), mode=0o600)
    media.write_atomic(paths.ca_cert, _pem(ca_cert), mode=0o644)
    media.write_atomic(paths.signer_cert, _pem(leaf_cert) + _pem(ca_cert), mode=0o644)


# --------------------------------------------------------------------------- validation


def _load_chain(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except Exception:
        raise KeyStoreError(f"{what} is not a valid PEM certificate chain") from None
    if not certs:
        raise KeyStoreError(f"{what} holds no certificate")
    return certs


def _load_key(data: bytes, passphrase: str | None, what: str):
    pw = passphrase.encode("utf-8") if passphrase else None
    try:
        return serialization.load_pem_private_key(data, password=pw)
    except TypeError as e:
        msg = str(e).lower()
        if "encrypted" in msg and pw is None:
            raise KeyStoreError(
                f"{what} is encrypted: give the passphrase (--passphrase or ${PASSPHRASE_ENV})"
            ) from None
        if "not encrypted" in msg:
            # a passphrase was given for a clear key: load it without one
            try:
                return serialization.load_pem_private_key(data, password=None)
            except Exception:
                raise KeyStoreError(f"{what} is not a valid PEM private key") from None
        raise KeyStoreError(f"{what} could not be loaded: {e}") from None
    except ValueError as e:
        if pw is not None and ("password" in str(e).lower() or "decrypt" in str(e).lower()):
            raise KeyStoreError(f"wrong passphrase for {what}") from None
        if pw is not None:
            # cryptography reports a bad password as a generic ValueError too
            raise KeyStoreError(f"wrong passphrase for {what} (or the key file is corrupt)") from None
        raise KeyStoreError(f"{what} is not a valid PEM private key") from None
    except Exception:
        raise KeyStoreError(f"{what} is not a valid PEM private key") from None


def _alg_for_key(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        name = key.curve.name
        if name == "secp256r1":
            return "es256"
        if name == "secp384r1":
            return "es384"
        if name == "secp521r1":
            return "es512"
        raise KeyStoreError(f"unsupported EC curve {name} (C2PA allows P-256, P-384, P-521)")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise KeyStoreError(f"RSA key of {key.key_size} bits is too small (C2PA needs >= 2048)")
        return "ps256"
    raise KeyStoreError(f"unsupported key type {type(key).__name__} (use EC P-256/P-384, Ed25519 or RSA)")


def _same_public_key(key, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)
    except Exception:
        return False


def _verify_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
    except Exception:
        return False


def _name_str(name: x509.Name) -> str:
    return name.rfc4514_string()


def _check_chain(certs: list[x509.Certificate], key, *, what: str) -> None:
    leaf = certs[0]
    now = _now()
    if not _same_public_key(key, leaf):
        raise KeyStoreError(f"{what}: the private key does not match the signing certificate")
    if leaf.not_valid_after_utc < now:
        raise KeyStoreError(
            f"{what}: signing certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
        )
    if leaf.not_valid_before_utc > now + _dt.timedelta(minutes=5):
        raise KeyStoreError(
            f"{what}: signing certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
        )
    if leaf.issuer == leaf.subject and _verify_issued_by(leaf, leaf):
        raise KeyStoreError(
            f"{what}: signing certificate is self-signed; C2PA rejects self-signed signers "
            "(issue it from a CA, e.g. `dhstudio keys init`)"
        )
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise KeyStoreError(f"{what}: signing certificate is a CA certificate (C2PA rejects it)")
    except x509.ExtensionNotFound:
        pass
    _check_leaf_profile(leaf, what)
    for i, (child, parent) in enumerate(zip(certs, certs[1:])):
        if not _verify_issued_by(child, parent):
            raise KeyStoreError(
                f"{what}: certificate {i} of the chain is not issued by certificate {i + 1}"
            )
        if parent.not_valid_after_utc < now:
            raise KeyStoreError(
                f"{what}: chain certificate {_name_str(parent.subject)} expired on "
                f"{parent.not_valid_after_utc:%Y-%m-%d}"
            )


_ACCEPTED_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning
    C2PA_CLAIM_SIGNING_OID,
    ObjectIdentifier("1.3.6.1.4.1.311.76.59.1.9"),  # Microsoft C2PA signing
}


def _check_leaf_profile(leaf: x509.Certificate, what: str) -> None:
    """The parts of the C2PA signer certificate profile c2pa-rs enforces."""
    exts = leaf.extensions
    try:
        ku = exts.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise KeyStoreError(f"{what}: signing certificate lacks the digitalSignature key usage (C2PA needs it)")
    except x509.ExtensionNotFound:
        raise KeyStoreError(f"{what}: signing certificate has no KeyUsage extension (C2PA needs digitalSignature)") from None
    try:
        eku = exts.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise KeyStoreError(
            f"{what}: signing certificate has no extended key usage (C2PA needs emailProtection, "
            "documentSigning or c2pa claimSigning)"
        ) from None
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
        raise KeyStoreError(f"{what}: signing certificate has anyExtendedKeyUsage, which C2PA forbids")
    if not (set(eku) & _ACCEPTED_EKUS):
        raise KeyStoreError(
            f"{what}: signing certificate's extended key usage is not one C2PA accepts "
            "(emailProtection, documentSigning or c2pa claimSigning)"
        )
    try:
        exts.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        raise KeyStoreError(f"{what}: signing certificate has no authority key identifier (C2PA needs it)") from None


def _trial_sign(ident: "SigningIdentity", what: str) -> None:
    """Sign a tiny image with c2pa-rs: anything it refuses is refused here, at import time."""
    import io

    try:
        import c2pa
        from PIL import Image
    except ImportError:  # pragma: no cover - both are hard dependencies
        return
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, "PNG")
    buf.seek(0)
    settings = {
        "version": 1,
        "verify": {"ocsp_fetch": False, "remote_manifest_fetch": False, "verify_after_sign": True},
        "core": {"allowed_network_hosts": []},
        "builder": {"thumbnail": {"enabled": False}},
    }
    definition = {
        "claim_generator_info": [{"name": "dhstudio-keycheck"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [
            {"action": "c2pa.created",
             "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation"}]}}],
    }
    try:
        ctx = c2pa.Context.from_dict(settings)
        with c2pa.Builder(definition, context=ctx) as b, c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(ident.alg, ident.cert_chain_pem, ident.private_key_pem, None)
        ) as signer:
            b.sign(signer, "image/png", buf, io.BytesIO())
    except Exception as e:
        msg = " ".join(str(e).split())
        raise KeyStoreError(f"{what}: the C2PA library refuses this certificate/key ({msg})") from None


def _identity(certs: list[x509.Certificate], key, chain_pem: bytes) -> SigningIdentity:
    leaf = certs[0]
    clear = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningIdentity(
        cert_chain_pem=chain_pem,
        private_key_pem=clear,
        alg=_alg_for_key(key),
        subject=_name_str(leaf.subject),
        issuer=_name_str(leaf.issuer),
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def _chain_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(_pem(c) for c in certs)


def _read_identity_files(paths: KeyPaths) -> tuple[bytes, bytes]:
    """(signer.pem, signer.key) bytes; the caller holds the lock (shared or exclusive)."""
    if not paths.signer_cert.exists() and not paths.signer_key.exists():
        raise KeyStoreError(
            f"no signing identity in {paths.dir} (run `dhstudio keys init` or `dhstudio keys import`)"
        )
    for p in (paths.signer_cert, paths.signer_key):
        if not p.exists():
            raise KeyStoreError(f"signing identity incomplete: {p} is missing")
    try:
        return paths.signer_cert.read_bytes(), paths.signer_key.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"cannot read signing identity: {e.strerror or e}") from None


def load_identity(
    home: Path | str | None = None,
    *,
    passphrase: str | None = None,
    create: bool = False,
) -> SigningIdentity:
    """Load and validate the signing identity stored under ``home/keys``.

    With ``create=True`` and no identity present, a new one is made first and
    ``identity.created`` is True. Every problem is a one-line KeyStoreError.
    """
    paths = KeyPaths.under(_resolve_home(home))
    created = False
    # Common case: an identity exists; read it under a shared lock.
    with _keys_lock(paths, exclusive=False):
        found = paths.signer_cert.exists() or paths.signer_key.exists()
        if found or not create:
            chain_pem, key_pem = _read_identity_files(paths)
    if not found and create:
        # First use: take the exclusive lock and look again; only the first
        # creator creates, the others find (and load) what it made.
        with _keys_lock(paths, exclusive=True):
            if not paths.signer_cert.exists() and not paths.signer_key.exists():
                if _any_key_exists(paths):
                    raise KeyStoreError(f"keys already exist in {paths.dir} (use --force to replace them)")
                _write_new_identity(paths, _passphrase(passphrase), DEFAULT_ORGANIZATION)
                created = True
            chain_pem, key_pem = _read_identity_files(paths)
    certs = _load_chain(chain_pem, str(paths.signer_cert))
    key = _load_key(key_pem, _passphrase(passphrase), str(paths.signer_key))
    _alg_for_key(key)
    _check_chain(certs, key, what="signing identity")
    ident = _identity(certs, key, _chain_pem(certs))
    ident.created = created
    return ident


def import_keys(
    cert_chain_path: Path | str,
    key_path: Path | str,
    home: Path | str | None = None,
    *,
    passphrase: str | None = None,
    key_passphrase: str | None = None,
    force: bool = False,
) -> KeyPaths:
    """Import an existing certificate chain and private key.

    ``key_passphrase`` opens the given key file; ``passphrase`` (or
    ``$DHSTUDIO_KEY_PASSPHRASE``) encrypts the stored copy. The chain must
    start with the signing certificate; the last certificate becomes the trust
    anchor (``trust_anchor_pem``). An imported identity has no ca.key.
    """
    cert_chain_path, key_path = Path(cert_chain_path), Path(key_path)
    try:
        chain_data = cert_chain_path.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"cannot read certificate chain {cert_chain_path}: {e.strerror or e}") from None
    try:
        key_data = key_path.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"cannot read private key {key_path}: {e.strerror or e}") from None
    certs = _load_chain(chain_data, str(cert_chain_path))
    key = _load_key(key_data, key_passphrase, str(key_path))
    _alg_for_key(key)
    _check_chain(certs, key, what=str(cert_chain_path))
    _trial_sign(_identity(certs, key, _chain_pem(certs)), str(cert_chain_path))

    paths = KeyPaths.under(_resolve_home(home))
    key_pem = _key_pem(key, _passphrase(passphrase))
    with _keys_lock(paths, exclusive=True):
        if not force and (paths.signer_exists() or paths.ca_cert.exists()):
            raise KeyStoreError(f"keys already exist in {paths.dir} (use --force to replace them)")
        paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(paths.dir, 0o700)
        media.write_atomic(paths.signer_key, key_pem, mode=0o600)
        media.write_atomic(paths.ca_cert, _pem(certs[-1]), mode=0o644)
        media.write_atomic(paths.signer_cert, _chain_pem(certs), mode=0o644)
        if paths.ca_key.exists():
            # a CA key from an earlier `init` does not belong to this chain
            paths.ca_key.unlink()
    return paths


def trust_anchor_pem(home: Path | str | None = None) -> bytes:
    """The certificate a verifier must trust for our signatures (PEM).

    The local CA after ``init_keys``; the last certificate of the chain after
    ``import_keys``.
    """
    paths = KeyPaths.under(_resolve_home(home))
    with _keys_lock(paths, exclusive=False):
        src = paths.ca_cert if paths.ca_cert.exists() else paths.signer_cert
        if not src.exists():
            raise KeyStoreError(f"no signing identity in {paths.dir} (run `dhstudio keys init`)")
        try:
            data = src.read_bytes()
        except OSError as e:
            raise KeyStoreError(f"cannot read {src}: {e.strerror or e}") from None
    return _pem(_load_chain(data, str(src))[-1])
