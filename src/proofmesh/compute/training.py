"""Deterministic, resumable fine-tuning of a tiny GPT-2 on CPU.

A job is fully described by a :class:`JobSpec` (base weights, data, hyper-parameters,
seed, LoRA or full fine-tuning, and the *execution profile*: thread count and library
versions). Two processes that run the same spec under the same profile produce
bit-identical checkpoints (FACTS.md: torch 2.13 CPU with deterministic algorithms and a
pinned thread count); a different thread count gives different bits but the same loss,
which is what :func:`compare_results` settles with a declared tolerance.

Training is cut into segments of ``checkpoint_every`` steps. The state after every
segment (trainable tensors + optimizer state + step) is a checkpoint with a
``checkpoint_hash``; the list of those hashes is the job's *trace*. Because every step
draws its mini-batch from a generator seeded by ``(seed, step)`` and the full optimizer
state travels in the checkpoint, any single segment can be re-executed from its starting
checkpoint alone — which is all a referee has to do to settle a dispute.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from eth_hash.auto import keccak

from proofmesh.errors import InputError, VerificationError

SPEC_VERSION = 1
PAD = 256               # byte-level tokenizer: ids 0..255 are bytes, 256 is the separator
VOCAB = 257
MODES = ("lora", "full")


# --------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class ExecutionProfile:
    """What must match for two runs to be bit-identical: threads and library versions."""

    threads: int
    torch: str
    transformers: str
    peft: str

    @classmethod
    def current(cls, threads: int = 1) -> "ExecutionProfile":
        """The profile of this process when run with ``threads`` intra-op threads."""
        import peft
        import transformers

        return cls(threads=threads, torch=torch.__version__, transformers=transformers.__version__,
                   peft=peft.__version__)

    @property
    def profile_id(self) -> bytes:
        """keccak of the canonical JSON of the profile: what workers declare on chain."""
        return keccak(_canonical(asdict(self)))

    def require_local(self) -> None:
        """Raise unless this process's libraries match the profile (threads are set by us)."""
        here = ExecutionProfile.current(self.threads)
        if here != self:
            raise InputError(
                f"execution profile mismatch: job wants {asdict(self)}, this node has {asdict(here)}",
                fix="run this job on a worker with the pinned library versions, or pick a job whose "
                    "profile matches this node")


# --------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning job."""

    mode: str = "lora"
    steps: int = 32
    checkpoint_every: int = 4
    lr: float = 3e-3
    batch_size: int = 8
    seq_len: int = 32
    seed: int = 0
    lora_r: int = 4
    lora_alpha: int = 8
    heldout_fraction: float = 0.1

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad field."""
        def bad(name: str, why: str) -> InputError:
            return InputError(f"train config: {name} {why} (got {getattr(self, name)!r})",
                              fix=f"set {name} in the job config to a valid value")
        if self.mode not in MODES:
            raise bad("mode", f"must be one of {MODES}")
        for name in ("steps", "checkpoint_every", "batch_size", "seq_len", "lora_r", "lora_alpha"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise bad(name, "must be a positive integer")
        if self.steps % self.checkpoint_every:
            raise bad("steps", f"must be a multiple of checkpoint_every={self.checkpoint_every}")
        if self.steps // self.checkpoint_every > 256:
            raise bad("checkpoint_every", "gives more than 256 segments; the on-chain trace holds 256")
        if not isinstance(self.seed, int) or self.seed < 0 or self.seed >= 2**63:
            raise bad("seed", "must be an integer in [0, 2**63)")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise bad("lr", "must be in (0, 1)")
        if not (0 < self.heldout_fraction < 0.5):
            raise bad("heldout_fraction", "must be in (0, 0.5)")

    @property
    def n_segments(self) -> int:
        return self.steps // self.checkpoint_every


@dataclass(frozen=True)
class ModelShape:
    """Shape of the tiny GPT-2 (built from ``GPT2Config`` in code; nothing downloaded)."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 64

    def gpt2_config(self) -> Any:
        from transformers import GPT2Config

        # Dropout off: a dropout mask would make each step depend on global RNG state,
        # and then a segment could not be re-executed from its checkpoint alone.
        return GPT2Config(vocab_size=VOCAB, n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head,
                          n_positions=self.n_positions, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          bos_token_id=PAD, eos_token_id=PAD, tie_word_embeddings=True)


