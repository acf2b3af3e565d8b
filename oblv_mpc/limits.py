"""Every limit on untrusted input, in one object shared by the client and the enclave.

What a non-party on the network, a hostile party or a compromised host may send is bounded
here, field by field, each with its unit. The boundary that first touches an input enforces its
limit: the HTTP server (connections, body size, read deadline, in-flight bytes), the envelope
decoder (sizes, CBOR depth and items), the enclave service (streams, uploads, replay memory).
``EnclaveSettings.limits`` holds the enclave's; ``EnclaveClient`` takes the same object for what
it decodes. The defaults fit a Nitro Enclave with a few GiB of memory; docs/protocol.md
("Limits") says how they add up.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class CborCaps:
    """Caps for one decode of untrusted CBOR (``oblv_mpc.protocol.cbor.decode``)."""

    max_bytes: int  # bytes: the whole encoded item
    max_depth: int  # nesting levels of arrays and maps
    max_items: int  # data items, containers and their members all counted
    max_string_bytes: int  # bytes: one byte or text string


@dataclass(frozen=True)
class Limits:
    """Limits on untrusted input. Each field names its unit; every one is enforced somewhere."""

    # -- sizes ------------------------------------------------------------------------------------
    max_envelope_bytes: int = 9 * MiB
    """bytes: a sealed request body as read off the wire (a full chunk plus envelope overhead)."""
    max_chunk_bytes: int = 8 * MiB
    """bytes: the plaintext ``data`` of one upload or FastEnclaves chunk."""
    max_header_bytes: int = 4 * KiB
    """bytes: a request's signed header, decoded before its signature is checked."""
    max_http_body_bytes: int = 64 * MiB
    """bytes: one FastEnclaves request body, reassembled in enclave memory."""
    max_response_bytes: int = 256 * MiB
    """bytes: a sealed response (or statement) the client decodes."""
    max_batch_bytes: int = 64 * MiB
    """bytes: one Arrow record batch once read (a compressed one's declared size), checked before Arrow allocates it."""
    result_chunk_bytes: int = 4 * MiB
    """bytes: the Arrow IPC data of one chunk of a streamed result, as the enclave cuts it (at most max_chunk_bytes)."""
    max_inline_result_cells: int = 100_000
    """rows x columns a result statement carries inline; a larger result is streamed in Arrow IPC chunks."""
    max_manifest_bytes: int = 1 * MiB
    """bytes: a manifest given to ``POST /v1/provision``."""
    compute_memory_bytes: int = 4 * 1024 * MiB
    """bytes: DuckDB's ``memory_limit`` for the session's computations."""

    # -- CBOR structure ---------------------------------------------------------------------------
    max_cbor_depth: int = 16
    """nesting levels of arrays and maps in any decoded CBOR."""
    max_request_items: int = 10_000
    """CBOR data items in one request body (an upload chunk has about 15)."""
    max_response_items: int = 2_000_000
    """CBOR data items in one response or statement (a result's rows times columns, and more)."""

    # -- time -------------------------------------------------------------------------------------
    body_read_timeout_s: float = 30.0
    """seconds: a request body must arrive in full within this, from its first byte awaited."""
    keep_alive_s: int = 5
    """seconds: an HTTP connection idle between requests is closed after this."""
    header_timeout_s: float = 10.0
    """seconds: a connection must deliver a request's line and headers within this, from when it
    opens or its previous response ends; else it is closed (a silent one held a connection slot)."""
    idle_timeout_s: int = 900
    """seconds: an upload or FastEnclaves request with no new chunk for this long is discarded."""

    compute_timeout_s: float = 600.0
    """seconds: a computation still running after this is stopped, and refused (``compute_limit``)."""

    # -- concurrency ------------------------------------------------------------------------------
    max_connections: int = 128
    """connections (and requests in progress) the server serves at once; past it, 503."""
    max_inflight_bytes: int = 512 * MiB
    """bytes: request bodies being read or handled plus unfinished FastEnclaves bodies, everyone's."""
    max_inflight_bytes_per_party: int = 128 * MiB
    """bytes: one party's unfinished FastEnclaves request bodies held in memory."""
    max_streams_per_party: int = 4
    """FastEnclaves requests one party may have in progress (started, not finished)."""
    max_uploads_per_party: int = 4
    """table uploads one party may have in progress (started, not finished)."""

    # -- nonces and replay ------------------------------------------------------------------------
    min_nonce_bytes: int = 16
    """bytes: the least attestation nonce the enclave accepts."""
    max_nonce_bytes: int = 64
    """bytes: the largest attestation nonce the enclave accepts."""
    client_nonce_bytes: int = 32
    """bytes: the fresh nonce the client sends (within the two above)."""
    max_replay_entries_per_party: int = 16_384
    """request ids remembered per party; past it the oldest go and older requests are refused."""

    def __post_init__(self) -> None:
        if not self.min_nonce_bytes <= self.client_nonce_bytes <= self.max_nonce_bytes:
            raise ValueError("client_nonce_bytes must lie between min_nonce_bytes and max_nonce_bytes")
        if self.max_chunk_bytes >= self.max_envelope_bytes:
            raise ValueError("max_envelope_bytes must leave room for a full chunk plus the envelope")
        if self.max_http_body_bytes > self.max_inflight_bytes_per_party:
            raise ValueError("max_http_body_bytes cannot exceed max_inflight_bytes_per_party")
        for name, value in vars(self).items():
            if isinstance(value, int | float) and value <= 0:
                raise ValueError(f"{name} must be positive")

    def header_caps(self) -> CborCaps:
        """A request header, the outer frame of a response, an attestation's session binding."""
        return CborCaps(self.max_header_bytes, 2, 64, self.max_header_bytes)

    def request_caps(self) -> CborCaps:
        """A request body, after its party's signature verified."""
        return CborCaps(self.max_envelope_bytes, self.max_cbor_depth, self.max_request_items, self.max_chunk_bytes)

    def response_caps(self) -> CborCaps:
        """A response payload, a signed statement or a transcript event, after the signature verified."""
        return CborCaps(self.max_response_bytes, self.max_cbor_depth, self.max_response_items, self.max_response_bytes)


DEFAULT_LIMITS = Limits()
