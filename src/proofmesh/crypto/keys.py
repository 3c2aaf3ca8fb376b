"""Named accounts in encrypted keystore files (Ethereum keystore v3, via ``eth-account``).

Each account is ``<home>/keys/<name>.json``, written atomically with mode 0600. Keys are
encrypted with scrypt (n=2**18, r=8, p=1: ~1 s to unlock, which is the point).

``PROOFMESH_KDF=fast`` switches *new* keystores to PBKDF2 with 1,024 iterations so that
test suites and throw-away dev homes do not spend a second per key. Such files are still
valid keystore v3 files, but weakly protected: never use it for keys that hold value.

Passwords come from the caller (the CLI prompts) or from ``PROOFMESH_PASSWORD``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_hex_address, to_checksum_address

from proofmesh.config import Home
from proofmesh.errors import AccountError, InputError

__all__ = ["Keystore", "resolve_password"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FAST_KDF_ITERATIONS = 1024


def resolve_password(password: str | None) -> str:
    """``password`` if given, else ``PROOFMESH_PASSWORD``; AccountError if neither."""
    if password is not None:
        return password
    env = os.environ.get("PROOFMESH_PASSWORD")
    if env is not None:
        return env
    raise AccountError("no password given", fix="pass the password (the CLI prompts for it) "
                       "or set PROOFMESH_PASSWORD")


def _kdf() -> tuple[str, int | None]:
    mode = os.environ.get("PROOFMESH_KDF", "scrypt").lower()
    if mode == "fast":
        return "pbkdf2", FAST_KDF_ITERATIONS
    if mode == "scrypt":
        return "scrypt", None
    raise InputError(f"PROOFMESH_KDF={mode!r} is not a known key-derivation mode",
                     fix="unset it (scrypt) or set PROOFMESH_KDF=fast for tests")


class Keystore:
    """The accounts of one home. ``Keystore(home)`` or ``Keystore(path_to_keys_dir)``."""

    def __init__(self, home: Home | str | os.PathLike[str]) -> None:
        self.dir = home.keys_dir if isinstance(home, Home) else Path(home)

    # --- helpers ----------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(f"invalid account name {name!r}",
                             fix="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return self.dir / f"{name}.json"

    def _read(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            known = [n for n, _ in self.list()]
            raise AccountError(
                f"unknown account {name!r}" + (f" (known: {', '.join(known)})" if known else " (no accounts yet)"),
                fix=f"create it with `proofmesh account new {name}` or pick a known one") from None
        except json.JSONDecodeError as exc:
            raise AccountError(f"keystore file {path} is corrupted: {exc}",
                               fix="restore it from a backup, or delete it and import the key again") from exc
        if not isinstance(data, dict) or "crypto" not in data:
            raise AccountError(f"{path} is not a keystore v3 file",
                               fix="restore it from a backup, or delete it and import the key again")
        return data

    def _write_new(self, name: str, keyfile: dict[str, Any]) -> None:
        """Write ``<name>.json`` atomically, never replacing an existing account."""
        path = self._path(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        tmp = self.dir / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(keyfile, f)
                f.flush()
                os.fsync(f.fileno())
            # link() fails if the name exists, so two concurrent creates cannot overwrite
            # each other (os.replace would silently clobber).
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AccountError(f"account {name!r} already exists ({self.address_of(name)})",
                                   fix="choose another name, or delete the file first if you really mean to") from None
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _encrypt(self, key: bytes, password: str) -> dict[str, Any]:
        if password == "":
            raise AccountError("empty password", fix="choose a non-empty password")
        kdf, iterations = _kdf()
        return Account.encrypt(key, password, kdf=kdf, iterations=iterations)

    # --- API --------------------------------------------------------------------------
    def create(self, name: str, password: str | None = None) -> LocalAccount:
        """Generate a new key, store it encrypted as ``name``; returns the account."""
        path = self._path(name)
        if path.exists():
            raise AccountError(f"account {name!r} already exists ({self.address_of(name)})",
                               fix="choose another name")
        acct = Account.create()
        self._write_new(name, self._encrypt(acct.key, resolve_password(password)))
        return acct

    def import_key(self, name: str, private_key: str | bytes, password: str | None = None) -> LocalAccount:
        """Store an existing private key (32 bytes or 0x-hex) as ``name``."""
        path = self._path(name)
        if path.exists():
            raise AccountError(f"account {name!r} already exists ({self.address_of(name)})",
                               fix="choose another name")
        try:
            acct = Account.from_key(private_key)
        except Exception as exc:  # eth_keys raises ValueError/ValidationError variants
            raise InputError("not a valid secp256k1 private key",
                             fix="give 32 bytes as 64 hex digits, optionally 0x-prefixed") from exc
        self._write_new(name, self._encrypt(acct.key, resolve_password(password)))
        return acct

    def load(self, name: str, password: str | None = None) -> LocalAccount:
        """Decrypt ``name``; AccountError on an unknown name or a wrong password."""
        data = self._read(name)
        pw = resolve_password(password)
        try:
            key = Account.decrypt(data, pw)
        except ValueError as exc:  # eth_keyfile: "MAC mismatch"
            raise AccountError(f"wrong password for account {name!r}",
                               fix="retry with the right password (PROOFMESH_PASSWORD or the prompt)") from exc
        return Account.from_key(key)

    def address_of(self, name: str) -> str:
        """Checksum address of ``name`` without decrypting (keystore files store it)."""
        data = self._read(name)
        addr = data.get("address", "")
        if not is_hex_address(addr if addr.startswith("0x") else "0x" + addr):
            raise AccountError(f"keystore {name!r} has no valid address field",
                               fix="load it once with its password and re-import the key")
        return to_checksum_address(addr if addr.startswith("0x") else "0x" + addr)

    def list(self) -> list[tuple[str, str]]:
        """``[(name, checksum address), …]`` sorted by name."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("*.json")):
            if not _NAME.match(p.stem):
                continue
            try:
                out.append((p.stem, self.address_of(p.stem)))
            except AccountError:
                continue  # a corrupted file is reported when that account is used
        return out

    def exists(self, name: str) -> bool:
        """Whether an account called ``name`` exists."""
        return self._path(name).exists()
