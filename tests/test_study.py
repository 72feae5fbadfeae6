"""Studies: variants x seeds of ordinary runs, resumed, and compared with their uncertainty."""

import json
import math
import re

import pytest
from conftest import CHROMIUM, PROCESS_DEADLINE, invoke, pages_wider_than

from labbook.errors import UserError
from labbook.runs.reader import read_json, verify_manifest
from labbook.studies.plan import parse_study, study_toml
from labbook.studies.runner import run_study
from labbook.studies.statistics import interval, t_quantile

TINY = """
[study]
name = "tiny"
base = "seed"
seeds = [0, 1]
baseline = "baseline"
measures = ["test_accuracy", "lab_shift_accuracy", "consistency"]

[set]
"data.train_limit" = 400
"data.validation_limit" = 100
"data.test_limit" = 100
"train.epochs" = 1
"train.optimizer" = "adam"
"train.learning_rate" = 0.003
"train.record_every" = 2
"dissect.shift_radius" = 2
"dissect.rotation_degrees" = [-10, 0, 10]

[[variants]]
name = "baseline"

[[variants]]
name = "blurpool"
set = { "model.pooling" = "blur" }
"""
# A variant whose loss explodes at once (one seed: each failed attempt costs a process's start-up).
EXPLODES = TINY.split("[[variants]]")[0].replace("seeds = [0, 1]", "seeds = [0]").replace(
    'baseline = "baseline"', 'baseline = "explodes"') + """
[[variants]]
name = "explodes"
set = { "train.learning_rate" = 1e12, "train.optimizer" = "sgd", "train.momentum" = 0.0 }
"""


def test_the_t_quantiles_and_intervals_are_the_textbook_ones():
    assert t_quantile(2) == 4.303 and t_quantile(30) == 2.042 and abs(t_quantile(1000) - 1.9623) < 1e-3
    result = interval([1.0, 2.0, 3.0])
    assert result["mean"] == 2.0 and result["sd"] == 1.0
    assert math.isclose(result["high"] - result["mean"], 4.303 / math.sqrt(3))
    assert interval([0.5])["low"] is None          # one seed: no interval at all


def test_no_difference_contains_zero_and_a_clear_effect_excludes_it():
    same = interval([0.0, 0.0, 0.0])
    assert same["low"] <= 0 <= same["high"]
    noisy = interval([0.01, -0.02, 0.015])
    assert noisy["low"] < 0 < noisy["high"]
    clear = interval([0.20, 0.22, 0.21])
    assert clear["low"] > 0


def test_a_bad_study_stops_before_anything_trains():
    with pytest.raises(UserError, match="unknown key 'train.epochz'"):
        parse_study(TINY.replace('"train.epochs" = 1', '"train.epochz" = 1'), "tiny.toml")
    with pytest.raises(UserError, match="model.pooling must be one of max, avg, blur"):
        parse_study(TINY.replace('"model.pooling" = "blur"', '"model.pooling" = "fuzzy"'), "tiny.toml")
    with pytest.raises(UserError, match="study.baseline 'nope'"):
        parse_study(TINY.replace('baseline = "baseline"', 'baseline = "nope"'), "tiny.toml")
    assert invoke("study", "no-such-study").exit_code == 2


@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory):
    """The tiny study run here, locally, two runs at a time."""
    out = tmp_path_factory.mktemp("local")
    study = parse_study(TINY, "tiny.toml")
    return study, out, run_study(study, out, parallel=2, progress=False)


