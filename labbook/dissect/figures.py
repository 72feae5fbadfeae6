"""Figures of a dissection, each drawn once per language and saved as SVG (web) and PNG (print).

Colour maps: viridis/cividis for magnitudes (readable in grey and by colour-blind
readers), a diverging map centred on zero (RdBu_r) for signed weights. Each
drawing function takes the language last and binds _ to its catalog, so every
label is an English message translated in labbook/locale (extracted like the
templates' text).
"""

from __future__ import annotations

import io
import signal
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from labbook.config import NUM_CLASSES  # noqa: E402
from labbook.errors import UserError  # noqa: E402
from labbook.localization import LANGUAGES, N_, Formatter, gettext_for  # noqa: E402
from labbook.runs.writer import atomic_write_bytes  # noqa: E402

# The text width of an A4 page with the report's margins (174 mm): a figure drawn this wide prints at
# its own size, with 9-point labels at 9 points and its PNG at the 200 dpi it is saved with.
A4_WIDTH_INCHES = 6.8
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Serif CJK SC",
                "Noto Serif CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei")
CJK_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))


def cjk_font_family() -> str:
    """A font family with Chinese glyphs, registering system CJK fonts matplotlib has not cached."""
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    for folder in map(Path, CJK_FONT_DIRS):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in (".ttc", ".otf", ".ttf") and any(
                        tag in path.name for tag in ("CJK", "wqy", "SourceHan")):
                    font_manager.fontManager.addfont(str(path))
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    raise UserError("no font with Chinese glyphs found: install the Debian package fonts-noto-cjk "
                    "(`make lab` installs it when run as root)")


def configure_matplotlib() -> None:
    plt.rcParams.update({
        "font.family": ["DejaVu Sans", cjk_font_family()],
        "svg.hashsalt": "labbook",          # stable ids inside SVG files
        "svg.fonttype": "path",             # text as outlines: no font needed to view the SVG
        "axes.unicode_minus": False,
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "font.size": 9,
    })


def save(figure, folder: Path, name: str, language: str) -> list[str]:
    """Write <name>.<language>.svg and .png atomically; return their paths relative to the run folder."""
    written = []
    for extension, metadata in (("svg", {"Date": None}), ("png", {"Software": None})):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=extension, metadata=metadata, bbox_inches="tight")
        path = folder / f"{name}.{language}.{extension}"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(f"figures/{path.name}")
    plt.close(figure)
    return written


def draw_language(jobs: list[tuple], folder: Path, language: str) -> dict[str, list[str]]:
    """Draw every (name, drawing function, arguments) job in one language."""
    configure_matplotlib()
    return {name: save(function(*arguments, language), folder, name, language) for name, function, arguments in jobs}


def _leave_interrupts_to_the_parent() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def draw_all(jobs: list[tuple], folder: Path, parallel: bool = True) -> dict[str, dict[str, list[str]]]:
    """Draw every job in every language; {name: {language: paths}}.

    In parallel, one process per language, spawned rather than forked: the parent holds
    PyTorch's thread pool, which a fork would copy broken. A Ctrl-C reaches the parent alone,
    which stops the workers at once (a ProcessPoolExecutor whose workers took the Ctrl-C too
    hung on its shutdown)."""
    if parallel:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(len(LANGUAGES), _leave_interrupts_to_the_parent) as pool:
            drawn = pool.starmap(draw_language, [(jobs, folder, language) for language in LANGUAGES])
    else:
        drawn = [draw_language(jobs, folder, language) for language in LANGUAGES]
    results = dict(zip(LANGUAGES, drawn))
    return {name: {language: results[language][name] for language in LANGUAGES} for name, _, _ in jobs}


def _whole_numbers(axis, language: str) -> None:
    """Tick labels such as 600,000 (600 000 in Chinese, as the text writes them) instead of 0.6 with
    a "1e6" in the corner."""
    formatter = Formatter(language)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, position: formatter.text(value, "int")))


def _whole_percent(value: float) -> str:
    """A percentage to whole points in a small cell, never rounded up to 100 (99.6% is shown as 99)."""
    return "100" if value >= 100 else str(min(99, round(value)))


def _image_axis(axis, image, title=None, cmap="gray", **kwargs):
    shown = axis.imshow(image, cmap=cmap, **kwargs)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)
    return shown


# ---------------------------------------------------------------- one function per figure

