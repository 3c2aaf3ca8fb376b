"""Zero-knowledge inference with ezkl: circuit build (cached per model), witness, prove,
verify, and the on-chain Halo2 verifier.

The circuit is compiled from the *registered* ONNX file (a dynamic ``batch_size`` axis is
fixed to the circuit's batch), with the input as a Poseidon-hashed public instance and
the output public, parameters fixed in the circuit. So a proof binds: these weights
(through the verifying key, whose hash is registered), this input (its Poseidon hash
is instance 0, which the node's receipt commits to) and this output (instances 1.., whose
keccak the receipt commits to). The answer a node returns is the circuit's own
dequantised output, so the answer and the proof always agree.

SRS: ``gen_srs`` makes one locally — insecure (whoever made it can forge proofs), so it
is allowed only in dev mode and the circuit records ``dev_srs=True`` (on chain too).
Production passes a ceremony SRS file (e.g. ezkl's Perpetual Powers of Tau download),
pinned by its sha256.

ezkl 23 notes (see FACTS.md): everything runs offline except ``create_evm_verifier``,
which writes ``Verifier.sol`` and then fails downloading solc; we compile the file with
npm ``solcjs`` instead. ``verify`` raises on a bad proof. ezkl caches under ``$HOME``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError, NotAvailableError, ProofmeshError, VerificationError
from proofmesh.inference.model import file_sha256
from proofmesh.inference.receipt import instances_hash

# BN254 scalar field: negative circuit values are p - |x|
FIELD_P = 21888242871839275222246405745257275088548364400416034343698204186575808495617
CIRCUIT_FORMAT = 1          # bump when the build recipe changes (invalidates caches)


class ZkError(ProofmeshError):
    """ezkl failed to build a circuit or a proof."""


def _felt_int(felt: str) -> int:
    """ezkl writes field elements as little-endian hex (no 0x)."""
    return int.from_bytes(bytes.fromhex(felt.removeprefix("0x")), "little")


def _signed(v: int) -> int:
    return v - FIELD_P if v > FIELD_P // 2 else v


def _sha256_file(p: Path) -> bytes:
    return file_sha256(p)


@dataclass(frozen=True)
class Witness:
    """The circuit's forward pass on one input: what the node answers and commits to."""

    input_hash: int              # Poseidon hash of the quantised input (instance 0)
    outputs: list[int]           # output field elements (instances 1..)
    answer: np.ndarray           # dequantised outputs, shape (batch, n_out)
    path: Path                   # witness file (input to prove)

    @property
    def input_hash_bytes(self) -> bytes:
        return self.input_hash.to_bytes(32, "big")

    @property
    def output_hash(self) -> bytes:
        return instances_hash(self.outputs)


@dataclass(frozen=True)
class ZkProof:
    """A proof ready for the verifier contract: ``verifyProof(proof, instances)``."""

    proof: bytes
    instances: list[int]
    path: Path | None = None

    @property
    def proof_hash(self) -> bytes:
        """keccak256 of the proof bytes (the leaf's proof hash in an epoch root)."""
        return keccak256(self.proof)

    def to_json(self) -> dict:
        return {"proof": "0x" + self.proof.hex(), "instances": [hex(i) for i in self.instances]}

    @classmethod
    def from_json(cls, d: Mapping) -> "ZkProof":
        try:
            return cls(bytes.fromhex(d["proof"].removeprefix("0x")), [int(i, 16) for i in d["instances"]])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"malformed proof: {exc}", fix="a proof has 'proof' (hex) and 'instances' (hex list)") from exc


def _ezkl_home(workdir: Path) -> None:
    # ezkl writes ~/.ezkl and ~/.svm caches; a node's HOME may be read-only
    if not os.access(os.path.expanduser("~"), os.W_OK):
        os.environ["HOME"] = str(workdir)