@dataclass(frozen=True)
class DataRef:
    """One input data batch: its on-chain root and the CID of its records blob (JSONL)."""

    root: str
    cid: str


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to reproduce a job bit for bit."""

    base_version: int                       # ModelRegistry id of the base model version
    base_weights_cid: str                   # safetensors blob of the base weights
    data: tuple[DataRef, ...]
    train: TrainConfig
    profile: ExecutionProfile
    model: ModelShape = field(default_factory=ModelShape)
    version: int = SPEC_VERSION

    def validate(self) -> None:
        """Raise :class:`InputError` on any malformed field (before anything is escrowed)."""
        if not isinstance(self.base_version, int) or isinstance(self.base_version, bool) or self.base_version < 1:
            raise InputError(f"spec: base_version must be a model version id (>= 1), got {self.base_version!r}",
                             fix="pass the version id printed by `proofmesh model register`")
        if not self.base_weights_cid:
            raise InputError("spec: base_weights_cid is empty", fix="name the CID of the base weights blob")
        if not self.data:
            raise InputError("spec: no data batches", fix="pass at least one --data BATCH")
        for d in self.data:
            if not (d.root.startswith("0x") and len(d.root) == 66) or not d.cid:
                raise InputError(f"spec: bad data batch {d!r}",
                                 fix="each data batch needs a bytes32 root and the CID of its records")
        if self.profile.threads not in range(1, 65):
            raise InputError(f"spec: profile.threads must be 1..64, got {self.profile.threads}",
                             fix="pin a thread count, e.g. 1")
        self.train.validate()
        if self.train.seq_len > self.model.n_positions:
            raise InputError(f"spec: seq_len {self.train.seq_len} exceeds n_positions {self.model.n_positions}",
                             fix="lower seq_len or raise model.n_positions")

    def to_bytes(self) -> bytes:
        """Canonical JSON: the bytes whose CID names the spec on chain."""
        return _canonical(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "JobSpec":
        """Parse and validate a spec blob; raise :class:`InputError` naming the bad field."""
        try:
            d = json.loads(raw)
            spec = cls(base_version=d["base_version"], base_weights_cid=d["base_weights_cid"],
                       data=tuple(DataRef(**x) for x in d["data"]), train=TrainConfig(**d["train"]),
                       profile=ExecutionProfile(**d["profile"]), model=ModelShape(**d.get("model", {})),
                       version=d.get("version", SPEC_VERSION))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"job spec is malformed: {exc}",
                             fix="regenerate it with `proofmesh compute post` or fix the field named") from exc
        if spec.version != SPEC_VERSION:
            raise InputError(f"job spec version {spec.version} is not supported (this node: {SPEC_VERSION})",
                             fix="upgrade proofmesh on this node")
        spec.validate()
        return spec


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- hashing
def tensor_leaf(name: str, t: torch.Tensor) -> bytes:
    """keccak(name, dtype, shape, sha256(little-endian bytes)) of one tensor.

    sha256 over the bulk (hashlib: ~1.3 GB/s, no copy) like the models capability's
    per-tensor hashes; keccak only over the short header, so checkpointing stays cheap.
    """
    t = t.detach().contiguous().cpu()
    header = _canonical([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
    # numpy's buffer is the native (little-endian on every supported CPU) byte order.
    digest = hashlib.sha256(t.reshape(-1).numpy().data if t.dim() else t.reshape(1).numpy().data).digest()
    return keccak(header + digest)


def state_hash(tensors: dict[str, torch.Tensor], step: int) -> bytes:
    """Hash of a training state: step + every tensor, in name order. A checkpoint hash."""
    leaves = b"".join(tensor_leaf(n, tensors[n]) for n in sorted(tensors))
    return keccak(step.to_bytes(32, "big") + leaves)


# --------------------------------------------------------------------------- model
def build_base_weights(shape: ModelShape = ModelShape(), seed: int = 0) -> dict[str, torch.Tensor]:
    """Random-init base weights of the tiny GPT-2 (the chain's 'genesis' model)."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(shape.gpt2_config())
    return _untied_state(model)


def _untied_state(model: Any) -> dict[str, torch.Tensor]:
    # lm_head shares storage with wte; safetensors refuses shared tensors and the
    # weights root must count each parameter once.
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
            if k != "lm_head.weight" and not k.endswith(".attn.bias") and not k.endswith("masked_bias")}


