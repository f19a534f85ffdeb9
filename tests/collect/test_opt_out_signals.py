"""ai.txt and the user's --opt-out-list: refused rows are failures naming the signal; no request where none is due."""

import pytest

from pixelforge import media
from pixelforge.cli import main
from pixelforge.collect.optout import OptOutList
from pixelforge.collect.urls import collect_urls
from pixelforge.errors import UsageError
from pixelforge.store import Dataset
from tests.collect.imageserver import jpeg
from tests.collect.test_urls import _cfg, _write_list


def _failures(result):
    return {f["row"]: (f["reason"], f["detail"]) for f in Dataset.open(result.out).failures().to_pylist()}


@pytest.mark.parametrize("ignore", [False, True])
def test_ai_txt_refuses_the_file_types_it_names(tmp_path, server, ignore):
    server.ai_txt = b"# Spawning AI\nUser-Agent: *\nAllow: /\nDisallow: *.jpg\nDisallow: /png/2\n"
    urls = [server.url("/img/1.jpg"), server.url("/img/2.JPG"), server.url("/png/1.png"), server.url("/png/2.png")]
    result = collect_urls(
        _write_list(tmp_path / "l.parquet", urls), str(tmp_path / "out"), _cfg(ignore_opt_outs=ignore)
    )
    if ignore:
        assert result.samples == 4 and "/ai.txt" not in server.hits
        return
    fails = _failures(result)
    assert sorted(fails) == [0, 1, 3] and result.samples == 1
    assert {reason for reason, _ in fails.values()} == {"opt_out_ai_txt"}
    assert fails[1][1] == f"{server.url('')}/ai.txt disallows this URL for AI training"
    assert server.hits["/ai.txt"] == 1 and "/img/1.jpg" not in server.hits  # refused without a request


def test_ai_txt_disallowing_everything_and_a_missing_one(tmp_path, server):
    lst = _write_list(tmp_path / "l.parquet", [server.url(f"/img/{i}.jpg") for i in range(3)])
    assert collect_urls(lst, str(tmp_path / "open"), _cfg()).samples == 3  # 404: says nothing
    server.ai_txt = b"User-Agent: *\nDisallow: /\n"
    from pixelforge.collect import fetch

    fetch._site_cache.clear()  # a new process would read the site again
    result = collect_urls(lst, str(tmp_path / "closed"), _cfg())
    assert result.samples == 0 and result.failure_reasons == {"opt_out_ai_txt": 3}


def test_opt_out_list_refuses_domains_prefixes_and_images(tmp_path, server):
    stored = media.process(jpeg(3), size=64, resize_mode="center_crop", encoding="jpg", quality=95)
    listed = tmp_path / "takedowns.txt"
    listed.write_text(
        "# takedown registry export\n"
        f"url:{server.url('/img/1')}\n"
        f"{server.url('/img/7.jpg')}   # reached by a redirect\n"
        f"sha256:{media.process(jpeg(2)).sha256}\n"
        f"{stored.phash ^ 0b101:016x}\n"  # 2 bits from image 3's phash
        "blocked.example\n"
    )
    urls = [server.url(f"/img/{i}.jpg") for i in range(5)]
    urls += [server.url("/redirect/1/x.jpg"), "http://cdn.blocked.example/a.jpg", server.url("/png/1.png")]
    # the list holds under --ignore-opt-outs too: it is the user's own
    cfg = _cfg(opt_out_list=str(listed), ignore_opt_outs=True)
    result = collect_urls(_write_list(tmp_path / "l.parquet", urls), str(tmp_path / "out"), cfg)
    fails = _failures(result)
    assert sorted(fails) == [1, 2, 3, 5, 6] and result.samples == 3
    assert {reason for reason, _ in fails.values()} == {"opt_out_list"}
    assert fails[1][1] == f"URL prefix {server.url('/img/1')} is on --opt-out-list {listed} (line 2)"
    assert fails[2][1].startswith("sha256 ") and fails[2][1].endswith("(line 4)")
    assert fails[3][1] == f"phash {stored.phash ^ 0b101:016x} (2 bits away) is on --opt-out-list {listed} (line 5)"
    assert fails[5][1].endswith("(line 3)") and fails[6][1].startswith("domain blocked.example")
    assert "/img/1.jpg" not in server.hits and "/img/7.jpg" not in server.hits  # never requested


def test_opt_out_list_entries_by_shape_and_prefix():
    text = f"Example.ORG\nurl:http://a.example/x/\n{'AB' * 32}\nphash:{'0f' * 8}\ndomain:b.example.\n"
    parsed = OptOutList.parse("l.txt", text)
    assert parsed.domains == {"example.org": 1, "b.example": 5}
    assert parsed.prefixes == [("http://a.example/x/", 2)] and parsed.sha256 == {"ab" * 32: 3}
    assert parsed.phashes == [(0x0F0F0F0F0F0F0F0F, 4)]
    assert parsed.refuses_url("https://img.cdn.example.org/1.png").startswith("domain example.org")
    assert parsed.refuses_url("https://notexample.org/1.png") is None
    assert parsed.refuses_image("cd" * 32, 0x0F0F0F0F0F0F0F00).startswith("phash 0f0f0f0f0f0f0f0f (4 bits away)")
    assert parsed.refuses_image("cd" * 32, 0x0F0F0F0F0F0F0E00) is None  # 5 bits: past OPT_OUT_PHASH_BITS
    assert parsed.refuses_image("cd" * 32, 0x0F0F0F0F0F0F0F1F).startswith("phash 0f0f0f0f0f0f0f0f (1 bits away)")
    with pytest.raises(UsageError, match=r"line 2: 'not a domain!' is not a domain, URL prefix"):
        OptOutList.parse("l.txt", "ok.example\nnot a domain!\n")
    with pytest.raises(UsageError, match="line 1: 'sha256:abc' is not"):
        OptOutList.parse("l.txt", "sha256:abc\n")


def test_bad_opt_out_lists_are_one_line_errors(tmp_path, server, capsys):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/1.jpg")])
    bad = tmp_path / "bad.txt"
    bad.write_text("fine.example\nhttp//missing-colon\n")
    for path, message in (
        (bad, f"{bad} line 2: 'http//missing-colon' is not"),
        (tmp_path / "nope.txt", "no such file"),
    ):
        assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), "--opt-out-list", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: --opt-out-list") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()  # refused before any work
