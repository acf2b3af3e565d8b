"""The synthesizers this installation has: plug-ins found through Python entry points.

A package adds a synthesizer by declaring, in its ``pyproject.toml``::

    [project.entry-points."oblv_mpc.synthesizers"]
    my_synth = "my_package.module:MySynthesizer"

where the object is a :class:`~oblv_mpc.synthetic.interface.Synthesizer` (an instance, or a class
made without arguments). MST and AIM are declared so in ``oblv_mpc``'s own ``pyproject.toml``, and
are also built in (:data:`BUILT_IN`), for the enclave image, which runs ``oblv_mpc`` from its
source rather than as an installed distribution. Only installed packages are found, so inside the enclave only code that
is in the image, and so in its measurement (PCR0), can be used; there is no way to load one from
a path or a manifest. A manifest names a synthesizer *and its version*: the enclave refuses, when
the manifest is loaded and so before any upload, one it does not have at exactly that version
(:func:`check_manifest`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from oblv_mpc.errors import ManifestError
from oblv_mpc.manifest import Manifest
from oblv_mpc.synthetic.interface import Synthesizer

GROUP = "oblv_mpc.synthesizers"


@dataclass(frozen=True)
class Listed:
    """One synthesizer found: its name, version, description, and why it cannot run (None: it can)."""

    name: str
    version: str
    description: str
    unavailable: str | None


EntryPoints = Callable[[], Iterable[importlib.metadata.EntryPoint]]


BUILT_IN = (
    importlib.metadata.EntryPoint("mst", "oblv_mpc.synthetic.opendp_mbi:MST", GROUP),
    importlib.metadata.EntryPoint("aim", "oblv_mpc.synthetic.opendp_mbi:AIM", GROUP),
)


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    """The installed entry points, and the built-in ones (an installed copy of a built-in counts once)."""
    installed = list(importlib.metadata.entry_points(group=GROUP))
    seen = {(e.name, e.value) for e in installed}
    return installed + [e for e in BUILT_IN if (e.name, e.value) not in seen]


class Registry:
    """Synthesizers by name, loaded from the entry points (``entry_points`` is injectable for tests)."""

    def __init__(self, entry_points: EntryPoints = _entry_points) -> None:
        self._entry_points = entry_points
        self._loaded: dict[str, Synthesizer] | None = None
        self._broken: dict[str, str] = {}

    def _load(self) -> dict[str, Synthesizer]:
        if self._loaded is not None:
            return self._loaded
        found: dict[str, Synthesizer] = {}
        for entry in sorted(self._entry_points(), key=lambda e: (e.name, e.value)):
            try:
                target = entry.load()
                synthesizer = target() if isinstance(target, type) else target
            except Exception as exc:  # a broken plug-in is listed as such, never half-used
                self._broken[entry.name] = f"could not be loaded ({type(exc).__name__})"
                continue
            if not isinstance(synthesizer, Synthesizer) or synthesizer.name != entry.name:
                self._broken[entry.name] = "is not a synthesizer named as its entry point"
                continue
            if entry.name in found:
                self._broken[entry.name] = "is declared by two packages; neither is used"
                continue
            found[entry.name] = synthesizer
        for name in self._broken:
            found.pop(name, None)
        self._loaded = found
        return found

    def listed(self) -> list[Listed]:
        """Every synthesizer found, usable or not (``mpc enclave synthesizers``, status)."""
        entries = [Listed(s.name, s.version, s.description, s.unavailable()) for s in self._load().values()]
        entries += [Listed(name, "", "", reason) for name, reason in self._broken.items()]
        return sorted(entries, key=lambda e: e.name)

    def get(self, name: str, version: str) -> Synthesizer:
        """The synthesizer ``name`` at exactly ``version``, usable here; else :class:`LookupError` saying why."""
        synthesizer = self._load().get(name)
        if synthesizer is None:
            reason = self._broken.get(name)
            have = ", ".join(f"{s.name} {s.version}" for s in self._load().values()) or "none"
            raise LookupError(f"synthesizer {name!r} {reason or 'is not installed here'} (installed: {have})")
        if synthesizer.version != version:
            raise LookupError(
                f"synthesizer {name!r} is at version {synthesizer.version} here, not the agreed {version}"
            )
        reason = synthesizer.unavailable()
        if reason is not None:
            raise LookupError(f"synthesizer {name!r} cannot run here: {reason}")
        return synthesizer

    def problems(self, manifest: Manifest) -> list[str]:
        """Why the synthetic releases of ``manifest`` cannot be honoured here (empty: they can)."""
        found = []
        for computation in manifest.computations.values():
            spec = computation.synthetic
            if spec is None:
                continue
            where = f"computations.{computation.name}.synthetic.synthesizer"
            try:
                synthesizer = self.get(spec.synthesizer, spec.version)
            except LookupError as exc:
                found.append(f"{where}: {exc}")
                continue
            found += [f"{where}.params: {problem}" for problem in synthesizer.check_params(spec.params)]
        return found

    def check_manifest(self, manifest: Manifest, *, source: str = "<manifest>") -> None:
        """Refuse a manifest whose synthetic releases cannot be honoured here, before anything is uploaded."""
        found = self.problems(manifest)
        if found:
            raise ManifestError(found, source=source)


DEFAULT = Registry()
