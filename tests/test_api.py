"""labbook from Python: the CLI's stages as functions and objects that display themselves in Jupyter,
reading folders through the same gate as the site."""

import json
import shutil

import pytest

import labbook
from labbook.errors import UserError
from labbook.runs.reader import read_run


def test_a_run_trained_from_python_is_the_clis_run(tmp_path):
    """labbook.run goes the CLI's way (the same config, the same folder); a setting that does not exist
    is the CLI's one-line error."""
    run = labbook.run("seed", epochs=1, seed=3, threads=1, runs_dir=tmp_path, progress=False,
                      settings={"data.train_limit": 300, "data.validation_limit": 100, "data.test_limit": 100,
                                "train.optimizer": "adam"})
    assert run.folder.parent == tmp_path and run.config.train.optimizer == "adam" and run.config.train.seed == 3
    assert 0 <= run.metrics["test_accuracy"] <= 1 and len(run.history) >= 1
    with pytest.raises(UserError, match="train.epochz"):
        labbook.run("seed", settings=["train.epochz=3"], runs_dir=tmp_path)


def test_a_run_displays_itself_and_its_figures(reported):
    run = labbook.open(reported)
    card = run._repr_html_()
    metrics = read_run(reported).metrics
    assert f"{100 * metrics['test_accuracy']:.2f}%" in card and "data:image/svg+xml;base64," in card
    assert "report.zh.pdf" in card and "<svg" not in card and "<style" not in card   # a figure's CSS stays in it
    assert "<script" not in card.lower()
    assert list(run.figures)[:2] == ["samples", "error_curve"]
    labbook.set_language("zh")
    try:
        assert "<svg" in run.figures["shift_grid"].svg() and 'lang="zh"' in run._repr_html_()
        assert run.figures["shift_grid"]._repr_html_().startswith('<img alt="shift_grid"')
    finally:
        labbook.set_language("en")
    with pytest.raises(UserError, match="choose from"):
        labbook.set_language("fr")


def test_open_on_a_hostile_folder_raises_the_sites_error_and_displays_nothing_of_it(reported, tmp_path):
    tampered = shutil.copytree(reported, tmp_path / "tampered")
    metrics = json.loads((tampered / "metrics.json").read_text())
    (tampered / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 1.0}))
    linked = shutil.copytree(reported, tmp_path / "linked")
    (linked / "history.csv").unlink()
    (linked / "history.csv").symlink_to(reported / "history.csv")
    for folder in (tampered, linked):
        with pytest.raises(UserError) as raised:
            labbook.open(folder)
        with pytest.raises(UserError) as site_says:
            read_run(folder, dissected=True)
        assert str(raised.value) == str(site_says.value) and "\n" not in str(raised.value)
        card = labbook.Run(folder)._repr_html_()     # made before the folder was altered, shown after
        assert "100.00%" not in card and "data:image" not in card and str(folder.name) in card
