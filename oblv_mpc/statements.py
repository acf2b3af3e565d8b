"""The enclave's signed statements about a party's requests, as the client reads them.

A receipt (the answer to an upload's final chunk) and a result (a computation's release) are
statements signed by the enclave's attested signing key; the client checks the signature
(:func:`oblv_mpc.protocol.envelope.verify_statement`), then, here, that each says what this
party asked for: its own table, the bytes it sent, a commitment it can open; the computation it
asked for, in this session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oblv_mpc.errors import ProtocolError
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol._fields import Fields, malformed
from oblv_mpc.protocol.commitment import commit
from oblv_mpc.protocol.messages import Digest

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Receipt:
    """The enclave's signed acknowledgement of an upload."""

    party: str
    table: str
    rows: int
    size: int
    sha256: str
    statement: dict[str, Any]
    signed: dict[str, bytes]
    commitment: str = ""  # what the other parties see of this input
    salt: str = ""  # reveal it with the SHA-256 to prove what was used (oblv_mpc.protocol.commitment)
    replaced: bool = False  # this upload replaced an earlier one of the same table


@dataclass(frozen=True)
class StreamInfo:
    """What a result statement says of a streamed result: its chunks' SHA-256 and size, how many
    chunks, how many rows (docs/protocol.md, "Results")."""

    sha256: str
    size: int
    chunks: int
    rows: int


@dataclass(frozen=True)
class Result:
    """A computation's result, with the enclave's signature over it.

    A large result is streamed (``stream`` set): its ``rows`` are those fetched into memory
    (``EnclaveClient.result``), or none when it was written straight to a file.
    """

    computation: str
    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    suppressed_groups: int | None  # None: the owners' rules do not let the result say
    rules: dict[str, Any]
    inputs: dict[str, str]
    statement: dict[str, Any]
    signed: dict[str, bytes]
    stream: StreamInfo | None = None

    @property
    def row_count(self) -> int:
        """How many rows the result has, fetched or not."""
        return self.stream.rows if self.stream is not None else len(self.rows)

    # For notebooks: the rows as typed tables (oblv_mpc.result_frames says how types map).
    def to_arrow(self) -> pa.Table:
        """The rows as a typed Apache Arrow table."""
        from oblv_mpc.result_frames import to_arrow

        return to_arrow(self.columns, self.rows)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
        from oblv_mpc.result_frames import to_pandas

        return to_pandas(self.columns, self.rows)

    def to_polars(self) -> Any:
        """The rows as a polars DataFrame (needs polars: ``pip install polars``)."""
        from oblv_mpc.result_frames import to_polars

        return to_polars(self.columns, self.rows)


def read_receipt(
    statement: dict[str, Any],
    signed: dict[str, bytes],
    manifest: Manifest,
    party: str,
    table: str,
    sent: Digest,
    *,
    rows: int | None = None,
) -> Receipt:
    """The receipt for ``party``'s upload of ``table``, if the verified statement is that receipt.

    ``rows``: how many rows the client sent, when it knows (an Arrow upload); the receipt must say so.
    """
    expected: dict[str, Any] = {"party": party, "table": table, "sha256": sent.sha256, "bytes": sent.size}
    if rows is not None:
        expected["rows"] = rows
    for name, value in expected.items():
        if statement.get(name) != value:
            raise ProtocolError(f"the receipt's {name} is {statement.get(name)!r}, expected {value!r}")
    salt = statement.get("salt")
    try:
        committed = commit(
            session=manifest.session,
            manifest_sha256=manifest.hash,
            table=table,
            salt=bytes.fromhex(salt) if isinstance(salt, str) else b"",
            sha256=sent.sha256,
        )
    except ValueError:
        raise ProtocolError("the receipt carries no valid commitment salt") from None
    if statement.get("commitment") != committed:
        raise ProtocolError("the receipt's commitment does not match its salt and your data's SHA-256")
    return Receipt(
        party,
        table,
        int(statement["rows"]),
        sent.size,
        sent.sha256,
        statement,
        signed,
        commitment=committed,
        salt=str(salt),
        replaced=statement.get("replaced") is True,
    )


def read_result(statement: dict[str, Any], signed: dict[str, bytes], manifest: Manifest, computation: str) -> Result:
    """The result of ``computation`` in this session, if the verified statement is that result."""
    if statement.get("computation") != computation or statement.get("manifest") != manifest.hash:
        raise ProtocolError("the result is for another computation or session")
    suppressed = statement.get("suppressed_groups")
    stream = _stream_info(statement.get("stream"))
    return Result(
        computation=computation,
        columns=[(str(n), str(t)) for n, t in statement["columns"]],
        rows=statement["rows"] if stream is None else [],
        suppressed_groups=None if suppressed is None else int(suppressed),
        rules=dict(statement["rules"]),
        inputs=dict(statement["inputs"]),
        statement=statement,
        signed=signed,
        stream=stream,
    )


def _stream_info(value: Any) -> StreamInfo | None:
    """The statement's ``stream``, checked: an Arrow stream's digest, size, chunk count and rows."""
    if value is None:
        return None
    fields = Fields(value, "the result's stream", malformed)
    if fields.text("format") != "arrow":
        raise ProtocolError("the result is streamed in a format this client does not read")
    sha256 = fields.text("sha256")
    if len(sha256) != 64:
        raise ProtocolError("the result's stream digest is not a SHA-256")
    return StreamInfo(sha256, fields.count("bytes"), fields.count("chunks"), fields.count("rows"))
