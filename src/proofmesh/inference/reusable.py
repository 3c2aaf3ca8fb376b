"""zk verifiers under EIP-170: ezkl's reusable Halo2 verifier + a per-circuit VK artifact.

ezkl's generated (dedicated) verifier inlines the verifying key into its code, so a
batched circuit's verifier outgrows EIP-170's 24,576 bytes (30.5 KB at B=16). ezkl 23 can
instead render one *reusable* verifier (``Halo2VerifierReusable``, the same code for every
circuit, ~10.9 KB) that reads the key from a VK artifact (VKA: the circuit's commitments,
including the fixed columns that hold the weights, plus its layout) passed as
``verifyProof(proof, instances, bytes32[] vka)`` and registered with ``registerVka``.

On chain, per circuit:
* the VKA is the code of a data contract (``0x00 || words``: the STOP byte makes it
  uncallable; 7.1 KB for the 4-8-3 MLP, 10.8 KB at B=16);
* ``Halo2VkaBinding`` (solidity/Halo2VkaBinding.sol, 1.5 KB of code) pins the shared verifier's
  code hash and the VKA (address, code hash, digest) in its immutables, registers the
  VKA, and answers the dedicated verifier's ``verifyProof(bytes,uint256[])`` by copying
  the VKA from the data contract into the call. InferenceRegistry registers the binding
  as the circuit's verifier and pins its extcodehash (audit L6), which covers all of it.

One shared verifier per chain: the first publisher deploys it; later ones find it from the
``CircuitRegistered`` events (a binding's ``verifier()``) and reuse it when its code is
the one compiled here.

What the chain cannot check is that the VKA was generated from the registered verifying
key (that takes ezkl). :func:`check_binding` does: nodes (at startup) and clients
regenerate the VKA from their own vk/settings/SRS and refuse a registered binding whose
VKA, verifier code or binding code differ (``VerificationError``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from eth_utils import to_checksum_address

from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError, VerificationError

EIP170_LIMIT = 24_576
BINDING = "Halo2VkaBinding"
REUSABLE = "Halo2VerifierReusable"
_SOL_DIR = Path(__file__).parent / "solidity"
_lock = threading.Lock()


def _zk_error(msg: str, fix: str):
    from proofmesh.inference.zk import ZkError
    return ZkError(msg, fix=fix)


def _run_ezkl_async(make_coro) -> Exception | None:
    """Run one of ezkl's async calls to completion on its own thread (asyncio.run cannot nest
    inside a running loop); returns the exception it raised, if any."""
    box: list[Exception] = []

    async def main():
        return await make_coro()    # ezkl needs the running loop when the call is made

    def run() -> None:
        try:
            asyncio.run(main())
        except Exception as exc:   # noqa: BLE001 (reported to the caller)
            box.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box[0] if box else None


def _cache_dir() -> Path:
    from proofmesh.chain.compiler import _cache_dir as vyper_cache
    d = vyper_cache().parent / "solidity"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _compile_cached(sol: Path, contract: str) -> tuple[list, bytes]:
    """solcjs output for ``sol``, cached by the source's sha256 (compiling costs seconds)."""
    from proofmesh.inference.zk import compile_solidity

    key = hashlib.sha256(sol.read_bytes()).hexdigest()[:24]
    out = _cache_dir() / f"{contract}-{key}.json"
    if out.exists():
        d = json.loads(out.read_text())
        return d["abi"], bytes.fromhex(d["bytecode"])
    abi, bytecode = compile_solidity(sol, contract)
    tmp = out.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps({"abi": abi, "bytecode": bytecode.hex()}))
    tmp.replace(out)
    return abi, bytecode


# --- artifacts ----------------------------------------------------------------

def vka_words(circuit) -> bytes:
    """The circuit's VKA as ``bytes32[]`` words (ezkl ``create_evm_vka``), cached in its directory."""
    import ezkl

    path = circuit.dir / "vka.bytes"
    if not path.exists():
        tmp = circuit.dir / "vka.bytes.tmp"
        exc = _run_ezkl_async(lambda: ezkl.create_evm_vka(str(circuit.vk_path), str(circuit.settings_path),
                                                          str(tmp), str(circuit.srs_path)))
        if exc is not None or not tmp.exists():
            raise _zk_error(f"ezkl could not write the VK artifact: {exc}", fix="check the circuit's vk and settings")
        tmp.replace(path)
    raw = path.read_bytes()
    # ezkl writes a bincode Vec<[u8; 32]>: u64 little-endian word count, then the words
    (n,) = struct.unpack_from("<Q", raw)
    words = raw[8:]
    if len(words) != 32 * n or n == 0:
        raise _zk_error(f"{path} is not a VKA ({len(raw)} bytes for {n} words)", fix=f"delete {path} and retry")
    if len(words) + 1 > EIP170_LIMIT:
        raise _zk_error(f"the VKA is {len(words):,} bytes: it does not fit one data contract under EIP-170",
                        fix="raise the circuit's logrows (fewer columns, smaller key)")
    return words


def reusable_verifier_artifact(circuit) -> tuple[list, bytes]:
    """(abi, creation code) of ezkl's reusable verifier, rendered from ``circuit`` and compiled with solcjs."""
    import ezkl

    sol = circuit.dir / "VerifierReusable.sol"
    if not sol.exists() or sol.stat().st_size == 0:
        # ezkl renders the file, then fails downloading solc (offline): the file is what we need
        _run_ezkl_async(lambda: ezkl.create_evm_verifier(str(circuit.vk_path), str(circuit.settings_path), str(sol),
                                                         str(circuit.dir / "VerifierReusable.abi"),
                                                         str(circuit.srs_path), True))
        if not sol.exists() or sol.stat().st_size == 0:
            raise _zk_error("ezkl did not write the reusable verifier", fix="check the circuit's vk and settings")
    return _compile_cached(sol, REUSABLE)