def error_curve(history: list[dict], language: str):
    _ = gettext_for(language)
    figure, axis = plt.subplots(figsize=(A4_WIDTH_INCHES, 3.2))
    samples = [row["samples_seen"] for row in history]
    axis.plot(samples, [100 * (1 - row["train_accuracy"]) for row in history], label=_("Training error"),
              color="#0072B2")
    axis.plot(samples, [100 * (1 - row["validation_accuracy"]) for row in history], linestyle="--",
              label=_("Validation error"), color="#D55E00")
    axis.set_xlabel(_("Training images seen"))
    _whole_numbers(axis.xaxis, language)
    axis.set_ylabel(_("Error rate (%)"))
    axis.set_ylim(bottom=0)
    axis.set_title(_("Error rate during training"))
    axis.grid(True, alpha=0.3)
    axis.legend()
    return figure


def samples(train_image, train_label, train_index, test_image, test_label, test_index, probabilities,
            language: str):
    _ = gettext_for(language)
    figure, axes = plt.subplots(1, 3, figsize=(A4_WIDTH_INCHES, 2.4), gridspec_kw={"width_ratios": [1, 1, 2],
                                                                                   "wspace": 0.45})
    _image_axis(axes[0], train_image,
                _("MNIST training image %(index)s\nlabel %(label)s") % {"index": train_index, "label": train_label})
    prediction = int(np.argmax(probabilities))
    _image_axis(axes[1], test_image, _("MNIST test image %(index)s\nlabel %(label)s, predicted %(prediction)s")
                % {"index": test_index, "label": test_label, "prediction": prediction})
    axes[2].bar(range(NUM_CLASSES), probabilities, color=["#D55E00" if d == prediction else "#0072B2" for d in range(NUM_CLASSES)])
    axes[2].set_xticks(range(NUM_CLASSES))
    axes[2].set_xlabel(_("Digit"))
    # A logarithmic scale: next to a confident answer the other nine would be invisible bars.
    axes[2].set_yscale("log")
    axes[2].set_ylim(max(float(np.min(probabilities)), 1e-12) / 3, 3)
    axes[2].set_ylabel(_("Probability (log scale)"))
    axes[2].yaxis.set_label_position("right")   # on the left it would run into the test image
    axes[2].yaxis.tick_right()
    axes[2].set_title(_("Probabilities of the ten classes"), fontsize=8)
    return figure


def _signed_norm(values: np.ndarray) -> TwoSlopeNorm:
    limit = float(np.abs(values).max()) or 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def conv1_kernels(kernels: np.ndarray, language: str):
    """kernels: (out, 5, 5); one colour scale for all, centred on zero."""
    _ = gettext_for(language)
    count = kernels.shape[0]
    figure, axes = plt.subplots(1, count, figsize=(A4_WIDTH_INCHES, 2.2), squeeze=False)
    norm = _signed_norm(kernels)
    for index in range(count):
        shown = _image_axis(axes[0, index], kernels[index], _("Kernel %(index)s") % {"index": index}, cmap="RdBu_r",
                            norm=norm)
    figure.colorbar(shown, ax=axes[0].tolist(), label=_("Weight"), shrink=0.8)
    figure.suptitle(_("conv1 kernels (5×5)"))
    return figure


def conv2_kernels(kernels: np.ndarray, language: str):
    """kernels: (out, in, 5, 5) drawn with one column per output channel and one row per input
    channel (wider than tall, so that it fits a page), on one shared signed scale."""
    _ = gettext_for(language)
    outputs, inputs = kernels.shape[:2]
    width = A4_WIDTH_INCHES * min(1.0, (outputs + 1) / 9)
    figure, axes = plt.subplots(inputs, outputs, figsize=(width, width * inputs / (outputs + 1) + 0.6),
                                squeeze=False)
    norm = _signed_norm(kernels)
    for row in range(inputs):
        for col in range(outputs):
            shown = _image_axis(axes[row, col], kernels[col, row], cmap="RdBu_r", norm=norm)
        axes[row, 0].set_ylabel(str(row), rotation=0, labelpad=8)
    for col in range(outputs):
        axes[-1, col].set_xlabel(str(col))
    figure.colorbar(shown, ax=axes.ravel().tolist(), label=_("Weight"), shrink=0.8)
    figure.suptitle(_("conv2 kernels: columns = output channel, rows = input channel"), fontsize=9)
    return figure


FEATURE_TITLES = {"conv1": N_("conv1 feature maps (MNIST test image %(index)s)"),
                  "conv2": N_("conv2 feature maps (MNIST test image %(index)s)")}


