"""Full attestation verification vs the bare signature checks it contains, in one run.

A Nitro document carries five ECDSA P-384 signatures that any verifier must check: the COSE
signature over the payload, and one per certificate link (leaf <- instance <- zonal <- regional
<- root). This prints the median time of `oblv_mpc.attestation.verify()` on a real document and
the median time of just those five signature verifications (certificates pre-parsed, so the
baseline is pure cryptography), and their ratio. Target: ratio <= 1.5.

    python benchmarks/attestation.py [--rounds N] [--document PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oblv_mpc.attestation import AttestationPolicy, PcrSet, document_time, parse, verify

DEFAULT_DOCUMENT = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "nitro" / "evervault_4.cbor"


def _median_seconds(function: Callable[[], object], rounds: int) -> float:
    for _ in range(max(3, rounds // 10)):  # warm up
        function()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--document", type=Path, default=DEFAULT_DOCUMENT)
    args = parser.parse_args()
    if not args.document.exists():
        print(f"no document at {args.document}: put ../shared beside the checkout, or pass --document", file=sys.stderr)
        return 2
    raw = args.document.read_bytes()
    doc = parse(raw)
    policy = AttestationPolicy(accepted=(PcrSet({i: doc.pcrs[i] for i in (0, 1, 2)}, "own"),), allow_debug=True)
    now = document_time(raw)

    # The baseline: the same five signature verifications, with everything already parsed.
    chain = [x509.load_der_x509_certificate(der) for der in (*doc.cabundle, doc.certificate)]
    links = []  # (issuer's key, signature, signed bytes, hash) per certificate link, pre-extracted
    for child, issuer in zip(chain[1:], chain[:-1], strict=True):
        key = issuer.public_key()
        algorithm = child.signature_hash_algorithm
        assert isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None
        links.append((key, child.signature, child.tbs_certificate_bytes, algorithm))
    to_be_signed = cbor2.dumps(["Signature1", doc.protected, b"", doc.payload])
    cose_signature = encode_dss_signature(
        int.from_bytes(doc.signature[:48], "big"), int.from_bytes(doc.signature[48:], "big")
    )
    leaf_key = chain[-1].public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)

    def bare_signatures() -> None:
        for key, signature, signed, algorithm in links:
            key.verify(signature, signed, ec.ECDSA(algorithm))
        leaf_key.verify(cose_signature, to_be_signed, ec.ECDSA(hashes.SHA384()))

    def full_verification() -> None:
        verify(raw, policy=policy, now=now)

    full_verification()  # it must pass, or the comparison means nothing
    bare = _median_seconds(bare_signatures, args.rounds)
    full = _median_seconds(full_verification, args.rounds)
    print(f"document: {args.document.name} ({len(raw)} bytes, {len(links)} certificate links + 1 COSE signature)")
    print(f"{'measure':<40} {'median':>10}")
    print(f"{'bare signature checks (baseline)':<40} {bare * 1e3:>8.3f}ms")
    print(f"{'full verify() (oblv_mpc)':<40} {full * 1e3:>8.3f}ms")
    print(f"{'ratio full / bare':<40} {full / bare:>9.2f}x   (target <= 1.50x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
