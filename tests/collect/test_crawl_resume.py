"""`collect crawl --resume`: a run killed after its crawl downloads the rest without crawling again."""

import pytest

from pixelforge.cli import main
from pixelforge.collect import crawl as crawl_mod
from pixelforge.collect import urls as urls_mod
from pixelforge.collect.crawl import crawler as crawler_mod
from pixelforge.collect.site import SiteServer
from pixelforge.store import Dataset

FAST = ["--allow-private-networks", "--delay", "0", "--processes", "1", "--image-size", "32", "--max-pages", "8"]


@pytest.fixture(scope="module")
def site():
    with SiteServer() as srv:
        yield srv


def test_resume_keeps_the_crawl_and_finishes_the_downloads(site, tmp_path, monkeypatch, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["collect", "crawl", site.url("/"), "--out", str(whole)] + FAST) == 0
    real_download = urls_mod.download_rows

    def killed_during_download(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies after the crawl was saved, before any image is written

    monkeypatch.setattr(urls_mod, "download_rows", killed_during_download)
    assert main(["collect", "crawl", site.url("/"), "--out", str(killed)] + FAST) == 130  # interrupted
    assert (killed / ".work" / crawl_mod.OUTCOME_FILE).exists() and not (killed / "dataset.json").exists()
    capsys.readouterr()
    assert main(["collect", "crawl", site.url("/"), "--out", str(killed)] + FAST) == 2
    assert "partly written dataset: pass --resume" in capsys.readouterr().err

    def no_crawl(self):
        raise AssertionError("a resumed run must not crawl again")

    monkeypatch.setattr(urls_mod, "download_rows", real_download)
    monkeypatch.setattr(crawler_mod.Crawler, "run", no_crawl)
    assert main(["collect", "crawl", site.url("/"), "--out", str(killed), "--resume"] + FAST) == 0
    a, b = Dataset.open(str(whole)), Dataset.open(str(killed))
    rows = lambda ds: sorted((r["source"], r["caption"], r["license"], r["sha256"]) for r in ds.iter_rows())  # noqa: E731
    assert a.num_samples == b.num_samples > 0 and rows(a) == rows(b)
    assert a.stats()["crawl"]["images_found"] == b.stats()["crawl"]["images_found"]


def test_resume_refuses_other_crawl_options(site, tmp_path, monkeypatch, capsys):
    out = tmp_path / "x"
    monkeypatch.setattr(urls_mod, "download_rows", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["collect", "crawl", site.url("/"), "--out", str(out)] + FAST) == 130
    capsys.readouterr()
    assert main(["collect", "crawl", site.url("/"), "--out", str(out), "--resume", "--max-depth", "1"] + FAST) == 2
    assert "was crawled with other options" in capsys.readouterr().err
