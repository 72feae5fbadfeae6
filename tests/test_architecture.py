"""The layout's promise (docs/architecture.md): each stage imports only the stages before it, the
import graph has no cycle, and the stages that must not load PyTorch do not."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import labbook

PACKAGE = Path(labbook.__file__).parent
# The stages in the order they may import each other: a module imports its own stage or earlier ones.
# study and grade stand beside the pipeline; the site publishes studies, so it comes after them.
# api.py is the CLI's layer for Python: the CLI calls it (the package lends it its names, on first use).
ORDER = {"base": 0, "runs": 1, "lab": 2, "dissect": 3, "report": 4, "studies": 5, "grade": 5, "site": 6, "api": 7,
         "cli": 8}
LENDS = {("labbook", "labbook.api")}
BASE = {"config", "localization", "errors", "progress"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _stage(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] in BASE:
        return "base"
    if parts[0] in ("cli", "__main__"):
        return "cli"
    return parts[0]


def _imports() -> dict[str, set[str]]:
    """Module -> the labbook modules it imports, at the top or inside a function."""
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labbook"):
                # `from labbook.grade import fingerprint` imports a module; `from labbook.config import X` a name.
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                names = [name for name in submodules if name in modules] or [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found |= {name for name in names if name in modules and name not in (module, "labbook")}
        graph[module] = found
    return graph


def test_every_stage_imports_only_earlier_stages():
    upward = [f"{module} -> {target}" for module, targets in _imports().items() for target in targets
              if _stage(target) != _stage(module) and ORDER[_stage(target)] >= ORDER[_stage(module)]
              and (module, target) not in LENDS]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = _imports()
    # Kahn's algorithm: whatever cannot be ordered lies on a cycle.
    remaining = {module: set(targets) for module, targets in graph.items()}
    while True:
        leaves = [module for module, targets in remaining.items() if not targets]
        if not leaves:
            break
        for leaf in leaves:
            del remaining[leaf]
        for targets in remaining.values():
            targets.difference_update(leaves)
    assert remaining == {}


def test_the_report_the_site_and_the_study_statistics_do_not_load_pytorch():
    """The site builds on a machine without PyTorch (pages.yml installs none), and the report and a
    study's numbers need none; a stray import would make them load it (seconds, and a gigabyte)."""
    code = ("import sys, json; import labbook.report.render, labbook.report.analysis, labbook.site.build, "
            "labbook.site.livelab, labbook.studies.plan, labbook.studies.statistics, labbook.runs.reader, labbook.cli; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       timeout=300).stdout)
    assert loaded == []
