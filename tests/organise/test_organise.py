"""embed, cluster and similar: vectors kept by the store, exact scores on planted structure, search by key and file."""

import json

import numpy as np
import pytest

from pixelforge import neighbours
from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.organise import embed as embed_module
from pixelforge.organise.cluster import (
    ClusterConfig,
    choose_k,
    cluster,
    cluster_name,
    outlier_scores,
    representativeness,
)
from pixelforge.organise.embed import EmbedConfig, embed
from pixelforge.organise.models import Pixels
from pixelforge.organise.similar import similar
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from tests.run.conftest import content

ONE = ExecutorSettings(processes=1)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("organise") / "shapes"
    assert main(["import", "shapes", "--n", "60", "--size", "24", "--seed", "3", "--out", str(out)]) == 0
    return str(out)


@pytest.fixture(scope="module")
def embedded(shapes, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("organise") / "emb")
    embed(shapes, out, EmbedConfig(executor=ONE))
    return out


def test_embed_stores_one_vector_per_sample_and_keeps_the_samples(shapes, embedded):
    ds, src = Dataset.open(embedded), Dataset.open(shapes)
    entry = ds.info["embeddings"]["pixels"]
    assert {k: entry[k] for k in ("model", "side", "dim", "dtype", "count")} == {
        "model": "pixels",
        "side": 16,
        "dim": 768,
        "dtype": "float32",
        "count": 60,
    }
    emb = ds.embeddings()
    assert emb.keys == src.index(columns=["key"]).column("key").to_pylist()
    sample = next(iter(src.iter_samples()))
    assert np.array_equal(emb.vectors[0], Pixels().embed([sample.decode()])[0])
    assert isinstance(emb.vectors, np.memmap)  # opened memory-mapped, not read whole
    assert content(embedded)["index"] == content(shapes)["index"] and ds.shards() == src.shards()
    assert ds.info["lineage"]["command"] == "embed" and ds.info["lineage"]["inputs"][0]["path"] == shapes


def test_embed_half_precision_and_two_embeddings(embedded, tmp_path):
    out = str(tmp_path / "two")
    result = embed(embedded, out, EmbedConfig(name="small", dtype="float16", executor=ONE))
    ds = Dataset.open(out)
    assert list(ds.info["embeddings"]) == ["pixels", "small"] and result.dim == 768
    assert ds.embeddings("small").vectors.dtype == np.float16
    assert np.allclose(ds.embeddings("small").vectors, ds.embeddings("pixels").vectors, atol=1e-3)
    with pytest.raises(UsageError, match="--embedding 'nope': .* has pixels, small"):
        ds.embeddings("nope")


def test_an_undecodable_sample_gets_a_nan_row_and_is_named(tmp_path):
    builder = DatasetBuilder(str(tmp_path / "bad"), samples_per_shard=10)
    from tests.collect.imageserver import jpeg

    for i, data in enumerate([jpeg(1), b"\xff\xd8\xff not really a jpeg", jpeg(2)]):
        builder.add(
            {"key": f"k{i}", "source_kind": "folder", "source": f"f{i}.jpg", "width": 1, "height": 1}, data, "jpg"
        )
    builder.finish(name="bad", lineage=Lineage("test"))
    result = embed(str(tmp_path / "bad"), str(tmp_path / "emb"), EmbedConfig(executor=ONE))
    assert (result.samples, result.failures) == (3, 1)
    vectors = Dataset.open(result.out).embeddings().vectors
    assert np.isnan(vectors[1]).all() and np.isfinite(vectors[[0, 2]]).all()
    failed = json.loads((tmp_path / "emb" / "stats.json").read_text())["embed_failures"]
    assert [f["key"] for f in failed] == ["k1"]
    assert similar(result.out, "k0", k=5)[0]["key"] == "k2"  # the NaN row is never a neighbour


