"""The contamination check between a version's training batches and its eval set, through
the data capability's real ingest → publish → overlap path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofmesh.errors import InputError
from proofmesh.models.contamination import check

TRAIN = [f"field note {i}: the river at marker {i * 7} ran {['high', 'low', 'clear'][i % 3]} and the heron "
         f"count was {i * 3 + 1} at dawn near the old mill" for i in range(30)]


def test_eval_set_overlapping_training_batch_is_reported(client, chain, home, owner, gpt2_dir: Path,
                                                         tmp_path: Path) -> None:
    from proofmesh.data.client import DataRegistryClient, open_index, publish
    from proofmesh.data.pipeline import IngestConfig, ingest
    from proofmesh.store.blobstore import BlobStore

    from proofmesh.chain.core import Registry

    reg = Registry(chain.with_account(owner))      # a contributor bonds stake per published batch
    reg.register("http://127.0.0.1:9400", 2)
    reg.stake(1_000 * 10**18)
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TRAIN))
    data = DataRegistryClient(chain.with_account(owner))
    sid = data.register_source("https://example.org/river-notes", "CC0-1.0", "notes", sender=owner)
    cfg = IngestConfig()
    store = BlobStore(home.store_dir)
    index = open_index(home, cfg.index_params())
    try:
        ingest([src], tmp_path / "batch", cfg, index=index)
        pub = publish(chain, store, index, tmp_path / "batch", sid, sender=owner)
    finally:
        index.close()
    rec, _ = client.register_version("river-lm", gpt2_dir, data_batches=[pub["root"]])
    held_out = [{"text": TRAIN[4]}, {"text": TRAIN[9] + " today"},
                {"text": "a completely different sentence about mountains and snow fields in spring"}]
    res = check(chain, store, rec.id, held_out)
    assert res["batches"] == [pub["batch_id"]] and not res["unknown_batch_roots"]
    assert res["exact_overlap"] == 1 and res["near_overlap"] == 1 and res["records_b"] == 3
    # the CLI says the same (and exits 1 on contamination)
    from typer.testing import CliRunner

    from proofmesh.cli.main import app
    from proofmesh.crypto.keys import Keystore

    Keystore(home).import_key("default", owner.key, "pw")
    f = tmp_path / "held.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in held_out))
    out = CliRunner().invoke(app, ["--home", str(home.path), "model", "contamination", str(rec.id),
                                   "--eval-file", str(f), "--json"], env={"PROOFMESH_PASSWORD": "pw"})
    assert out.exit_code == 1 and json.loads(out.stdout)["exact_overlap"] == 1
    with pytest.raises(InputError, match="no 'text' records"):
        check(chain, store, rec.id, [{"input_ids": [1, 2]}])