def weights_to_bytes(weights: dict[str, torch.Tensor]) -> bytes:
    """Serialise weights as safetensors bytes (deterministic: sorted keys)."""
    from safetensors.torch import save

    return save({k: weights[k].contiguous() for k in sorted(weights)})


def weights_from_bytes(raw: bytes) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes; raise :class:`VerificationError` if they are not safetensors."""
    from safetensors.torch import load

    try:
        return load(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise VerificationError(f"weights blob is not valid safetensors: {exc}",
                                fix="re-fetch the blob from another node") from exc


def _load_model(spec: JobSpec, base: dict[str, torch.Tensor]) -> Any:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(spec.model.gpt2_config())
    missing, unexpected = model.load_state_dict(base, strict=False)
    real_missing = [m for m in missing if m != "lm_head.weight" and not m.endswith(".attn.bias")]
    if real_missing or unexpected:
        raise VerificationError(f"base weights do not fit the model shape: missing {real_missing[:3]}, "
                                f"unexpected {list(unexpected)[:3]}",
                                fix="use a base model version built with the same model shape")
    model.tie_weights()
    if spec.train.mode == "lora":
        from peft import LoraConfig, get_peft_model

        # LoRA A matrices are randomly initialised: seed from the job so every replica
        # starts from the same adapter.
        torch.manual_seed(spec.train.seed)
        cfg = LoraConfig(r=spec.train.lora_r, lora_alpha=spec.train.lora_alpha, lora_dropout=0.0,
                         target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, bias="none")
        model = get_peft_model(model, cfg)
    model.train()
    return model


# --------------------------------------------------------------------------- data
def records_to_windows(records: Iterable[bytes], seq_len: int) -> torch.Tensor:
    """Byte-level token windows of ``seq_len + 1`` tokens (input + shifted target)."""
    stream: list[int] = []
    for r in records:
        stream.extend(r)
        stream.append(PAD)
    n = (len(stream) - 1) // seq_len
    if n < 2:
        raise InputError(f"training data too small: {len(stream)} tokens give {n} windows of {seq_len}",
                         fix="add records to the data batch or lower seq_len")
    t = torch.tensor(stream[: n * seq_len + 1], dtype=torch.long)
    return torch.stack([t[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)])


def split_heldout(windows: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, heldout): the last ``fraction`` of windows are held out for the tolerance check."""
    k = max(1, int(math.ceil(len(windows) * fraction)))
    return windows[:-k], windows[-k:]


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Mini-batch of step ``step``: a pure function of (seed, step), so segments re-execute alone."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)
    return torch.randint(n, (batch_size,), generator=g)


# --------------------------------------------------------------------------- training
@dataclass
class Checkpoint:
    """Training state after ``step`` steps: trainable tensors + optimizer state."""

    step: int
    tensors: dict[str, torch.Tensor]

    @property
    def hash(self) -> bytes:
        return state_hash(self.tensors, self.step)

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        return save({k: self.tensors[k].contiguous() for k in sorted(self.tensors)},
                    metadata={"step": str(self.step)})

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Checkpoint":
        from safetensors.torch import load

        try:
            tensors = load(raw)
            # The step lives in the safetensors header metadata (8-byte length + JSON).
            n = int.from_bytes(raw[:8], "little")
            meta = json.loads(raw[8:8 + n]).get("__metadata__", {})
            return cls(step=int(meta["step"]), tensors=tensors)
        except Exception as exc:
            raise VerificationError(f"checkpoint blob is malformed: {exc}",
                                    fix="re-fetch the checkpoint from another node") from exc


@dataclass
class TrainResult:
    """Outcome of a (partial) run: trace of checkpoint hashes, last checkpoint, final weights."""

    trace: list[bytes]                      # checkpoint hash at steps 0, K, 2K, ... (n_segments + 1)
    checkpoints: list[Checkpoint]
    weights: dict[str, torch.Tensor] | None  # merged full weights (only when run to the end)
    losses: list[float]