def test_a_stopped_embed_resumes(shapes, tmp_path, monkeypatch):
    two = str(tmp_path / "two-shards")
    assert main(["import", "shapes", "--n", "30", "--size", "24", "--samples-per-shard", "15", "--out", two]) == 0
    calls = []
    real = embed_module.embed_shard

    def dies_on_second(task):
        calls.append(task.shard)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(embed_module, "embed_shard", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        embed(two, str(tmp_path / "e"), EmbedConfig(executor=ONE))
    monkeypatch.setattr(embed_module, "embed_shard", real)
    embed(two, str(tmp_path / "e"), EmbedConfig(executor=ONE), resume=True)
    embed(two, str(tmp_path / "clean"), EmbedConfig(executor=ONE))
    a, b = Dataset.open(str(tmp_path / "e")).embeddings(), Dataset.open(str(tmp_path / "clean")).embeddings()
    assert a.keys == b.keys and np.array_equal(a.vectors, b.vectors)


def test_scores_on_planted_structure():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    x = np.concatenate([c + rng.normal(0, 0.05, (40, 8)) for c in centres] + [np.eye(8)[7:8]])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k, silhouette = choose_k(x[:120], seed=0)
    assert k == 3 and silhouette > 0.8
    labels = np.repeat([0, 1, 2], 40)
    labels = np.append(labels, -1)
    rep = representativeness(x, labels)
    assert rep[:120].min() > 0.95 and rep[120] == pytest.approx(float(np.max(x[120] @ np.eye(8)[:3].T)), abs=0.05)
    for method in ("lof", "iforest"):
        scores = outlier_scores(x, 10, method, seed=0)
        assert int(np.argmax(scores)) == 120, method  # the lone point is the most outlying
    lof = outlier_scores(x, 10, "lof", seed=0)
    assert lof[120] > 0.9 and np.median(lof[:120]) < 0.1
    assert neighbours.kth_distance(np.eye(3, dtype=np.float32), 1) == pytest.approx([1.0, 1.0, 1.0])
    rows = [{"label_name": "cat", "caption": "a small cat on a mat"}] * 3 + [{"label_name": "dog", "caption": "a cat"}]
    assert cluster_name(rows) == "cat (75%), cat, small, mat"


def test_cluster_adds_the_columns_and_lists_the_clusters(embedded, tmp_path):
    result = cluster(embedded, str(tmp_path / "cl"), ClusterConfig(k="4", map="pca", executor=ONE))
    ds = Dataset.open(result.out)
    rows = ds.index().to_pylist()
    assert result.clusters == 4 and sorted({r["cluster"] for r in rows}) == [0, 1, 2, 3]
    assert all(0 <= r["outlier"] <= 1 and r["uniqueness"] >= 0 and -1 <= r["representativeness"] <= 1 for r in rows)
    listed = json.loads((tmp_path / "cl" / "stats.json").read_text())["clusters"]
    assert sum(c["size"] for c in listed) == 60 and all(len(c["central"]) == min(5, c["size"]) for c in listed)
    sizes = {c["id"]: c["size"] for c in listed}
    assert sizes == {c: sum(r["cluster"] == c for r in rows) for c in range(4)}
    assert list(ds.info["embeddings"]) == ["pixels"]  # carried along
    from sklearn.decomposition import PCA

    expected = PCA(n_components=2, random_state=0).fit_transform(ds.embeddings().normalised())
    assert np.allclose([[r["map_x"], r["map_y"]] for r in rows], expected, atol=1e-4)
    assert json.loads((tmp_path / "cl" / "stats.json").read_text())["map"] == "pca"
    row = rows[0]  # the shard's JSON member carries the new columns too
    (_, files), *_ = ds.read_shard(row["shard"], keys={row["key"]})
    assert json.loads(files["json"])["cluster"] == row["cluster"]


def test_curate_drops_outliers_by_the_cluster_score(embedded, shapes, tmp_path, capsys):
    clustered = cluster(embedded, str(tmp_path / "cl"), ClusterConfig(k="3", map="pca", executor=ONE)).out
    scores = Dataset.open(clustered).index(columns=["outlier"]).column("outlier").to_pylist()
    threshold = sorted(scores)[-6]  # five samples score above it
    args = ["curate", clustered, "--out", str(tmp_path / "kept"), "--no-watermark", "--processes", "1"]
    assert main([*args, "--max-outlier", str(threshold), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 60 - sum(s > threshold for s in scores) == 55 and result["removed"]["max_outlier"] == 5
    assert main(["curate", shapes, "--out", str(tmp_path / "k2"), "--no-watermark", "--max-outlier", "0.5"]) == 2
    assert "--max-outlier needs the outlier column: run `pixelforge embed` and `pixelforge cluster`" in (
        capsys.readouterr().err
    )


def test_the_report_draws_the_map_and_shows_each_cluster(embedded, tmp_path, capsys):
    clustered = cluster(embedded, str(tmp_path / "cl"), ClusterConfig(k="3", map="pca", executor=ONE)).out
    listed = json.loads((tmp_path / "cl" / "stats.json").read_text())["clusters"]
    assert main(["report", clustered, "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Map of the embedding (pca, pixels)" in html and "The most outlying samples" in html
    for c in listed:
        assert f"cluster {c['id']}: {c['name']} ({c['size']:,} samples)" in html
        assert all(key in html for key in c["central"])


@pytest.mark.slow
def test_the_map_is_umap_when_installed(embedded, tmp_path):
    pytest.importorskip("umap", reason="the organise extra (umap-learn) is not installed")
    result = cluster(embedded, str(tmp_path / "cl"), ClusterConfig(k="3", executor=ONE))
    rows = Dataset.open(result.out).index(columns=["map_x", "map_y"]).to_pylist()
    assert json.loads((tmp_path / "cl" / "stats.json").read_text())["map"] == "umap"
    assert all(np.isfinite([r["map_x"], r["map_y"]]).all() for r in rows)


def test_cluster_refuses_bad_options_in_one_line(embedded, shapes, tmp_path, capsys):
    for args, message in (
        (["--k", "many"], "--k 'many': give a number of clusters or auto"),
        (["--method", "dbscan"], "--method 'dbscan': choose kmeans or hdbscan"),
        (["--method", "hdbscan", "--k", "3"], "--k: HDBSCAN finds the number of clusters itself"),
        (["--map", "tsne"], "--map 'tsne': choose auto, umap, pca"),
    ):
        assert main(["cluster", embedded, "--out", str(tmp_path / "x"), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["cluster", shapes, "--out", str(tmp_path / "y")]) == 2
    assert f"{shapes} has no embeddings: make them with `pixelforge embed" in capsys.readouterr().err


def test_similar_by_key_and_by_image_file(embedded, tmp_path, capsys):
    ds = Dataset.open(embedded)
    emb = ds.embeddings()
    x = emb.normalised()
    expected = [emb.keys[i] for i in np.argsort(-(x @ x[7]), kind="stable") if i != 7][:4]
    found = similar(embedded, emb.keys[7], k=4)
    assert [f["key"] for f in found] == expected
    assert all(a["similarity"] >= b["similarity"] for a, b in zip(found, found[1:]))
    image = tmp_path / "query.png"
    sample = next(iter(ds.iter_samples()))
    image.write_bytes(sample.image)
    assert main(["similar", embedded, str(image), "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["key"] == sample.key and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(UsageError, match="is neither a sample key of"):
        similar(embedded, "no-such-key")
    with pytest.raises(UsageError, match="--k 0: must be at least 1"):
        similar(embedded, emb.keys[0], k=0)


def test_embed_with_a_trained_classifier(tmp_path):
    data = str(tmp_path / "digits")
    assert main(["import", "digits", "--size", "16", "--out", data]) == 0
    run = str(tmp_path / "run")
    args = ["train", "classifier", "--data", data, "--out", run, "--max-steps", "2", "--image-size", "16"]
    assert main([*args, "--batch-size", "16", "--device", "cpu"]) == 0
    result = embed(data, str(tmp_path / "emb"), EmbedConfig(model=f"classifier:{run}", device="cpu", executor=ONE))
    emb = Dataset.open(result.out).embeddings("classifier")
    assert emb.info["model"] == "classifier" and emb.info["run"] == "run@step_0000002"
    assert emb.vectors.shape == (1797, result.dim) and np.isfinite(emb.vectors).all()
    # two worker processes (one torch thread each) give the same vectors
    pool = EmbedConfig(model=f"classifier:{run}", device="cpu", executor=ExecutorSettings(processes=2))
    pooled = Dataset.open(embed(data, str(tmp_path / "pooled"), pool).out).embeddings("classifier")
    assert pooled.keys == emb.keys and np.allclose(pooled.vectors, emb.vectors, atol=1e-5)


def test_embed_with_a_local_clip_folder(shapes, tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path / "tiny-clip"
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    result = embed(shapes, str(tmp_path / "emb"), EmbedConfig(model=f"clip:{folder}", device="cpu", executor=ONE))
    emb = Dataset.open(result.out).embeddings("clip")
    assert emb.vectors.shape == (60, 8) and np.isfinite(emb.vectors).all()
    with pytest.raises(UsageError, match="not a CLIP model folder"):
        embed(shapes, str(tmp_path / "e2"), EmbedConfig(model=f"clip:{tmp_path}", device="cpu", executor=ONE))


def test_embed_with_the_fid_inception_weights(shapes, tmp_path):
    from tests.evaluate.fixtures import make_weights

    weights = make_weights(tmp_path / "pt_inception-2015-12-05-6726825d.pth")  # random, calibrated
    result = embed(shapes, str(tmp_path / "emb"), EmbedConfig(model=f"inception:{weights}", device="cpu", executor=ONE))
    emb = Dataset.open(result.out).embeddings("inception")
    assert emb.vectors.shape == (60, 2048) and np.isfinite(emb.vectors).all()
    assert emb.info["model"] == "inception" and emb.info["weights"].startswith("inception-torch-fidelity-")
    with pytest.raises(UsageError, match="is not a file"):
        EmbedConfig(model=f"inception:{tmp_path / 'none.pth'}").validate()


def test_embed_refuses_bad_options(shapes, tmp_path, capsys):
    for args, message in (
        (["--model", "resnet"], "--model 'resnet': choose pixels, classifier:RUN"),
        (["--model", "classifier:/no/such/run"], "--model classifier:/no/such/run: /no/such/run does not exist"),
        (["--dtype", "int8"], "--dtype int8: choose float32 or float16"),
        (["--name", "a b"], "--name 'a b': use letters, digits, - and _"),
    ):
        assert main(["embed", shapes, "--out", str(tmp_path / "x"), *args]) == 2
        assert message in capsys.readouterr().err