def binding_artifact() -> tuple[list, bytes]:
    """(abi, creation code) of Halo2VkaBinding."""
    return _compile_cached(_SOL_DIR / f"{BINDING}.sol", BINDING)


def data_initcode(words: bytes) -> bytes:
    """Creation code whose deployed code is ``0x00 || words`` (a data contract)."""
    n = len(words) + 1
    if n > EIP170_LIMIT:
        raise InputError(f"{n:,} bytes do not fit a contract (EIP-170: {EIP170_LIMIT:,})", fix="use a smaller VKA")
    # PUSH2 n, DUP1, PUSH1 12, PUSH1 0, CODECOPY, PUSH1 0, RETURN; then the code
    return bytes([0x61]) + n.to_bytes(2, "big") + bytes.fromhex("80600c6000396000f3") + b"\x00" + words


# --- deployment ---------------------------------------------------------------

@dataclass(frozen=True)
class BoundVerifier:
    """A circuit's verifier on chain: the binding InferenceRegistry calls, the shared verifier, the VKA."""

    binding: str
    verifier: str
    vka: str
    vka_digest: bytes
    deployed_verifier: bool      # this call deployed the shared verifier (the first circuit on the chain)


def _runtime_of(creation: bytes, code: bytes) -> bool:
    return bool(code) and code in creation


def find_shared_verifier(chain, creation: bytes) -> str | None:
    """A reusable verifier already used by a registered circuit whose code is ``creation``'s runtime."""
    abi, _ = binding_artifact()
    seen: set[str] = set()
    for ev in reversed(chain.events("InferenceRegistry", "CircuitRegistered", from_block=0)):
        addr = ev["args"]["verifier"]
        if addr in seen:
            continue
        seen.add(addr)
        try:
            shared = chain.call(chain.w3.eth.contract(address=addr, abi=abi).functions.verifier())
        except Exception:   # noqa: BLE001 (a dedicated verifier has no verifier())
            continue
        if _runtime_of(creation, bytes(chain.w3.eth.get_code(shared))):
            return to_checksum_address(shared)
    return None


def _deploy(chain, abi: list, creation: bytes, *args) -> str:
    return chain.transact(chain.w3.eth.contract(abi=abi, bytecode=creation).constructor(*args)).contract_address


def deploy_bound_verifier(chain, circuit) -> BoundVerifier:
    """Deploy (or reuse) the shared reusable verifier, this circuit's VKA and its binding."""
    words = vka_words(circuit)
    abi_v, creation_v = reusable_verifier_artifact(circuit)
    abi_b, creation_b = binding_artifact()
    with _lock:
        shared = find_shared_verifier(chain, creation_v)
        deployed = shared is None
        if deployed:
            shared = _deploy(chain, abi_v, creation_v)
        vka = _deploy(chain, [], data_initcode(words))
        binding = _deploy(chain, abi_b, creation_b, shared, vka, circuit.vk_hash)
    return BoundVerifier(to_checksum_address(binding), to_checksum_address(shared), to_checksum_address(vka),
                         keccak256(words), deployed)


def is_binding(chain, address: str) -> bool:
    """Is the contract at ``address`` a Halo2VkaBinding (rather than a dedicated verifier)?"""
    abi, _ = binding_artifact()
    try:
        chain.call(chain.w3.eth.contract(address=to_checksum_address(address), abi=abi).functions.vkaDigest())
        return True
    except Exception:   # noqa: BLE001
        return False


def check_binding(chain, address: str, circuit, vk_hash: bytes) -> None:
    """Audit L6 for bound verifiers: refuse (VerificationError) unless the binding at ``address``
    is Halo2VkaBinding's code made for the VKA generated from *this* circuit's verifying key,
    over the reusable verifier compiled here, for the registered ``vk_hash``."""
    abi_b, creation_b = binding_artifact()
    b = chain.w3.eth.contract(address=to_checksum_address(address), abi=abi_b)
    try:
        shared, vka, digest, claimed = (chain.call(b.functions.verifier()), chain.call(b.functions.vka()),
                                        bytes(chain.call(b.functions.vkaDigest())),
                                        bytes(chain.call(b.functions.vkHash())))
    except Exception as exc:   # noqa: BLE001
        raise VerificationError(f"the verifier at {address} is not a Halo2VkaBinding ({exc})",
                                fix="do not trust proofs for this version") from None
    words = vka_words(circuit)
    if bytes(chain.w3.eth.get_code(vka)) != b"\x00" + words or digest != keccak256(words):
        raise VerificationError(f"the VKA at {vka} is not the one generated from this verifying key "
                                "(a key for other weights)", fix="do not trust proofs for this version")
    if claimed != vk_hash or circuit.vk_hash != vk_hash:
        raise VerificationError("the binding names another verifying key than the registered one",
                                fix="use the circuit the version was registered with")
    _, creation_v = reusable_verifier_artifact(circuit)
    if not _runtime_of(creation_v, bytes(chain.w3.eth.get_code(shared))):
        raise VerificationError(f"the shared verifier at {shared} is not ezkl's reusable verifier compiled here",
                                fix="do not trust proofs for this version")
    # the binding's own code: replay its constructor (same state, same arguments) and compare
    ctor = chain.w3.eth.contract(abi=abi_b, bytecode=creation_b).constructor(shared, vka, vk_hash)
    expected = bytes(chain.w3.eth.call({"data": ctor.data_in_transaction}))
    if bytes(chain.w3.eth.get_code(address)) != expected:
        raise VerificationError(f"the code at {address} is not Halo2VkaBinding's",
                                fix="do not trust proofs for this version")
