"""PDF speed: the same lab report through WeasyPrint naively and labbook's way.

Naive: the report's HTML as is, one PDF after the other, fonts found by fontconfig,
so WeasyPrint embeds (and subsets) the system's 20 MB Noto CJK collections.
labbook: the same HTML with a stylesheet that points every element at small
subsets of those fonts, made once per character set and cached; figures that
leave holes moved or shrunk and the page laid out again (a second time only for a page
still more than 40% empty); one process per PDF (labbook/report/pdf.py, `render_pdfs`).

WeasyPrint subsets fonts with HarfBuzz when libharfbuzz-subset is installed
(`make` installs it as root) and with fontTools otherwise; the script says which
path it measured. Both are rendered from this one process, from the same run.

Beside it, what a student waits for: `labbook report RUN` as a whole process
(start-up included) writing all six files, on a copy of the run.

Measured (docs/performance.md), on a 2-core AMD EPYC VM with HarfBuzz, a
seed-preset run with the report of issue 22 (20, 21 and 25 pages, 11 formulas;
`python bench/report_speed.py RUN --repeats 3`): naive 19.56 s, labbook 16.78 s
for the three PDFs (1.17x, with two layouts per PDF against one);
`labbook report RUN` as a whole process 21.1 to 25.3 s.

    python bench/report_speed.py RUN_FOLDER [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labbook.report import pdf
from labbook.report.formulas import DRAWN, FORMULA_FOLDER
from labbook.report.context import ReportOptions, context_of
from labbook.report.render import environment, render_html
from labbook.runs.reader import read_run
from labbook.runs.writer import environment as machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from weasyprint import HTML

    run = read_run(args.run_folder, dissected=True)
    context = context_of(run, ReportOptions())
    env = environment()
    pages = {lang: render_html(context, lang, env, for_pdf=True) for lang in ("zh", "en", "zh-en")}
    # The naive pass reads files from disk: the formulas labbook serves from memory are written out
    # beside a copy of the run, so that both passes draw the same pages.
    naive_copy = tempfile.TemporaryDirectory()
    naive_folder = Path(naive_copy.name) / args.run_folder.name
    shutil.copytree(args.run_folder, naive_folder)
    (naive_folder / "report" / FORMULA_FOLDER).mkdir(parents=True, exist_ok=True)
    for name, drawing in DRAWN.items():
        (naive_folder / "report" / FORMULA_FOLDER / name).write_bytes(drawing)
    base = str(naive_folder / "report") + "/"
    started = time.perf_counter()
    font_css = pdf.font_stylesheet("".join(pages.values()))
    subset_seconds = time.perf_counter() - started

    naive_times, labbook_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for page in pages.values():
            HTML(string=page, base_url=base).write_pdf()
        naive_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        pdf.render_pdfs(list(pages.values()), run.files.read, font_css)
        labbook_times.append(time.perf_counter() - started)
    naive, ours = statistics.median(naive_times), statistics.median(labbook_times)
    harfbuzz = ctypes.util.find_library("harfbuzz-subset") is not None
    print(f"font subsetting inside WeasyPrint: {'HarfBuzz' if harfbuzz else 'fontTools'}")
    print(f"three PDFs (zh, en, zh-en), median of {args.repeats}")
    print(f"naive WeasyPrint with the system CJK font: {naive:.2f} s")
    print(f"labbook (cached font subsets, figure floats, one process per PDF): {ours:.2f} s  "
          f"(subsets made in {subset_seconds:.2f} s, once)")
    print(f"speed-up: {naive / ours:.2f}x")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / args.run_folder.name
        shutil.copytree(args.run_folder, copy)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labbook", "report", str(copy)], check=True, stdout=subprocess.DEVNULL)
        whole = time.perf_counter() - started
    naive_copy.cleanup()
    print(f"{machine('cpu', 1)['cpu']}")
    print(f"whole process (`labbook report RUN`: 3 HTML + 3 PDF, start-up included): {whole:.2f} s")


if __name__ == "__main__":
    main()
