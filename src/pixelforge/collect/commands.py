"""CLI commands `collect urls`, `collect crawl` and `serve-site`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pixelforge.collect.options import (
    CONCURRENCY,
    ENCODE,
    FACES,
    IMAGE_SIZE,
    MIN_SIDE,
    PER_HOST,
    PER_HOST_RPS,
    QUALITY,
    RESIZE_MODE,
    RETRIES,
    TIMEOUT,
    AllowPrivate,
    BboxCol,
    Concurrency,
    Consent,
    ConsentCol,
    Encode,
    Faces,
    IgnoreOptOuts,
    ImageSize,
    MinSide,
    OptOutListFile,
    PerHost,
    PerHostRps,
    Processes,
    Quality,
    ResizeMode,
    Retries,
    Timeout,
    UserAgent,
    collect_config,
)
from pixelforge.console import print_result, print_text
from pixelforge.errors import UsageError
from pixelforge.options import (
    GET_DATA,
    MAX_BYTES,
    MAX_PIXELS,
    RUN,
    SAMPLES_PER_SHARD,
    AsJson,
    FaceWeights,
    License,
    MaxBytes,
    MaxPixels,
    Out,
    Overwrite,
    PerShard,
)
from pixelforge.run.options import EXECUTOR, Backend, RayAddress, RayTaskCpus

collect_app = typer.Typer(
    help="Collect image-text pairs from the web (URL lists), honouring opt-outs.", no_args_is_help=True
)


@collect_app.command("urls")
def urls_command(
    list_path: Annotated[str, typer.Argument(metavar="LIST", help="URL list: .txt, .csv, .tsv, .jsonl or .parquet.")],
    out: Out,
    url_col: Annotated[str, typer.Option(help="Column holding the image URL.")] = "url",
    caption_col: Annotated[str, typer.Option(help="Column holding the caption ('' for none).")] = "caption",
    keep_cols: Annotated[str, typer.Option(help="Comma-separated columns kept in the JSON meta field.")] = "",
    consent_col: ConsentCol = None,
    bbox_col: BboxCol = None,
    image_size: ImageSize = IMAGE_SIZE,
    resize_mode: ResizeMode = RESIZE_MODE,
    encode: Encode = ENCODE,
    quality: Quality = QUALITY,
    min_side: MinSide = MIN_SIDE,
    max_bytes: MaxBytes = MAX_BYTES,
    max_pixels: MaxPixels = MAX_PIXELS,
    timeout: Timeout = TIMEOUT,
    retries: Retries = RETRIES,
    processes: Processes = EXECUTOR.processes,
    concurrency: Concurrency = CONCURRENCY,
    per_host: PerHost = PER_HOST,
    per_host_rps: PerHostRps = PER_HOST_RPS,
    user_agent: UserAgent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    resume: Annotated[bool, typer.Option(help="Keep finished shards of a stopped run; fetch the rest.")] = False,
    overwrite: Overwrite = False,
    ignore_opt_outs: IgnoreOptOuts = False,
    opt_out_list: OptOutListFile = None,
    allow_private_networks: AllowPrivate = False,
    license: License = "unknown",
    faces: Faces = FACES,
    face_weights: FaceWeights = None,
    consent: Consent = None,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
    as_json: AsJson = False,
) -> None:
    """Download a list of image URLs (with captions and licences) into a dataset.

    Every input row ends as one sample or one failure row with its reason.

    Example:

        pixelforge collect urls laion_part.parquet --url-col URL --caption-col TEXT --out data/laion

        pixelforge collect urls people.csv --faces blur --consent-col consent --out data/people
    """
    from pixelforge.collect.urls import collect_urls

    config = collect_config(
        locals(),
        url_col=url_col,
        caption_col=caption_col or None,
        keep_cols=tuple(c.strip() for c in keep_cols.split(",") if c.strip()),
        consent_col=consent_col or None,
        bbox_col=bbox_col or None,
    )
    print_result(collect_urls(list_path, out, config, resume=resume, overwrite=overwrite), as_json)


@collect_app.command("crawl")
def crawl_command(
    seeds: Annotated[
        list[str], typer.Argument(metavar="SEED_URL", help="Pages to start from (http or https); several may be given.")
    ],
    out: Out,
    max_pages: Annotated[int, typer.Option(help="Fetch at most this many pages.")] = 1000,
    max_depth: Annotated[int, typer.Option(help="Follow links at most this many hops from a seed.")] = 3,
    scope: Annotated[
        str,
        typer.Option(
            help="site (same host), domain (host and its subdomains) or prefix (URLs under the seed's folder)."
        ),
    ] = "site",
    include: Annotated[
        list[str] | None, typer.Option(help="Fetch only pages whose URL matches this regex (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Never fetch pages whose URL matches this regex (repeatable).")
    ] = None,
    sitemaps: Annotated[bool, typer.Option(help="Also start from the pages listed in the sites' sitemaps.")] = False,
    delay: Annotated[
        float, typer.Option(help="Seconds between page requests to one host (robots.txt Crawl-delay wins when larger).")
    ] = 0.5,
    max_page_bytes: Annotated[int, typer.Option(help="Pages larger than this fail with too_large.")] = 5 * 2**20,
    max_per_pattern: Annotated[
        int,
        typer.Option(help="Pages per URL pattern (digits and query values blanked): bounds calendars and query traps."),
    ] = 100,
    page_concurrency: Annotated[int, typer.Option(help="Pages in flight over all hosts (one at a time per host).")] = 8,
    image_size: ImageSize = IMAGE_SIZE,
    resize_mode: ResizeMode = RESIZE_MODE,
    encode: Encode = ENCODE,
    quality: Quality = QUALITY,
    min_side: MinSide = MIN_SIDE,
    max_bytes: MaxBytes = MAX_BYTES,
    max_pixels: MaxPixels = MAX_PIXELS,
    timeout: Timeout = TIMEOUT,
    retries: Retries = RETRIES,
    processes: Processes = EXECUTOR.processes,
    concurrency: Concurrency = CONCURRENCY,
    per_host: PerHost = PER_HOST,
    per_host_rps: PerHostRps = PER_HOST_RPS,
    user_agent: UserAgent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    resume: Annotated[
        bool,
        typer.Option(help="Continue a killed run in --out: its crawl is kept, the downloads go on where they stopped."),
    ] = False,
    ignore_opt_outs: IgnoreOptOuts = False,
    opt_out_list: OptOutListFile = None,
    allow_private_networks: AllowPrivate = False,
    license: License = "unknown",
    faces: Faces = FACES,
    face_weights: FaceWeights = None,
    consent: Consent = None,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
    as_json: AsJson = False,
) -> None:
    """Crawl web pages for images and their captions (alt, figcaption, title, aria-label, context).

    Honours robots.txt (with Crawl-delay), X-Robots-Tag, meta robots, TDM reservations and
    image-level noai; opted-out images are failure rows, never downloaded. Writes the same
    dataset as `collect urls` plus pages.parquet (one row per page).

    Example:

        pixelforge collect crawl https://example.org/gallery/ --out data/web --max-pages 200 --delay 1
    """
    from pixelforge.collect.crawl import CrawlConfig, crawl

    download = collect_config(locals(), caption_col=None)
    config = CrawlConfig(
        seeds=tuple(seeds),
        max_pages=max_pages,
        max_depth=max_depth,
        scope=scope,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        sitemaps=sitemaps,
        delay=delay,
        max_page_bytes=max_page_bytes,
        max_per_pattern=max_per_pattern,
        page_concurrency=page_concurrency,
        download=download,
    )
    print_result(crawl(out, config, overwrite=overwrite, resume=resume), as_json)


@collect_app.command("retry")
def retry_command(
    dataset: Annotated[str, typer.Argument(metavar="DIR", help="A dataset made by `collect urls` (or a retry).")],
    out: Out,
    reasons: Annotated[
        str,
        typer.Option(help="Comma-separated failure reasons to fetch again (any reason of the dataset's failures)."),
    ] = "timeout,connection_error,http_5xx,dns_error",
    list_path: Annotated[
        str | None,
        typer.Option("--list", help="The URL list, when it is no longer where the collection read it."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds allowed per request (default: the earlier run's).")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Tries again after a transient failure (default: earlier run's).")
    ] = None,
    processes: Annotated[int | None, typer.Option(help="Worker processes (default: the earlier run's).")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Downloads in flight per process (default: earlier run's).")
    ] = None,
    per_host: Annotated[
        int | None, typer.Option(help="Connections in flight to one host (default: earlier run's).")
    ] = None,
    per_host_rps: Annotated[
        float | None, typer.Option(help="Requests per second to one host (default: earlier run's).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue a stopped retry in --out.")] = False,
    overwrite: Overwrite = False,
    backend: Annotated[str | None, typer.Option(help="local or ray (default: the earlier run's).")] = None,
    as_json: AsJson = False,
) -> None:
    """Fetch a collection's failed rows again: a new dataset with its samples plus what now succeeds.

    The earlier dataset is not modified; its shards are carried over (hard-linked when local),
    the failures of --reasons are downloaded again from the same list with the same image
    options, the other failure rows are kept. The lineage names the earlier dataset.

    Example:

        pixelforge collect retry data/laion --out data/laion-2 --reasons timeout,http_5xx
    """
    from pixelforge.collect.retry import collect_retry

    overrides = {
        "timeout": timeout,
        "retries": retries,
        "processes": processes,
        "concurrency": concurrency,
        "per_host": per_host,
        "per_host_rps": per_host_rps,
        "backend": backend,
    }
    result = collect_retry(
        dataset,
        out,
        reasons=tuple(r.strip() for r in reasons.split(",") if r.strip()),
        list_path=list_path,
        overrides=overrides,
        resume=resume,
        overwrite=overwrite,
    )
    print_result(result, as_json)


def serve_site_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    verbose: Annotated[bool, typer.Option(help="Log every request to stderr.")] = False,
) -> None:
    """Serve the bundled demo site on 127.0.0.1 until interrupted (Ctrl-C).

    27 pages and several hundred shape images drawn by code, with alt texts, figcaptions,
    CC BY / CC BY-NC / all-rights-reserved pages, opt-outs, a robots.txt-disallowed path and
    an endless calendar: what `collect crawl` is tested and demonstrated on.

    Example:

        pixelforge serve-site --port 8000 &
        pixelforge collect crawl http://127.0.0.1:8000/ --out data/site --allow-private-networks --delay 0
    """
    from pixelforge.collect.site import SiteServer

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: choose a port from 0 to 65535")
    try:
        server = SiteServer(port=port, verbose=verbose)
    except OSError as exc:
        raise UsageError(
            f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
            "choose another port or 0 for a free one"
        ) from None
    print(f"serving the pixelforge demo site on {server.url('/')} (Ctrl-C stops)", file=sys.stderr, flush=True)
    print_text(server.url("/"))  # the one line on stdout: a script reads the URL from it
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add the `collect` command group and `serve-site` to ``app``."""
    app.add_typer(collect_app, name="collect", rich_help_panel=GET_DATA)
    app.command("serve-site", rich_help_panel=RUN)(serve_site_command)