class Trainer:
    """Runs one job spec deterministically; can start at any checkpoint of the trace."""

    def __init__(self, spec: JobSpec, base_weights: dict[str, torch.Tensor], records: list[bytes]) -> None:
        spec.validate()
        self.spec = spec
        self.base = base_weights
        windows = records_to_windows(records, spec.train.seq_len)
        self.train_windows, self.heldout = split_heldout(windows, spec.train.heldout_fraction)

    # -- determinism switches: applied before every run, because another library in the
    # same process may have changed them.
    def _pin(self) -> None:
        torch.set_num_threads(self.spec.profile.threads)
        torch.use_deterministic_algorithms(True)

    def _fresh(self) -> tuple[Any, torch.optim.Optimizer, list[tuple[str, torch.nn.Parameter]]]:
        model = _load_model(self.spec, self.base)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW([p for _, p in named], lr=self.spec.train.lr, weight_decay=0.0,
                                foreach=False)
        return model, opt, named

    @staticmethod
    def _capture(step: int, named: list[tuple[str, torch.nn.Parameter]], opt: torch.optim.Optimizer) -> Checkpoint:
        tensors = {f"param.{n}": p.detach().clone() for n, p in named}
        for i, (n, p) in enumerate(named):
            st = opt.state.get(p)
            if st:
                for key in ("step", "exp_avg", "exp_avg_sq"):
                    tensors[f"opt.{n}.{key}"] = torch.as_tensor(st[key]).detach().clone()
        return Checkpoint(step=step, tensors=tensors)

    @staticmethod
    def _restore(ck: Checkpoint, named: list[tuple[str, torch.nn.Parameter]], opt: torch.optim.Optimizer) -> None:
        expected = {f"param.{n}" for n, _ in named}
        got = {k for k in ck.tensors if k.startswith("param.")}
        if expected != got:
            raise VerificationError("checkpoint does not match the job's trainable parameters",
                                    fix="use a checkpoint produced for this job spec")
        with torch.no_grad():
            for n, p in named:
                p.copy_(ck.tensors[f"param.{n}"])
        for n, p in named:
            if f"opt.{n}.step" in ck.tensors:
                opt.state[p] = {"step": ck.tensors[f"opt.{n}.step"].clone(),
                                "exp_avg": ck.tensors[f"opt.{n}.exp_avg"].clone(),
                                "exp_avg_sq": ck.tensors[f"opt.{n}.exp_avg_sq"].clone()}

    def run(self, start: Checkpoint | None = None, until_step: int | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None,
            perturb: float = 0.0, skip_fraction: float = 0.0) -> TrainResult:
        """Train from ``start`` (or step 0) to ``until_step`` (or the end).

        ``perturb`` and ``skip_fraction`` exist only so tests, the demo and the benches
        can play a cheating worker: ``perturb`` adds noise to the final weights,
        ``skip_fraction`` skips that fraction of segments (keeping the state unchanged).
        """
        cfg = self.spec.train
        until = cfg.steps if until_step is None else until_step
        if until % cfg.checkpoint_every or not (0 <= until <= cfg.steps):
            raise InputError(f"until_step {until} is not a checkpoint boundary of this job",
                             fix=f"use a multiple of {cfg.checkpoint_every} up to {cfg.steps}")
        self._pin()
        model, opt, named = self._fresh()
        step = 0
        if start is not None:
            if start.step % cfg.checkpoint_every or start.step > until:
                raise InputError(f"checkpoint at step {start.step} cannot start a segment ending at {until}",
                                 fix="start from a checkpoint boundary before until_step")
            self._restore(start, named, opt)
            step = start.step
        first = self._capture(step, named, opt)
        trace, cks, losses = [first.hash], [first], []
        if on_checkpoint:
            on_checkpoint(first)
        n = len(self.train_windows)
        seg_rng = torch.Generator().manual_seed(cfg.seed + 7)
        while step < until:
            skip_segment = skip_fraction > 0 and float(torch.rand(1, generator=seg_rng)) < skip_fraction
            for _ in range(cfg.checkpoint_every):
                if not skip_segment:
                    batch = self.train_windows[batch_indices(cfg.seed, step, n, cfg.batch_size)]
                    logits = model(input_ids=batch[:, :-1]).logits
                    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                             batch[:, 1:].reshape(-1))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                step += 1
            ck = self._capture(step, named, opt)
            trace.append(ck.hash)
            cks.append(ck)
            if on_checkpoint:
                on_checkpoint(ck)
        weights = None
        if until == cfg.steps:
            weights = self._merged(model)
            if perturb:
                g = torch.Generator().manual_seed(cfg.seed + 99)
                weights = {k: v + perturb * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                           for k, v in weights.items()}
        return TrainResult(trace=trace, checkpoints=cks, weights=weights, losses=losses)

    def _merged(self, model: Any) -> dict[str, torch.Tensor]:
        if self.spec.train.mode == "lora":
            model = model.merge_and_unload()
        return _untied_state(model)

    def weights_at(self, ck: Checkpoint) -> dict[str, torch.Tensor]:
        """Full (merged) weights of a final checkpoint: what the result's weights root covers."""
        self._pin()
        model, opt, named = self._fresh()
        self._restore(ck, named, opt)
        return self._merged(model)

    def heldout_loss(self, weights: dict[str, torch.Tensor]) -> float:
        """Mean next-token loss of full ``weights`` on the held-out windows."""
        from transformers import GPT2LMHeadModel

        self._pin()
        model = GPT2LMHeadModel(self.spec.model.gpt2_config())
        model.load_state_dict(weights, strict=False)
        model.tie_weights()
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=self.heldout[:, :-1]).logits
            return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                           self.heldout[:, 1:].reshape(-1)))


