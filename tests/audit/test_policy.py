"""Policies (shipped and TOML) and the check training runs first, on tiny model-free datasets."""

import pytest

from pixelforge.audit.policy import SHIPPED, check_training_allowed, load_policy
from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.store import Dataset
from tests.audit.conftest import make_dataset


def test_shipped_policies():
    assert list(SHIPPED) == ["research", "commercial", "open"]
    assert load_policy("open").allow == ("cc0", "cc-by", "pdm", "public-domain")
    assert not load_policy("commercial").allow_unknown and load_policy("research").allow_unknown


@pytest.fixture()
def clean(tmp_path):
    """Six samples, no opt-outs: 2 cc-by-4.0, 1 cc0-1.0, 2 cc-by-nc-4.0, 1 unknown."""
    return Dataset.open(
        make_dataset(
            tmp_path / "clean",
            [{"license": lic} for lic in ("cc-by-4.0", "cc-by-4.0", "cc0-1.0", "cc-by-nc-4.0", "cc-by-nc-4.0", None)],
        )
    )


@pytest.fixture()
def opted(tmp_path):
    """Three cc0 samples, two of them opted out."""
    return Dataset.open(
        make_dataset(
            tmp_path / "opted",
            [{"license": "cc0-1.0", "opt_out": o} for o in ("robots.txt", None, "x-robots-tag: noai")],
        )
    )


def test_existing_signature_still_works(clean, opted):
    check = check_training_allowed(clean)
    assert (check.samples, check.opted_out, check.allowed_by_override, check.policy) == (6, 0, False, None)
    with pytest.raises(UsageError) as exc:
        check_training_allowed(opted)
    assert str(exc.value) == (
        f"{opted.path} holds 2 opted-out samples: remove them with `pixelforge curate` "
        "(it drops them by default) or pass --allow-opt-out to train on them anyway"
    )
    check = check_training_allowed(opted, True)
    assert (check.samples, check.opted_out, check.allowed_by_override) == (3, 2, True)


def test_policy_violations_refused_with_count_and_override(clean, tmp_path):
    with pytest.raises(UsageError) as exc:
        check_training_allowed(clean, policy="commercial")
    msg = str(exc.value)
    assert msg.startswith(
        f"{clean.path} holds 3 samples whose licence the commercial policy does not allow "
        "(cc-by-nc-4.0: 2, unknown: 1): "
    )
    assert "--policy" in msg and "research allows every licence" in msg and "\n" not in msg
    share_alike = Dataset.open(make_dataset(tmp_path / "sa", [{"license": "cc-by-sa-4.0"}] * 4))
    with pytest.raises(
        UsageError,
        match=r"holds 4 samples whose licence the open policy does not allow "
        r"\(cc-by-sa-4.0: 4\)",
    ):
        check_training_allowed(share_alike, policy="open")
    assert check_training_allowed(share_alike, policy="commercial").policy == "commercial"
    assert check_training_allowed(clean, policy="research").policy == "research"


def test_policy_file_and_opt_outs_stay_with_their_flag(clean, opted, tmp_path):
    path = tmp_path / "nc-ok.toml"
    path.write_text('base = "commercial"\nallow = ["cc-by-nc"]\nallow_unknown = true\n')
    assert check_training_allowed(clean, policy=str(path)).policy == "nc-ok"
    # opted-out samples: --allow-opt-out is the override whatever the policy says
    with pytest.raises(UsageError, match="holds 2 opted-out samples"):
        check_training_allowed(opted, policy="research")
    check = check_training_allowed(opted, allow_opt_out=True, policy="open")
    assert (check.opted_out, check.allowed_by_override, check.policy) == (2, True, "open")


def test_bad_policy_fails_before_the_dataset_is_read(tmp_path):
    missing = Dataset(str(tmp_path / "gone"), None, str(tmp_path / "gone"), {})  # a query would crash
    with pytest.raises(UsageError, match=r"--policy 'comercial': choose one of research, commercial, open"):
        check_training_allowed(missing, policy="comercial")


@pytest.mark.parametrize(
    "text, message",
    [
        ('name = "x"\nallow = ["cc0",\n', "not valid TOML at line 2 (end of file): Invalid value"),
        ('name = "x"\nallow = [cc0]\n', "not valid TOML at line 2, column 10"),
        (
            'name = "x"\nallowed = ["cc0"]\n',
            "line 2: unknown key 'allowed': use name, base, allow, deny, allow_unknown, allow_opt_out",
        ),
        ('base = "business"\n', "line 1: base 'business': choose one of research, commercial, open"),
        ('name = "x"\n\ndeny = "cc-by-nc"\n', "line 3: deny must be an array of licence ids"),
        ('allow = ["cc0", "unknown"]\n', "line 1: allow lists 'unknown': use allow_unknown = true or false instead"),
        ('allow = ["cc0"]\nallow_unknown = "yes"\n', "line 2: allow_unknown must be true or false"),
    ],
)
def test_bad_policy_file_is_one_line_error_with_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_policy(str(path))
    assert str(exc.value).startswith(f"--policy {path}: {message}")
    ds = make_dataset(tmp_path / "ds", [{"license": "cc0-1.0"}])
    assert main(["audit", ds, "--out", str(tmp_path / "a"), "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: --policy {path}: {message}") and err.count("\n") == 1
