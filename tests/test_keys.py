"""Party keys: every type round-trips; oblv's PKCS#1 keys load; unsafe files are refused."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from oblv_mpc import keys
from oblv_mpc.errors import KeyFileError


@pytest.mark.parametrize("key_type", list(keys.KeyType))
def test_every_type_round_trips_through_files_and_base64(tmp_path: Path, key_type: keys.KeyType) -> None:
    private = keys.generate(key_type)
    files = keys.save_key_pair(private, tmp_path, "alice")
    assert files.private.name == "alice_private.der"
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    loaded = keys.load_private_key(files.private)
    assert keys.fingerprint(loaded.public_key()) == keys.fingerprint(private.public_key())
    public = keys.load_public_key(files.public)
    assert keys.spki_der(public) == files.public.read_bytes()
    from_b64 = keys.public_key_from_base64(keys.to_base64(public))
    assert keys.fingerprint(from_b64) == keys.fingerprint(public)
    assert keys.describe(public) == key_type.value
    # the private file is PKCS#8 DER, the public SPKI DER
    serialization.load_der_private_key(files.private.read_bytes(), None)
    assert files.private.read_bytes()[:1] == b"\x30"
    signature = keys.sign(loaded, b"message")
    assert keys.verify(public, signature, b"message")
    assert not keys.verify(public, signature, b"messagf")


def test_oblv_style_pkcs1_rsa_keys_load_unchanged(tmp_path: Path) -> None:
    # `oblv keygen` writes RSA-2048 PKCS#1 DER; its public key's base64 starts MIIBCgKCAQEA.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1_public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    shared = base64.b64encode(pkcs1_public).decode()
    assert shared.startswith("MIIBCgKCAQEA")
    public = keys.load_public_key(shared)
    assert keys.fingerprint(public) == keys.fingerprint(private.public_key())
    private_file = tmp_path / "alice_private.der"
    private_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    private_file.chmod(0o600)
    public_file = tmp_path / "alice_public.der"
    public_file.write_bytes(pkcs1_public)
    assert keys.fingerprint(keys.load_private_key(private_file).public_key()) == keys.fingerprint(public)
    assert keys.fingerprint(keys.load_public_key(public_file)) == keys.fingerprint(public)


def test_pem_keys_load(tmp_path: Path) -> None:
    private = keys.generate(keys.KeyType.ECDSA_P256)
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pem.chmod(0o600)
    pub = tmp_path / "k.pub.pem"
    pub.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert keys.fingerprint(keys.load_private_key(pem).public_key()) == keys.fingerprint(keys.load_public_key(pub))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    files = keys.save_key_pair(keys.generate(), tmp_path, "alice")
    os.chmod(files.private, mode)
    with pytest.raises(KeyFileError, match="readable by others") as info:
        keys.load_private_key(files.private)
    assert f"chmod 600 {files.private}" in (info.value.hint or "")


def test_overwriting_is_refused_without_force(tmp_path: Path) -> None:
    first = keys.save_key_pair(keys.generate(), tmp_path, "alice")
    before = first.private.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        keys.save_key_pair(keys.generate(), tmp_path, "alice")
    assert first.private.read_bytes() == before
    keys.save_key_pair(keys.generate(), tmp_path, "alice", force=True)
    assert first.private.read_bytes() != before
    assert stat.S_IMODE(first.private.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice_private.der", "alice_public.der"]


def test_encrypted_private_key_needs_its_passphrase(tmp_path: Path) -> None:
    private = keys.generate()
    files = keys.save_key_pair(private, tmp_path, "alice", passphrase=b"correct horse")
    assert keys.is_encrypted(files.private)
    with pytest.raises(KeyFileError, match="encrypted and no passphrase"):
        keys.load_private_key(files.private)
    with pytest.raises(KeyFileError, match="passphrase is wrong"):
        keys.load_private_key(files.private, passphrase=b"wrong")
    loaded = keys.load_private_key(files.private, passphrase=b"correct horse")
    assert keys.fingerprint(loaded.public_key()) == keys.fingerprint(private.public_key())


def test_weak_and_unsupported_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(KeyFileError, match="1024 bits is too small"):
        keys.public_key_from_bytes(keys.spki_der(small))
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(KeyFileError, match="secp256k1 is not supported"):
        keys.public_key_from_bytes(keys.spki_der(k1))


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), ""])
def test_garbage_public_keys_are_refused_clearly(text: str) -> None:
    with pytest.raises(KeyFileError) as info:
        keys.public_key_from_base64(text)
    assert "base64" in info.value.message or "not a public key" in info.value.message


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such file") as info:
        keys.load_private_key(tmp_path / "nobody_private.der")
    assert "mpc keygen" in (info.value.hint or "")


def test_errors_never_carry_key_material(tmp_path: Path) -> None:
    files = keys.save_key_pair(keys.generate(), tmp_path, "alice", passphrase=b"pw")
    secret = files.private.read_bytes()
    with pytest.raises(KeyFileError) as info:
        keys.load_private_key(files.private, passphrase=b"nope")
    text = info.value.diagnostics()
    assert secret.hex()[:16] not in text
    assert base64.b64encode(secret).decode()[:16] not in text
    # the underlying OpenSSL error, which could quote input, is not chained
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_der_ending_in_a_whitespace_byte_loads(tmp_path: Path) -> None:
    # Regression: stripping "whitespace" from binary DER cut keys whose last byte is 0x0a or 0x20.
    for _ in range(400):
        private = keys.generate(keys.KeyType.ECDSA_P256)
        der = keys.spki_der(private.public_key())
        if der[-1:] in (b"\n", b" ", b"\t", b"\r", b"\x0b", b"\x0c"):
            break
    else:
        pytest.skip("no key ending in a whitespace byte came up")
    assert keys.fingerprint(keys.public_key_from_bytes(der)) == keys.fingerprint(private.public_key())
    files = keys.save_key_pair(private, tmp_path, "w")
    assert keys.fingerprint(keys.load_public_key(files.public)) == keys.fingerprint(private.public_key())
