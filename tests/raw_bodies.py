"""Request bodies as a misbehaving or hostile party sends them: any CBOR data, for any operation.

A party signs whatever it likes; these let tests send it through the real client
(``EnclaveClient.call``) to attack the enclave's parsing, ordering and quotas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Raw:
    """Any body for any operation (an :class:`oblv_mpc.protocol.messages.Outgoing`)."""

    op: str
    body: Any

    def to_cbor(self) -> Any:
        return self.body
