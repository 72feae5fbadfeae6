"""The report describes the recipe the run used, whatever it was: each pooling, optimizer and schedule,
with and without augmentation and weight decay, and other layer sizes. Every recipe but the last is
the small run's weights under another config.toml (the words come from the config; the numbers are
the run's own), rendered as HTML only."""

import re
import shutil

import pytest
from conftest import SMALL, run_cli

from labbook.config import Config, apply_overrides, load_config_text, override, to_toml
from labbook.report.render import ReportOptions, render_report
from labbook.runs.writer import write_manifest


def _text(html: str, start: str, end: str) -> str:
    """The visible text between two section ids, without tags."""
    part = html[html.index(f'id="section-{start}"'):html.index(f'id="section-{end}"')]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<math.*?</math>", " ", part, flags=re.S)))


def _render(run, tmp_path, name: str, changes: dict) -> dict[str, str]:
    """The report's zh and en text (the recipe's own sections: 一 to 四) for the run under other settings."""
    folder = shutil.copytree(run, tmp_path / name)
    config = load_config_text((folder / "config.toml").read_text(encoding="utf-8"), "config.toml")
    merged: dict = {}
    for key, value in changes.items():
        section, field = key.split(".")
        merged.setdefault(section, {})[field] = override(key, value)[section][field]
    (folder / "config.toml").write_text(to_toml(apply_overrides(config, merged)), encoding="utf-8")
    write_manifest(folder)
    render_report(folder, ReportOptions(languages=("zh", "en"), formats=("html",)))
    return {language: (folder / "report" / f"report.{language}.html").read_text(encoding="utf-8")
            for language in ("zh", "en")}


RECIPES = {
    # name: (settings, words that must appear in 二 to 四, words that must not appear anywhere outside
    #        the table of differences and the appendix's config listing), in English
    "avg": ({"model.pooling": "avg"}, ["Average pooling replaces"], ["Max pooling keeps", "Anti-aliased"]),
    "blur": ({"model.pooling": "blur"}, ["Anti-aliased pooling", "binomial filter"],
             ["Max pooling keeps", "Average pooling replaces"]),
    "sgd": ({"train.optimizer": "sgd", "train.learning_rate": 0.01, "train.momentum": 0.5},
            ["stochastic gradient descent with momentum μ = 0.5"], ["Adam", "β₁", "The weight decay λ is"]),
    "adamw-onecycle": ({"train.optimizer": "adamw", "train.weight_decay": 0.01, "train.schedule": "onecycle"},
                       ["AdamW", "The weight decay λ is 0.01", "one-cycle"],
                       ["momentum μ", "stays at 0.003 throughout"]),
    "adam": ({}, ["updated by Adam", "stays at 0.003 throughout"],
             ["The weight decay λ is", "momentum μ", "one-cycle"]),
    "augmented": ({"data.augment_shift": 2}, ["random shift of up to 2 pixels"], ["with no augmentation"]),
    "dropout-off": ({"model.dropout": 0.0}, ["This run uses no dropout"], ["During training, dropout"]),
}


@pytest.mark.parametrize("name", RECIPES)
def test_the_report_names_the_recipe_the_run_used(reported, tmp_path, name):
    changes, present, absent = RECIPES[name]
    pages = _render(reported, tmp_path, name, changes)
    english = pages["en"]
    recipe_text = _text(english, "principles", "process")
    for words in present:
        assert words in recipe_text, (name, words)
    # Outside the table of differences (which names the lab's setting beside the run's) and the
    # appendix (the config as written), no sentence names a setting the run did not use.
    body = re.sub(r'<div class="table long"><table>\s*<caption id="table-differences".*?</table></div>', " ",
                  english[english.index('id="section-purpose"'):english.index('id="section-appendix"')], flags=re.S)
    body = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    for words in absent:
        assert words not in body, (name, words)
    # The small run already differs from the original lab (Adam, a data subset): 一 says so, and its
    # table of differences lists every setting changed here.
    assert "changed the original lab's recipe" in _text(english, "purpose", "principles")
    table = english[english.index('id="table-differences"'):]
    table = table[:table.index("</table>")]
    lab = Config().to_dict()
    for key, value in (changes or {"train.optimizer": "adam"}).items():
        section, field = key.split(".")
        assert (f"<code>{key}</code>" in table) == (value != lab[section][field]), (name, key)
    assert ZH[name] in _text(pages["zh"], "principles", "process"), name


# What the Chinese report's 二 to 四 must then say.
ZH = {"avg": "平均池化", "blur": "抗混叠池化", "sgd": "动量 μ = 0.5", "adamw-onecycle": "AdamW", "adam": "Adam",
      "augmented": "随机平移", "dropout-off": "未使用 Dropout"}

def test_other_layer_sizes_are_described_from_the_config(tmp_path):
    """A network of other sizes, trained for real: its channels, the fc1 input size worked out in 二,
    and the layer table follow its config."""
    made = run_cli("run", *SMALL, "--set", "model.depth=[6, 12]", "--set", "model.hidden=32",
                   "--set", "data.train_limit=300", "--set", "data.test_limit=100", "--set", "data.validation_limit=100",
                   "--set", "dissect.shift_radius=1", "--set", "dissect.rotation_degrees=[0]", "--set",
                   "dissect.mistakes=2", "--no-figures", "--runs-dir", tmp_path)
    assert made.returncode == 0, made.stderr
    (run,) = tmp_path.iterdir()
    render_report(run, ReportOptions(languages=("en",), formats=("html",)))
    english = (run / "report" / "report.en.html").read_text(encoding="utf-8")
    recipe_text = _text(english, "principles", "process")
    assert "7 × 7 × 12 = 588" in recipe_text and "6 and 12 channels" in recipe_text and "fc1 with 32 units" in recipe_text
    layers = english[english.index('id="table-layers"'):]
    layers = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", layers[:layers.index("</table>")]))
    # conv1's output, conv2's after pooling, and fc1's 588 x 32 weights and 32 biases
    assert "6 × 28 × 28" in layers and "12 × 7 × 7" in layers and "18,848" in layers
