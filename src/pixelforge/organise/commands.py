"""CLI commands of the organise stage: embed, cluster, similar."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from pixelforge.configfile import merge
from pixelforge.console import print_result
from pixelforge.options import CURATE, AsJson, DerivedOut, In, Overwrite, Resume
from pixelforge.run.options import EXECUTOR, Backend, Processes, RayAddress, RayTaskCpus

Embedding = Annotated[str | None, typer.Option(help="Which of the dataset's embeddings (default: the newest).")]


def embed_command(
    inp: In,
    out: DerivedOut,
    model: Annotated[
        str,
        typer.Option(
            help="pixels (a 16x16 thumbnail), classifier:RUN (a trained classifier), clip:DIR or inception[:WEIGHTS]."
        ),
    ] = "pixels",
    name: Annotated[
        str | None, typer.Option(help="The embedding's name in the dataset (default: the model kind).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    dtype: Annotated[str, typer.Option(help="float32 or float16 (half the disk).")] = "float32",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    processes: Processes = EXECUTOR.processes,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Compute one embedding vector per sample: a new dataset with the same samples and the vectors.

    Example:

        pixelforge embed data/digits --out data/digits-emb --model classifier:runs/digits
    """
    flags = _flags(locals())  # first: the names imported below are not flags
    from pixelforge.organise.embed import EmbedConfig, embed

    config = merge(EmbedConfig, EmbedConfig(), flags, "flags")
    print_result(embed(inp, out, config, resume=resume, overwrite=overwrite), as_json)


def cluster_command(
    inp: In,
    out: DerivedOut,
    k: Annotated[str, typer.Option(help="Number of clusters, or auto (the best silhouette of 2-40).")] = "auto",
    method: Annotated[str, typer.Option(help="kmeans or hdbscan (finds k itself; -1 is noise).")] = "kmeans",
    embedding: Embedding = None,
    neighbours: Annotated[int, typer.Option(help="k of uniqueness (k-th neighbour) and of the outlier factor.")] = 10,
    outlier_method: Annotated[
        str, typer.Option(help="iforest (isolation forest) or lof (local outlier factor).")
    ] = "iforest",
    seed: Annotated[int, typer.Option(help="Random seed of k-means, the silhouette sample and the map.")] = 0,
    map: Annotated[
        str, typer.Option("--map", help="The 2-D map: auto (UMAP when installed, else PCA), umap or pca.")
    ] = "auto",
    processes: Processes = EXECUTOR.processes,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Cluster a dataset by its embedding and score every sample: cluster, uniqueness, outlier, representativeness.

    Example:

        pixelforge cluster data/digits-emb --out data/digits-clustered --k auto
    """
    flags = _flags(locals())  # first: the names imported below are not flags
    from pixelforge.organise.cluster import ClusterConfig, cluster

    config = merge(ClusterConfig, ClusterConfig(), flags, "flags")
    print_result(cluster(inp, out, config, resume=resume, overwrite=overwrite), as_json)


def _flags(params: dict[str, Any]) -> dict[str, Any]:
    """A command's parameters that are config fields (the executor's four flags included; merge routes them)."""
    return {k: v for k, v in params.items() if k not in ("inp", "out", "resume", "overwrite", "as_json")}


def similar_command(
    inp: In,
    query: Annotated[str, typer.Argument(metavar="KEY|IMAGE", help="A sample key of the dataset, or an image file.")],
    k: Annotated[int, typer.Option(help="How many neighbours.")] = 10,
    embedding: Embedding = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps (embedding an image file).")] = "auto",
    as_json: AsJson = False,
) -> None:
    """The samples most like a sample or an image file, by the dataset's embedding (cosine similarity).

    Example:

        pixelforge similar data/digits-emb 000000042 --k 5
    """
    from pixelforge.organise.similar import similar

    print_result(similar(inp, query, k, embedding, device), as_json, render=_neighbours_table)


def _neighbours_table(found: list[dict]) -> Table:
    table = Table(*(found[0].keys() if found else ("key", "similarity")))
    for row in found:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    return table


def register(app: typer.Typer) -> None:
    """Add embed, cluster and similar to ``app``."""
    app.command("embed", rich_help_panel=CURATE)(embed_command)
    app.command("cluster", rich_help_panel=CURATE)(cluster_command)
    app.command("similar", rich_help_panel=CURATE)(similar_command)
