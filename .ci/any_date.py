"""Run the whole test suite again with the process clock at other dates and in other time zones.

A test that pins a date while something it creates reads the real clock (a date bomb) passes on
the day it is written and fails on every later one. Run under these clocks, it fails the day it
is written. libfaketime (LD_PRELOAD, inherited by every subprocess the tests start: servers, the
CLI) moves the wall clock; the monotonic clock is left alone, so timeouts behave.

The clock is moved by a fixed offset from the real one ("+N" seconds), not set to a start time
("@DATE"): libfaketime starts an "@" clock afresh in every process, so a server started ten
minutes into the run would be ten minutes behind the tests that talk to it.

The dates are the ends of the range the suite must pass in (2026-01-01 to 2035-12-31), one in a
time zone far east of UTC and one far west, so neither the date nor the zone can matter.

The runs go one after the other, each with a temporary folder of its own, their output shown as
it comes. (Run at once, two suites on two cores took three times as long as one in CI, and a run
that hung held CI until its own limit.) A run that has not ended within RUN_LIMIT_S is stopped:
first with SIGABRT, so Python's fault handler prints where every thread was, then killed, and it
counts as failed.

Usage: ``python .ci/any_date.py [pytest args]`` (``make test-any-date``). Exits non-zero if any
run fails, or if the clock could not be moved (a run at the real date would prove nothing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

RUN_LIMIT_S = 25 * 60  # a run took 7-8 minutes on a quiet 2-core machine (2026-12-07): room for a slower CI

CLOCKS = (
    # (where the clock starts, in UTC; the TZ the processes run in)
    (dt.datetime(2026, 1, 1, 4, 0, tzinfo=dt.UTC), "Pacific/Kiritimati"),  # UTC+14: already Jan 1 there
    (dt.datetime(2035, 12, 31, 4, 0, tzinfo=dt.UTC), "America/Adak"),  # UTC-10: still Dec 30 there
)


def _library() -> Path:
    import libfaketime  # the vendored build of libfaketime that the `libfaketime` wheel ships

    found = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not found.is_file():
        sys.exit(f"any-date: libfaketime.so.1 not found at {found}")
    return found


def _environment(library: Path, start: dt.datetime, zone: str) -> dict[str, str]:
    offset = int((start - dt.datetime.now(dt.UTC)).total_seconds())
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=str(library),
        FAKETIME=f"{offset:+d}",  # seconds from the real clock, the same in every process
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        DONT_FAKE_MONOTONIC="1",
        FAKETIME_NO_CACHE="1",
        TZ=zone,
        PYTHONFAULTHANDLER="1",  # a run stopped with SIGABRT prints every thread's stack
    )
    return env


def _check_moved(env: dict[str, str], expected: dt.date) -> None:
    probe = "import datetime as d; print(d.datetime.now(d.UTC).date().isoformat())"
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    if seen.stdout.strip() != expected.isoformat():
        sys.exit(
            f"any-date: the clock did not move to {expected} (a probe saw {seen.stdout.strip()!r}; "
            f"stderr {seen.stderr.strip()!r}): refusing to call a run at the real date a shifted one"
        )


def _run(command: list[str], env: dict[str, str]) -> str | None:
    """Run one shifted suite; what went wrong, or None."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGABRT)  # the fault handler prints where each thread is
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        os.killpg(process.pid, signal.SIGKILL)  # pytest and any server it left behind
        process.wait()
        return f"did not end within {RUN_LIMIT_S / 60:g} minutes (stopped; its stacks are above)"
    return None if code == 0 else f"pytest exited {code}"


def main(argv: list[str]) -> int:
    library = _library()
    failed = []
    with tempfile.TemporaryDirectory(prefix="any-date-") as folder:
        for index, (start, zone) in enumerate(CLOCKS):
            env = _environment(library, start, zone)
            _check_moved(env, start.date())
            print(f"any-date: the whole suite with the clock at {start:%Y-%m-%d %H:%M} UTC, in {zone}", flush=True)
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            command += [f"--basetemp={Path(folder) / f'tmp-{index}'}", *argv]
            problem = _run(command, env)
            if problem is not None:
                failed.append(f"{start:%Y-%m-%d} ({zone}): {problem}")
    for line in failed:
        print(f"any-date: FAILED at {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
