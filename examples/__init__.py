"""Example FastEnclaves apps: plain FastAPI routers served inside the enclave (docs/fastenclaves.md)."""
