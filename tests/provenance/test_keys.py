"""Local CA + signer: creation, storage, validation, import, trust anchor."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance import keys
from provenance.errors import KeyStoreError


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_home_dir_from_env(dhs_home):
    assert keys.home_dir() == dhs_home
    assert _mode(dhs_home) == 0o700


def test_home_dir_created_0700(tmp_path, monkeypatch):
    h = tmp_path / "new" / "home"
    monkeypatch.setenv("DHSTUDIO_HOME", str(h))
    assert keys.home_dir() == h
    assert h.is_dir() and _mode(h) == 0o700


def test_init_creates_files_and_modes(dhs_home):
    paths = keys.init_keys()
    for p in (paths.ca_cert, paths.ca_key, paths.signer_cert, paths.signer_key):
        assert p.is_file()
    assert paths.dir == dhs_home / "keys"
    assert _mode(paths.ca_key) == 0o600
    assert _mode(paths.signer_key) == 0o600
    assert _mode(paths.dir) == 0o700
    # no stray temp files from the atomic writes
    assert sorted(p.name for p in paths.dir.iterdir()) == ["ca.key", "ca.pem", "signer.key", "signer.pem"]
    assert b"ENCRYPTED" not in paths.signer_key.read_bytes()


def test_chain_and_attributes(dhs_home):
    paths = keys.init_keys(organization="Acme Studio")
    leaf, ca = x509.load_pem_x509_certificates(paths.signer_cert.read_bytes())
    ca_file = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert ca == ca_file
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert leaf.subject != leaf.issuer
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme Studio"
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    # CA profile
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    # leaf profile
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert keys.C2PA_CLAIM_SIGNING_OID in eku
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest and aki.key_identifier == ca_ski.digest
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(days=700) < life < dt.timedelta(days=800)


def test_load_identity(dhs_home):
    keys.init_keys()
    ident = keys.load_identity()
    assert ident.alg == "es256"
    assert "C2PA signer" in ident.subject and "Root CA" in ident.issuer
    assert ident.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(ident.fingerprint_sha256) == 64
    assert ident.not_after > dt.datetime.now(dt.timezone.utc)
    assert ident.created is False
    assert "PRIVATE" not in repr(ident)


def test_refuses_overwrite_unless_force(dhs_home):
    keys.init_keys()
    before = (dhs_home / "keys" / "signer.pem").read_bytes()
    with pytest.raises(KeyStoreError, match="already exist"):
        keys.init_keys()
    assert (dhs_home / "keys" / "signer.pem").read_bytes() == before
    keys.init_keys(force=True)
    assert (dhs_home / "keys" / "signer.pem").read_bytes() != before


def test_load_missing_and_create(dhs_home):
    with pytest.raises(KeyStoreError, match="no signing identity"):
        keys.load_identity()
    ident = keys.load_identity(create=True)
    assert ident.created is True
    assert keys.load_identity().created is False


def test_passphrase(dhs_home, monkeypatch):
    paths = keys.init_keys(passphrase="correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in paths.signer_key.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in paths.ca_key.read_bytes()
    with pytest.raises(KeyStoreError, match="encrypted"):
        keys.load_identity()
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        keys.load_identity(passphrase="wrong")
    ident = keys.load_identity(passphrase="correct horse")
    assert b"ENCRYPTED" not in ident.private_key_pem
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "correct horse")
    assert keys.load_identity().fingerprint_sha256 == ident.fingerprint_sha256


def test_corrupt_pem(dhs_home):
    paths = keys.init_keys()
    paths.signer_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyStoreError) as ei:
        keys.load_identity()
    assert "\n" not in str(ei.value)
    keys.init_keys(force=True)
    paths.signer_cert.write_bytes(b"garbage")
    with pytest.raises(KeyStoreError, match="certificate"):
        keys.load_identity()


def test_cert_key_mismatch(dhs_home):
    paths = keys.init_keys()
    other = ec.generate_private_key(ec.SECP256R1())
    paths.signer_key.write_bytes(keys._key_pem(other, None))
    with pytest.raises(KeyStoreError, match="does not match"):
        keys.load_identity()


# --------------------------------------------------------------------------- import


def _ca(tmp_path, name="Import CA"):
    ca_key, ca_cert = keys._make_ca(name)
    return ca_key, ca_cert


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_import_valid_chain(dhs_home, tmp_path):
    ca_key, ca = _ca(tmp_path)
    leaf_key, leaf = keys._make_leaf(ca_key, ca, "Imported Org")
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    key = _write(tmp_path, "leaf.key", keys._key_pem(leaf_key, "kp"))
    paths = keys.import_keys(chain, key, key_passphrase="kp")
    assert _mode(paths.signer_key) == 0o600
    assert not paths.ca_key.exists()
    ident = keys.load_identity()
    assert "Imported Org" in ident.subject
    assert keys.trust_anchor_pem() == keys._pem(ca)
    with pytest.raises(KeyStoreError, match="already exist"):
        keys.import_keys(chain, key, key_passphrase="kp")


def test_import_ed25519(dhs_home, tmp_path):
    ca_key, ca = _ca(tmp_path)
    leaf_key = ed25519.Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(keys._name("Ed Org", "ed signer"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    key = _write(tmp_path, "leaf.key", keys._key_pem(leaf_key, None))
    keys.import_keys(chain, key)
    assert keys.load_identity().alg == "ed25519"


def _leaf_without(ca_key, ca, key, *, drop: str):
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(keys._name("Org", "signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if drop != "ku":
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    if drop != "eku":
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    if drop != "aki":
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    return b.sign(ca_key, hashes.SHA256())


@pytest.mark.parametrize("drop,match", [("ku", "KeyUsage"), ("eku", "extended key usage"),
                                        ("aki", "authority key identifier")])
def test_import_rejects_non_c2pa_profile(dhs_home, tmp_path, drop, match):
    ca_key, ca = _ca(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf_without(ca_key, ca, key, drop=drop)
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    keyf = _write(tmp_path, "leaf.key", keys._key_pem(key, None))
    with pytest.raises(KeyStoreError, match=match):
        keys.import_keys(chain, keyf)
    assert not (dhs_home / "keys").exists() or not any((dhs_home / "keys").iterdir())


def test_import_mismatched_key(dhs_home, tmp_path):
    ca_key, ca = _ca(tmp_path)
    _, leaf = keys._make_leaf(ca_key, ca, "Org")
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    key = _write(tmp_path, "other.key", keys._key_pem(ec.generate_private_key(ec.SECP256R1()), None))
    with pytest.raises(KeyStoreError, match="does not match"):
        keys.import_keys(chain, key)
    assert not (dhs_home / "keys" / "signer.pem").exists()


def test_import_expired(dhs_home, tmp_path):
    ca_key, ca = _ca(tmp_path)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    leaf_key, leaf = keys._make_leaf(ca_key, ca, "Org", days=30, not_before=past)
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    key = _write(tmp_path, "leaf.key", keys._key_pem(leaf_key, None))
    with pytest.raises(KeyStoreError, match="expired"):
        keys.import_keys(chain, key)


def test_load_expired(dhs_home):
    paths = keys.init_keys()
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    leaf_key, leaf = keys._make_leaf(ca_key, ca, "Org", days=30, not_before=past)
    paths.signer_key.write_bytes(keys._key_pem(leaf_key, None))
    paths.signer_cert.write_bytes(keys._pem(leaf) + keys._pem(ca))
    with pytest.raises(KeyStoreError, match="expired"):
        keys.load_identity()


def test_import_self_signed_leaf(dhs_home, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = keys._name("Selfie", "self signed")
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    chain = _write(tmp_path, "self.pem", keys._pem(cert))
    keyf = _write(tmp_path, "self.key", keys._key_pem(key, None))
    with pytest.raises(KeyStoreError, match="self-signed"):
        keys.import_keys(chain, keyf)


def test_import_wrong_key_passphrase(dhs_home, tmp_path):
    ca_key, ca = _ca(tmp_path)
    leaf_key, leaf = keys._make_leaf(ca_key, ca, "Org")
    chain = _write(tmp_path, "chain.pem", keys._pem(leaf) + keys._pem(ca))
    key = _write(tmp_path, "leaf.key", keys._key_pem(leaf_key, "right"))
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        keys.import_keys(chain, key, key_passphrase="wrong")


def test_anchor_is_ca(dhs_home):
    paths = keys.init_keys()
    anchor = keys.trust_anchor_pem()
    assert anchor == paths.ca_cert.read_bytes()
    cert = x509.load_pem_x509_certificate(anchor)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_anchor_missing(dhs_home):
    with pytest.raises(KeyStoreError):
        keys.trust_anchor_pem()
