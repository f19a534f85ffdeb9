"""The policy's faces and consent rules: every combination, overrides by name, and what training and
export record."""

import json

import pytest

from pixelforge.audit.policy import check_use, load_policy, parse_overrides
from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.store import Dataset
from pixelforge.store.schema import PEOPLE_FIELDS
from tests.audit.conftest import make_dataset

# (n_faces, faces_blurred, consent) of each sample, and what each rule finds in them
PEOPLE = [
    (None, None, "unknown"),  # s000 never checked for faces
    (0, None, "unknown"),  # s001 no face
    (0, None, "granted"),  # s002
    (1, False, "granted"),  # s003 a face, not blurred
    (1, True, "unknown"),  # s004 a blurred face
    (2, False, "denied"),  # s005
    (2, True, "granted"),  # s006
    (None, None, "granted"),  # s007 never checked, consent given
]
# rule value -> (samples breaking it, the counts the message gives)
FACES = {
    "allow": None,
    "blur": (4, "(2 never checked for faces, 2 with faces not blurred)"),  # s000 s007 | s003 s005
    "refuse": (6, "(2 never checked for faces, 4 with faces)"),  # s000 s007 | s003-s006
}
CONSENT = {
    "ignore": None,
    "require": (4, "(1 denied, 3 unknown)"),  # s000 s001 s004 s005
    # s001 (no face) needs none; s007 is granted
    "require_for_people": (3, "(1 denied, 2 unknown among samples with faces or never checked for faces)"),
}


@pytest.fixture()
def people(tmp_path):
    rows = [
        {"license": "cc0-1.0", "n_faces": n, "faces_blurred": b, "consent": c, "consent_source": "sidecar"}
        for n, b, c in PEOPLE
    ]
    return Dataset.open(make_dataset(tmp_path / "people", rows, extra_fields=PEOPLE_FIELDS))


def _policy(tmp_path, faces: str, consent: str) -> str:
    path = tmp_path / f"p-{faces}-{consent}.toml"
    path.write_text(f'name = "people"\nbase = "research"\nfaces = "{faces}"\nconsent = "{consent}"\n')
    return str(path)


@pytest.mark.parametrize("consent", list(CONSENT))
@pytest.mark.parametrize("faces", list(FACES))
def test_every_combination_refuses_exactly_what_it_forbids(people, tmp_path, faces, consent):
    policy = _policy(tmp_path, faces, consent)
    expected = {rule: found for rule, found in (("faces", FACES[faces]), ("consent", CONSENT[consent])) if found}
    if not expected:
        check = check_use(people, policy=policy)
        assert (check.policy, check.broken, check.overridden) == ("people", {}, [])
        return
    with pytest.raises(UsageError) as exc:
        check_use(people, policy=policy)
    msg = str(exc.value)
    assert "\n" not in msg and msg.count(f"{people.path} breaks the people policy's") == len(expected)
    for rule, (count, counts) in expected.items():
        value = faces if rule == "faces" else consent
        assert f"policy's {rule} = '{value}' in {count} samples {counts}" in msg
        assert f"--override {rule} to train on them anyway (recorded)" in msg
    # overriding one broken rule leaves the other refused
    for rule in expected:
        others = set(expected) - {rule}
        if others:
            with pytest.raises(UsageError, match=f"policy's {others.pop()} = "):
                check_use(people, policy=policy, override=rule)
    # overriding all of them lets the data through and says how many samples each let in
    check = check_use(people, policy=policy, override=",".join(expected))
    assert check.broken == {rule: count for rule, (count, _) in expected.items()}
    assert check.overridden == list(expected) and check.rules["faces"] == faces and check.rules["consent"] == consent


def test_a_dataset_without_people_columns_is_unknown_throughout(tmp_path):
    old = Dataset.open(make_dataset(tmp_path / "old", [{"license": "cc0-1.0"}] * 3))
    with pytest.raises(UsageError) as exc:
        check_use(old, policy=_policy(tmp_path, "blur", "require_for_people"))
    msg = str(exc.value)
    assert "faces = 'blur' in 3 samples (3 never checked for faces, 0 with faces not blurred)" in msg
    assert "consent = 'require_for_people' in 3 samples (3 unknown among samples with faces" in msg
    assert check_use(old, policy=_policy(tmp_path, "allow", "ignore")).broken == {}


