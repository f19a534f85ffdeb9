"""CLI commands `collect crawl` and `serve-site`, registered on the main app by pixelforge.cli."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from pixelforge.collect.options import AllowPrivate, Encode, ImageSize, MinSide, Quality, ResizeMode, UserAgent
from pixelforge.run.options import Backend, RayAddress, RayTaskCpus

MaxBytes = Annotated[int, typer.Option(help="Images larger than this many bytes fail with too_large.")]
MaxPixels = Annotated[int, typer.Option(help="Images declaring more pixels fail with too_many_pixels.")]


def crawl_command(
    seeds: Annotated[list[str], typer.Argument(metavar="SEED_URL",
                                               help="Pages to start from (http or https); several may be given.")],
    out: Annotated[str, typer.Option("--out", "-o", help="New dataset directory to write.")],
    max_pages: Annotated[int, typer.Option(help="Fetch at most this many pages.")] = 1000,
    max_depth: Annotated[int, typer.Option(help="Follow links at most this many hops from a seed.")] = 3,
    scope: Annotated[str, typer.Option(help="site (same host), domain (host and its subdomains) or prefix "
                                            "(URLs under the seed's folder).")] = "site",
    include: Annotated[Optional[list[str]], typer.Option(help="Fetch only pages whose URL matches this regex "
                                                              "(repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Never fetch pages whose URL matches this regex "
                                                              "(repeatable).")] = None,
    sitemaps: Annotated[bool, typer.Option(help="Also start from the pages listed in the sites' sitemaps.")] = False,
    delay: Annotated[float, typer.Option(help="Seconds between page requests to one host "
                                              "(robots.txt Crawl-delay wins when larger).")] = 0.5,
    max_page_bytes: Annotated[int, typer.Option(help="Pages larger than this fail with too_large.")] = 5 * 2**20,
    max_per_pattern: Annotated[int, typer.Option(help="Pages per URL pattern (digits and query values "
                                                      "blanked): bounds calendars and query traps.")] = 100,
    page_concurrency: Annotated[int, typer.Option(help="Pages in flight over all hosts "
                                                       "(one at a time per host).")] = 8,
    image_size: ImageSize = 256,
    resize_mode: ResizeMode = "center_crop",
    encode: Encode = "jpg",
    quality: Quality = 95,
    min_side: MinSide = 0,
    max_bytes: MaxBytes = 20 * 2**20,
    max_pixels: MaxPixels = 100_000_000,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per request.")] = 10.0,
    retries: Annotated[int, typer.Option(help="Retries on 429/5xx/connection errors.")] = 2,
    processes: Annotated[int, typer.Option(help="Worker processes for the image downloads.")] = 2,
    concurrency: Annotated[int, typer.Option(help="Image downloads in flight per process.")] = 64,
    per_host: Annotated[int, typer.Option(help="At most N image connections per host (0 = no cap).")] = 8,
    user_agent: UserAgent = None,
    samples_per_shard: Annotated[int, typer.Option(help="Samples per WebDataset shard.")] = 1000,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it already holds a dataset.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue a killed run in --out: its crawl is kept, the downloads "
                                              "go on where they stopped.")] = False,
    ignore_opt_outs: Annotated[bool, typer.Option(help="Download opted-out images too (their opt_out column "
                                                       "says why; recorded in dataset.json).")] = False,
    allow_private_networks: AllowPrivate = False,
    license: Annotated[str, typer.Option(help="Licence id for images whose page states none (never guessed).")]
    = "unknown",
    backend: Backend = "local",
    ray_address: RayAddress = None,
    ray_task_cpus: RayTaskCpus = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Crawl web pages for images and their captions (alt, figcaption, title, aria-label, context).

    Honours robots.txt (with Crawl-delay), X-Robots-Tag, meta robots, TDM reservations and
    image-level noai; opted-out images are failure rows, never downloaded. Writes the same
    dataset as `collect urls` plus pages.parquet (one row per page).

    Example:

        pixelforge collect crawl https://example.org/gallery/ --out data/web --max-pages 200 --delay 1
    """
    from pixelforge.cli import _print_result
    from pixelforge.collect.config import CollectConfig
    from pixelforge.collect.crawl import CrawlConfig, crawl
    from pixelforge.collect.fetch import DEFAULT_USER_AGENT

    download = CollectConfig(
        caption_col=None, image_size=image_size, resize_mode=resize_mode, encode=encode, quality=quality,
        min_side=min_side, max_bytes=max_bytes, max_pixels=max_pixels, timeout=timeout, retries=retries,
        processes=processes, concurrency=concurrency, per_host=per_host,
        user_agent=user_agent or DEFAULT_USER_AGENT, samples_per_shard=samples_per_shard,
        ignore_opt_outs=ignore_opt_outs, allow_private_networks=allow_private_networks, license=license,
        backend=backend, ray_address=ray_address, ray_task_cpus=ray_task_cpus)
    config = CrawlConfig(seeds=tuple(seeds), max_pages=max_pages, max_depth=max_depth, scope=scope,
                         include=tuple(include or ()), exclude=tuple(exclude or ()), sitemaps=sitemaps, delay=delay,
                         max_page_bytes=max_page_bytes, max_per_pattern=max_per_pattern,
                         page_concurrency=page_concurrency, download=download)
    _print_result(crawl(out, config, overwrite=overwrite, resume=resume), as_json)


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
    from pixelforge.errors import UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: choose a port from 0 to 65535")
    try:
        server = SiteServer(port=port, verbose=verbose)
    except OSError as exc:
        raise UsageError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
                         "choose another port or 0 for a free one") from None
    import sys

    print(f"serving the pixelforge demo site on {server.url('/')} (Ctrl-C stops)", file=sys.stderr, flush=True)
    print(server.url("/"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _collect_group(app: typer.Typer) -> Any:
    for info in app.registered_groups:
        if info.name == "collect":
            return info.typer_instance
    raise RuntimeError("the `collect` command group is not registered")


def register(app: typer.Typer) -> None:
    """Add `collect crawl` to the collect group and `serve-site` to the top level."""
    _collect_group(app).command("crawl")(crawl_command)
    app.command("serve-site")(serve_site_command)
