"""SecretFlow SPU PSI (RR22 or KKRT) between two processes on loopback.

    python _spu_psi.py RR22|KKRT psi|psi_cardinality FILE_A FILE_B

Starts the two parties as processes linked over 127.0.0.1 (brpc), each with its own CSV; the
receiver (rank 0) prints the size of the intersection. The output file holds the intersection
itself (both jobs compute it; SPU's PSI has no cardinality-only mode here).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def party(rank: int, protocol: str, source: str, output: str, ports: list[int]) -> None:
    from spu import psi  # type: ignore[import-not-found]
    from spu.libspu import link  # type: ignore[import-not-found]

    desc = link.Desc()
    for index, port in enumerate(ports):
        desc.add_party(f"party{index}", f"127.0.0.1:{port}")
    context = link.create_brpc(desc, rank)
    config = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=psi.parse_protocol(f"PROTOCOL_{protocol}"), receiver_rank=0, broadcast_result=False
        ),
        input_params=psi.InputParams(path=source, selected_keys=["email"], keys_unique=True),
        output_params=psi.OutputParams(path=output, disable_alignment=True),
    )
    report = psi.psi_execute(config, context)
    context.stop_link()
    if rank == 0:
        print(f"RESULT {report.intersection_count}", flush=True)


def main() -> None:
    if sys.argv[1] == "--party":
        _, _, rank, protocol, source, output, *ports = sys.argv
        party(int(rank), protocol, source, output, [int(p) for p in ports])
        return
    protocol, _job, first, second = sys.argv[1:5]
    ports = [str(_free_port()), str(_free_port())]
    with tempfile.TemporaryDirectory() as tmp:
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--party",
                    str(rank),
                    protocol,
                    source,
                    str(Path(tmp) / f"out{rank}.csv"),
                    *ports,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for rank, source in enumerate((first, second))
        ]
        answers = [p.communicate(timeout=3600) for p in processes]
        outputs = [out for out, _ in answers]
        if any(p.returncode for p in processes):
            errors = " | ".join(err.strip().splitlines()[-1] for _, err in answers if err.strip())
            raise SystemExit(f"an SPU party failed ({[p.returncode for p in processes]}): {errors}")
    results = [line.split()[1] for line in outputs[0].splitlines() if line.startswith("RESULT ")]
    print(results[-1])


if __name__ == "__main__":
    main()
