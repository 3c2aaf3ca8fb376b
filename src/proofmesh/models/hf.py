"""Hugging Face integration: lineage recorded while training, and model cards that agree with it.

``ProofmeshCallback`` is a ``transformers.TrainerCallback``: every checkpoint the Trainer
saves is hashed and registered as a child of the previous one (the first as a child of
``parent``), with the run's data batches and training config, and a model card is
written into the checkpoint folder. ``write_model_card`` writes the README.md front
matter (``base_model``, ``datasets``, ``proofmesh`` version id and weights root) so the
Hub's model tree and the on-chain lineage say the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from transformers import TrainerCallback

from proofmesh.errors import InputError
from proofmesh.models.weights import manifest

CARD_FILE = "README.md"


def _yaml_scalar(v) -> str:
    # JSON strings are valid YAML scalars and escape everything that needs escaping.
    return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def write_model_card(folder: str | Path, record, *, base_model: str | None = None,
                     datasets: Sequence[str] = (), registry_address: str = "", chain_id: int = 0,
                     extra_text: str = "") -> Path:
    """Write README.md with Hub-compatible front matter describing ``record`` (a VersionRecord).

    ``base_model`` is the Hub id of the base (if any); otherwise ``proofmesh:v<parent>`` so the
    card still points at its parent. ``datasets`` defaults to the version's data batch roots.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder", fix="write the card beside the weights")
    datasets = list(datasets) or [f"proofmesh:batch:{b}" for b in record.data_batches]
    base = base_model or (f"proofmesh:v{record.base or record.parent}" if (record.base or record.parent) else None)
    lines = ["---", "library_name: " + ("peft" if record.kind == "lora" else "transformers"),
             "tags:", "  - proofmesh"]
    if base:
        lines.append("base_model: " + _yaml_scalar(base))
        rel = "adapter" if record.kind == "lora" else "finetune"
        lines.append("base_model_relation: " + rel)
    if datasets:
        lines.append("datasets:")
        lines.extend("  - " + _yaml_scalar(d) for d in datasets)
    lines += ["proofmesh:",
              f"  version_id: {record.id}",
              f"  name: {_yaml_scalar(record.name)}",
              f"  weights_root: {_yaml_scalar(record.weights_root)}",
              f"  parent: {record.parent}",
              f"  kind: {record.kind}",
              f"  chain_id: {chain_id}",
              f"  registry: {_yaml_scalar(registry_address)}",
              "---", "",
              f"# {record.name} — proofmesh version {record.id}", "",
              f"Weights root `{record.weights_root}` (Merkle root over per-tensor sha256; "
              f"check with `proofmesh model verify . {record.id}`).", ""]
    if extra_text:
        lines += [extra_text, ""]
    path = folder / CARD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


def read_model_card(folder: str | Path) -> dict:
    """The front matter of a card written by :func:`write_model_card` (as a dict)."""
    import yaml

    text = (Path(folder) / CARD_FILE).read_text()
    if not text.startswith("---\n"):
        raise InputError(f"{folder}/{CARD_FILE} has no front matter", fix="write it with write_model_card")
    return yaml.safe_load(text.split("---\n", 2)[1])


class ProofmeshCallback(TrainerCallback):
    """Register every saved checkpoint as a child version; write its model card.

    ``client`` is a :class:`~proofmesh.models.registry.ModelRegistryClient`. For a PEFT
    run (the checkpoint holds ``adapter_model.safetensors``) pass ``base`` (the base
    model's version id); ``parent`` is the version training started from.
    """

    def __init__(self, client, name: str, *, parent: int = 0, base: int = 0, data_batches: Sequence[str] = (),
                 job_id: int = 0, base_model: str | None = None, datasets: Sequence[str] = ()) -> None:
        self.client = client
        self.name = name
        self.parent = parent
        self.base = base
        self.data_batches = list(data_batches)
        self.job_id = job_id
        self.base_model = base_model
        self.datasets = list(datasets)
        self.registered: list[int] = []

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return control
        config = {"global_step": state.global_step, "epoch": state.epoch,
                  "training_args": json.loads(args.to_json_string())}
        model_config = folder / "config.json"
        if model_config.exists():
            config["model_config"] = json.loads(model_config.read_text())
        adapter_config = folder / "adapter_config.json"
        if adapter_config.exists():
            config["adapter_config"] = json.loads(adapter_config.read_text())
        parent = self.registered[-1] if self.registered else self.parent
        m = manifest(folder)
        existing = self.client.version_of_root(m.root)
        if existing:
            # e.g. a final save of weights that did not change since the last checkpoint:
            # the lineage already has them, so point at that version instead of failing training.
            record = self.client.version(existing)
        else:
            record, _ = self.client.register_version(
                self.name, m, parent=parent, base=self.base if adapter_config.exists() else 0,
                data_batches=self.data_batches, job_id=self.job_id,
                config=json.dumps(config, sort_keys=True).encode())
        if not self.registered or self.registered[-1] != record.id:
            self.registered.append(record.id)
        write_model_card(folder, record, base_model=self.base_model, datasets=self.datasets,
                         registry_address=self.client.registry.address, chain_id=self.client.chain.chain_id)
        return control
