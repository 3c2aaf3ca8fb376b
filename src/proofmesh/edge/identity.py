"""Device and gateway keys: generated where they are used, kept in that directory.

A device's key is created on the device (``<device dir>/device.key``, an Ethereum v3
keystore encrypted with the device password) and never leaves it: registration only
sends the key's *address* and an EIP-712 ``KeyProof`` signed by it. Rotation creates a
new key file and keeps the old one as ``device.key.<n>.retired`` for audit.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import coincurve
from eth_account import Account
from eth_account.signers.local import LocalAccount

from proofmesh.crypto.keccak import keccak256
from proofmesh.edge.reading import sign_digest
from proofmesh.errors import AccountError, InputError

PASSWORD_ENV = "PROOFMESH_EDGE_PASSWORD"
KEY_PROOF_TYPE = "KeyProof(address key,address device,address owner,uint256 nonce,uint256 deadline)"
_KEY_PROOF_TYPEHASH = keccak256(KEY_PROOF_TYPE.encode())
_DOMAIN_TYPEHASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")


@dataclass
class KeyHolder:
    """A loaded key: coincurve private key for fast signing, eth-account for transactions."""

    account: LocalAccount
    private_key: coincurve.PrivateKey
    path: Path

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def address_bytes(self) -> bytes:
        return bytes.fromhex(self.account.address[2:])


def _password(password: str | None) -> str:
    return password if password is not None else os.environ.get(PASSWORD_ENV, "")


def create_key(path: Path, password: str | None = None, *, overwrite: bool = False) -> KeyHolder:
    """Generate a key and write it encrypted to ``path`` (mode 0600)."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} already holds a key", fix="use a new directory, or `edge device rotate`")
    path.parent.mkdir(parents=True, exist_ok=True)
    acct = Account.create()
    # Light scrypt parameters: devices are small; the file is still encrypted at rest.
    blob = Account.encrypt(acct.key, _password(password), kdf="scrypt", iterations=2 ** 14)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(blob, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return KeyHolder(acct, coincurve.PrivateKey(bytes(acct.key)), path)


def load_key(path: Path, password: str | None = None) -> KeyHolder:
    """Decrypt the key at ``path``."""
    if not path.exists():
        raise AccountError(f"no key at {path}", fix="run `proofmesh edge device register` (it creates the key)")
    try:
        raw = Account.decrypt(json.loads(path.read_text()), _password(password))
    except ValueError as exc:
        raise AccountError(f"cannot decrypt {path}: {exc}",
                           fix=f"give the right password (--password or ${PASSWORD_ENV})") from exc
    acct = Account.from_key(raw)
    return KeyHolder(acct, coincurve.PrivateKey(bytes(raw)), path)


def retire_key(path: Path) -> Path:
    """Move the key file aside (kept for audit) and return the new name."""
    n = 1
    while path.with_name(f"{path.name}.{n}.retired").exists():
        n += 1
    dest = path.with_name(f"{path.name}.{n}.retired")
    os.replace(path, dest)
    return dest


def key_proof(key: KeyHolder, *, device: str, owner: str, nonce: int, chain_id: int, registry: str,
              deadline: int | None = None) -> tuple[int, int, bytes, bytes]:
    """EIP-712 ``KeyProof`` signed by ``key`` for DeviceRegistry: (deadline, v, r, s)."""
    deadline = deadline if deadline is not None else int(time.time()) + 3600
    sep = keccak256(b"".join((_DOMAIN_TYPEHASH, keccak256(b"proofmesh DeviceRegistry"), keccak256(b"1"),
                              chain_id.to_bytes(32, "big"), bytes(12), bytes.fromhex(registry[2:]))))
    body = b"".join((_KEY_PROOF_TYPEHASH, bytes(12), key.address_bytes, bytes(12), bytes.fromhex(device[2:]),
                     bytes(12), bytes.fromhex(owner[2:]), nonce.to_bytes(32, "big"), deadline.to_bytes(32, "big")))
    digest = keccak256(b"\x19\x01" + sep + keccak256(body))
    r, s, v = sign_digest(key.private_key, digest)
    return deadline, v, r, s