def numbers(folder):
    """A run's metrics without its clocks: what must be the same wherever the run was trained."""
    metrics = json.loads((folder / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if "seconds" not in key and key != "samples_per_second"}


def test_a_tiny_study_runs_resumes_and_reports_failures(tiny_local):
    study, tmp_path, summary = tiny_local
    root = tmp_path / study.id
    assert json.loads((root / "study.json").read_text()) == json.loads(json.dumps(summary))
    for name in ("baseline", "blurpool"):
        entry = summary["variants"][name]
        assert entry["failed"] == [] and sorted(entry["runs"]) == ["0", "1"]
        for relative in entry["runs"].values():
            folder = root / relative
            assert read_json(folder / "run.json")["status"] == "complete" and verify_manifest(folder) == []
    blur = summary["variants"]["blurpool"]
    assert blur["difference"]["test_accuracy"]["seeds"] == [0, 1]
    assert "pooling = \"blur\"" in (root / blur["runs"]["0"] / "config.toml").read_text()
    # Running it again trains nothing that is complete: the same run folders, the same metrics.
    before = {relative: (root / relative / "metrics.json").read_bytes()
              for name in ("baseline", "blurpool") for relative in summary["variants"][name]["runs"].values()}
    again = run_study(study, tmp_path, parallel=2, progress=False)
    assert {relative: (root / relative / "metrics.json").read_bytes() for relative in before} == before
    assert again["variants"]["baseline"]["runs"] == summary["variants"]["baseline"]["runs"]


def test_a_studys_runs_draw_no_figure_until_asked(tiny_local):
    """A study shows numbers: its runs are measured in full but draw nothing (`labbook study --figures`
    or `labbook dissect RUN --figures-only` draw them on demand)."""
    study, out, summary = tiny_local
    for entry in summary["variants"].values():
        for relative in entry["runs"].values():
            folder = out / study.id / relative
            assert read_json(folder / "dissection.json")["figures"] == {}
            assert not list(folder.glob("figures/*"))


def test_a_study_from_python_shows_its_table_and_differences_measured_again(tiny_local):
    """labbook.Study: the numbers are the runs' own (measured again), each variant set against the
    baseline; its card shows them, escaped."""
    import labbook
    study, out, summary = tiny_local
    opened = labbook.Study(out / study.id)
    (blur,) = [row for row in opened.differences if row["variant"] == "blurpool" and row["measure"] == "test_accuracy"]
    written = summary["variants"]["blurpool"]["difference"]["test_accuracy"]
    assert blur["mean"] == pytest.approx(written["mean"]) and blur["low"] == pytest.approx(written["low"])
    assert {row["variant"] for row in opened.differences} == {"blurpool"}          # the baseline has none
    card = opened._repr_html_()
    assert "blurpool − baseline" in card and f"{100 * written['mean']:.2f}%" in card


def test_a_run_that_fails_is_tried_again_then_recorded_and_the_study_goes_on(tmp_path):
    study = parse_study(EXPLODES, "explodes.toml")
    summary = run_study(study, tmp_path, parallel=2, progress=False)
    assert summary["variants"]["explodes"]["failed"] == [0] and summary["variants"]["explodes"]["runs"] == {}
    assert (tmp_path / study.id / "study.json").is_file()


@pytest.fixture(scope="module")
def ray_installed():
    """One local Ray instance for the Ray tests (starting one costs seconds), which only they need:
    Ray is an optional extra, and the other tests run without it. A study uses the instance it finds."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'labbook[ray]'")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_on_ray_every_run_has_the_same_numbers_as_here(ray_installed, tiny_local, tmp_path):
    study, local_out, local = tiny_local
    remote = run_study(study, tmp_path, progress=False, ray=True)    # a real local Ray instance
    for name in ("baseline", "blurpool"):
        assert remote["variants"][name]["failed"] == []
        for seed in ("0", "1"):
            here = local_out / study.id / local["variants"][name]["runs"][seed]
            there = tmp_path / study.id / remote["variants"][name]["runs"][seed]
            assert verify_manifest(there) == [] and numbers(there) == numbers(here)
            dissected = [json.loads((folder / "dissection.json").read_text()) for folder in (here, there)]
            assert [{k: v for k, v in d.items() if k != "run_id"} for d in dissected] == \
                [{k: v for k, v in dissected[0].items() if k != "run_id"}] * 2   # all but the run's name


def test_a_ray_worker_killed_mid_run_is_replaced_and_the_study_completes(ray_installed, tmp_path):
    import os
    import signal
    import threading
    import time

    study = parse_study(TINY.split("[[variants]]")[0].replace("seeds = [0, 1]", "seeds = [0]") +
                        '[[variants]]\nname = "baseline"\n', "one.toml")
    killed, outcome = [], {}
    worker = threading.Thread(target=lambda: outcome.update(run_study(study, tmp_path, progress=False, ray=True)))
    worker.start()
    deadline = time.monotonic() + PROCESS_DEADLINE
    while not killed and time.monotonic() < deadline and worker.is_alive():
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    title = open(f"/proc/{entry}/cmdline", "rb").read()
                except OSError:
                    continue
                if title.startswith(b"ray::train_remote"):
                    os.kill(int(entry), signal.SIGKILL)     # the worker dies in the middle of its run
                    killed.append(int(entry))
                    break
        time.sleep(0.2)
    worker.join(PROCESS_DEADLINE)
    assert killed, "no Ray worker was seen running the task"
    assert outcome["variants"]["baseline"]["failed"] == [] and list(outcome["variants"]["baseline"]["runs"]) == ["0"]
    assert verify_manifest(tmp_path / study.id / outcome["variants"]["baseline"]["runs"]["0"]) == []


def _retitled(source, target, change):
    """A copy of a study folder (its runs too) whose study.json is changed by `change(data)`."""
    import shutil
    shutil.copytree(source, target)
    data = json.loads((target / "study.json").read_text())
    change(data)
    (target / "study.json").write_text(json.dumps(data) if isinstance(data, dict) else data)
    return target


def test_a_site_publishes_the_studies_given_measured_again_and_skips_hostile_ones(tiny_local, small_run, tmp_path):
    """`labbook site RUNS --studies STUDIES`: a study's page shows what labbook measured from its runs
    (a forged mean or verdict in study.json is never shown); a study.json among the runs is never
    published; a hostile study.json, or a study whose run was altered, is skipped with a one-line
    reason and the class's site is still built; two ids that slug alike get two pages."""
    import re as regex
    import shutil

    from conftest import copy_run

    from labbook.runs.writer import write_manifest
    study, out, summary = tiny_local
    studies, runs = tmp_path / "studies", tmp_path / "class"
    truth = summary["variants"]["blurpool"]["measures"]["test_accuracy"]["mean"]

    def forge(data):
        data["variants"]["blurpool"]["measures"]["test_accuracy"]["mean"] = 0.9991
        data["variants"]["blurpool"]["difference"]["test_accuracy"].update(excludes_zero=True, holm_excludes_zero=True,
                                                                           low=-0.02, high=0.03)
    _retitled(out / study.id, studies / study.id, forge)
    _retitled(out / study.id, studies / "slash", lambda data: data.update(id="shift/study"))
    _retitled(out / study.id, studies / "colon", lambda data: data.update(id="shift:study"))
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    cases = {
        "infinite-seed": lambda data: data["variants"]["blurpool"].update(failed=[float("inf")]),
        "huge-mean": lambda data: data["spec"].update(seeds=[int("9" * 401)]),
        "many-variants": lambda data: data.update(variants={**{f"v{i}": {} for i in range(60)}, **data["variants"]}),
        "many-measures": lambda data: data["spec"].update(measures=["test_accuracy"] * 5000),
        "no-baseline": lambda data: data["spec"].update(baseline="nobody"),
    }
    for name, change in cases.items():
        _retitled(out / study.id, hostile / name, change)
    (hostile / "not-json").mkdir()
    (hostile / "not-json" / "study.json").write_text('{"id": ' + "[" * 100_000)
    # Seed 1's folders holding seed 0's runs (one network counted twice), and a run dissected otherwise.
    copied = _retitled(out / study.id, hostile / "copied-seeds", lambda data: None)
    for variant in ("baseline", "blurpool"):
        shutil.rmtree(copied / "runs" / variant / "seed-1")
        shutil.copytree(copied / "runs" / variant / "seed-0", copied / "runs" / variant / "seed-1")
    otherwise = _retitled(out / study.id, hostile / "measured-otherwise", lambda data: None)
    member = otherwise / summary["variants"]["blurpool"]["runs"]["1"]
    dissection = json.loads((member / "dissection.json").read_text())
    dissection["settings"]["rotation_degrees"] = [-10, 10]
    (member / "dissection.json").write_text(json.dumps(dissection))
    write_manifest(member)
    missing = _retitled(out / study.id, hostile / "missing-run", lambda data: None)
    shutil.rmtree(missing / "runs" / "baseline" / "seed-1")
    altered = _retitled(out / study.id, hostile / "altered", lambda data: None)
    metrics = altered / summary["variants"]["baseline"]["runs"]["1"] / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"test_accuracy": ', '"test_accuracy": 1e-9 + '))
    # A student's run folder with a study.json of its own: an "official ranking" on the class's index.
    student = copy_run(small_run[0], runs / "student", id="student-run")
    (student / "study.json").write_text(json.dumps({**summary, "id": "ranking",
                                                    "spec": {**summary["spec"], "name": "Official class ranking"}}))

    result = invoke("site", runs, "--studies", studies, "--studies", hostile, "--out", tmp_path / "site")
    assert result.exit_code == 3, result.output      # written, with what was skipped named
    assert "Traceback" not in result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert {line.split(":")[0].removeprefix("skipped ") for line in skipped} >= {*cases, "not-json", "altered",
                                                                                 "copied-seeds", "measured-otherwise",
                                                                                 "missing-run"}
    assert any("copied-seeds" in line and "not its folder's 1" in line for line in skipped), skipped
    assert any("missing-run" in line and "no run of variant 'baseline' with seed 1" in line for line in skipped), skipped
    assert any("measured-otherwise" in line and "dissected with other settings" in line for line in skipped), skipped
    assert any(line.startswith("skipped altered: study not published") and "metrics.json" in line for line in skipped)
    assert any("many-variants" in line and "50" in line for line in skipped), skipped
    site = tmp_path / "site"
    pages = sorted(path.name for path in (site / "studies").glob("*.en.html"))
    assert len(pages) == 3 and len({page.split("-")[0] for page in pages}) == 2, pages  # shift/study, shift:study
    page = next((site / "studies").glob(f"{study.id}-*.en.html")).read_text()
    text = regex.sub(r"<[^>]+>", " ", page)
    assert "99.91%" not in text and f"{100 * truth:.2f}%" in text and "blurpool" in text
    assert "raises the test accuracy" not in text
    links = regex.findall(r'href="\.\./(runs/[^"]+/index\.en\.html)"', page)
    assert len(links) == 4 and all((site / link).is_file() for link in links)
    assert len(regex.findall(r'src="\.\./assets/study-', page)) == 2   # the shift curves and the differences
    index = (site / "index.en.html").read_text()
    assert "Official class ranking" not in index and "ranking" not in index and "student-run" in index
    assert not any(link.split("/")[1] in index for link in links)    # a study's runs are on its page
    if CHROMIUM.exists():    # a study's table is wide: it scrolls inside itself, the page does not
        pages = [path.relative_to(site).as_posix() for path in (site / "studies").glob("*.html")]
        assert pages_wider_than(site, pages) == []


def test_vary_reads_each_value_as_toml_lists_included():
    """`--vary` splits at the commas between values, not inside a list or a quoted string."""
    plan = parse_study(study_toml("seed", [], ["model.depth=[4,8],[6,16]", "model.pooling=max,blur",
                                              "report.title='a, b',c"], "0,1"), "command line")
    configs = [variant.configs[0] for variant in plan.variants]
    assert {tuple(config.model.depth) for config in configs} == {(4, 8), (6, 16)} and len(configs) == 8
    assert {config.report.title for config in configs} == {"a, b", "c"}


def test_every_study_error_names_the_file_and_the_variant(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[study]\nname = "typo"\n[[variants]]\nname = "fast"\n[[variants]]\nname = "slow"\n'
                    'set = {"train.epochz" = 3}\n')
    result = invoke("study", path)
    assert result.exit_code == 2 and str(path) in result.output and "'slow'" in result.output
    assert "epochz" in result.output
    path.write_text('[study]\nname = "twice"\n[[variants]]\nname = "a"\n[[variants]]\nname = "a"\n')
    result = invoke("study", path)
    assert result.exit_code == 2 and str(path) in result.output and "named 'a'" in result.output


def test_an_interval_of_percentages_stays_between_0_and_100_percent():
    """Two seeds at chance (10% and 12%): Student's t on the plain scale reaches below 0%; on the
    logit scale, taken back, the interval is 3.24% to 31.14% (t = 12.706 on 1 degree of freedom)."""
    plain, bounded = interval([0.10, 0.12]), interval([0.10, 0.12], proportion=True)
    assert plain["low"] < 0
    assert bounded["mean"] == plain["mean"] and math.isclose(bounded["low"], 0.032424, abs_tol=1e-5)
    assert math.isclose(bounded["high"], 0.311360, abs_tol=1e-5)
    assert interval([1.0, 1.0], proportion=True)["low"] == 1.0 == interval([1.0, 1.0], proportion=True)["high"]
    assert interval([0.0, 0.0], proportion=True)["high"] == 0.0
    for values in ([0.9865, 0.9990], [0.97, 0.99, 1.0], [0.0, 0.001, 0.0005], [0.5, 0.5], [1.0, 1.0], [0.0, 0.0]):
        result = interval(values, proportion=True)
        assert 0 <= result["low"] <= result["mean"] <= result["high"] <= 1, (values, result)


def test_a_variant_near_chance_is_flagged_and_its_robustness_not_interpreted(monkeypatch, tmp_path):
    """Known answer: blur's three seeds stayed at chance (10.2% test accuracy, consistency 99.95%, as a
    network that answers one digit to everything has); max trained. The report says blur stayed near
    chance and claims no robustness difference for it, though its consistency interval excludes zero;
    its test accuracy difference is still claimed."""
    import labbook.studies.statistics as study_module
    from labbook.studies.report import render_study_report
    plan = parse_study(study_toml("seed", [], ["model.pooling=max,blur"], "0,1,2"), "command line")

    def measures(test, consistency, seed):
        wobble = 0.001 * seed
        return {"validation_accuracy": test + wobble, "test_accuracy": test + wobble, "lab_shift_accuracy": test - wobble,
                "consistency": consistency - wobble / 10, "flip_probability": 1 - consistency + wobble / 10,
                "rotation_accuracy": test - 2 * wobble, "train_seconds": 2.0 + seed, "by_distance": [[0, test], [1, test]]}
    made = {f"max/{seed}": measures(0.98, 0.60, seed) for seed in (0, 1, 2)}
    made.update({f"blur/{seed}": measures(0.102, 0.9995, seed) for seed in (0, 1, 2)})
    monkeypatch.setattr(study_module, "measures_of", lambda folder: made[folder])
    folders = {(variant.name, seed): f"{variant.name.split('=')[1]}/{seed}" for variant in plan.variants for seed in (0, 1, 2)}
    summary = study_module.summarise(plan, folders, tmp_path)
    assert math.isclose(summary["variants"]["model.pooling=blur"]["near_chance"], 0.103)
    assert summary["variants"]["model.pooling=max"]["near_chance"] is None
    assert summary["variants"]["model.pooling=blur"]["difference"]["consistency"]["excludes_zero"]
    render_study_report(tmp_path, summary)
    html = (tmp_path / "report" / "study.en.html").read_text()
    assert "model.pooling=blur stayed near chance" in html and "model.pooling=max stayed" not in html
    assert "the consistency" not in html and "the one-pixel flip probability" not in html
    assert "lowers the test accuracy" in html


def _summary_of(tmp_path, monkeypatch, differences: dict, seeds=(0, 1, 2), shared_cores=True):
    """A max-vs-blur study whose blur runs differ from max's by `differences[measure][seed]`; nothing trains."""
    import labbook.studies.statistics as statistics
    plan = parse_study(study_toml("seed", [], ["model.pooling=max,blur"], ",".join(map(str, seeds))), "command line")
    base = {"validation_accuracy": 0.98, "test_accuracy": 0.98, "lab_shift_accuracy": 0.90, "consistency": 0.80,
            "flip_probability": 0.10, "rotation_accuracy": 0.85, "train_seconds": 20.0}
    made = {}
    for index, seed in enumerate(seeds):
        made[f"max/{seed}"] = {**base, "by_distance": [[0, 0.98]]}
        made[f"blur/{seed}"] = {**{m: v + differences.get(m, [0.0] * len(seeds))[index] for m, v in base.items()},
                                "by_distance": [[0, 0.98]]}
    monkeypatch.setattr(statistics, "measures_of", lambda folder: made[folder])
    folders = {(variant.name, seed): f"{variant.name.split('=')[1]}/{seed}" for variant in plan.variants for seed in seeds}
    return statistics.summarise(plan, folders, tmp_path, shared_cores=shared_cores)


def test_holms_correction_turns_a_borderline_interval_into_an_exploratory_hint(monkeypatch, tmp_path):
    """Known answer: blur's rotation accuracy differs by +1.0, +1.3, +0.7 points (t = 5.77 with 2 degrees of
    freedom, p = 0.0287: its 95% interval excludes zero); the other five comparisons show nothing, so Holm
    tests it first against 0.05 / 6 and it is not a finding. Training times of runs that shared the cores
    are not compared; a difference not found says how large it would have had to be."""
    from labbook.studies.report import render_study_report
    noise = [0.01, -0.01, 0.0]
    summary = _summary_of(tmp_path, monkeypatch, {"rotation_accuracy": [0.010, 0.013, 0.007], "test_accuracy": noise,
                                                  "train_seconds": [5.0, 6.0, 7.0]})
    rotation = summary["variants"]["model.pooling=blur"]["difference"]["rotation_accuracy"]
    assert rotation["excludes_zero"] and not rotation["holm_excludes_zero"]
    assert math.isclose(rotation["p"], 1 - 5.773503 / math.sqrt(2 + 5.773503 ** 2), rel_tol=1e-4)   # Student's t, 2 df
    assert summary["comparisons"] == 6 and summary["variants"]["model.pooling=blur"]["difference"]["train_seconds"]["p"] is None
    test = summary["variants"]["model.pooling=blur"]["difference"]["test_accuracy"]
    assert math.isclose(test["detectable"], 4.303 * 0.01 / math.sqrt(3), rel_tol=1e-6)
    render_study_report(tmp_path, summary)
    html = re.sub("<[^>]+>", "", (tmp_path / "report" / "study.en.html").read_text())
    assert "does not survive Holm" in html and "raises the rotation" not in html
    assert "6 comparisons at once" in html
    assert "a difference smaller than about 2.48 percentage points could not have been told from zero" in html
    assert "Training times are not compared" in html and "training time from" not in html
    from labbook.studies.report import terminal_summary
    printed = terminal_summary(summary)   # what `labbook study` prints at the end
    assert "model.pooling=blur: mean accuracy under rotation 85.00% -> 86.00%, difference 0.25 to 1.75 points: " \
           "exploratory only" in printed
    assert any(line.startswith("test accuracy ") and "98.00% (92.97% to 99.55%)" in line for line in printed.splitlines())
    # The same data, one comparison only (a single measure): then the interval alone decides, and it is a finding.
    alone = _summary_of(tmp_path / "alone", monkeypatch, {"rotation_accuracy": [0.010, 0.013, 0.007]}, shared_cores=False)
    assert alone["shared_cores"] is False and alone["comparisons"] == 7


def test_fewer_than_three_seeds_are_warned_about_with_the_width_they_give(monkeypatch, tmp_path):
    from labbook.studies.report import render_study_report
    summary = _summary_of(tmp_path, monkeypatch, {"test_accuracy": [0.01, 0.02]}, seeds=(0, 1))
    assert summary["few_seeds"] == {"seeds": 2, "t": 12.706, "t_three": 4.303}
    render_study_report(tmp_path, summary)
    html = re.sub("<[^>]+>", "", (tmp_path / "report" / "study.en.html").read_text())
    assert "only 2 seeds" in html and "12.71 standard errors, against 4.30 with three seeds: 3.0 times as wide" in html
    assert _summary_of(tmp_path / "three", monkeypatch, {})["few_seeds"] is None


def test_a_one_off_study_takes_its_name_from_name():
    plan = parse_study(study_toml("seed", [], ["model.pooling=max,blur"], "0,1", name="pooling-blur"), "command line")
    assert plan.name == "pooling-blur" and plan.id.startswith("pooling-blur-")
    result = invoke("study", "--vary", "model.pooling=max,blur", "--name", "bad name!")
    assert result.exit_code == 2 and "study.name: must be letters, digits and '-', got 'bad name!'" in result.output


def test_ctrl_c_stops_a_study_at_once_in_training_and_in_measuring(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the study and the run under way. Whether the
    run is training or measuring, the study exits 130, retries nothing, starts nothing, and keeps what
    is complete: the interrupted run says so (training) or stays trained but undissected (measuring)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "studies"
    command = [sys.executable, "-m", "labbook", "study", "--vary", "model.pooling=max,avg", "--seeds", "0",
               "--set", "data.train_limit=2000", "--set", "data.validation_limit=200", "--set", "train.epochs=3",
               "--set", "train.record_every=5", "--parallel", "1", "--out", str(out), "--no-progress"]

    def interrupt_when(pattern: str) -> tuple[int, str]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
        deadline = time.monotonic() + PROCESS_DEADLINE
        while not list(out.glob(pattern)):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)   # what a terminal's Ctrl-C does
        _, stderr = process.communicate(timeout=PROCESS_DEADLINE)
        return process.returncode, stderr

    code, stderr = interrupt_when("*/runs/*/seed-0/*/history.csv")   # the first run is training
    assert code == 130 and "study interrupted" in stderr and "Traceback" not in stderr
    (run_json,) = out.glob("*/runs/*/seed-0/*/run.json")
    assert json.loads(run_json.read_text())["status"] == "interrupted" and "pooling=max" in str(run_json)
    assert not list(out.glob("*/study.json"))

    code, stderr = interrupt_when("*/runs/*/seed-0/*/metrics.json")   # trained again, now measuring
    assert code == 130 and "study interrupted" in stderr and "Traceback" not in stderr
    (run_json,) = out.glob("*/runs/*/seed-0/*/run.json")   # one attempt, and the second variant never started
    assert json.loads(run_json.read_text())["status"] == "complete"
    assert not (run_json.parent / "dissection.json").exists() and not list(out.glob("*/study.json"))


@pytest.mark.parametrize("line, message", [
    ('bogus = 1', "study.bogus: unknown key"),
    ('seeds = [-1]', "study.seeds.0: input should be greater than or equal to 0, got -1"),
    ('seeds = "0,1"', "study.seeds: input should be a valid list, got '0,1'"),
    ('measures = ["speed"]', "study.measures.0: input should be 'validation_accuracy'")])
def test_a_study_file_error_is_one_line_naming_the_file_the_key_and_the_value(tmp_path, line, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[study]\nname = "bad"\n{line}\n[[variants]]\nname = "a"\n')
    result = invoke("study", path)
    assert result.exit_code == 2 and f"{path}: {message}" in result.output and len(result.output.splitlines()) == 1


def test_a_report_compares_its_run_with_a_study_measured_again_from_the_studys_runs(tiny_local, measured_run,
                                                                                    tmp_path):
    """`labbook report RUN --study STUDY`: a 对比实验 section whose numbers come from the study's runs,
    each through the run gate, never from study.json (which any folder can write)."""
    import shutil
    study, out, summary = tiny_local
    root = shutil.copytree(out / study.id, tmp_path / study.id)
    run = root / summary["variants"]["blurpool"]["runs"]["0"]
    truth = summary["variants"]["blurpool"]["measures"]["test_accuracy"]["mean"]
    # A study.json that claims more than its runs measured, and one of its runs altered after the fact.
    forged = json.loads((root / "study.json").read_text())
    forged["variants"]["blurpool"]["measures"]["test_accuracy"]["mean"] = 0.9991
    (root / "study.json").write_text(json.dumps(forged))
    altered = root / summary["variants"]["baseline"]["runs"]["1"] / "metrics.json"
    altered.write_text(altered.read_text().replace('"test_accuracy": ', '"test_accuracy": 1e-9 + '))
    result = invoke("report", run, "--study", root, "--lang", "zh", "--format", "html")
    assert result.exit_code == 0, result.output
    page = (run / "report" / "report.zh.html").read_text()
    section = re.sub(r"<[^>]+>", "", page[page.index('id="section-comparison"'):page.index('id="section-conclusions"')])
    assert "对比实验" in section and "本次训练方案" in section and "blurpool" in section
    assert "99.91%" not in section and f"{100 * truth:.2f}%" in section
    assert "1 次运行未通过校验" in section and "baseline 种子 1" in section
    assert "left out baseline seed 1" in result.output and "metrics.json" in result.output
    # A run of another recipe, and a folder that is not a study: one line each, exit 2.
    other_run = shutil.copytree(measured_run[0], tmp_path / "other-run")
    other = invoke("report", other_run, "--study", root, "--lang", "zh", "--format", "html")
    assert other.exit_code == 2 and "no variant of study" in other.output
    assert "Traceback" not in other.output and len(other.output.strip().splitlines()) == 1
    assert invoke("report", run, "--study", tmp_path, "--format", "html").exit_code == 2
