"""Private set intersection cardinality over uploaded CSVs: how many emails all parties share.

Each party posts a CSV with an ``email`` column (emails are trimmed and lower-cased), once; once
every party of the manifest has, anyone may ask for the size of the intersection. Only that number
leaves the enclave. One submission each, and no answer before all are in: otherwise a party could
post one email at a time and read off, from the cardinality, which of them the others hold. (A
party can still post a list of its choosing once; that is what PSI cardinality reveals by design.)

    mpc enclave serve --manifest sessions/x.yaml --app examples.psi_service:router
    mpc connect ... --lport 3030
    curl -X POST localhost:3030/psi/upload --data-binary @customers.csv
    curl localhost:3030/psi/cardinality
"""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, HTTPException, Request

from oblv_mpc.fastenclave import CallingParty, SessionManifest


def make_router() -> APIRouter:
    """A fresh router with its own state (one per enclave app)."""
    router = APIRouter(prefix="/psi", tags=["psi"])
    emails: dict[str, set[str]] = {}

    @router.post("/upload")
    async def upload(request: Request, party: CallingParty) -> dict[str, object]:
        if party.name in emails:  # one list each: no probing by resubmitting
            raise HTTPException(409, detail=f"{party.name} has already submitted its list")
        text = (await request.body()).decode("utf-8", errors="strict")
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "email" not in reader.fieldnames:
            raise HTTPException(422, detail="expected a CSV with an email column")
        emails[party.name] = {row["email"].strip().lower() for row in reader if row.get("email")}
        return {"party": party.name, "distinct_emails": len(emails[party.name])}

    @router.get("/cardinality")
    def cardinality(party: CallingParty, manifest: SessionManifest) -> dict[str, object]:
        missing = sorted(set(manifest.parties) - set(emails))
        if missing:
            raise HTTPException(409, detail={"waiting_for": missing})
        common = set.intersection(*(emails[p] for p in manifest.parties))
        return {"cardinality": len(common)}

    return router


router = make_router()