class Circuit:
    """An ezkl circuit for one ONNX model at a fixed batch size, cached on disk.

    Build once with :meth:`build` (settings → calibrate → compile → SRS → setup); later
    calls with the same ONNX, batch, scale and SRS reuse the cached proving key.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        meta = self.dir / "circuit.json"
        if not meta.exists():
            raise ZkError(f"no circuit in {self.dir}", fix="build it with Circuit.build(onnx, ...)")
        self.meta = json.loads(meta.read_text())
        self.batch: int = self.meta["batch"]
        self.dev_srs: bool = self.meta["dev_srs"]
        self.logrows: int = self.meta["logrows"]
        self.onnx_hash = bytes.fromhex(self.meta["onnx_sha256"])
        settings = json.loads(self.settings_path.read_text())
        self.output_scales: list[int] = settings.get("model_output_scales", [])
        self._prove_lock = threading.Lock()   # ezkl proving is memory hungry: one at a time

    # --- files --------------------------------------------------------------------
    settings_path = property(lambda self: self.dir / "settings.json")
    compiled_path = property(lambda self: self.dir / "model.compiled")
    vk_path = property(lambda self: self.dir / "vk.key")
    pk_path = property(lambda self: self.dir / "pk.key")
    srs_path = property(lambda self: self.dir / "kzg.srs")

    @property
    def settings_hash(self) -> bytes:
        return _sha256_file(self.settings_path)

    @property
    def vk_hash(self) -> bytes:
        return _sha256_file(self.vk_path)

    @property
    def srs_hash(self) -> bytes:
        return bytes.fromhex(self.meta["srs_sha256"])

    # --- building -----------------------------------------------------------------
    @classmethod
    def build(cls, onnx_path: str | Path, cache_dir: str | Path, *, batch: int = 1, scale: int = 7,
              max_logrows: int = 14, min_logrows: int | None = None, srs: str | Path | None = None,
              dev: bool = False, calibration: np.ndarray | None = None, seed: int = 0) -> "Circuit":
        """Build (or load from cache) the circuit of ``onnx_path`` proving ``batch`` rows.

        ``srs``: a ceremony SRS file for production; without it a local SRS is generated,
        which requires ``dev=True`` (it is insecure) and marks the circuit ``dev_srs``.
        ``max_logrows``: fewer rows means more columns and a bigger generated verifier;
        for the small MLP, logrows 12 gives a 27 KB verifier (over the 24,576-byte
        EIP-170 limit) while 14 gives 19.8 KB, hence the default. ``min_logrows`` forces
        at least that many (calibration picks the fewest that fit), e.g. for batched
        circuits whose verifier would otherwise be too big to deploy.
        """
        import ezkl

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise InputError(f"ONNX file {onnx_path} does not exist", fix="give the model's .onnx path")
        if batch < 1 or batch > 256:
            raise InputError(f"circuit batch must be 1..256, got {batch}", fix="use a small batch (1-64)")
        if srs is None and not dev:
            raise NotAvailableError("no ceremony SRS given and dev mode is off",
                                    fix="pass --srs <Perpetual Powers of Tau file for BN254> (production) "
                                        "or enable dev mode to generate an insecure local SRS")
        srs_hash = _sha256_file(Path(srs)).hex() if srs is not None else "dev"
        onnx_hash = file_sha256(onnx_path)
        key = hashlib.sha256(json.dumps([CIRCUIT_FORMAT, onnx_hash.hex(), batch, scale, max_logrows, srs_hash]
                                        + ([min_logrows] if min_logrows else []))
                             .encode()).hexdigest()[:24]
        directory = Path(cache_dir) / key
        if (directory / "circuit.json").exists():
            return cls(directory)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=Path(cache_dir)))
        _ezkl_home(tmp)
        try:
            from proofmesh.inference.model import OnnxModel

            model = OnnxModel(onnx_path)
            if len(model.inputs) != 1:
                raise InputError("zk circuits support single-input models", fix="use redundant mode for this model")
            spec = model.inputs[0]
            shape = [batch] + [int(d) for d in spec.shape[1:]]
            if any(not isinstance(d, int) for d in spec.shape[1:]):
                raise InputError(f"zk circuits need fixed non-batch dimensions, model has {spec.describe()}",
                                 fix="export the model with only the batch axis dynamic")
            rng = np.random.default_rng(seed)
            cal = calibration if calibration is not None else rng.random((4 * batch, *shape[1:]), dtype=np.float32)
            cal = np.asarray(cal, dtype=np.float32).reshape(-1, *shape[1:])
            cal_rows = cal[: max(batch, (len(cal) // batch) * batch)]
            run_args = ezkl.PyRunArgs()
            run_args.input_visibility = "hashed"
            run_args.output_visibility = "public"
            run_args.param_visibility = "fixed"
            run_args.input_scale = scale
            run_args.param_scale = scale
            run_args.variables = [("batch_size", batch)]
            s, c = str(tmp / "settings.json"), str(tmp / "model.compiled")
            ezkl.gen_settings(str(onnx_path), s, py_run_args=run_args)
            cal_file = tmp / "calibration.json"
            cal_file.write_text(json.dumps({"input_data": [cal_rows[i:i + batch].reshape(-1).tolist()
                                                           for i in range(0, len(cal_rows), batch)]}))
            ezkl.calibrate_settings(str(cal_file), str(onnx_path), s, "resources", scales=[scale],
                                    max_logrows=max_logrows)
            if min_logrows:
                doc = json.loads(Path(s).read_text())
                if doc["run_args"]["logrows"] < min_logrows:
                    doc["run_args"]["logrows"] = int(min_logrows)
                    Path(s).write_text(json.dumps(doc))
            ezkl.compile_circuit(str(onnx_path), c, s)
            logrows = int(json.loads(Path(s).read_text())["run_args"]["logrows"])
            if srs is not None:
                shutil.copyfile(srs, tmp / "kzg.srs")
            else:
                ezkl.gen_srs(str(tmp / "kzg.srs"), logrows)
            # a mock run catches a circuit too small for its lookups before the costly setup
            probe = tmp / "probe.json"
            probe.write_text(json.dumps({"input_data": [cal_rows[:batch].reshape(-1).tolist()]}))
            ezkl.gen_witness(str(probe), c, str(tmp / "probe.wit.json"))
            try:
                ezkl.mock(str(tmp / "probe.wit.json"), c)
            except Exception as exc:
                raise ZkError(f"circuit fails its mock run at logrows {logrows}: {exc}",
                              fix="raise max_logrows or lower the scale") from exc
            ezkl.setup(c, str(tmp / "vk.key"), str(tmp / "pk.key"), str(tmp / "kzg.srs"))
            (tmp / "circuit.json").write_text(json.dumps({
                "format": CIRCUIT_FORMAT, "onnx_sha256": onnx_hash.hex(), "batch": batch, "scale": scale,
                "logrows": logrows, "dev_srs": srs is None,
                "srs_sha256": _sha256_file(tmp / "kzg.srs").hex(), "input_shape": shape}))
            try:
                os.replace(tmp, directory)
            except OSError:   # built concurrently by another process: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except ProofmeshError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ZkError(f"ezkl could not build the circuit: {exc}", fix="check the model is MLP/conv sized") from exc
        return cls(directory)

    # --- proving ------------------------------------------------------------------
    def check_input(self, x: np.ndarray) -> np.ndarray:
        shape = tuple(self.meta["input_shape"])
        x = np.asarray(x, dtype=np.float32)
        if x.shape != shape:
            raise InputError(f"the zk circuit proves inputs of shape {list(shape)}, got {list(x.shape)}",
                             fix=f"send exactly {shape[0]} row(s) in zk mode, or use redundant mode")
        return x

    def witness(self, x: np.ndarray, workdir: Path) -> Witness:
        """Quantise ``x`` and run the circuit's forward pass (milliseconds)."""
        import ezkl

        x = self.check_input(x)
        workdir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".json", dir=workdir)
        with os.fdopen(fd, "w") as f:
            json.dump({"input_data": [x.reshape(-1).tolist()]}, f)
        wpath = Path(name).with_suffix(".wit.json")
        try:
            w = ezkl.gen_witness(name, str(self.compiled_path), str(wpath))
        except Exception as exc:
            raise ZkError(f"ezkl witness generation failed: {exc}", fix="check the input values") from exc
        finally:
            os.unlink(name)
        outs = [_felt_int(f) for row in w["outputs"] for f in row]
        scales = self.output_scales or [0]
        per_out = [len(row) for row in w["outputs"]]
        deq, k = [], 0
        for n, sc in zip(per_out, scales + [scales[-1]] * (len(per_out) - len(scales))):
            deq.extend(_signed(v) / float(2 ** sc) for v in outs[k:k + n])
            k += n
        answer = np.asarray(deq, dtype=np.float32).reshape(self.batch, -1)
        input_hash = _felt_int(w["processed_inputs"]["poseidon_hash"][0])
        return Witness(input_hash, outs, answer, wpath)

    def prove(self, witness: Witness, out: Path) -> ZkProof:
        """Prove a witness (seconds); writes the proof JSON to ``out``."""
        import ezkl

        with self._prove_lock:
            try:
                ezkl.prove(str(witness.path), str(self.compiled_path), str(self.pk_path), str(out),
                           str(self.srs_path))
            except Exception as exc:
                raise ZkError(f"ezkl prove failed: {exc}", fix="re-build the circuit; check memory") from exc
        return self.load_proof(out)

    @staticmethod
    def load_proof(path: Path) -> ZkProof:
        p = json.loads(Path(path).read_text())
        instances = [_felt_int(f) for row in p["instances"] for f in row]
        return ZkProof(bytes.fromhex(p["hex_proof"].removeprefix("0x")), instances, Path(path))

    def verify(self, proof_path: Path) -> bool:
        """Verify a proof file locally; raises VerificationError when it does not verify."""
        import ezkl

        try:
            ok = ezkl.verify(str(proof_path), str(self.settings_path), str(self.vk_path), str(self.srs_path))
        except Exception as exc:  # ezkl raises on a bad proof instead of returning False
            raise VerificationError(f"proof does not verify: {exc}", fix="ask the node for a new proof") from exc
        if not ok:
            raise VerificationError("proof does not verify", fix="ask the node for a new proof")
        return True

    def verify_proof(self, proof: ZkProof, workdir: Path) -> bool:
        """Verify an in-memory proof (as received over HTTP) by writing ezkl's proof file."""
        doc = {"protocol": None, "split": None, "pretty_public_inputs": None, "timestamp": 0, "version": "23.0.5",
               "proof": list(proof.proof), "hex_proof": "0x" + proof.proof.hex(),
               "instances": [[i.to_bytes(32, "little").hex() for i in proof.instances]]}
        workdir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".proof.json", dir=workdir)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        try:
            return self.verify(Path(name))
        finally:
            os.unlink(name)

    # --- on-chain verifier --------------------------------------------------------
    def verifier_artifact(self) -> tuple[list, bytes]:
        """(abi, bytecode) of the Halo2 verifier for this circuit, compiled with npm solcjs."""
        out = self.dir / "verifier.json"
        if out.exists():
            d = json.loads(out.read_text())
            return d["abi"], bytes.fromhex(d["bytecode"])
        sol = self.dir / "Verifier.sol"
        if not sol.exists():
            self._write_solidity(sol)
        abi, bytecode = compile_solidity(sol, "Halo2Verifier")
        out.write_text(json.dumps({"abi": abi, "bytecode": bytecode.hex()}))
        return abi, bytecode

    def _write_solidity(self, sol: Path) -> None:
        import ezkl

        async def render() -> None:
            await ezkl.create_evm_verifier(str(self.vk_path), str(self.settings_path), str(sol),
                                           str(self.dir / "Verifier.abi"), str(self.srs_path))

        def run() -> None:
            try:
                asyncio.run(render())
            except Exception:
                # ezkl 23 writes Verifier.sol, then fails downloading solc (offline): expected
                pass

        t = threading.Thread(target=run)   # asyncio.run cannot nest inside a running loop
        t.start()
        t.join()
        if not sol.exists() or sol.stat().st_size == 0:
            raise ZkError("ezkl did not write Verifier.sol", fix="check the verifying key and settings")

    def deploy_verifier(self, chain) -> str:
        """Deploy the verifier contract; returns its address."""
        abi, bytecode = self.verifier_artifact()
        factory = chain.w3.eth.contract(abi=abi, bytecode=bytecode)
        res = chain.transact(factory.constructor())
        return res.contract_address


def compile_solidity(sol: Path, contract: str) -> tuple[list, bytes]:
    """Compile a Solidity file with npm ``solcjs`` (offline); returns (abi, bytecode)."""
    from proofmesh.chain.anvil import find_binary

    solcjs = find_binary("solcjs")
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([solcjs, "--bin", "--abi", "--optimize", "-o", out, sol.name],
                              cwd=sol.parent, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ZkError(f"solcjs failed on {sol.name}: {proc.stderr.strip()[:500]}", fix="check the npm solc install")
        stem = f"{sol.stem}_sol_{contract}"
        try:
            abi = json.loads((Path(out) / f"{stem}.abi").read_text())
            bytecode = bytes.fromhex((Path(out) / f"{stem}.bin").read_text().strip())
        except FileNotFoundError as exc:
            raise ZkError(f"solcjs produced no {contract} in {sol.name}", fix="check the contract name") from exc
    return abi, bytecode
