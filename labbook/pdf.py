"""PDF output through WeasyPrint, with a CJK font small enough to be fast.

Handing WeasyPrint the system's Noto Sans CJK (a 20 MB collection) costs about
ten seconds per PDF in font subsetting whatever the page count. Instead the
font is subset once to the characters the reports use, cached on disk under a
hash of that character set, and only the small subset is given to WeasyPrint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from labbook.errors import UserError

CJK_FONT_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansSC-Regular.otf")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
# The face of the .ttc collection with Simplified Chinese glyph shapes.
FACE_NAME = "Noto Sans CJK SC"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labbook" / "fonts"


def system_cjk_font() -> Path:
    for folder in map(Path, FONT_DIRS):
        if folder.is_dir():
            for name in CJK_FONT_FILES:
                for path in sorted(folder.rglob(name)):
                    return path
    raise UserError("no Noto Sans CJK font found for the PDF: install the Debian package fonts-noto-cjk "
                    "(`make lab` installs it when run as root)")


def _face_index(path: Path) -> int:
    from fontTools.ttLib import TTCollection
    if path.suffix.lower() != ".ttc":
        return 0
    collection = TTCollection(str(path), lazy=True)
    for index, font in enumerate(collection.fonts):
        if font["name"].getDebugName(1) == FACE_NAME:
            return index
    return 0


def subset_font(text: str) -> Path:
    """A cached OpenType subset of the CJK font holding every character of `text` plus ASCII."""
    from fontTools import subset
    source = system_cjk_font()
    characters = sorted(set(text) | {chr(c) for c in range(0x20, 0x7F)})
    key = hashlib.sha256((str(source) + str(source.stat().st_size) + "".join(characters)).encode()).hexdigest()[:20]
    target = cache_dir() / f"labbook-cjk-{key}.otf"
    if target.is_file():
        return target
    options = subset.Options()
    options.recalc_timestamp = False   # same characters, same bytes
    options.name_IDs = ["*"]
    options.layout_features = ["*"]
    options.font_number = _face_index(source)
    font = subset.load_font(str(source), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in characters])
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    subset.save_font(font, str(temporary), options)
    os.replace(temporary, target)
    return target


def font_stylesheet(html: str) -> str:
    """CSS that makes the subset the only font the PDF uses, for every element, weight and style."""
    import html as html_module
    path = subset_font(html_module.unescape(html)).as_uri()
    faces = "".join(f'@font-face {{ font-family: "LabbookCJK"; src: url("{path}"); font-weight: {weight}; '
                    f'font-style: {style}; }}\n' for weight in (400, 700) for style in ("normal", "italic"))
    # Code keeps a monospace face; DejaVu Sans Mono is small, so it costs little to embed.
    return faces + ('* { font-family: "LabbookCJK" !important; }\n'
                    'pre, code, pre *, code * { font-family: "DejaVu Sans Mono", "LabbookCJK" !important; }\n')


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
    its manifest covers) and labbook's font cache, nothing else."""
    import mimetypes
    from urllib.parse import unquote

    from weasyprint.urls import URLFetcher, URLFetcherResponse
    fonts = cache_dir().resolve()

    class RunFolderFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            if url.startswith(VIRTUAL_BASE):
                relative = unquote(url[len(VIRTUAL_BASE):].split("?")[0].split("#")[0])
                kind = mimetypes.guess_type(relative)[0] or "application/octet-stream"
                body = read_run_file(relative)
                if kind == "image/png":
                    _check_png(body, relative)
                return URLFetcherResponse(url, body=body, headers={"Content-Type": kind})
            if url.startswith("file://") and Path(url[len("file://"):]).resolve().is_relative_to(fonts):
                return super().fetch(url, headers)
            raise ValueError(f"labbook renders only files of the run: refused {url}")

    return RunFolderFetcher(fail_on_errors=True)


def render_pdf(html: str, read_run_file, font_css: str) -> bytes:
    """PDF bytes of one report page of a run (the page sits in its report/ folder); images come
    through `read_run_file(relative path)`."""
    import logging

    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    # @font-face rules only take effect through a FontConfiguration shared by the CSS and the writer.
    from weasyprint.urls import FatalURLFetchingError
    fonts, fetcher = FontConfiguration(), _fetcher_for(read_run_file)
    try:
        document = HTML(string=html, base_url=VIRTUAL_BASE + "report/", url_fetcher=fetcher)
        stylesheet = CSS(string=font_css, font_config=fonts, url_fetcher=fetcher)
        return document.write_pdf(stylesheets=[stylesheet], font_config=fonts)
    except FatalURLFetchingError as error:   # a file of the run refused by the reader: say why, in one line
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise
