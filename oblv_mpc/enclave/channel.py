"""The enclave's end of the sealed protocol: open a request, admit it once, parse its body, answer.

:meth:`Channel.open` takes a sealed envelope through every check, cheapest first
(:func:`~oblv_mpc.protocol.envelope.open_request`: frame, header, bindings, the party's
signature, the body's hash), then freshness (the request window on the enclave's clock, and
the replay memory), then parses the body once into its typed message
(:func:`~oblv_mpc.protocol.messages.parse_request`). What comes out is a :class:`Call`: a
verified party and a typed body. Refusals before the party is known are plain JSON with the
status of the code table (:mod:`oblv_mpc.protocol.refusals`), and only counted; afterwards they
are sealed to the party, signed, and recorded in the transcript (``on_refusal``).

Thread-safe: the replay memory has its own lock; everything else is read-only.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from oblv_mpc import keys
from oblv_mpc.enclave.replay import Monotonic, ReplayGuard
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.errors import EnclaveRefused, ProtocolError
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol.envelope import Context, Request, open_request, seal_response
from oblv_mpc.protocol.hpke import KeyPair
from oblv_mpc.protocol.messages import RequestBody, parse_request
from oblv_mpc.protocol.refusals import status_of

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The real wall clock, in UTC: the default wherever a clock is injected."""
    return dt.datetime.now(dt.UTC)


class Answer(Protocol):
    """An answer body (:mod:`oblv_mpc.protocol.answers`)."""

    def to_cbor(self) -> Any:
        """The answer as plain data for deterministic CBOR."""
        ...


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer sends back: a status code and sealed bytes, or plain JSON.

    ``party`` (whose signature verified) and ``refusal`` (the code refused with, sealed or
    plain) are for the enclave's request log only; they never travel.
    """

    status: int
    content: bytes | dict[str, str]
    party: str | None = None
    refusal: str | None = None

    @classmethod
    def plain(cls, code: str, reason: str) -> Reply:
        """A refusal sent before the party is known, with the code table's status."""
        return cls(status_of(code), {"code": code, "message": reason}, refusal=code)


@dataclass(frozen=True)
class Call:
    """An authenticated, fresh request and its typed body."""

    request: Request
    body: RequestBody

    @property
    def party(self) -> str:
        """The party whose signature verified."""
        return self.request.party


class Channel:
    """Opens, admits and answers sealed requests for one session (see the module's docstring)."""

    def __init__(
        self,
        manifest: Manifest,
        settings: EnclaveSettings,
        hpke_key: KeyPair,
        signing: keys.PrivateKey,
        *,
        clock: Clock = utcnow,
        monotonic: Monotonic = time.monotonic,
        on_unauthenticated: Callable[[], None],
        on_refusal: Callable[[str, str, str], None],
    ) -> None:
        self.manifest = manifest
        self.settings = settings
        self.limits = settings.limits
        self.context = Context(manifest.session, bytes.fromhex(manifest.hash), settings.suite, hpke_key.public_bytes)
        self._hpke = hpke_key
        self._signing = signing
        self._clock = clock
        window_s = settings.request_window_s
        self.replay = ReplayGuard(2 * window_s, self.limits.max_replay_entries_per_party, monotonic)
        self._on_unauthenticated = on_unauthenticated
        self._on_refusal = on_refusal

    def now_ms(self) -> int:
        """The enclave's wall clock, in ms."""
        return int(self._clock().timestamp() * 1000)

    def _party_key(self, name: str) -> keys.PublicKey | None:
        party = self.manifest.parties.get(name)
        return party.public_key if party else None

    def open(self, op: str, envelope: bytes) -> Call | Reply:
        """An authenticated, fresh request with its typed body; or the refusal to send back."""
        try:
            request = open_request(self.context, self._hpke.private, op, envelope, self._party_key, limits=self.limits)
        except ProtocolError as exc:
            self._on_unauthenticated()
            return Reply.plain("cannot_open", exc.message)
        except EnclaveRefused as exc:
            self._on_unauthenticated()
            return Reply.plain(exc.code, exc.reason)
        try:
            self._admit(request)
            return Call(request, parse_request(op, request.body, self.limits))
        except EnclaveRefused as exc:
            return self.refuse(request, exc.code, exc.reason)

    def _admit(self, request: Request) -> None:
        """Refuse a request outside the time window, or one seen before."""
        now = self.now_ms()
        window = self.settings.request_window_s * 1000
        if abs(now - request.time_ms) > window:
            raise EnclaveRefused(
                "stale", f"request time is {abs(now - request.time_ms) // 1000}s away from the enclave's clock"
            )
        self.replay.admit(request.party, request.request_id, request.time_ms)

    def answer(self, request: Request, body: Answer) -> Reply:
        """A sealed, signed answer to an authenticated request."""
        return Reply(200, seal_response(self.context, request, self._signing, body=body.to_cbor()), party=request.party)

    def refuse(self, request: Request, code: str, reason: str) -> Reply:
        """A refusal sealed to the requester; the transcript records it without content."""
        self._on_refusal(request.party, request.op, code)
        sealed = seal_response(self.context, request, self._signing, error=(code, reason))
        return Reply(200, sealed, party=request.party, refusal=code)
