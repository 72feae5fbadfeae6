"""`labbook grade`: verify and score a class's submitted runs, and tell each student why.

Each submission is graded in a worker process with a time limit (submissions.py
reads it safely); one bad submission never stops the others. The network is
rebuilt from the submitted config and weights and re-evaluated on labbook's own
test split, never the submission's data. Pairs of submissions with identical or
near-identical weights or reflections are flagged with both student ids.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import multiprocessing
import re
import shutil
import tomllib
from pathlib import Path

from labbook.errors import UserError

KINDS = {"verified_accuracy", "claimed_numbers", "integrity", "configuration", "artifacts", "reflections", "on_time"}
EXAMPLE_RUBRIC = '''# labbook grading rubric. Each [[items]] is scored for every submission.
# Kinds: verified_accuracy, claimed_numbers, integrity, configuration, artifacts, reflections, on_time.

[[items]]
id = "accuracy"              # column name in grades.csv
kind = "verified_accuracy"   # test accuracy re-measured by labbook on test images 5000..9999
points = 40
thresholds = [[0.99, 40], [0.98, 30], [0.97, 20], [0.90, 10]]   # [minimum accuracy, points], best first

[[items]]
id = "claims"
kind = "claimed_numbers"     # metrics.json's test accuracy must equal the re-measured one
points = 20

[[items]]
id = "integrity"
kind = "integrity"           # every file still matches manifest.json; no pickle files
points = 10

[[items]]
id = "configuration"
kind = "configuration"       # leave out any constraint you do not need
points = 10
preset = "seed"
depth = [4, 8]
min_epochs = 20
optimizers = ["sgd"]

[[items]]
id = "figures"
kind = "artifacts"
points = 10
require = ["dissection", "figures", "report"]

[[items]]
id = "reflections"
kind = "reflections"
points = 10
languages = ["zh"]           # notes.<language>.md in the run folder
min_chars = 200              # characters, not counting white space

[[items]]
id = "on_time"
kind = "on_time"             # from the run's finish time in run.json
points = 0
deadline = 2026-12-20T23:59:00+08:00
penalty_per_day = 5          # points off per started day late
'''

REASONS = {
    "ok": ("符合要求", "meets the requirement"),
    "accuracy": ("复测测试准确率 {measured}", "re-measured test accuracy {measured}"),
    "claims_match": ("声称的测试准确率 {claimed} 与复测结果 {measured} 一致", "claimed test accuracy {claimed} matches the re-measured {measured}"),
    "claims_differ": ("声称的测试准确率 {claimed} 与复测结果 {measured} 不一致", "claimed test accuracy {claimed} differs from the re-measured {measured}"),
    "claims_subset": ("运行只在 {size} 张测试图像上评估，无法核对", "the run was evaluated on {size} test images only, so its claim cannot be checked"),
    "integrity_changed": ("运行后有文件被修改：{files}", "files changed after the run: {files}"),
    "pickle": ("提交中含有 pickle 文件（未加载）：{files}", "the submission holds pickle files (not loaded): {files}"),
    "config": ("配置不符合要求：{problems}", "configuration does not meet the rubric: {problems}"),
    "missing": ("缺少：{what}", "missing: {what}"),
    "notes_short": ("{language} 心得只有 {count} 个字符（至少 {minimum}）", "{language} reflections have {count} characters (at least {minimum})"),
    "notes_missing": ("缺少 {language} 心得（notes.{language}.md）", "no {language} reflections (notes.{language}.md)"),
    "on_time": ("按时提交", "submitted on time"),
    "late": ("迟交 {days} 天，扣 {penalty} 分", "{days} day(s) late, {penalty} points off"),
    "unreadable": ("无法评分：{error}", "cannot be graded: {error}"),
    "timeout": ("评分超时（{seconds} 秒）", "grading took longer than {seconds} s"),
}


def reason(key: str, **values) -> dict:
    return {"key": key, "values": {k: str(v) for k, v in values.items()}}


def reason_text(entry: dict, language: str) -> str:
    chinese, english = REASONS[entry["key"]]
    return (chinese if language == "zh" else english).format(**entry["values"])


# ---------------------------------------------------------------- rubric

def _item_line(text: str, index: int) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[items]]"]
    return lines[index] if index < len(lines) else 1


def load_rubric(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: rubric not found (write an example with --init-rubric)") from None
    try:
        rubric = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    items = rubric.get("items")
    if not isinstance(items, list) or not items:
        raise UserError(f"{path}: no [[items]] in the rubric")
    seen = set()
    for index, item in enumerate(items):
        line = _item_line(text, index)
        where = f"{path}:{line}"
        kind = item.get("kind")
        if kind not in KINDS:
            raise UserError(f"{where}: unknown item kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        if not isinstance(item.get("id"), str) or not re.fullmatch(r"[A-Za-z0-9_-]+", item["id"]) or item["id"] in seen:
            raise UserError(f"{where}: each item needs a unique id of letters, digits, - or _")
        seen.add(item["id"])
        if not isinstance(item.get("points"), (int, float)) or item["points"] < 0:
            raise UserError(f"{where}: item {item['id']!r} needs points >= 0")
        if kind == "verified_accuracy":
            thresholds = item.get("thresholds")
            if not isinstance(thresholds, list) or not all(
                    isinstance(t, list) and len(t) == 2 and all(isinstance(v, (int, float)) for v in t)
                    for t in thresholds):
                raise UserError(f"{where}: thresholds must be a list of [minimum accuracy, points]")
        if kind == "on_time" and not isinstance(item.get("deadline"), dt.datetime):
            raise UserError(f"{where}: on_time needs a deadline date-time, e.g. 2026-12-20T23:59:00+08:00")
        if kind == "on_time" and item["deadline"].tzinfo is None:
            raise UserError(f"{where}: the deadline needs a time zone, e.g. +08:00")
        if kind == "reflections" and not isinstance(item.get("languages", ["zh"]), list):
            raise UserError(f"{where}: languages must be a list such as [\"zh\", \"en\"]")
    return rubric


# ---------------------------------------------------------------- one submission (in a worker)

_TEST = None


def _init_worker() -> None:
    global _TEST
    import torch

    from labbook.data import load_test_split
    torch.set_num_threads(1)
    _TEST = load_test_split()


def _score(item: dict, facts: dict) -> tuple[float, dict, dict]:
    """(points, reason, numbers) of one rubric item from what was measured."""
    kind, points = item["kind"], item["points"]
    if kind == "verified_accuracy":
        measured = facts.get("measured_accuracy")
        if measured is None:
            return 0, reason("unreadable", error=facts.get("weights_error", "no weights")), {}
        earned = max((p for minimum, p in item["thresholds"] if measured >= minimum), default=0)
        return min(earned, points), reason("accuracy", measured=f"{100 * measured:.2f}%"), {"measured": measured}
    if kind == "claimed_numbers":
        measured, claimed = facts.get("measured_accuracy"), facts.get("claimed_accuracy")
        if measured is None or not isinstance(claimed, (int, float)):
            return 0, reason("unreadable", error=facts.get("weights_error") or facts.get("metrics_error")
                             or "no claimed test accuracy"), {}
        numbers = {"measured": measured, "claimed": claimed}
        if facts.get("claimed_size") != 5000:
            return 0, reason("claims_subset", size=facts.get("claimed_size")), numbers
        if abs(claimed - measured) > 1e-9:
            return 0, reason("claims_differ", claimed=f"{100 * claimed:.2f}%", measured=f"{100 * measured:.2f}%"), numbers
        return points, reason("claims_match", claimed=f"{100 * claimed:.2f}%", measured=f"{100 * measured:.2f}%"), numbers
    if kind == "integrity":
        if facts.get("pickles"):
            return 0, reason("pickle", files=", ".join(facts["pickles"])), {}
        if facts.get("manifest_problems"):
            return 0, reason("integrity_changed", files="; ".join(facts["manifest_problems"])), {}
        return points, reason("ok"), {}
    if kind == "configuration":
        config, problems = facts.get("config") or {}, []
        if not config:
            return 0, reason("unreadable", error=facts.get("config_error", "config.toml missing")), {}
        if "preset" in item and config.get("preset") != item["preset"]:
            problems.append(f"preset {config.get('preset')!r} (required {item['preset']!r})")
        if "depth" in item and config.get("model", {}).get("depth") != item["depth"]:
            problems.append(f"depth {config.get('model', {}).get('depth')} (required {item['depth']})")
        if "min_epochs" in item and not config.get("train", {}).get("epochs", 0) >= item["min_epochs"]:
            problems.append(f"epochs {config.get('train', {}).get('epochs')} (at least {item['min_epochs']})")
        if "optimizers" in item and config.get("train", {}).get("optimizer") not in item["optimizers"]:
            problems.append(f"optimizer {config.get('train', {}).get('optimizer')!r} (allowed {item['optimizers']})")
        return (0, reason("config", problems="; ".join(problems)), {}) if problems else (points, reason("ok"), {})
    if kind == "artifacts":
        missing = [what for what in item.get("require", []) if not facts["artifacts"].get(what)]
        return (0, reason("missing", what=", ".join(missing)), {}) if missing else (points, reason("ok"), {})
    if kind == "reflections":
        for language in item.get("languages", ["zh"]):
            count = facts["notes_chars"].get(language)
            if count is None:
                return 0, reason("notes_missing", language=language), {}
            if count < item.get("min_chars", 0):
                return 0, reason("notes_short", language=language, count=count, minimum=item["min_chars"]), {}
        return points, reason("ok"), {}
    if kind == "on_time":
        finished = facts.get("finished")
        if finished is None:
            return 0, reason("unreadable", error="run.json has no finish time"), {"late_days": 0}
        late = (finished - item["deadline"]).total_seconds()
        if late <= 0:
            return points, reason("on_time"), {"late_days": 0}
        days = math.ceil(late / 86400)
        return 0, reason("late", days=days, penalty=days * item.get("penalty_per_day", 0)), {"late_days": days}
    raise AssertionError(kind)


def _facts(folder: Path) -> dict:
    """Everything the rubric items are scored on, measured from one run folder."""
    import numpy as np
    import torch

    from labbook.model import ConvNet
    from labbook.runfolder import verify_manifest
    from labbook.submissions import read_weights
    from labbook.train import log_probabilities
    facts: dict = {"artifacts": {}, "notes_chars": {}, "notes": {}}

    def load_json(name):
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            facts[f"{name.split('.')[0]}_error"] = f"{name}: {type(error).__name__}: {str(error)[:120]}"
            return None

    run, metrics = load_json("run.json") or {}, load_json("metrics.json") or {}
    facts["student_id"] = str(run.get("student_id") or "") if isinstance(run, dict) else ""
    facts["name"] = str(run.get("author") or "") if isinstance(run, dict) else ""
    facts["run_id"] = str(run.get("id") or "") if isinstance(run, dict) else ""
    try:
        facts["finished"] = dt.datetime.fromisoformat(str(run["finished"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        facts["finished"] = None
    facts["claimed_accuracy"] = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
    facts["claimed_size"] = metrics.get("test_size") if isinstance(metrics, dict) else None
    try:
        facts["config"] = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        facts["config"], facts["config_error"] = None, f"config.toml: {str(error)[:120]}"
    try:
        facts["manifest_problems"] = verify_manifest(folder)
    except (UserError, OSError, AttributeError, TypeError) as error:
        facts["manifest_problems"] = [f"manifest.json unreadable ({str(error)[:80]})"]
    facts["artifacts"] = {"dissection": (folder / "dissection.json").is_file(),
                          "figures": len(list((folder / "figures").glob("*.png"))) >= 13,
                          "report": any((folder / "report").glob("report.*.html")) or any(
                              (folder / "report").glob("report.*.pdf"))}
    for language in ("zh", "en"):
        path = folder / f"notes.{language}.md"
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")[:200_000]
            facts["notes"][language] = text
            facts["notes_chars"][language] = len("".join(text.split()))
    model_config = (facts["config"] or {}).get("model", {}) if isinstance(facts["config"], dict) else {}
    try:
        tensors = read_weights(folder / "model.safetensors", model_config.get("depth"), model_config.get("hidden"))
        threads = (run.get("environment") or {}).get("threads") if isinstance(run, dict) else None
        if isinstance(threads, int) and 0 < threads <= 64:
            torch.set_num_threads(threads)  # the run's own thread count: the same float sums as its metrics
        model = ConvNet(tuple(model_config["depth"]), model_config["hidden"])
        model.load_state_dict(tensors)
        predictions = log_probabilities(model, _TEST.images).argmax(dim=1)
        facts["measured_accuracy"] = (predictions == _TEST.labels).sum().item() / len(_TEST)
        facts["weights_sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        facts["parameters"] = np.concatenate([tensors[k].flatten().numpy() for k in sorted(tensors)])
    except (ValueError, OSError, RuntimeError, KeyError, TypeError) as error:
        facts["weights_error"] = str(error)[:200]
    return facts


def grade_submission(path: str, rubric: dict, scratch_base: str | None = None) -> dict:
    """Grade one submission; never raises for anything the submission contains."""
    from labbook.submissions import open_submission, private_scratch
    scratch = private_scratch(Path(scratch_base) if scratch_base else None)
    try:
        submission = open_submission(Path(path), scratch)
        facts = _facts(submission.folder) if submission.folder is not None else {
            "artifacts": {}, "notes_chars": {}, "notes": {}, "weights_error": submission.error,
            "config_error": submission.error, "metrics_error": submission.error}
        facts["pickles"] = [flag.split(":")[0] for flag in submission.flags if "pickle-based" in flag]
        items, late_penalty = {}, 0
        for item in rubric["items"]:
            if submission.error:
                earned, why, numbers = 0, reason("unreadable", error=submission.error), {}
            else:
                earned, why, numbers = _score(item, facts)
            if item["kind"] == "on_time" and numbers.get("late_days"):
                late_penalty += numbers["late_days"] * item.get("penalty_per_day", 0)
            items[item["id"]] = {"points": earned, "max": item["points"], "reason": why, "numbers": numbers}
        flags = list(submission.flags)
        if facts.get("manifest_problems"):
            flags.extend(f"changed after the run: {problem}" for problem in facts["manifest_problems"])
        if facts.get("weights_error") and not submission.error:
            flags.append(f"weights: {facts['weights_error']}")
        return {"submission": submission.name, "student_id": facts.get("student_id") or "",
                "name": facts.get("name") or "", "run_id": facts.get("run_id") or "", "items": items,
                "late_penalty": late_penalty, "flags": flags, "weights_sha256": facts.get("weights_sha256"),
                "parameters": facts.get("parameters"), "notes": facts.get("notes", {})}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- the class

def _grade_all(paths: list[Path], rubric: dict, workers: int, timeout: float) -> dict[Path, dict]:
    """Grade every path in worker processes; a submission over `timeout` seconds gets a result saying so."""
    context = multiprocessing.get_context("spawn")
    results: dict[Path, dict] = {}
    pending = list(paths)
    while pending:
        with context.Pool(max(1, workers), initializer=_init_worker) as pool:
            jobs = [(path, pool.apply_async(grade_submission, (str(path), rubric))) for path in pending]
            pending = []
            for index, (path, job) in enumerate(jobs):
                try:
                    results[path] = job.get(timeout=timeout)
                except multiprocessing.TimeoutError:
                    results[path] = _failed(path, rubric, reason("timeout", seconds=int(timeout)))
                    pending = [p for p, _ in jobs[index + 1:]]
                    pool.terminate()  # the stuck worker goes with the pool; the rest are graded again
                    break
                except Exception as error:  # a crash in labbook itself must not stop the class
                    results[path] = _failed(path, rubric, reason("unreadable", error=f"{type(error).__name__}: {error}"))
    return results


def _failed(path: Path, rubric: dict, why: dict) -> dict:
    return {"submission": path.name, "student_id": "", "name": "", "run_id": "", "late_penalty": 0,
            "items": {item["id"]: {"points": 0, "max": item["points"], "reason": why, "numbers": {}}
                      for item in rubric["items"]},
            "flags": [reason_text(why, "en")], "weights_sha256": None, "parameters": None, "notes": {}}


def _shingles(text: str, size: int = 5) -> set[str]:
    squeezed = "".join(text.lower().split())
    return {squeezed[i:i + size] for i in range(max(0, len(squeezed) - size + 1))}


def copying_pairs(results: list[dict], cosine_limit: float = 0.999, jaccard_limit: float = 0.8) -> list[dict]:
    import numpy as np
    pairs = []
    for i, first in enumerate(results):
        for second in results[i + 1:]:
            ids = sorted([first["student_id"], second["student_id"]])
            if first["weights_sha256"] and first["weights_sha256"] == second["weights_sha256"]:
                pairs.append({"students": ids, "evidence": "identical weight files",
                              "value": first["weights_sha256"][:16]})
            elif first["parameters"] is not None and second["parameters"] is not None and \
                    first["parameters"].shape == second["parameters"].shape:
                a, b = first["parameters"].astype(np.float64), second["parameters"].astype(np.float64)
                cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
                if cosine > cosine_limit:
                    pairs.append({"students": ids, "evidence": "near-identical weights (cosine similarity)",
                                  "value": round(cosine, 6)})
            for language in sorted(set(first["notes"]) & set(second["notes"])):
                a, b = _shingles(first["notes"][language]), _shingles(second["notes"][language])
                if len(a) >= 20 and len(b) >= 20:
                    jaccard = len(a & b) / len(a | b)
                    if jaccard > jaccard_limit:
                        pairs.append({"students": ids, "evidence": f"near-identical {language} reflections "
                                                                   f"(5-character shingle Jaccard)",
                                      "value": round(jaccard, 4)})
    return pairs


def _safe_file_name(student_id: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "_", student_id, flags=re.UNICODE).strip("._")
    return cleaned or "unknown"


def grade(submissions_dir: Path, rubric_path: Path, out: Path, workers: int = 2, timeout: float = 120.0) -> dict:
    from labbook.report import environment
    from labbook.runfolder import atomic_write_bytes, atomic_write_json, atomic_write_text
    rubric = load_rubric(rubric_path)
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise UserError(f"{submissions_dir}: not a folder of submissions")
    paths = sorted(p for p in submissions_dir.iterdir() if not p.name.startswith("."))
    if not paths:
        raise UserError(f"{submissions_dir}: no submissions in it")
    results_by_path = _grade_all(paths, rubric, workers, timeout)
    results = [results_by_path[path] for path in paths]
    used_ids = set()
    for result in results:  # every row needs a distinct student id; fall back to the submission's name
        candidate = result["student_id"] or Path(result["submission"]).name.split(".")[0]
        while candidate in used_ids:
            candidate += "+"
        result["student_id"] = candidate
        used_ids.add(candidate)
    pairs = copying_pairs(results)
    for pair in pairs:
        for result in results:
            if result["student_id"] in pair["students"]:
                other = [s for s in pair["students"] if s != result["student_id"]][0]
                result["flags"].append(f"possible copying with {other}: {pair['evidence']} ({pair['value']})")
    max_score = sum(item["points"] for item in rubric["items"])
    rows = []
    for result in results:
        raw = sum(entry["points"] for entry in result["items"].values())
        result.update(raw_score=raw, score=max(0, raw - result["late_penalty"]), max_score=max_score)
        result.pop("parameters", None)
        rows.append(result)

    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    item_ids = [item["id"] for item in rubric["items"]]
    writer.writerow(["student_id", "name", "run_id", *item_ids, "raw_score", "late_penalty", "score", "max_score",
                     "flags"])
    for row in rows:
        writer.writerow([row["student_id"], row["name"], row["run_id"],
                         *[_number(row["items"][i]["points"]) for i in item_ids], _number(row["raw_score"]),
                         _number(row["late_penalty"]), _number(row["score"]), _number(max_score),
                         " | ".join(row["flags"])])
    # A byte-order mark so that spreadsheet programs read the UTF-8 (Chinese names) correctly.
    atomic_write_bytes(out / "grades.csv", buffer.getvalue().encode("utf-8-sig"))
    public = [{key: value for key, value in row.items() if key != "notes"} for row in rows]
    atomic_write_json(out / "grades.json", {"max_score": max_score, "students": public, "copying": pairs})
    env = environment()
    env.globals.update(reason_text=reason_text, number=_number)
    feedback = env.get_template("grade/feedback.html.j2")
    for row in rows:
        atomic_write_text(out / "feedback" / f"{_safe_file_name(row['student_id'])}.html",
                          feedback.render(row=row, rubric=rubric, lang="zh"))
    accuracies = [row["items"][i]["numbers"].get("measured") for row in rows for i in item_ids
                  if rubric["items"][item_ids.index(i)]["kind"] == "verified_accuracy"]
    bins = _histogram([a for a in accuracies if a is not None])
    averages = {i: sum(row["items"][i]["points"] for row in rows) / len(rows) for i in item_ids}
    atomic_write_text(out / "summary.html", env.get_template("grade/summary.html.j2").render(
        rows=rows, rubric=rubric, bins=bins, averages=averages, pairs=pairs, max_score=max_score, lang="zh"))
    return {"students": len(rows), "copying": len(pairs), "out": out}


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _histogram(accuracies: list[float]) -> list[dict]:
    edges = [0.0, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0001]
    bins = []
    for low, high in zip(edges, edges[1:]):
        count = sum(1 for a in accuracies if low <= a < high)
        bins.append({"label": f"{100 * low:.0f}–{min(100.0, 100 * high):.0f}%", "count": count})
    return bins
