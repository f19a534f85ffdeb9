"""evaluate --backend ray: one feature task per shard gives exactly the local feature pass's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pixelforge.evaluate.feature_tasks import ModelSource, extract_tasks, source_of
from pixelforge.evaluate.features import ClassifierFeatures
from pixelforge.evaluate.images import extract, open_images
from pixelforge.evaluate.quality import EvaluateConfig, evaluate
from pixelforge.run import ExecutorSettings
from tests.evaluate.fixtures import PooledJudge, generated_dataset, smooth_images, write_folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A 40-image dataset in 16-image shards (one undecodable) and a 70-image folder (two 64-file chunks)."""
    root = tmp_path_factory.mktemp("eval-ray")
    images = smooth_images(40, 32, seed=3)
    ds = generated_dataset(root / "ds", images, [{} for _ in images])
    (root / "folder").mkdir()
    write_folder(root / "folder", smooth_images(70, 32, seed=4, grid=3))
    (root / "folder" / "00069.png").write_bytes(b"not a png")
    return str(ds), str(root / "folder")


def judge() -> ClassifierFeatures:
    return ClassifierFeatures(PooledJudge(), label_names=["red", "green", "blue"], input_size=None)


@pytest.mark.ray
def test_ray_feature_pass_equals_the_local_one_bit_for_bit(ray_cluster, sets):
    model = judge()
    for path in sets:
        images = open_images(path, "--real")
        # batches of 8 fill every 16-image shard and 64-file chunk exactly, as the local stream's do
        local = extract(images, model, batch_size=8, workers=0, logits=True)
        ray = extract_tasks(
            images, model, batch_size=8, logits=True, label="features", executor=ExecutorSettings(backend="ray")
        )
        assert ray.keys == local.keys
        assert np.array_equal(ray.features, local.features)
        assert np.array_equal(ray.logits, local.logits)
        assert ray.failed == local.failed
    assert [k for k, _ in local.failed] == ["00069.png"]


@pytest.mark.ray
def test_evaluate_metrics_are_identical_with_backend_ray(ray_cluster, sets):
    ds, folder = sets
    results = {}
    for backend in ("local", "ray"):
        config = EvaluateConfig(
            metrics=("fid", "kid", "precision", "recall"),
            batch_size=8,
            workers=0,
            kid_subset_size=20,
            cache=False,
            executor=ExecutorSettings(backend=backend),
        )
        results[backend] = evaluate(folder, ds, config, model=judge())
    assert results["ray"].metrics == results["local"].metrics
    assert (
        results["ray"].failed
        == results["local"].failed
        == [{"input": "real", "key": "00069.png", "reason": results["local"].failed[0]["reason"]}]
    )


def test_models_reach_the_workers_by_path_or_pickled(tmp_path):
    model = judge()
    assert source_of(model) == ModelSource("object", model=model)
    assert source_of(model).load() is model
    assert source_of(model, "classifier:runs/shape") == ModelSource("classifier", ("runs/shape",))


def test_evaluate_backend_is_checked_before_any_image_is_read(sets, capsys):
    from pixelforge.cli import main

    ds, folder = sets
    assert main(["evaluate", "--real", folder, "--fake", ds, "--backend", "dask"]) == 2
    assert capsys.readouterr().err == "Error: --backend 'dask': choose one of local, ray\n"
