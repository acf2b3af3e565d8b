"""The worked example: two hospitals pool admissions for a synthetic table (``sessions/hospitals-synthetic.yaml``).

Used by ``mpc demo --synthetic``, by the tests and to write the example manifest. The data is
made up: ages drive diagnoses (children: asthma, fractures, flu; the old: diabetes), so a
synthetic table has a real relation to keep, which independent columns would lose.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from pathlib import Path
from typing import Any

HOSPITALS = ("st_mary", "st_luke")
DIAGNOSES = ["asthma", "diabetes", "fracture", "influenza", "other"]
SEXES = ["female", "male"]
AGE_BINS = [0, 18, 40, 65, 110]
ADMITTED_BINS = ["2024-01-01", "2024-07-01", "2025-01-01"]

PROTECTION = {
    "unit": "patient_id",
    "min_distinct": 5,
    "dimensions": ["age", "sex", "diagnosis", "admitted"],
    "allow_dp": True,
}


def hospitals_document(
    public_keys: dict[str, str],
    *,
    epsilon: float = 1.0,
    budget: float = 1.0,
    rows: int = 500,
    readers: list[str] | None = None,
    synthesizer: str = "mst",
    version: str = "0.16.0",
    max_rows_per_unit: int = 2,
) -> dict[str, Any]:
    """The manifest of sessions/hospitals-synthetic.yaml for these parties' base64 public keys."""
    tables = [f"{h}.admissions" for h in HOSPITALS]
    return {
        "version": 1,
        "session": "hospitals-synthetic",
        "description": "Two hospitals pool their admissions; both receive a synthetic table with a differential "
        "privacy guarantee for every patient, made from all rows together.",
        "privacy_budget": {"epsilon": budget},
        "parties": {h: {"public_key": public_keys[h], "roles": ["contributor", "reader"]} for h in HOSPITALS},
        "inputs": {
            t: {
                "columns": {
                    "patient_id": "text",
                    "age": "integer",
                    "sex": "text",
                    "diagnosis": "text",
                    "admitted": "date",
                },
                "max_rows": 100_000,
                "max_bytes": 10_000_000,
                "protection": copy.deepcopy(PROTECTION),
            }
            for t in tables
        },
        "computations": {
            "admissions_synthetic": {
                "description": "A differentially private synthetic table of both hospitals' admissions, for "
                "research neither hospital could do with its own patients alone.",
                "synthetic": {
                    "inputs": tables,
                    "columns": {
                        "age": {"bins": list(AGE_BINS)},
                        "sex": {"categories": list(SEXES)},
                        "diagnosis": {"categories": list(DIAGNOSES)},
                        "admitted": {"bins": list(ADMITTED_BINS)},
                    },
                    "max_rows_per_unit": max_rows_per_unit,
                    "epsilon": epsilon,
                    "synthesizer": {"name": synthesizer, "version": version},
                    "rows": rows,
                },
                "readers": list(readers or HOSPITALS),
            }
        },
    }


def admissions_csv(path: Path, hospital: str, patients: int, seed: int, *, visits: int = 1) -> Path:
    """``patients`` patients, each admitted ``visits`` times: age drives diagnosis (a real correlation)."""
    rng = random.Random(seed)  # noqa: S311 - made-up example data, not secrets
    lines = ["patient_id,age,sex,diagnosis,admitted"]
    start = dt.date(2024, 1, 1)
    for i in range(patients):
        age = min(int(rng.gauss(45, 22)) % 105, 104)
        sex = rng.choice(SEXES)
        for _ in range(visits):
            if age < 18:
                diagnosis = rng.choice(["asthma", "fracture", "influenza"])
            elif age > 65:
                diagnosis = rng.choice(["diabetes", "diabetes", "other", "influenza"])
            else:
                diagnosis = rng.choice(DIAGNOSES)
            admitted = start + dt.timedelta(days=rng.randrange(366))
            lines.append(f"{hospital}-{i},{age},{sex},{diagnosis},{admitted.isoformat()}")
    path.write_text("\n".join(lines) + "\n")
    return path