def feature_maps(maps: np.ndarray, layer: str, image_index: int, language: str):
    """maps: (channels, H, W) of ReLU outputs; viridis, one scale for all channels."""
    _ = gettext_for(language)
    count = maps.shape[0]
    columns = min(count, 4)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(A4_WIDTH_INCHES, 1.9 * rows + 0.4), squeeze=False)
    top = float(maps.max()) or 1.0
    for index in range(rows * columns):
        axis = axes[index // columns, index % columns]
        if index >= count:
            axis.axis("off")
            continue
        shown = _image_axis(axis, maps[index], _("Channel %(index)s") % {"index": index}, cmap="viridis", vmin=0,
                            vmax=top)
    figure.colorbar(shown, ax=axes.ravel().tolist(), label=_("Activation"), shrink=0.8)
    figure.suptitle(_(FEATURE_TITLES[layer]) % {"index": image_index})
    return figure


def shift_test(image, shifted, maps, shifted_maps, result: dict, language: str):
    _ = gettext_for(language)
    channels = maps.shape[0]
    figure, axes = plt.subplots(2, channels + 1, figsize=(A4_WIDTH_INCHES, 3.6), squeeze=False)
    _image_axis(axes[0, 0], image, _("Original\npredicted %(prediction)s") % {"prediction": result["prediction"]})
    _image_axis(axes[1, 0], shifted, _("Shifted (%(dx)s, %(dy)s)\npredicted %(prediction)s")
                % {"dx": result["dx"], "dy": result["dy"], "prediction": result["shifted_prediction"]})
    top = float(max(maps.max(), shifted_maps.max())) or 1.0
    for channel in range(channels):
        _image_axis(axes[0, channel + 1], maps[channel], _("Channel %(index)s") % {"index": channel}, cmap="viridis",
                    vmin=0, vmax=top)
        similarity = result["feature_similarity"]["conv1"][channel]
        _image_axis(axes[1, channel + 1], shifted_maps[channel], _("cosine %(value)s") % {"value": f"{similarity:.3f}"},
                    cmap="viridis", vmin=0, vmax=top)
    figure.suptitle(_("Shift test: conv1 feature maps, original vs shifted"))
    return figure


def kernel_evolution(snapshots: np.ndarray, samples_seen: list[int], points: list[int], distances: list[list[float]],
                     language: str):
    """snapshots: (records, out, 5, 5) conv1 weights; points: record indices to draw."""
    _ = gettext_for(language)
    out = snapshots.shape[1]
    figure, numbers = plt.figure(figsize=(A4_WIDTH_INCHES, 0.95 * out + 1.9)), Formatter(language)
    grid = figure.add_gridspec(out + 2, len(points))
    norm = _signed_norm(snapshots[points])
    for column, record in enumerate(points):
        for kernel in range(out):
            axis = figure.add_subplot(grid[kernel, column])
            title = _("%(samples)s images") % {"samples": numbers.text(samples_seen[record], "int")} if kernel == 0 else None
            _image_axis(axis, snapshots[record, kernel], title, cmap="RdBu_r", norm=norm)
            if column == 0:
                axis.set_ylabel(_("Kernel %(index)s") % {"index": kernel}, fontsize=7)
    axis = figure.add_subplot(grid[out:, :])
    for kernel, series in enumerate(distances):
        axis.plot(samples_seen, series, label=_("Kernel %(index)s") % {"index": kernel})
    axis.set_xlabel(_("Training images seen"))
    _whole_numbers(axis.xaxis, language)
    axis.set_ylabel(_("Distance from first snapshot (L2)"))
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    axis.grid(alpha=0.3)
    figure.suptitle(_("conv1 kernels during training (above each column: training images seen)"))
    figure.tight_layout()
    return figure


def shift_grid(grid: list[list[float]], radius: int, by_distance: list[dict], language: str):
    _ = gettext_for(language)
    figure, axes = plt.subplots(1, 2, figsize=(A4_WIDTH_INCHES, 3.2))
    values = 100 * np.array(grid)
    shown = axes[0].imshow(values, cmap="cividis", origin="upper", extent=(-radius - .5, radius + .5, radius + .5,
                                                                           -radius - .5))
    # Each cell's value is printed while it can be at 6 pt or more (a grid up to 9 x 9); a larger grid
    # is read from its colours and the right-hand plot.
    for row in range(values.shape[0] if values.shape[0] <= 9 else 0):
        for col in range(values.shape[1]):
            axes[0].text(col - radius, row - radius, _whole_percent(values[row, col]), ha="center", va="center",
                         fontsize=6,
                         color="white" if values[row, col] < values.mean() else "black")
    axes[0].set_xlabel(_("Horizontal shift dx (pixels)"))
    axes[0].set_ylabel(_("Vertical shift dy (pixels)"))
    axes[0].set_title(_("Test accuracy under translation"), fontsize=9)
    figure.colorbar(shown, ax=axes[0], label=_("Accuracy (%)"))
    distances = [e["distance"] for e in by_distance]
    axes[1].plot(distances, [100 * e["accuracy"] for e in by_distance], marker="o", color="#0072B2",
                 label=_("mean over the shifts of this length"))
    axes[1].plot(distances, [100 * e["worst"] for e in by_distance], marker="v", color="#D55E00", linestyle="--",
                 label=_("worst of them"))
    axes[1].legend(fontsize=7)
    axes[1].set_xlabel(_("Shift distance (pixels)"))
    axes[1].set_ylabel(_("Accuracy (%)"))
    axes[1].set_title(_("Accuracy against shift distance"), fontsize=9)
    axes[1].grid(alpha=0.3)
    figure.tight_layout()
    figure.subplots_adjust(wspace=0.5)   # room between the colour bar's label and the curve's axis
    return figure


def rotation(curve: list[dict], language: str):
    _ = gettext_for(language)
    figure, axis = plt.subplots(figsize=(A4_WIDTH_INCHES, 2.8))
    axis.plot([e["degrees"] for e in curve], [100 * e["accuracy"] for e in curve], marker="o", color="#0072B2")
    axis.set_xlabel(_("Rotation (degrees; negative = clockwise)"))
    axis.set_ylabel(_("Accuracy (%)"))
    axis.set_title(_("Test accuracy under rotation"))
    axis.grid(alpha=0.3)
    return figure


def confusion(matrix: list[list[int]], per_class: list[float], language: str):
    _ = gettext_for(language)
    figure, axes = plt.subplots(1, 2, figsize=(A4_WIDTH_INCHES, 3.3), gridspec_kw={"width_ratios": [1.2, 1]})
    values = np.array(matrix)
    shown = axes[0].imshow(values, cmap="viridis", norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(2, values.max()))
                           if values.max() > 0 else None)
    for true in range(NUM_CLASSES):
        for predicted in range(NUM_CLASSES):
            if values[true, predicted]:
                axes[0].text(predicted, true, str(values[true, predicted]), ha="center", va="center", fontsize=6.5,
                             color="black" if true == predicted else "white")
    axes[0].set_xticks(range(NUM_CLASSES))
    axes[0].set_yticks(range(NUM_CLASSES))
    axes[0].set_xlabel(_("Predicted digit"))
    axes[0].set_ylabel(_("True digit"))
    axes[0].set_title(_("Test confusion matrix"), fontsize=9)
    figure.colorbar(shown, ax=axes[0], shrink=0.8)
    axes[1].barh(range(NUM_CLASSES), [100 * value for value in per_class], color="#0072B2")
    axes[1].set_yticks(range(NUM_CLASSES))
    axes[1].invert_yaxis()
    axes[1].set_xlim(max(0, 100 * min(per_class) - 2), 100)
    axes[1].set_xlabel(_("Accuracy (%)"))
    axes[1].set_ylabel(_("Digit"))
    axes[1].set_title(_("Per-class accuracy"), fontsize=9)
    figure.tight_layout()
    return figure


