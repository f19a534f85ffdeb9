"""`pixelforge attribution`: credits for every CC BY-family sample, as Markdown or CSV."""

import csv
import json

import pytest

from pixelforge.audit.attribution import license_link, license_name, write_credits
from pixelforge.cli import main
from tests.audit.conftest import make_dataset

BY4 = "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/)"
NC4 = "[CC BY-NC 4.0](https://creativecommons.org/licenses/by-nc/4.0/)"
SA2DE = "[CC BY-SA 2.0 DE](https://creativecommons.org/licenses/by-sa/2.0/de/)"


def test_license_names_and_links():
    assert license_name("cc-by-sa-4.0") == "CC BY-SA 4.0" and license_name("cc-by-nc-nd-3.0") == "CC BY-NC-ND 3.0"
    assert license_link("cc-by-2.0-de") == "https://creativecommons.org/licenses/by/2.0/de/"
    assert license_name("mit") == "mit" and license_link("mit") is None


def test_markdown_credits(skewed, tmp_path):
    out = tmp_path / "CREDITS.md"
    result = write_credits(skewed, str(out))
    assert (result.samples, result.credited, result.missing_attribution) == (20, 12, 3)
    assert result.by_license == {"cc-by-4.0": 6, "cc-by-nc-4.0": 3, "cc-by-sa-2.0-de": 2, "cc-by-2.0": 1}
    lines = out.read_text().splitlines()
    assert lines[:3] == [
        "# Credits",
        "",
        "Images of the dataset skewed used under licences that require attribution: attribution, source, licence.",
    ]
    assert lines[4:] == [
        f"- (no attribution recorded) — https://www.example.com/img/0.jpg — {BY4}",
        "- Author 1 — https://www.example.com/img/1.jpg — [CC BY 4.0](https://example.com/licence)",
        f"- Author 2 — https://www.example.com/img/2.jpg (on https://www.example.com/page) — {BY4}",
        f"- Author 3 — https://www.example.com/img/3.jpg — {BY4}",
        f"- Author 4 — https://www.example.com/img/4.jpg — {BY4}",
        f"- (no attribution recorded) — https://www.example.com/img/5.jpg — {BY4}",
        f"- (no attribution recorded) — http://cdn.pics.org/2.png — {SA2DE}",
        f"- Author 11 — http://cdn.pics.org/3.png — {SA2DE}",
        f"- Author 12 — https://user@photos.net:8080/a.jpg — {NC4}",
        f"- Author 13 — https://other.io/b.jpg — {NC4}",
        f"- Author 14 — /data/local/x.png — {NC4}",
        "- Author 18 — /data/local/x.png — [CC BY 2.0](https://creativecommons.org/licenses/by/2.0/)",
    ]


def test_csv_credits_through_the_cli(skewed, tmp_path, capsys):
    out = tmp_path / "credits.CSV"
    capsys.readouterr()
    assert main(["attribution", skewed, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["credited"] == 12
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and list(rows[0]) == [
        "key",
        "attribution",
        "source",
        "page_url",
        "license",
        "license_name",
        "license_url",
    ]
    assert rows[2] == {
        "key": "s002",
        "attribution": "Author 2",
        "source": "https://www.example.com/img/2.jpg",
        "page_url": "https://www.example.com/page",
        "license": "cc-by-4.0",
        "license_name": "CC BY 4.0",
        "license_url": "https://creativecommons.org/licenses/by/4.0/",
    }
    assert [r["key"] for r in rows][-1] == "s018" and rows[-1]["license"] == "cc-by-2.0"  # stored as CC-BY-2.0


def test_markdown_escapes_attribution(tmp_path):
    ds = make_dataset(
        tmp_path / "ds",
        [{"license": "cc-by-4.0", "attribution": "*Bob* [site]\nline two", "source": "https://x.org/a.jpg"}],
    )
    write_credits(ds, str(tmp_path / "c.md"))
    last = (tmp_path / "c.md").read_text().splitlines()[-1]
    assert last == rf"- \*Bob\* \[site\] line two — https://x.org/a.jpg — {BY4}"


def test_empty_dataset_credits(empty, tmp_path):
    result = write_credits(empty, str(tmp_path / "c.csv"))
    assert (result.samples, result.credited) == (0, 0)
    assert (tmp_path / "c.csv").read_text() == "key,attribution,source,page_url,license,license_name,license_url\n"


@pytest.mark.parametrize("name", ["CREDITS.txt", "CREDITS"])
def test_bad_output_name(skewed, tmp_path, capsys, name):
    assert main(["attribution", skewed, "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err == f"Error: --out {tmp_path / name}: name a .md (Markdown) or .csv file, such as CREDITS.md\n"
