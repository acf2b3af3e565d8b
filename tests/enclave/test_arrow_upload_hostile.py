"""A hostile party's Arrow IPC uploads, sealed by hand and sent to the real app.

The client's own check is bypassed: each test forges the stream (:mod:`tests.arrow_forge`) and
sends its pieces as ``format="arrow"`` chunks with the client's ``send_stream``, one piece per
chunk, as a misbehaving client would. The enclave must refuse each with a clear reason, keep
nothing of it (the table stays missing, or an earlier upload stays in place), and go on serving
the other parties.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.errors import EnclaveRefused, InputDataError
from oblv_mpc.protocol.messages import ARROW, Digest, Frame, UploadChunk
from tests.arrow_forge import (
    BATCH_COMPRESSION,
    BATCH_LENGTH,
    EMPLOYEES,
    END,
    MESSAGE_BODY_LENGTH,
    MESSAGE_VERSION,
    edit,
    employees,
    schema_dag,
    write,
)
from tests.enclave.conftest import World, make_world
from tests.raw_bodies import Raw

TABLE = "alice.employees"


def send(world: World, pieces: list[bytes], party: str = "alice") -> Any:
    """Send ``pieces`` as one Arrow upload, one piece per sealed chunk; the enclave's answer to the last."""
    table = f"{party}.employees"
    sent = world.client(party).send_stream(
        lambda frame, digest: UploadChunk(frame, table, digest, ARROW), iter(pieces), whole=True
    )
    return sent.answer


def refused(world: World, pieces: list[bytes], *says: str) -> str:
    """Send ``pieces``: the enclave must refuse them as invalid data, saying each of ``says``,
    keep nothing, and still serve another party."""
    with pytest.raises(InputDataError) as info:
        send(world, pieces)
    reason = info.value.message
    for words in says:
        assert words in reason, reason
    assert reason.startswith(f"{TABLE}: ")
    session = world.app.state.enclave.session
    assert session.uploads_in_progress() == 0
    inputs = world.client("bob").status()["inputs"]  # another party is still served
    assert not inputs[TABLE]["submitted"]
    return reason


def one(batch: pa.RecordBatch, edit_batch: Callable[[Any], None] | None = None, **options: Any) -> list[bytes]:
    """A stream of one batch, the batch's message edited by ``edit_batch``, in one piece."""
    schema, message, end = write(EMPLOYEES, [batch], **options)
    if edit_batch is not None:
        forged = edit(message)
        edit_batch(forged)
        message = forged.bytes()
    return [schema + message + end]


# -- the schema: exactly the manifest's ----------------------------------------------------------


def _stream_of(columns: dict[str, pa.Array]) -> list[bytes]:
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    return [b"".join(write(batch.schema, [batch]))]


IDS, LEVELS, SALARIES = pa.array(["a", "b", "c"]), pa.array(["A", "B", "C"]), pa.array([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        ({"id": IDS, "level": LEVELS, "salary": SALARIES, "bonus": SALARIES}, "unexpected column bonus"),
        ({"id": IDS, "salary": SALARIES}, "missing column level"),
        ({"id": IDS, "grade": LEVELS, "salary": SALARIES}, "missing column level; unexpected column grade"),
        ({"id": IDS, "level": LEVELS, "salary": pa.array([1, 2, 3])}, "column salary is int64, expected double"),
        ({"id": pa.array([1, 2, 3]), "level": LEVELS, "salary": SALARIES}, "column id is int64, expected string"),
        ({"id": IDS.cast(pa.large_string()), "level": LEVELS, "salary": SALARIES}, "column id is large_string"),
        ({"id": IDS, "level": LEVELS.dictionary_encode(), "salary": SALARIES}, "column level is dictionary<"),
        ({"level": LEVELS, "id": IDS, "salary": SALARIES}, "columns in another order, expected id, level, salary"),
    ],
    ids=["extra", "missing", "renamed", "int64_for_float", "int64_for_text", "large_string", "dictionary", "order"],
)
def test_a_stream_whose_schema_is_not_the_manifests_is_refused_naming_the_column(
    world: World, columns: dict[str, pa.Array], says: str
) -> None:
    refused(world, _stream_of(columns), "the Arrow stream's columns do not match the manifest", says)


