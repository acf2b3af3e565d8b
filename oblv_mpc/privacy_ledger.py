"""What a party has seen spent of a session's privacy budget, per enclave instance.

The enclave keeps the budget in memory, so a restarted enclave (new instance, same manifest)
starts with all of it again: an operator who restarts the enclave while the parties re-submit
would get every differentially private release again, with fresh noise. The enclave cannot
prevent that; each party's client can notice it. Every command that talks to the enclave records
the spend the enclave reports (``status``) under the manifest's hash and the instance; ``mpc
submit`` then refuses to send data to a *new* instance of a manifest whose budget an earlier
instance already drew on, unless the party passes ``--allow-fresh-privacy-budget``, which says so
loudly every time.

What remains trusted (docs/protocol.md): the ledger knows only what this party's client saw. A
spend made after this party last ran a command against the old instance is unknown to it.

The ledger is ``privacy-ledger.yaml`` in the profile's folder: manifest hash -> instance -> the
largest epsilon seen spent there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from oblv_mpc.errors import UsageError

FILE_NAME = "privacy-ledger.yaml"


class PrivacyLedger:
    """Spends seen per manifest hash and enclave instance, kept in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME

    def _load(self) -> dict[str, dict[str, float]]:
        try:
            data: Any = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"{self.path}: unreadable privacy ledger ({type(exc).__name__})",
                hint="restore it from a backup; deleting it forgets which budgets were already drawn on",
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(v, dict) and all(isinstance(s, int | float) for s in v.values()) for v in data.values()
        ):
            raise UsageError(f"{self.path}: not a privacy ledger", hint="restore it from a backup")
        return {str(k): {str(i): float(s) for i, s in v.items()} for k, v in data.items()}

    def record(self, manifest_sha256: str, instance: str, spent: float) -> None:
        """Remember that ``instance`` had spent ``spent`` of the budget (keeps the largest seen)."""
        data = self._load()
        seen = data.setdefault(manifest_sha256, {})
        if spent <= seen.get(instance, 0.0) and instance in seen:
            return
        seen[instance] = max(spent, seen.get(instance, 0.0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)

    def drawn_elsewhere(self, manifest_sha256: str, instance: str) -> dict[str, float]:
        """Other instances of this manifest whose budget this party saw drawn on."""
        return {i: s for i, s in self._load().get(manifest_sha256, {}).items() if i != instance and s > 0}


def check_new_instance(
    ledger: PrivacyLedger, manifest_sha256: str, instance: str, *, allow_fresh_budget: bool, warn: Any
) -> None:
    """Refuse to feed a restarted enclave whose earlier instance already drew on the budget.

    ``allow_fresh_budget`` is the party's explicit, loud override; ``warn`` prints the warning.
    """
    earlier = ledger.drawn_elsewhere(manifest_sha256, instance)
    if not earlier:
        return
    seen = ", ".join(f"instance {i[:12]}... spent epsilon {s:g}" for i, s in sorted(earlier.items()))
    message = (
        f"this session's privacy budget was already drawn on by an earlier enclave ({seen}); this enclave "
        f"(instance {instance[:12]}...) restarted with a fresh budget, so submitting again would let every "
        "differentially private release be made again with new noise"
    )
    if not allow_fresh_budget:
        raise UsageError(
            message,
            hint="ask the operator why the enclave restarted; only if every party agrees, pass "
            "--allow-fresh-privacy-budget",
        )
    warn(f"--allow-fresh-privacy-budget: {message}")
