"""PDF output through WeasyPrint, with a CJK font small enough to be fast.

Handing WeasyPrint the system's Noto Sans CJK (a 20 MB collection) costs about
ten seconds per PDF in font subsetting whatever the page count. Instead the
font is subset once to the characters the reports use, cached on disk under a
hash of that character set, and only the small subset is given to WeasyPrint.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from labbook.errors import UserError
from labbook.report.formulas import DRAWN, FORMULA_FOLDER

# The faces a report uses: a serif (宋体-style) body and sans (黑体-style) headings, as Chinese papers
# set them. Each: the file names to look for, the face inside a .ttc collection with Simplified
# Chinese glyph shapes, and the face to fall back to when the files are not installed.
FACES = {
    "serif": (("NotoSerifCJK-Regular.ttc", "NotoSerifCJKsc-Regular.otf", "NotoSerifSC-Regular.otf"),
              "Noto Serif CJK SC", "sans"),
    "sans": (("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansSC-Regular.otf"),
             "Noto Sans CJK SC", None),
    "sans-bold": (("NotoSansCJK-Bold.ttc", "NotoSansCJKsc-Bold.otf", "NotoSansSC-Bold.otf"),
                  "Noto Sans CJK SC", "sans"),
}
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labbook" / "fonts"


def system_font(face: str) -> tuple[Path, str]:
    """The installed file of a face (or of the face it falls back to), and the face's name."""
    names, face_name, fallback = FACES[face]
    for folder in map(Path, FONT_DIRS):
        if folder.is_dir():
            for name in names:
                for path in sorted(folder.rglob(name)):
                    return path, face_name
    if fallback:
        return system_font(fallback)
    raise UserError("no Noto Sans CJK font found for the PDF: install the Debian package fonts-noto-cjk "
                    "(`make lab` installs it when run as root)")


def _face_index(path: Path, face_name: str) -> int:
    from fontTools.ttLib import TTCollection
    if path.suffix.lower() != ".ttc":
        return 0
    collection = TTCollection(str(path), lazy=True)
    for index, font in enumerate(collection.fonts):
        if font["name"].getDebugName(1) == face_name:
            return index
    return 0


def subset_font(text: str, face: str = "sans") -> Path:
    """A cached OpenType subset of a CJK face holding every character of `text` plus ASCII."""
    from fontTools import subset
    source, face_name = system_font(face)
    characters = sorted(set(text) | {chr(c) for c in range(0x20, 0x7F)})
    key = hashlib.sha256((str(source) + face_name + str(source.stat().st_size) + "".join(characters))
                         .encode()).hexdigest()[:20]
    target = cache_dir() / f"labbook-{face}-{key}.otf"
    if target.is_file():
        os.utime(target)    # used now: the last to be evicted
        return target
    options = subset.Options()
    options.recalc_timestamp = False   # same characters, same bytes
    options.name_IDs = ["*"]
    options.layout_features = ["*"]
    options.font_number = _face_index(source, face_name)
    font = subset.load_font(str(source), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in characters])
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    subset.save_font(font, str(temporary), options)
    os.replace(temporary, target)
    prune_cache(keep=target)
    return target


# The font cache's bounds: each report whose text has new characters adds three subsets (about 1 to 5 MB).
MAX_CACHED_FONTS = 30
MAX_CACHE_BYTES = 100 * 2**20


def prune_cache(keep: Path | None = None) -> None:
    """Evict the least recently used subsets until the cache holds at most MAX_CACHED_FONTS files and
    MAX_CACHE_BYTES; `keep` (the subset just made) is never evicted."""
    cached = []
    for path in cache_dir().glob("labbook-*.otf"):
        try:
            info = path.stat()
        except FileNotFoundError:     # evicted meanwhile by another labbook
            continue
        cached.append((path == keep, info.st_mtime_ns, info.st_size, path))
    cached.sort(reverse=True)         # the one kept, then the most recently used first
    total = 0
    for count, (_, _, size, path) in enumerate(cached, start=1):
        total += size
        if path != keep and (count > MAX_CACHED_FONTS or total > MAX_CACHE_BYTES):
            path.unlink(missing_ok=True)


# Where the sans face is used; everything else is set in the serif.
SANS_ELEMENTS = "h1, h2, h3, h4, th, dt, strong, b, figcaption, caption, p.caption, nav.toc, .course"


def font_stylesheet(html: str) -> str:
    """CSS that makes the subsets the only fonts the PDF uses: the serif for text, the sans for
    headings and captions, DejaVu Sans Mono for code."""
    import html as html_module
    text = html_module.unescape(html)
    serif, sans, bold = (subset_font(text, face).as_uri() for face in ("serif", "sans", "sans-bold"))
    faces = "".join(f'@font-face {{ font-family: "{family}"; src: url("{path}"); font-weight: {weight}; '
                    f'font-style: {style}; }}\n'
                    for family, path, weight in (("LabbookSerif", serif, 400), ("LabbookSerif", bold, 700),
                                                 ("LabbookSans", sans, 400), ("LabbookSans", bold, 700))
                    for style in ("normal", "italic"))
    return faces + ('* { font-family: "LabbookSerif" !important; }\n'
                    f'{SANS_ELEMENTS} {{ font-family: "LabbookSans" !important; }}\n'
                    f'{", ".join(element + " *" for element in SANS_ELEMENTS.split(", "))} '
                    '{ font-family: "LabbookSans" !important; }\n'
                    'pre, code, pre *, code * { font-family: "DejaVu Sans Mono", "LabbookSerif" !important; }\n')