def test_a_refused_reupload_leaves_the_earlier_upload_in_place(world: World) -> None:
    first = send(world, [b"".join(write(EMPLOYEES, [employees(10)]))])["receipt"]
    before = world.client("alice").status()["inputs"][TABLE]
    with pytest.raises(InputDataError, match="column salary is int64"):
        send(world, _stream_of({"id": IDS, "level": LEVELS, "salary": pa.array([1, 2, 3])}))
    after = world.client("alice").status()["inputs"][TABLE]
    assert after == before and after["rows"] == 10 and first is not None
    events = [e.kind for e in world.client("bob").transcript()]
    assert events.count("upload") == 1 and events.count("upload_aborted") == 1


# -- the schema message: its size and its FlatBuffer checked before Arrow reads it ---------------


@pytest.mark.parametrize(
    ("fields", "name_bytes", "says"),
    [
        (4096, 16384, "a schema message of 32,"),  # 64 MiB of names for Arrow to copy, from 33 KB: +130 MiB
        (40, 200, "field 2 of the schema is one the schema reached before"),  # under the size cap
    ],
    ids=["33kb_for_64mib", "small"],
)
def test_an_arrow_schema_naming_one_field_many_times_is_refused_before_arrow_reads_it(
    world: World, fields: int, name_bytes: int, says: str
) -> None:
    """A ``Schema`` whose ``fields`` point N times at one ``Field`` with a long name: Arrow's
    verifier passes it, and Arrow copies the name N times (tests/test_arrow_ingest_memory.py
    measures what that cost, and sends the 900 KB one that aborted the enclave)."""
    bomb = schema_dag(fields, name_bytes, share="field")
    assert len(bomb) < 1_000_000  # within the table's max_bytes
    refused(world, [bomb + END], "chunk 1: not a valid Arrow IPC stream", says)


@pytest.mark.parametrize(
    ("share", "says"),
    [
        ("name", "the name of field 2 of the schema is a string the schema reached before"),
        ("overlap", "the schema's names take more bytes than its message holds"),
    ],
)
def test_an_arrow_schema_whose_fields_share_one_name_is_refused_before_arrow_reads_it(
    world: World, share: str, says: str
) -> None:
    """Fields of their own, all naming one string, or names that overlap: copied once per field too."""
    refused(world, [schema_dag(6, 500, share=share) + END], "chunk 1: not a valid Arrow IPC stream", says)


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (EMPLOYEES.with_metadata({"k": "v"}), "the schema carries custom metadata"),
        (EMPLOYEES.set(1, EMPLOYEES.field(1).with_metadata({"k": "v"})), "field 2 of the schema carries custom"),
        (EMPLOYEES.set(2, pa.field("salary", pa.struct([("a", pa.float64())]))), "field 3 of the schema has child"),
        (pa.schema([(f"c{i}", pa.float64()) for i in range(40)]), "more than the 1,"),
    ],
    ids=["schema_metadata", "field_metadata", "nested", "larger_than_the_manifests_columns_need"],
)
def test_an_arrow_schema_with_more_than_the_manifests_columns_is_refused_before_arrow_reads_it(
    world: World, schema: pa.Schema, says: str
) -> None:
    refused(world, [schema.serialize().to_pybytes() + END], "chunk 1: not a valid Arrow IPC stream", says)


# -- corrupt record batches: Arrow's full validation, and the metadata read before it ------------


def _offset_out_of_range(message: Any) -> None:
    offsets, _ = message.buffers()[1]  # id: validity, offsets, data
    struct.pack_into("<i", message.body, offsets + 4 * 10, 1_000_000)


def _not_utf8(message: Any) -> None:
    data, _ = message.buffers()[2]
    message.body[data : data + 2] = b"\xff\xfe"


def _longer_than_its_buffers(message: Any) -> None:
    message.meta.set(message.batch, BATCH_LENGTH, "<q", 1000)
    message.set_node(0, 1000, 0)