def test_shipped_policies_leave_people_to_a_policy_file(people):
    for name in ("research", "commercial", "open"):
        assert (load_policy(name).faces, load_policy(name).consent) == ("allow", "ignore")
    assert check_use(people, policy="research").broken == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('faces = "hide"\n', "line 1: faces = 'hide': choose one of allow, blur, refuse"),
        (
            'allow = ["cc0"]\nconsent = "always"\n',
            "line 2: consent = 'always': choose one of ignore, require_for_people",
        ),
    ],
)
def test_bad_people_rules_in_a_policy_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_policy(str(path))
    assert str(exc.value).startswith(f"--policy {path}: {message}")


def test_override_names_are_checked_before_the_dataset_is_read(tmp_path):
    missing = Dataset(str(tmp_path / "gone"), None, str(tmp_path / "gone"), {})  # a query would crash
    with pytest.raises(UsageError) as exc:
        check_use(missing, policy="research", override="faces,face")
    assert (
        str(exc.value) == "--override 'face': choose one or more of opt_out, license, faces, consent (comma-separated)"
    )
    assert parse_overrides(["faces,consent", "faces"]) == ("faces", "consent")


def test_opt_out_and_license_overrides_by_name(tmp_path):
    mixed = Dataset.open(
        make_dataset(tmp_path / "m", [{"license": "cc-by-nc-4.0"}, {"license": "cc0-1.0", "opt_out": "robots.txt"}])
    )
    with pytest.raises(UsageError, match="holds 1 opted-out samples"):
        check_use(mixed, policy="commercial", override="license")
    with pytest.raises(UsageError, match="holds 1 samples whose licence the commercial policy does not allow"):
        check_use(mixed, policy="commercial", override="opt_out")
    check = check_use(mixed, policy="commercial", override="opt_out,license")
    assert (check.broken, check.allowed_by_override) == ({"opt_out": 1, "license": 1}, True)


def test_training_refuses_and_records_the_override(tmp_path, capsys):
    data, run = str(tmp_path / "digits"), str(tmp_path / "run")
    assert main(["import", "digits", "--size", "8", "--out", data]) == 0
    policy = _policy(tmp_path, "refuse", "ignore")
    args = ["train", "classifier", "--data", data, "--out", run, "--max-steps", "1", "--image-size", "8"]
    args += ["--batch-size", "16", "--device", "cpu", "--policy", policy]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "faces = 'refuse' in 1797 samples (1797 never checked for faces" in err
    assert main([*args, "--override", "faces"]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["policy"]
    assert recorded["policy"] == "people" and recorded["overridden"] == ["faces"]
    assert recorded["samples_breaking_overridden_rules"] == {"faces": 1797}
    assert recorded["rules"]["faces"] == "refuse" and recorded["samples"] == 1797


def test_export_refuses_and_records_the_override(people, tmp_path, capsys):
    out = tmp_path / "exported"
    policy = _policy(tmp_path, "blur", "ignore")
    base = ["export", people.path, "--format", "coco", "--out", str(out), "--policy", policy]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "faces = 'blur' in 4 samples" in err and "--override faces to export on them anyway" in err
    assert not out.exists()  # refused before anything is written
    assert main([*base, "--override", "faces"]) == 0
    record = json.loads((out / ".pixelforge-export.json").read_text())
    assert record["dataset"]["path"] == people.path and record["format"] == "coco"
    assert record["use"]["overridden"] == ["faces"]
    assert record["use"]["samples_breaking_overridden_rules"] == {"faces": 4}
    assert main(["export", people.path, "--format", "coco", "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / ".pixelforge-export.json").exists()  # no policy asked for: nothing to record


def test_audit_lists_people_violations_by_first_broken_rule(people, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "audit"
    assert main(["audit", people.path, "--out", str(out), "--policy", _policy(tmp_path, "blur", "require")]) == 0
    report = json.loads((out / "audit.json").read_text())["policy"]
    assert report["by_reason"] == {"consent": 2, "faces": 4} and report["faces"] == "blur"
    rows = pq.read_table(out / "violations.parquet").to_pylist()
    assert {r["key"]: r["reason"] for r in rows} == {
        "s000": "faces",
        "s001": "consent",
        "s003": "faces",
        "s004": "consent",
        "s005": "faces",
        "s007": "faces",
    }
