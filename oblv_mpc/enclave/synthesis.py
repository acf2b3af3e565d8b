"""Synthetic releases, generated in the background so that the enclave keeps answering.

A synthetic release can take minutes. When a reader first asks for it (``compute`` or
``result``), the session does under its lock what must be atomic: checks that every input is in,
draws the epsilon from the budget (once), freezes the inputs, records the attempt, and reads the
pooled rows out of DuckDB (:meth:`oblv_mpc.enclave.engine.Engine.pooled`). :class:`Synthesis`
then runs the synthesizer on a thread of its own, touching no session state; it reports its
progress (a fraction and a stage, the same for any data) for ``status``, ``compute`` and
``fetch`` to show; when it ends, it takes the session lock to hand its outcome (a release to
sign, or a refusal that names no data) to the session, which keeps it like any other outcome:
every later request gets the same answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from oblv_mpc.manifest import Computation
from oblv_mpc.synthetic.registry import Registry
from oblv_mpc.synthetic.run import Release, SynthesisFailed, release

Start = Callable[[Callable[[], None]], None]  # runs the work somewhere else (a thread, by default)
Finish = Callable[[str, "Release | str"], None]  # (computation, release or refusal reason), lock held


def on_thread(work: Callable[[], None]) -> None:
    """Run ``work`` on a daemon thread: a generation never keeps the enclave from stopping."""
    threading.Thread(target=work, name="mpc-synthesis", daemon=True).start()


@dataclass
class Job:
    """One generation under way: how far it has come."""

    computation: str
    progress: float = 0.0
    stage: str = "starting"
    done: bool = False

    def report(self) -> dict[str, float | str]:
        """What ``status``, ``compute`` and ``fetch`` tell a reader while it runs."""
        return {"progress": round(self.progress, 3), "stage": self.stage}


class Synthesis:
    """The session's synthetic releases under way."""

    def __init__(self, registry: Registry, lock: threading.Lock, finish: Finish, start: Start = on_thread) -> None:
        self._registry = registry
        self._lock = lock
        self._finish = finish
        self._start = start
        self.jobs: dict[str, Job] = {}

    def running(self, name: str) -> Job | None:
        """The generation of ``name`` if it is under way."""
        job = self.jobs.get(name)
        return job if job is not None and not job.done else None

    def start(self, computation: Computation, data: pa.Table) -> Job:
        """Start generating ``computation`` from its pooled rows ``data`` (session lock held)."""
        spec = computation.synthetic
        assert spec is not None and computation.name not in self.jobs
        synthesizer = self._registry.get(spec.synthesizer, spec.version)  # checked when the manifest was loaded
        job = Job(computation.name)
        self.jobs[computation.name] = job

        def progress(fraction: float, stage: str) -> None:
            job.progress, job.stage = max(job.progress, min(fraction, 1.0)), stage

        def work() -> None:
            outcome: Release | str = "the synthetic release stopped before it ended; no detail is given"
            try:
                outcome = release(spec, data, synthesizer, progress)
            except SynthesisFailed as exc:
                outcome = exc.reason
            except Exception as exc:  # a bug or a limit: told by kind only, never by message
                outcome = f"the synthetic release failed ({type(exc).__name__}); no detail is given"
            finally:  # whatever stopped it, the outcome is kept: no release stays "running" for ever
                with self._lock:
                    job.done = True
                    self._finish(computation.name, outcome)

        self._start(work)
        return job