@pytest.mark.parametrize(
    ("forge", "says"),
    [
        (_offset_out_of_range, "offset for slot 10 out of bounds"),
        (_not_utf8, "Invalid UTF8"),
        (_longer_than_its_buffers, "an invalid record batch"),
        (lambda m: m.meta.set(m.batch, BATCH_LENGTH, "<q", -1), "a record batch declares a negative length"),
        (lambda m: m.set_buffer(2, 0, 1 << 40), "a record batch's buffer lies outside its body"),
        (lambda m: m.set_node(0, 10, 11), "an invalid record batch"),
        (lambda m: m.meta.set(m.meta.root, MESSAGE_BODY_LENGTH, "<q", -8), "negative body length"),
        (lambda m: m.meta.set(m.meta.root, MESSAGE_BODY_LENGTH, "<q", 1 << 60), "a body the chunk does not hold"),
        (lambda m: m.meta.set(m.meta.root, 1, "<B", 4), "the stream holds a tensor"),
    ],
    ids=["offsets", "utf8", "length", "negative_length", "buffer", "null_count", "body", "huge_body", "tensor"],
)
def test_a_record_batch_with_corrupt_buffers_or_metadata_is_refused(
    world: World, forge: Callable[[Any], None], says: str
) -> None:
    refused(world, one(employees(10), forge), "chunk 1: not a valid Arrow IPC stream", says)


def test_a_null_marked_valid_by_a_lying_null_count_is_an_empty_key_and_refused(world: World) -> None:
    batch = pa.record_batch([pa.array(["a", None, "c"]), LEVELS, SALARIES], schema=EMPLOYEES)
    refused(world, one(batch, lambda m: m.set_node(0, 3, 0)), "row 2, column id: a key column may not be empty")


