"""MPyC joint mean: three parties secret-share their column's sum (in cents) and row count.

Run as `python _mpyc_mean.py -M3 [--base-port B] FILE_A FILE_B FILE_C`: MPyC starts the three
parties on this machine; party i reads file i, adds its values locally, and inputs the sum and
the count as secret integers. The shared totals are added in MPC and the total sum and count
are opened (so the row count becomes known, as it usually is); the mean is their quotient.
"""

from __future__ import annotations

import sys

from mpyc.runtime import mpc  # type: ignore[import-not-found]


async def main() -> None:
    files = [a for a in sys.argv[1:] if a.endswith(".csv")]
    secint = mpc.SecInt(96)
    await mpc.start()
    cents, count = 0, 0
    if mpc.pid < len(files):
        with open(files[mpc.pid]) as handle:
            next(handle)
            for line in handle:
                cents += round(float(line) * 100)
                count += 1
    totals = mpc.input(secint(cents))
    counts = mpc.input(secint(count))
    total, rows = await mpc.output([mpc.sum(totals), mpc.sum(counts)])
    await mpc.shutdown()
    if mpc.pid == 0:
        print(total / 100 / rows)


if __name__ == "__main__":
    mpc.run(main())
