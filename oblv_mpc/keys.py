"""Party identity keys: generate, save, load, share as base64, sign and verify.

A party's identity key signs everything it sends to the enclave; the manifest lists the public
halves. Files are DER: PKCS#8 for private keys (written with mode 0600, optionally encrypted with
a passphrase) and SubjectPublicKeyInfo for public keys. Loading also takes PEM, and RSA PKCS#1
DER as Oblivious's ``oblv keygen`` writes it (``MIIBCgKCAQEA...``), so existing keys work
unchanged. Key material never appears in messages: keys are named by file or fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from oblv_mpc.errors import KeyFileError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_MAX_KEY_FILE = 64 * 1024
_MIN_RSA_BITS = 2048


class KeyType(enum.StrEnum):
    """The identity key types a party may use."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


def generate(key_type: KeyType = KeyType.ED25519) -> PrivateKey:
    """A new private key of ``key_type``."""
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if key_type is KeyType.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    bits = 2048 if key_type is KeyType.RSA_2048 else 3072
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def spki_der(key: PublicKey) -> bytes:
    """The SubjectPublicKeyInfo DER of ``key``: the one canonical form of a public key."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def to_base64(key: PublicKey) -> str:
    """The one-line base64 form a party shares (SPKI DER)."""
    return base64.b64encode(spki_der(key)).decode("ascii")


def fingerprint(key: PublicKey) -> str:
    """SHA-256 of the key's SPKI DER, hex."""
    return hashlib.sha256(spki_der(key)).hexdigest()


def short_fingerprint(key: PublicKey) -> str:
    """The first 16 hex digits of :func:`fingerprint`, for tables and messages."""
    return fingerprint(key)[:16]


def describe(key: PublicKey | PrivateKey) -> str:
    """The key's type as this tool names it, e.g. ``ed25519`` or ``rsa-2048``."""
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(key.curve.name, key.curve.name)
    return f"rsa-{key.key_size}"


