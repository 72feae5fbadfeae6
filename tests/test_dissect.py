import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import invoke

from labbook.config import apply_overrides
from labbook.dissect import figures
from labbook.dissect.dissection import dissect_run, figure_jobs, kernel_descriptor, measure
from labbook.errors import UserError
from labbook.runs.reader import read_run
from labbook.site.build import build_site


def test_kernel_descriptors_of_synthetic_kernels():
    horizontal = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [-1] * 5, [-1] * 5], float)
    described = kernel_descriptor(horizontal)
    assert described["orientation"] == "horizontal" and described["kind"] == "edge"
    assert described["orientation_strength"] > 0.9
    assert kernel_descriptor(horizontal.T)["orientation"] == "vertical"
    diagonal = np.fromfunction(lambda r, c: (c - r), (5, 5))
    assert kernel_descriptor(diagonal)["orientation"].startswith("diagonal")
    centre = -np.ones((5, 5))
    centre[1:4, 1:4] = 2.0
    described = kernel_descriptor(centre)
    assert described["centre_surround"] and described["kind"] == "centre-surround"
    assert described["l2_norm"] == pytest.approx(np.linalg.norm(centre))


def test_dissection_of_a_run(small_run):
    folder, result = small_run
    assert "dissection:" in result.stdout
    dissection = json.loads((folder / "dissection.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    grid = dissection["robustness"]["shift_grid"]
    radius = grid["radius"]
    assert grid["accuracy"][radius][radius] == metrics["test_accuracy"]   # shift (0, 0) is the test set
    assert dissection["evaluation"]["test_accuracy"] == metrics["test_accuracy"]
    assert len(grid["accuracy"]) == 2 * radius + 1 and len(grid["accuracy"][0]) == 2 * radius + 1
    assert 0 <= dissection["robustness"]["consistency"] <= 1
    assert len(dissection["kernels"]["conv1"]) == 4 and len(dissection["kernels"]["conv2"]) == 8
    assert len(dissection["robustness"]["rotation"]) == 13
    expected = {"error_curve", "samples", "conv1_kernels", "conv1_features", "conv2_kernels", "conv2_features",
                "shift_test", "kernel_evolution", "shift_grid", "rotation", "confusion", "mistakes", "attribution"}
    assert set(dissection["figures"]) == expected
    for name in expected:
        for language in ("zh", "en"):
            for extension in ("svg", "png"):
                path = folder / "figures" / f"{name}.{language}.{extension}"
                assert path.stat().st_size > 1000, path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "dissection.json" in manifest["files"] and "figures/samples.zh.png" in manifest["files"]


def test_each_half_alone_gives_the_same_bytes_and_every_glyph_exists(small_run, tmp_path):
    """The Chinese figures redrawn alone (in this process, so that a missing glyph's warning reaches
    the test) and the numbers measured alone are exactly those `labbook run` and `labbook dissect`
    made, whatever thread count the calling process had set (the run's own is used)."""
    folder, _ = small_run
    torch.set_num_threads(3)
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "figures")
    (copy / "figures").mkdir()
    run = read_run(copy, dissected=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures.draw_language(figure_jobs(run, run.dissection), copy / "figures", "zh")
    glyphs = [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert glyphs == []
    drawn = sorted((folder / "figures").glob("*.zh.*"))
    assert len(drawn) == 26
    for path in drawn:
        assert (copy / "figures" / path.name).read_bytes() == path.read_bytes(), path.name

    dissection = {key: value for key, value in run.dissection.items() if key != "figures"}
    assert json.loads(json.dumps(measure(run, run.config.dissect))) == dissection
    settings = apply_overrides(run.config, {"dissect": {"image_index": 7}}).dissect
    assert measure(run, settings)["samples"]["test"]["index"] == 7
    assert torch.get_num_threads() == 3


def test_a_run_dissected_without_figures_says_how_to_draw_them(figureless_run, tmp_path):
    """(The small run's figures were drawn on demand, by `labbook dissect RUN --figures-only`: the
    tests of its figures and of its dissection.json's list of them test that path.)"""
    copy = tmp_path / figureless_run.name
    shutil.copytree(figureless_run, copy)
    assert json.loads((copy / "dissection.json").read_text())["figures"] == {}
    assert not (copy / "figures").exists() or not list((copy / "figures").iterdir())
    result = invoke("report", copy, "--lang", "zh-en", "--format", "html")
    assert result.exit_code == 0 and f"no figures: the run was dissected without them; `labbook dissect {copy} " \
        "--figures-only` draws them" in result.output
    page = (copy / "report" / "report.zh-en.html").read_text()
    assert page.count('class="not-drawn"') == 13 and "<img" not in page
    assert "可用 `labbook dissect RUN --figures-only` 补绘" in page and "--figures-only` draws them." in page
    built = build_site([copy], tmp_path / "site")
    assert built.runs and any("published without figures" in warning for warning in built.warnings)
    (slot,) = (tmp_path / "site" / "runs").iterdir()
    assert (slot / "index.html").read_text().count('class="not-drawn"') == 13


def test_broken_run_folders_get_a_clear_error(small_run, tmp_path):
    folder, _ = small_run
    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    (missing / "model.safetensors").unlink()
    result = invoke("dissect", missing)
    assert result.exit_code == 2 and "model.safetensors: missing" in result.output

    altered = tmp_path / "altered"
    shutil.copytree(folder, altered)
    with open(altered / "snapshots.safetensors", "r+b") as stream:
        stream.truncate(100)
    with pytest.raises(UserError, match="snapshots.safetensors: changed after the run"):
        dissect_run(altered)

    unfinished = tmp_path / "unfinished"
    shutil.copytree(folder, unfinished)
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    result = invoke("dissect", unfinished)
    assert result.exit_code == 2 and "not 'complete'" in result.output