def mistakes(images: np.ndarray, entries: list[dict], language: str):
    _ = gettext_for(language)
    columns = 8
    rows = max(1, -(-len(entries) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(A4_WIDTH_INCHES, 1.25 * rows + 0.4), squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        if index >= len(entries):
            axis.axis("off")
            continue
        entry = entries[index]
        # Short labels, explained once in the title: long ones ran into their neighbours.
        _image_axis(axis, images[index], f"{entry['label']} → {entry['prediction']}")
        axis.set_xlabel(f"{entry['confidence']:.2f}", fontsize=7)
    figure.suptitle(_("Most confident mistakes (true digit → predicted digit, with the confidence below)"))
    figure.tight_layout()
    return figure


def attribution(image: np.ndarray, saliency: np.ndarray, occlusion: np.ndarray, language: str):
    _ = gettext_for(language)
    # Constrained layout keeps each title clear of its neighbour's colour bar, in either language.
    figure, axes = plt.subplots(1, 3, figsize=(A4_WIDTH_INCHES, 2.6), layout="constrained")
    _image_axis(axes[0], image, _("Input"))
    # Relative to its largest value: raw gradients are tiny numbers that would need a "1e-5" on the scale.
    top = float(saliency.max()) or 1.0
    shown = _image_axis(axes[1], saliency / top, _("Gradient saliency (relative)"), cmap="viridis", vmin=0, vmax=1)
    figure.colorbar(shown, ax=axes[1], shrink=0.8)
    shown = _image_axis(axes[2], occlusion, _("Occlusion sensitivity"), cmap="RdBu_r", norm=_signed_norm(occlusion))
    figure.colorbar(shown, ax=axes[2], shrink=0.8, label=_("drop in log-probability"))
    return figure