def size_bits(key: PublicKey) -> int:
    """The key's size in bits: the RSA modulus, the curve's field, or 255 for Ed25519."""
    if isinstance(key, rsa.RSAPublicKey):
        return int(key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return int(key.curve.key_size)
    return 255


def _check_supported(key: object, source: str) -> None:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if key.curve.name in ("secp256r1", "secp384r1"):
            return
        raise KeyFileError(
            f"{source}: ECDSA curve {key.curve.name} is not supported",
            hint="use ed25519 (the default), ecdsa-p256, ecdsa-p384 or RSA",
        )
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        if key.key_size >= _MIN_RSA_BITS:
            return
        raise KeyFileError(
            f"{source}: RSA key of {key.key_size} bits is too small (at least {_MIN_RSA_BITS})",
            hint="generate a new key with `mpc keygen NAME`",
        )
    raise KeyFileError(
        f"{source}: unsupported key type {type(key).__name__}",
        hint="use ed25519 (the default), ecdsa-p256, ecdsa-p384 or RSA",
    )


def _pem_or_der(data: bytes) -> tuple[bool, bytes]:
    """Tell PEM from DER. Only PEM is stripped: DER may end in a byte that looks like a space."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        return True, stripped
    return False, data


def public_key_from_bytes(data: bytes, *, source: str = "public key") -> PublicKey:
    """Parse a public key: SPKI or RSA PKCS#1, DER or PEM."""
    is_pem, data = _pem_or_der(data)
    try:
        load = serialization.load_pem_public_key if is_pem else serialization.load_der_public_key
        key = load(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{source}: not a public key (expected SubjectPublicKeyInfo or RSA PKCS#1, DER or PEM)",
            hint="pass the *_public.der file or the base64 line that `mpc keygen` printed",
        ) from None
    _check_supported(key, source)
    return key  # type: ignore[return-value]


def public_key_from_base64(text: str, *, source: str = "public key") -> PublicKey:
    """Parse the one-line base64 form (SPKI, or oblv's PKCS#1 ``MIIBCgKCAQEA...``)."""
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(
            f"{source}: not valid base64",
            hint="copy the whole base64 line that `mpc keygen` printed",
        ) from None
    return public_key_from_bytes(der, source=source)


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > _MAX_KEY_FILE:
            raise KeyFileError(f"{path}: {size} bytes is too large for a key file")
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no such file", hint="check the path, or make a key with `mpc keygen NAME`"
        ) from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except PermissionError:
        raise KeyFileError(f"{path}: permission denied") from None


def load_public_key(spec: str | Path) -> PublicKey:
    """A public key from a file path, or from its base64 form when no such file exists."""
    if isinstance(spec, Path) or is_existing_file(spec):
        return public_key_from_bytes(_read_bounded(Path(spec)), source=str(spec))
    if _looks_like_a_path(str(spec)):
        raise KeyFileError(
            f"{spec}: no such file",
            hint="give the path of the party's public key file (NAME_public.der), or its base64 line",
        )
    return public_key_from_base64(str(spec), source="public key given as base64")


def _looks_like_a_path(spec: str) -> bool:
    """A file name rather than base64: a dot-suffix or a path separator base64 never has."""
    return spec.endswith((".der", ".pem", ".pub", ".key")) or ("/" in spec and "." in spec.rsplit("/", 1)[-1])


def is_existing_file(spec: str) -> bool:
    """Whether ``spec`` names an existing file (a base64 key can look like a long path)."""
    try:
        return Path(spec).is_file()
    except OSError:  # e.g. a name too long for the file system: not a file, then
        return False


def _check_permissions(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is readable by others (mode {mode:04o})",
            hint=f"restrict it to its owner: chmod 600 {path}",
        )


def is_encrypted(path: Path) -> bool:
    """Whether the private key file at ``path`` needs a passphrase."""
    data = _read_bounded(path)
    is_pem, data = _pem_or_der(data)
    try:
        if is_pem:
            serialization.load_pem_private_key(data, password=None)
        else:
            serialization.load_der_private_key(data, password=None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def _is_public_key(data: bytes) -> bool:
    """Whether ``data`` is a public key (SPKI or RSA PKCS#1): what a party passes by mistake."""
    try:
        public_key_from_bytes(data, source="")
    except KeyFileError:
        return False
    return True


def load_private_key(path: Path, *, passphrase: bytes | None = None) -> PrivateKey:
    """Load a private key file (PKCS#8 or RSA PKCS#1, DER or PEM), refusing unsafe modes."""
    raw = _read_bounded(path)
    if _is_public_key(raw):
        # Checked before the file mode: a public key may be world-readable, and "chmod 600"
        # would be the wrong advice.
        raise KeyFileError(
            f"{path}: this is a public key; pass your private key",
            hint="the file `mpc keygen NAME` wrote as NAME_private.der",
        )
    is_pem, data = _pem_or_der(raw)
    _check_permissions(path)
    try:
        if is_pem:
            key = serialization.load_pem_private_key(data, password=passphrase)
        else:
            key = serialization.load_der_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise KeyFileError(
                f"{path}: private key is encrypted and no passphrase was given",
                hint="give the passphrase (prompted, or MPC_KEY_PASSPHRASE)",
            ) from None
        raise KeyFileError(f"{path}: private key is not encrypted, but a passphrase was given") from None
    except (ValueError, UnsupportedAlgorithm):
        # Wrong passphrases and malformed files look alike to OpenSSL; say both.
        raise KeyFileError(
            f"{path}: not a readable private key (malformed, or the passphrase is wrong)",
            hint="pass the *_private.der file that `mpc keygen` wrote",
        ) from None
    _check_supported(key, str(path))
    return key  # type: ignore[return-value]


def _write_new(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte; replace only with ``force``."""
    if path.exists() and not force:
        raise KeyFileError(
            f"{path}: already exists; refusing to overwrite a key",
            hint="choose another name or --out folder, or pass --force to replace it",
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class KeyPairFiles:
    """Where :func:`save_key_pair` wrote a key pair."""

    private: Path
    public: Path


def save_key_pair(
    key: PrivateKey, directory: Path, name: str, *, passphrase: bytes | None = None, force: bool = False
) -> KeyPairFiles:
    """Write ``NAME_private.der`` (PKCS#8, 0600) and ``NAME_public.der`` (SPKI) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = KeyPairFiles(directory / f"{name}_private.der", directory / f"{name}_public.der")
    for existing in (files.private, files.public):
        if existing.exists() and not force:
            raise KeyFileError(
                f"{existing}: already exists; refusing to overwrite a key",
                hint="choose another name or --out folder, or pass --force to replace it",
            )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption)
    _write_new(files.private, private_der, mode=0o600, force=force)
    _write_new(files.public, spki_der(key.public_key()), mode=0o644, force=force)
    return files


def sign(key: PrivateKey, message: bytes) -> bytes:
    """Sign ``message``: Ed25519, ECDSA with SHA-256/384 by curve, RSA-PSS with SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(_ec_hash(key.curve)))
    return key.sign(message, _pss(), hashes.SHA256())


def verify(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature over ``message`` (see :func:`sign`)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(_ec_hash(key.curve)))
        else:
            key.verify(signature, message, _pss(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _ec_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    return hashes.SHA384() if curve.name == "secp384r1" else hashes.SHA256()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