# Pages are laid out as if they lived at this address, whatever folder the run is in:
# WeasyPrint names embedded images after their URL, so a real path would make the same
# run give different bytes in another folder. Nothing is ever fetched from it.
VIRTUAL_BASE = "https://run.labbook.invalid/"


# A figure larger than this would take gigabytes to decode (labbook's own: about 1400 x 1000).
MAX_PIXELS = 25_000_000


def _check_png(content: bytes, name: str) -> None:
    """Refuse a PNG that is not one, or whose header promises more pixels than any figure has."""
    if content[:8] != b"\x89PNG\r\n\x1a\n" or content[12:16] != b"IHDR":
        raise UserError(f"{name}: not a PNG image")
    width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    if width * height > MAX_PIXELS:
        raise UserError(f"{name}: {width} x {height} pixels, more than a figure can have")


def _fetcher_for(read_run_file):
    """A fetcher that serves the run's own files (through `read_run_file`, which reads only files
    its manifest covers), the formulas labbook drew and labbook's font cache, nothing else."""
    import mimetypes
    from urllib.parse import unquote

    from weasyprint.urls import URLFetcher, URLFetcherResponse
    fonts = cache_dir().resolve()

    class RunFolderFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            if url.startswith(VIRTUAL_BASE):
                relative = unquote(url[len(VIRTUAL_BASE):].split("?")[0].split("#")[0])
                drawn = relative.removeprefix("report/" + FORMULA_FOLDER)
                if relative.startswith("report/" + FORMULA_FOLDER) and drawn in DRAWN:   # a formula labbook drew
                    return URLFetcherResponse(url, body=DRAWN[drawn], headers={"Content-Type": "image/svg+xml"})
                kind = mimetypes.guess_type(relative)[0] or "application/octet-stream"
                body = read_run_file(relative)
                if kind == "image/png":
                    _check_png(body, relative)
                return URLFetcherResponse(url, body=body, headers={"Content-Type": kind})
            if url.startswith("file://") and Path(url[len("file://"):]).resolve().is_relative_to(fonts):
                return super().fetch(url, headers)
            raise ValueError(f"labbook renders only files of the run: refused {url}")

    return RunFolderFetcher(fail_on_errors=True)


# A page left emptier than this because the figure after it did not fit is a hole worth filling.
HOLE = 0.25
# Blocks a figure may move past: text, tables, listings and subheadings (never leaving a subheading
# last, just above the figure), never a section heading or another figure.
MOVABLE = {"div", "p", "table", "ul", "ol", "pre", "h3"}


def _blocks(page) -> list:
    """The top-level blocks laid out on a page: the children of its section boxes, in order."""
    root = next(box for box in page._page_box.children if getattr(box, "element_tag", None) == "html")
    blocks = []
    for child in root.children[0].children:
        blocks.extend(child.children if child.element_tag == "section" else [child])
    return blocks


def _page_area(page) -> tuple[float, float]:
    box = page._page_box
    top = box.margin_top + box.padding_top + box.border_top_width
    return top, top + box.height


# A figure may print this much smaller than drawn to fit the space left at the foot of a page.
SHRINK = 0.7


def _figure_fixes(document) -> list:
    """Page floats, the way LaTeX places figures. Where a figure that did not fit at the foot of a
    page left a hole, the text blocks after it move up in front of it, as many as fit the hole, and
    a paragraph that does not fit whole fills the rest and runs on over the page break; if none can,
    the figure shrinks into the hole when it needs to lose no more than 30% of its height.
    Returns what to do to the document tree: functions of its root element."""
    fixes = []
    for page, following in zip(document.pages, document.pages[1:]):
        hole, height = _hole(page)
        next_blocks = _blocks(following)
        if hole < HOLE * height or not next_blocks or next_blocks[0].element_tag != "figure":
            continue
        figure_box, after, filled = next_blocks[0], None, 0.0
        for index, block in enumerate(next_blocks[1:], start=1):
            filled += block.margin_height()
            # The page's last block may go on over the page break (its height here is only a part): moved
            # only if it is running text, which may as well run on from the hole.
            if block.element_tag not in MOVABLE or index == len(next_blocks) - 1 and not _flows(block):
                break
            if filled > hole:
                # Running text taller than the hole fills it and goes on over the page break, the figure
                # after it; a table or a listing would only leave the same hole.
                if _flows(block) and filled - block.margin_height() < hole - 40:   # room for three lines
                    after = block.element
                break
            if block.element_tag != "h3":
                after = block.element
        if after is not None:
            fixes.append(functools.partial(_move, figure=figure_box.element, after=after))
            continue
        image = next((box for box in figure_box.descendants() if getattr(box, "element_tag", None) == "img"), None)
        if image is not None:
            height = image.height - (figure_box.margin_height() - hole) - 2
            if height >= SHRINK * image.height:
                fixes.append(functools.partial(_shrink, image=image.element, height=height))
    return fixes


