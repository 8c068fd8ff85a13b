"""A GitHub App's key pair for tests: the private key written as GitHub hands it out (PEM)."""

from __future__ import annotations

import functools
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

APP_ID = 4242
INSTALLATION_ID = 77


@functools.cache
def app_key() -> RSAPrivateKey:
    """One RSA key per test process: generating one takes tens of milliseconds."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_app_key(directory: Path, name: str = "github-app.pem") -> Path:
    """The App's private key as `-----BEGIN RSA PRIVATE KEY-----` PEM, readable by its owner only."""
    path = directory / name
    path.write_bytes(app_key().private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def write_ec_key(directory: Path) -> Path:
    """A valid PEM private key that is not RSA (GitHub Apps sign RS256 only)."""
    path = directory / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path
