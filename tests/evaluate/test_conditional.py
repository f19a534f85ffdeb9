"""Tests for `pixelforge evaluate conditional`: targets from columns and prompts, accuracy, confusion, runs."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.evaluate.conditional import evaluate_conditional, target_of
from pixelforge.evaluate.features import ClassifierFeatures, load_feature_model
from tests.evaluate.fixtures import COLOURS, ColourJudge, colour_image, generated_dataset, write_folder

NAMES = list(COLOURS)


def judge() -> ClassifierFeatures:
    return ClassifierFeatures(module=ColourJudge().eval(), label_names=NAMES, input_size=16, name="colour-judge")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """30 generated images; prompts name a colour; images 3, 7, 11 and 20 show another colour than asked."""
    asked = [NAMES[i % 3] for i in range(30)]
    wrong = {3: "green", 7: "blue", 11: "red", 20: "red"}
    shown = [wrong.get(i, c) for i, c in enumerate(asked)]
    images = np.stack([colour_image(c, 24, seed=i) for i, c in enumerate(shown)])
    rows = [{"caption": f"a {c} square on a white background", "caption_source": "generated"} for c in asked]
    rows[5]["caption"] = "a square"  # names no colour: cannot be judged
    path = generated_dataset(tmp_path_factory.mktemp("gen") / "generated", images, rows)
    return str(path), asked, shown


def test_target_from_column_label_or_prompt():
    assert target_of({"colour": "red", "caption": "a blue thing"}, "colour", NAMES) == "red"
    assert target_of({"caption": "a large Blue circle on a red background"}, "colour", NAMES) == "blue"
    assert target_of({"caption": "bluegreen"}, "colour", NAMES) is None  # whole words only
    assert target_of({"label_name": "green"}, "label", NAMES) == "green"
    assert target_of({"label": 2}, "label", NAMES) == "blue"
    assert target_of({"colour": "orange"}, "colour", NAMES) is None  # a class the judge does not know
    assert target_of({"caption": "a cat in the top left"}, "position", ["top", "top left"]) == "top left"


def test_accuracy_per_class_and_confusion(generated):
    path, asked, shown = generated
    result = evaluate_conditional(path, {"colour": judge()})
    acc = result.attributes["colour"]
    assert result.n_fake == 30 and result.not_generated == 0
    assert (acc.judged, acc.unjudged, acc.correct) == (29, 1, 25)
    assert acc.accuracy == pytest.approx(25 / 29)
    expected = np.zeros((3, 3), int)
    for i, (a, s) in enumerate(zip(asked, shown)):
        if i != 5:
            expected[NAMES.index(a), NAMES.index(s)] += 1
    assert acc.confusion == expected.tolist()
    assert acc.per_class["red"] == {"n": 10, "correct": 9, "accuracy": 0.9}
    assert acc.per_class["blue"] == {"n": 9, "correct": 7, "accuracy": pytest.approx(7 / 9)}
    assert result.all_correct == pytest.approx(25 / 29) and result.n_all == 29


def test_column_targets_win_over_the_prompt(tmp_path):
    images = np.stack([colour_image(c, 16, seed=i) for i, c in enumerate(["red", "green", "blue", "blue"])])
    rows = [{"colour": c, "caption": "a red thing"} for c in ["red", "green", "blue", "green"]]
    path = generated_dataset(tmp_path / "g", images, rows)
    acc = evaluate_conditional(str(path), {"colour": judge()}).attributes["colour"]
    assert (acc.judged, acc.correct) == (4, 3)


def test_plain_folders_and_judges_without_classes_are_refused(tmp_path):
    folder = write_folder(tmp_path / "f", np.stack([colour_image("red", 16, 0)]))
    with pytest.raises(UsageError, match="plain folder"):
        evaluate_conditional(str(folder), {"colour": judge()})
    with pytest.raises(UsageError, match="no label names"):
        evaluate_conditional(str(folder), {"colour": ClassifierFeatures(ColourJudge(), [], None)})


def test_classifier_run_needs_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"family": "classifier", "model": {}, "labels": NAMES}))
    with pytest.raises(UsageError, match="has no checkpoint yet"):
        load_feature_model(f"classifier:{run}")
    (run / "config.json").write_text(json.dumps({"family": "gan"}))
    with pytest.raises(UsageError, match="holds a 'gan' model, not a classifier"):
        load_feature_model(f"classifier:{run}")


@pytest.fixture()
def classifier_run(tmp_path, monkeypatch):
    """A classifier run directory plus a stand-in for the classifier issue's load_run."""
    run = tmp_path / "colour-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"family": "classifier", "model": {"image_size": 16}, "labels": NAMES, "label_column": "colour"})
    )
    monkeypatch.setattr(
        "pixelforge.train.rundir.load_run",
        lambda run_dir: types.SimpleNamespace(model=ColourJudge(), config={"labels": NAMES}),
    )
    return run


def test_cli_conditional_json_through_a_classifier_run(generated, classifier_run, capsys):
    path, _, _ = generated
    capsys.readouterr()
    assert (
        main(
            ["evaluate", "conditional", "--fake", path, "--classifier", str(classifier_run), "--workers", "0", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    colour = out["attributes"]["colour"]  # the attribute came from the run's config ("label_column": "colour")
    assert (colour["judged"], colour["correct"], colour["labels"]) == (29, 25, NAMES)
    assert (
        main(
            [
                "evaluate",
                "conditional",
                "--fake",
                path,
                "--classifier",
                str(classifier_run),
                "--attribute",
                "colour,shape",
            ]
        )
        == 2
    )
    assert "one classifier per attribute" in capsys.readouterr().err


def test_classifier_features_give_a_domain_fid(generated, classifier_run, tmp_path, capsys):
    path, _, _ = generated
    real = write_folder(tmp_path / "real", np.stack([colour_image(NAMES[i % 3], 24, 100 + i) for i in range(12)]))
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(real),
                "--fake",
                path,
                "--features",
                f"classifier:{classifier_run}",
                "--metrics",
                "fid,is",
                "--workers",
                "0",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["features"] == f"classifier:{classifier_run}" and out["dims"] == 6 and out["fid_impl"] is None
    assert out["fid"] > 0 and 1 <= out["is"] <= 3
