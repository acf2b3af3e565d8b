"""oblv_mpc: multiparty computation brokered by an attested enclave (AWS Nitro Enclaves)."""

__version__ = "0.1.0"
