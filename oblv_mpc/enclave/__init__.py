"""The enclave service: the FastAPI app, the session state machine, the DuckDB engine."""

from oblv_mpc.enclave.app import create_app
from oblv_mpc.enclave.service import EnclaveService
from oblv_mpc.enclave.settings import EnclaveSettings

__all__ = ["EnclaveService", "EnclaveSettings", "create_app"]
