"""Exception classes shared by every layer.

Every error a user can trigger says what is wrong and how to fix it; the CLI prints
``message`` and ``fix`` on one line each and exits with a non-zero code.
"""

from __future__ import annotations


class ProofmeshError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} (fix: {self.fix})"


class InputError(ProofmeshError):
    """Bad input from the user: a file, a flag, an argument."""

    exit_code = 2


class ConfigError(ProofmeshError):
    """The home directory or its configuration is missing or inconsistent."""


class AccountError(ProofmeshError):
    """An account/key is unknown or its password is wrong."""


class ChainError(ProofmeshError):
    """The chain cannot be reached or answered unexpectedly."""


class ContractRevert(ChainError):
    """A contract call reverted; ``reason`` is the contract's own message."""

    def __init__(self, reason: str, *, contract: str | None = None, function: str | None = None,
                 fix: str | None = None) -> None:
        where = f"{contract}.{function}" if contract and function else (contract or "contract")
        super().__init__(f"{where} reverted: {reason}", fix=fix)
        self.reason = reason
        self.contract = contract
        self.function = function


class StoreError(ProofmeshError):
    """A blob is missing, corrupted, or could not be fetched."""


class NotAvailableError(ProofmeshError):
    """A capability that cannot run on this machine (e.g. no TEE hardware)."""


class VerificationError(ProofmeshError):
    """A proof, signature, hash or receipt did not verify."""