def _hole(page) -> tuple[float, float]:
    """The empty space at the foot of a page's text area, and the area's height."""
    top, bottom = _page_area(page)
    used = max((block.position_y + block.margin_height() for block in _blocks(page)), default=top)
    return bottom - used, bottom - top


def _holes(document) -> tuple[int, float]:
    """How badly a layout leaves pages empty: how many pages, not counting a section's last, are more
    than 40% empty, then the summed emptiness beyond a quarter of every such page."""
    count, total = 0, 0.0
    for page, following in zip(document.pages, document.pages[1:]):
        next_blocks = _blocks(following)
        if next_blocks and next_blocks[0].element_tag == "h2":
            continue
        hole, height = _hole(page)
        empty = hole / height
        count += empty > 0.4
        total += max(0.0, empty - HOLE)
    return count, round(total, 6)


def _flows(block) -> bool:
    """Whether a block is running text that may break across pages (a paragraph, a list)."""
    classes = (block.element.get("class") or "").split()
    return block.element_tag in ("p", "ul", "ol") or block.element_tag == "div" and "para" in classes


def _move(root, figure, after) -> None:
    parents = {child: parent for parent in root.iter() for child in parent}
    parents[figure].remove(figure)
    target = parents[after]
    target.insert(list(target).index(after) + 1, figure)


def _shrink(root, image, height: float) -> None:
    image.set("style", f"max-height: {height:.1f}px")


def render_pdf(html: str, read_run_file, font_css: str) -> bytes:
    """PDF bytes of one report page of a run (the page sits in its report/ folder); images come
    through `read_run_file(relative path)`. Figures that would leave a hole move below the
    text after them, or shrink a little, as floats would (two rounds at most, the second only for a
    page still more than 40% empty, each kept only if it leaves the pages fuller)."""
    import logging

    import cssselect2
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration
    from weasyprint.urls import FatalURLFetchingError
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    # @font-face rules only take effect through a FontConfiguration shared by the CSS and the writer.
    fonts, fetcher, images = FontConfiguration(), _fetcher_for(read_run_file), {}
    try:
        page = HTML(string=html, base_url=VIRTUAL_BASE + "report/", url_fetcher=fetcher)
        stylesheet = CSS(string=font_css, font_config=fonts, url_fetcher=fetcher)
        document = page.render(stylesheets=[stylesheet], font_config=fonts, cache=images)
        holes = _holes(document)
        for attempt in range(2):
            fixes = _figure_fixes(document)
            # Each round lays the whole document out again: a second is spent only on a page still more
            # than 40% empty, the layout rule; holes smaller than that are filled in the first round only.
            if not fixes or attempt > 0 and holes[0] == 0:
                break
            for fix in fixes:
                fix(page.etree_element)
            page.wrapper_element = cssselect2.ElementWrapper.from_html_root(page.etree_element)
            moved = page.render(stylesheets=[stylesheet], font_config=fonts, cache=images)
            # A move can open a hole further on (the next figure no longer fits under the one moved):
            # the new layout is kept only if it leaves fewer and smaller holes, else the last one is written.
            if (moved_holes := _holes(moved)) >= holes:
                break
            document, holes = moved, moved_holes
        return document.write_pdf()
    except FatalURLFetchingError as error:   # a file of the run refused by the reader: say why, in one line
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


_PENDING: tuple = ()   # what forked workers render: set just before they are forked, read by them


def _render_pending(index: int) -> bytes:
    pages, read_run_file, font_css = _PENDING
    return render_pdf(pages[index], read_run_file, font_css)


def render_pdfs(pages: list[str], read_run_file, font_css: str) -> list[bytes]:
    """Several PDFs at once, one process per PDF (on a machine of more than one core): each is laid
    out on its own, so the bytes are the same as one after the other. Three PDFs on two cores are
    left to the operating system to share: the PDFs need different times (the bilingual one is the
    longest, and one laid out thrice may be next), and a core freed by the shortest takes on what is
    left of the others, where two workers would leave one core idle while the other does two PDFs.
    The workers are forked (the report stage holds no threads and no PyTorch) so that they start with
    WeasyPrint loaded and the run already read."""
    import multiprocessing
    global _PENDING
    if len(pages) < 2 or (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [render_pdf(page, read_run_file, font_css) for page in pages]
    import weasyprint  # noqa: F401  (loaded once, before the fork)
    _PENDING = (pages, read_run_file, font_css)
    try:
        with multiprocessing.get_context("fork").Pool(len(pages)) as pool:
            return pool.map(_render_pending, range(len(pages)), chunksize=1)
    finally:
        _PENDING = ()
