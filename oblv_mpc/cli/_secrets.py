"""Passphrases for private keys: from MPC_KEY_PASSPHRASE or a hidden prompt, never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from oblv_mpc import keys
from oblv_mpc.errors import KeyFileError

PASSPHRASE_ENV = "MPC_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def new_passphrase() -> bytes:
    """A passphrase for a new key: the environment, or asked twice."""
    if PASSPHRASE_ENV in os.environ:
        value = os.environ[PASSPHRASE_ENV]
    else:
        value = typer.prompt("Passphrase for the new private key", hide_input=True, confirmation_prompt=True)
    if not value:
        raise KeyFileError("an empty passphrase does not protect anything", hint="give a passphrase, or drop --encrypt")
    return value.encode("utf-8")


def load_private_key(path: Path) -> keys.PrivateKey:
    """Load a private key, asking for its passphrase only if it is encrypted."""
    passphrase = None
    if keys.is_encrypted(path):
        value = os.environ.get(PASSPHRASE_ENV)
        if value is None:
            value = typer.prompt(f"Passphrase for {path}", hide_input=True, err=True)
        passphrase = value.encode("utf-8")
    return keys.load_private_key(path, passphrase=passphrase)