# --------------------------------------------------------------------------- tolerance
@dataclass(frozen=True)
class Tolerance:
    """How far two honest results may differ (float noise across CPU kernels)."""

    rel_weights: float = 1e-3      # ||a - b|| / ||b|| over all floating tensors
    abs_loss: float = 1e-3         # |heldout_loss(a) - heldout_loss(b)|


@dataclass(frozen=True)
class Comparison:
    """Result of comparing a claimed state with a reference (re-executed) state."""

    rel_distance: float
    loss_claimed: float | None
    loss_reference: float | None
    exact: bool
    within: bool


def relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||b|| over the union of floating tensors; inf when the names differ."""
    if set(a) != set(b):
        return math.inf
    num = den = 0.0
    for k in b:
        if not b[k].is_floating_point():
            continue
        if a[k].shape != b[k].shape:
            return math.inf
        num += float(((a[k].double() - b[k].double()) ** 2).sum())
        den += float((b[k].double() ** 2).sum())
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


def compare_results(trainer: Trainer, claimed: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                    tol: Tolerance = Tolerance()) -> Comparison:
    """Compare two full weight sets: exact bits, relative distance and held-out loss."""
    exact = set(claimed) == set(reference) and all(torch.equal(claimed[k], reference[k]) for k in reference)
    if exact:
        return Comparison(0.0, None, None, True, True)
    dist = relative_distance(claimed, reference)
    if not math.isfinite(dist):
        return Comparison(dist, None, None, False, False)
    lc, lr = trainer.heldout_loss(claimed), trainer.heldout_loss(reference)
    return Comparison(dist, lc, lr, False, dist <= tol.rel_weights and abs(lc - lr) <= tol.abs_loss)


def compare_checkpoints(claimed: Checkpoint, reference: Checkpoint, tol: Tolerance = Tolerance()) -> Comparison:
    """Compare two checkpoints of the same step (the referee's check of one segment)."""
    if claimed.step != reference.step:
        return Comparison(math.inf, None, None, False, False)
    exact = claimed.hash == reference.hash
    dist = 0.0 if exact else relative_distance(
        {k: v for k, v in claimed.tensors.items() if k.startswith("param.")},
        {k: v for k, v in reference.tensors.items() if k.startswith("param.")})
    return Comparison(dist, None, None, exact, exact or dist <= tol.rel_weights)


def load_records(raw: bytes) -> list[bytes]:
    """Records of a data blob: JSONL with a ``text`` field per line (or plain lines)."""
    out = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text = obj["text"] if isinstance(obj, dict) else str(obj)
            out.append(str(text).encode())
        except (ValueError, KeyError):
            out.append(line)
    return out
