"""Nitro attestation: verify documents, PCR policies, the simulated and the real NSM.

- :func:`verify` checks a document's structure, chain, signature and this party's policy, and
  returns a :class:`VerifiedAttestation` (which nothing else can make).
- :class:`AttestationPolicy` is what a party accepts; :func:`load_pcr_file` reads one.
- :class:`SimulatedNsm` and :class:`NitroNsm` are the two :class:`Attestor` implementations.
"""

from oblv_mpc.attestation.attestor import Attestor
from oblv_mpc.attestation.document import ParsedDocument, parse
from oblv_mpc.attestation.measure import Measurements, measure
from oblv_mpc.attestation.nsm import NitroNsm
from oblv_mpc.attestation.pcrs import from_nitro_cli, load_pcr_file, policy_from_flags, write_pcr_file
from oblv_mpc.attestation.policy import AWS_ROOT, AttestationPolicy, PcrSet, TrustedRoot
from oblv_mpc.attestation.simulator import DevelopmentCA, SimulatedNsm
from oblv_mpc.attestation.verify import VerifiedAttestation, document_time, verify

__all__ = [
    "AWS_ROOT",
    "AttestationPolicy",
    "Attestor",
    "DevelopmentCA",
    "Measurements",
    "NitroNsm",
    "ParsedDocument",
    "PcrSet",
    "SimulatedNsm",
    "TrustedRoot",
    "VerifiedAttestation",
    "document_time",
    "from_nitro_cli",
    "load_pcr_file",
    "measure",
    "parse",
    "policy_from_flags",
    "verify",
    "write_pcr_file",
]
