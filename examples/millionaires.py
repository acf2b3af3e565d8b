"""Yao's millionaires for N parties: who has the largest value, and nothing else.

Each party posts its value once; once every party of the manifest has, anyone may ask who is
the richest. Only the winner's name (or the names, on a tie) leaves the enclave; no value does.

    mpc enclave serve --manifest sessions/x.yaml --app examples.millionaires:router
    mpc connect ... --lport 3030
    curl -X POST localhost:3030/millionaires/wealth -H 'content-type: application/json' -d '{"amount": 1200000}'
    curl localhost:3030/millionaires/richest
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from oblv_mpc.fastenclave import CallingParty, SessionManifest


class Wealth(BaseModel):
    """What a party declares: its wealth, never shown to the others."""

    amount: int = Field(ge=0, description="Your wealth, in whole currency units.")


def make_router() -> APIRouter:
    """A fresh router with its own state (one per enclave app)."""
    router = APIRouter(prefix="/millionaires", tags=["millionaires"])
    worth: dict[str, int] = {}

    @router.post("/wealth")
    def submit(wealth: Wealth, party: CallingParty, manifest: SessionManifest) -> dict[str, object]:
        if party.name in worth:  # one value each: no probing by resubmitting
            raise HTTPException(409, detail=f"{party.name} has already submitted")
        worth[party.name] = wealth.amount
        return {"submitted": party.name, "waiting_for": sorted(set(manifest.parties) - set(worth))}

    @router.get("/richest")
    def richest(party: CallingParty, manifest: SessionManifest) -> dict[str, object]:
        missing = sorted(set(manifest.parties) - set(worth))
        if missing:
            raise HTTPException(409, detail={"waiting_for": missing})
        top = max(worth.values())
        return {"richest": sorted(name for name, amount in worth.items() if amount == top), "asked_by": party.name}

    return router


router = make_router()
