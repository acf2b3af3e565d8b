"""``mpc keygen`` and ``mpc key show``: party identity keys."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from oblv_mpc import keys, manifest
from oblv_mpc.cli._console import err, out, plain, print_json
from oblv_mpc.cli._secrets import load_private_key, new_passphrase
from oblv_mpc.errors import KeyFileError, UsageError

key_app = typer.Typer(help="Inspect party keys.", no_args_is_help=True)


def keygen(
    name: str = typer.Argument(..., help="The party's name; files are NAME_private.der and NAME_public.der."),
    out_dir: Path = typer.Option(Path("."), "--out", metavar="DIR", help="Folder to write the key files in."),
    key_type: keys.KeyType = typer.Option(keys.KeyType.ED25519, "--type", help="Key type."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files of that name."),
    encrypt: bool = typer.Option(
        False, "--encrypt", help="Encrypt the private key with a passphrase (asked, or MPC_KEY_PASSPHRASE)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make a party's identity key pair and print the base64 public key to share.

    Writes NAME_private.der (PKCS#8 DER, mode 0600) and NAME_public.der (SubjectPublicKeyInfo DER).
    """
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"{name!r} is not usable as a file name", hint="use a plain name such as alice")
    problem = manifest.party_name_problem(name)
    if problem is not None:  # refused now, not later by every manifest that names the party
        raise UsageError(f"{name!r} cannot be a party's name: {problem}", hint="use a name such as alice or acme_eu")
    passphrase = new_passphrase() if encrypt else None
    private = keys.generate(key_type)
    files = keys.save_key_pair(private, out_dir, name, passphrase=passphrase, force=force)
    public = private.public_key()
    if as_json:
        print_json(
            {
                "private_key_file": str(files.private),
                "public_key_file": str(files.public),
                "type": keys.describe(public),
                "public_key": keys.to_base64(public),
                "fingerprint": keys.fingerprint(public),
            }
        )
        return
    err.print(f"wrote {files.private} (private, mode 0600{', encrypted' if passphrase else ''}; keep it secret)")
    err.print(f"wrote {files.public}")
    err.print(f"type {keys.describe(public)}, fingerprint {keys.fingerprint(public)}")
    err.print("share this public key with whoever writes the session manifest:")
    out.print(keys.to_base64(public), soft_wrap=True)


@key_app.command("show")
def show(
    key: str = typer.Argument(..., help="A key file (public or private; DER or PEM) or a base64 public key."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Print a key's type, size, fingerprint and base64 public form (never private material)."""
    is_file = keys.is_existing_file(key)
    kind = "public"
    try:
        public = keys.load_public_key(key)
    except KeyFileError:
        if not is_file:
            raise
        public = load_private_key(Path(key)).public_key()
        kind = "private (only its public half is shown)"
    info = {
        "source": key if is_file else "base64",
        "kind": kind,
        "type": keys.describe(public),
        "size_bits": keys.size_bits(public),
        "fingerprint": keys.fingerprint(public),
        "public_key": keys.to_base64(public),
    }
    if as_json:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    for label, value in info.items():
        table.add_row(label.replace("_", " "), plain(value))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``keygen`` and the ``key`` group to the root app."""
    app.command("keygen")(keygen)
    app.add_typer(key_app, name="key")
