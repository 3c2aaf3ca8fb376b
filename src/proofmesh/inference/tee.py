"""Trusted execution environments: declared, never faked.

A TEE mode would run the model inside an attested enclave (SGX/TDX/SEV-SNP, or a GPU
confidential-computing mode) and return the enclave's attestation quote binding the
measurement of the serving code, the model hash and the answer. This machine has no
such hardware, so the mode exists only as this interface and refuses clearly: a fake
attestation would be worse than none.
"""

from __future__ import annotations

from proofmesh.errors import NotAvailableError

MESSAGE = "no TEE available"


def require_tee() -> None:
    """Raise NotAvailableError: there is no attested enclave on this machine."""
    raise NotAvailableError(MESSAGE, fix="use --verify zk (small models) or --verify redundant")