def _framing() -> dict[str, tuple[list[bytes], str]]:
    schema, batch, end = write(EMPLOYEES, [employees(10)])
    huge = bytearray(batch)
    struct.pack_into("<i", huge, 4, 0x7FFFFFF8)  # metadata of 2 GiB, in a chunk of a few hundred bytes
    garbage = bytearray(batch)
    length = struct.unpack_from("<i", batch, 4)[0]
    garbage[8 : 8 + length] = hashlib.sha256(b"flatbuffer garbage").digest() * (length // 32) + b"\0" * (length % 32)
    dictionary_schema = pa.schema([("level", pa.dictionary(pa.int32(), pa.string()))])
    dictionary = write(dictionary_schema, [pa.record_batch([LEVELS.dictionary_encode()], schema=dictionary_schema)])[1]
    return {
        "truncated": ([schema + batch[:-16]], "a body the chunk does not hold (whole messages only)"),
        "metadata_length_lies": ([schema + bytes(huge) + end], "a metadata length the chunk does not hold"),
        "flatbuffer_garbage": ([schema + bytes(garbage) + end], "not a valid Arrow IPC stream: the message metadata"),
        "dictionary_batch": ([schema + dictionary + batch + end], "the stream holds a dictionary batch"),
        "second_schema": ([schema + batch + schema + end], "the stream holds a schema"),
        "bytes_after_the_end": ([schema + batch + end + b"\0" * 8], "8 bytes after the end-of-stream marker"),
        "a_batch_after_the_end": ([schema + batch + end, batch], "data after the end of the Arrow stream"),
        "no_end_marker": ([schema + batch], "stops before its end-of-stream marker"),
        "no_continuation_marker": ([schema + batch[4:] + end], "no Arrow IPC message starts at byte"),
        "schema_only": ([schema + end], "no rows"),
        "batch_first": ([batch + end], "the stream starts with a record batch, not its schema"),
    }


@pytest.mark.parametrize("attack", list(_framing()))
def test_a_stream_that_breaks_the_ipc_framing_is_refused(world: World, attack: str) -> None:
    pieces, says = _framing()[attack]
    refused(world, pieces, says)


def test_a_chunk_that_splits_a_message_is_refused_at_once_not_buffered(world: World) -> None:
    schema, batch, end = write(EMPLOYEES, [employees(10)])
    upload = os.urandom(16)
    alice = world.client("alice")
    first = UploadChunk(Frame(upload, 0, False, schema + batch[:40]), TABLE, None, ARROW)
    with pytest.raises(InputDataError, match=r"chunk 1: .*metadata length the chunk does not hold"):
        alice.call(first)  # refused on the chunk itself: the enclave never waits for the rest of a message
    rest = UploadChunk(Frame(upload, 1, True, batch[40:] + end), TABLE, Digest("0" * 64, 1), ARROW)
    with pytest.raises(EnclaveRefused, match="not in progress"):
        alice.call(rest)
    assert not world.client("bob").status()["inputs"][TABLE]["submitted"]


def test_a_v4_message_that_asks_for_arrow_0_17_compression_cannot_slip_a_bomb_past_the_cap(world: World) -> None:
    """Arrow reads a V4 batch as compressed when the message's custom metadata says so, whatever
    its BodyCompression says: the enclave's cap on declared sizes would see it uncompressed."""

    def legacy(message: Any) -> None:
        message.meta.set(message.meta.root, MESSAGE_VERSION, "<h", 3)  # MetadataVersion.V4
        message.meta.drop(message.batch, BATCH_COMPRESSION)

    legacy_compression = {"ARROW:experimental_compression": "zstd"}
    pieces = one(_bomb(), legacy, compression="zstd", custom_metadata=legacy_compression)
    assert len(pieces[0]) < 200_000  # read as uncompressed, it would pass the cap; Arrow would inflate it to 4 MB
    refused(world, pieces, "metadata version 4, not 5")


# -- compression bombs: the declared size is capped before Arrow allocates it --------------------


def _bomb(rows: int = 4000, width: int = 1000) -> pa.RecordBatch:
    """Rows whose level is ``width`` zero bytes: a few KiB compressed, megabytes read."""
    level = pa.array(["\0" * width] * rows)
    return pa.record_batch([employees(rows).column(0), level, pa.array([0.0] * rows)], schema=EMPLOYEES)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_compressed_batch_that_decompresses_past_max_bytes_is_refused_before_it_is_read(
    world: World, codec: str
) -> None:
    pieces = one(_bomb(), compression=codec)
    assert len(pieces[0]) < 200_000  # sent: a fraction of the table's max_bytes (1,000,000)
    refused(world, pieces, "more than the manifest's max_bytes (1,000,000 bytes) once read")


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
@pytest.mark.parametrize(
    ("declared", "says"),
    [
        (1 << 40, "a record batch of 1,099,511,"),  # past Limits.max_batch_bytes, from the metadata alone
        (2_000_000, "more than the manifest's max_bytes"),
        (81, "an invalid record batch"),  # one byte more than it holds: Arrow's decompressor refuses
        (8, "an invalid record batch"),
        (-2, "a compressed buffer declares a negative size"),
    ],
)
def test_a_compressed_buffer_that_lies_about_its_size_is_refused(
    world: World, codec: str, declared: int, says: str
) -> None:
    def lie(message: Any) -> None:
        salary, _ = message.buffers()[-1]  # 10 doubles: 80 bytes once decompressed
        struct.pack_into("<q", message.body, salary, declared)

    refused(world, one(employees(10), lie, compression=codec), says)


# -- the manifest's limits and rules -------------------------------------------------------------


def test_more_rows_than_max_rows_in_one_chunk_of_small_batches_is_refused(world: World) -> None:
    batches = [employees(2000, start=i * 2000) for i in range(3)]  # each under max_rows (5000), together not
    refused(world, [b"".join(write(EMPLOYEES, batches))], "more than the manifest's max_rows (5,000 rows)")


def test_more_rows_than_max_rows_across_chunks_is_refused(world: World) -> None:
    schema, first, second, end = write(EMPLOYEES, [employees(3000), employees(2001, start=3000)])
    refused(world, [schema + first, second + end], "more than the manifest's max_rows (5,000 rows)")


def test_more_bytes_than_max_bytes_is_refused_before_they_are_read(world: World) -> None:
    wide = [employees(400, start=i * 400) for i in range(4)]
    padded = [b.set_column(1, "level", pa.array(["x" * 1000] * 400)) for b in wide]
    schema, *batches, end = write(EMPLOYEES, padded)  # 4 pieces of ~400 KB: the third passes 1,000,000
    refused(world, [schema + batches[0], *batches[1:-1], batches[-1] + end], "more than the manifest's max_bytes")


@pytest.mark.parametrize(("salary", "found"), [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf")])
def test_a_float_that_is_not_finite_is_refused(world: World, salary: float, found: str) -> None:
    batch = pa.record_batch([IDS, LEVELS, pa.array([1.0, 2.0, salary])], schema=EMPLOYEES)
    refused(world, one(batch), f"row 3, column salary: expected a finite float, found {found}")


@pytest.mark.parametrize(("key", "says"), [(None, "may not be empty"), ("", "may not be empty (an empty string)")])
def test_an_empty_key_is_refused(world: World, key: str | None, says: str) -> None:
    batch = pa.record_batch([pa.array(["a", key, "c"]), LEVELS, SALARIES], schema=EMPLOYEES)
    refused(world, one(batch), f"row 2, column id: a key column {says}")


def test_a_key_repeated_across_two_chunks_is_refused(world: World) -> None:
    schema, first, second, end = write(EMPLOYEES, [employees(50), employees(50, start=49)])
    refused(world, [schema + first, second + end], "key (id) is not unique: 'e49' appears 2 times")


def _float_keyed(all_keys: dict[str, keys.PrivateKey]) -> dict[str, Any]:
    """alice's and bob's tables keyed by a float, and a join of the two."""
    table = {"columns": {"id": "float", "label": "text"}, "key": ["id"], "protection": {"release": "unrestricted"}}
    joined = "SELECT a.label, count(*) AS n FROM alice.t AS a JOIN bob.t AS b ON a.id = b.id GROUP BY a.label"
    return {
        "version": 1,
        "session": "float-keys",
        "parties": {
            p: {"public_key": keys.to_base64(all_keys[p].public_key()), "roles": ["contributor", "reader"]}
            for p in ("alice", "bob")
        },
        "inputs": {"alice.t": table, "bob.t": table},
        "computations": {"joined": {"sql": joined, "readers": ["alice", "bob"]}},
    }


def test_a_float_key_sent_as_0_0_and_minus_0_0_is_refused_as_the_csv_upload_refuses_it(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """Arrow's group_by held 0.0 and -0.0 apart, DuckDB's join holds them equal: an Arrow upload
    passed the key check, and bob's row 0.0 joined both, counted in two groups (red team 13)."""
    world = make_world(tmp_path, all_keys, dev_ca, measurements, ("alice", "bob"), document=_float_keyed(all_keys))
    alice = world.client("alice")
    csv = tmp_path / "t.csv"
    csv.write_text("id,label\n0.0,A\n-0.0,B\n1.0,C\n")
    with pytest.raises(InputDataError) as by_csv:
        alice.upload("t", csv)
    rows = pa.table({"id": [0.0, -0.0, 1.0], "label": ["A", "B", "C"]})
    pq.write_table(rows, tmp_path / "t.parquet")
    with pytest.raises(InputDataError) as checked_here:  # the client's own check, before sending
        alice.upload("t", tmp_path / "t.parquet", format="arrow")
    stream = b"".join(write(rows.schema, rows.to_batches()))  # a client that skips its check
    with pytest.raises(InputDataError) as by_arrow:
        alice.send_stream(
            lambda frame, digest: UploadChunk(frame, "alice.t", digest, ARROW), iter([stream]), whole=True
        )
    assert by_csv.value.message == "alice.t: key (id) is not unique: 0.0 appears 2 times"
    assert checked_here.value.message == by_arrow.value.message == by_csv.value.message
    assert not world.client("bob").status()["inputs"]["alice.t"]["submitted"]


# -- receipts bind what was sent -----------------------------------------------------------------


def _raw_chunk(world: World, upload: bytes, index: int, data: bytes, digest: tuple[str, int] | None) -> Any:
    body: dict[str, Any] = {"upload": upload, "table": TABLE, "index": index, "final": digest is not None}
    body |= {"data": data, "format": ARROW}
    if digest is not None:
        body |= {"sha256": digest[0], "bytes": digest[1]}
    return world.client("alice").call(Raw("upload", body))


@pytest.mark.parametrize("tamper", ["sha256", "bytes"])
def test_a_final_chunk_whose_digest_is_not_the_bytes_sent_is_refused(world: World, tamper: str) -> None:
    schema, batch, end = write(EMPLOYEES, [employees(10)])
    whole = schema + batch + end
    sha256, size = hashlib.sha256(whole).hexdigest(), len(whole)
    if tamper == "sha256":
        sha256 = hashlib.sha256(whole + b"x").hexdigest()
    else:
        size += 1
    upload = os.urandom(16)
    _raw_chunk(world, upload, 0, schema + batch, None)
    with pytest.raises(EnclaveRefused, match="does not match the digest the client sent"):
        _raw_chunk(world, upload, 1, end, (sha256, size))
    assert not world.client("bob").status()["inputs"][TABLE]["submitted"]
    assert world.app.state.enclave.session.uploads_in_progress() == 0
