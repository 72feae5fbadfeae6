"""Making a run's SVG figures safe to publish.

An SVG opened by its own address is a document of the site's origin: a
`<script>`, an `onload` or a `<foreignObject>` in it would run there, and an
external reference would call another host. The site therefore publishes each
figure only as labbook writes it out again from an allow-list that keeps what
matplotlib writes: shapes, groups, clip paths, glyph references inside the file,
and embedded PNG images. Everything else (scripts, event handlers, foreign
objects, links, animations, external or `javascript:` references, comments,
processing instructions, the DOCTYPE, metadata) is dropped.

The file is read by expat as a stream, with entity declarations and external
references refused (as defusedxml does), and each allowed element is written as
it arrives: one pass, no tree.
"""

from __future__ import annotations

import re
from xml.parsers import expat

from labbook.errors import UserError

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
ELEMENTS = {"svg", "g", "defs", "path", "use", "clipPath", "rect", "circle", "ellipse", "line", "polyline",
            "polygon", "image", "style", "linearGradient", "radialGradient", "stop", "pattern", "mask", "symbol",
            "marker", "title", "desc"}
ATTRIBUTES = {"id", "class", "transform", "d", "style", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry",
              "width", "height", "viewBox", "version", "points", "clip-path", "clipPathUnits", "fill", "fill-opacity",
              "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin",
              "stroke-dasharray", "stroke-dashoffset", "stroke-miterlimit", "opacity", "offset", "stop-color",
              "stop-opacity", "gradientUnits", "gradientTransform", "patternUnits", "preserveAspectRatio", "type",
              "mask", "overflow", "markerWidth", "markerHeight", "refX", "refY", "orient"}
TEXT_ELEMENTS = {"style", "title", "desc"}
# The only references kept: to an element of the same file, and embedded raster images.
LOCAL = re.compile(r"#[A-Za-z0-9_.:-]*")
EMBEDDED_IMAGE = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=\s]*")
URL = re.compile(r"url\(\s*['\"]?([^)'\"]*)", re.IGNORECASE)
FUNCTION = re.compile(r"([a-z0-9_-]*)\s*\(")
FUNCTIONS = {"url", "rgb", "rgba", "translate", "scale", "rotate", "matrix", "skewx", "skewy"}
MAX_SVG_BYTES = 4 * 2**20       # labbook's own figures: 20 to 300 kB


class _Refused(Exception):
    pass


def _safe_value(value: str) -> bool:
    """No reference out of the file in an attribute or a style: no CSS escape, no at-rule, and no
    function but url() to an #id and the geometry and colour functions matplotlib writes."""
    if not any(ch in value for ch in "(:@\\"):   # most values: numbers and path data
        return True
    lowered = value.lower()
    if "\\" in value or "@" in value or "javascript:" in lowered:
        return False
    if any(name not in FUNCTIONS for name in FUNCTION.findall(lowered)):
        return False
    return all(LOCAL.fullmatch(target.strip()) for target in URL.findall(value))


def _escape(value: str) -> str:
    """For a double-quoted attribute: only what ends it or starts markup."""
    if not any(ch in value for ch in '&<"'):
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _attribute(element: str, key: str, value: str) -> str | None:
    """The attribute as it is written out, or None when it is dropped."""
    namespace, _, name = key.rpartition(" ")
    if name == "href" and namespace in ("", XLINK):
        if LOCAL.fullmatch(value) or (element == "image" and EMBEDDED_IMAGE.fullmatch(value)):
            return f' {"xlink:" if namespace else ""}href="{_escape(value)}"'
        return None
    if namespace or name not in ATTRIBUTES or not _safe_value(value):
        return None
    return f' {name}="{_escape(value)}"'


def clean_svg(content: bytes, name: str = "figure.svg") -> bytes:
    """The SVG written out again from what the allow-list keeps; a file that is not SVG is a UserError."""
    if len(content) > MAX_SVG_BYTES:
        raise UserError(f"{name}: larger than {MAX_SVG_BYTES:,} bytes")
    out: list[str] = ['<?xml version="1.0" encoding="utf-8"?>\n']
    open_elements: list[str] = []
    dropped_depth = 0            # > 0 while inside an element that is dropped with all it holds
    text: list[str] = []

    def start(tag: str, attributes: dict) -> None:
        nonlocal dropped_depth
        namespace, _, element = tag.rpartition(" ")
        if dropped_depth or namespace != SVG or element not in ELEMENTS or (not open_elements and element != "svg"):
            dropped_depth += 1
            return
        kept = "".join(filter(None, (_attribute(element, key, value) for key, value in attributes.items())))
        declarations = f' xmlns="{SVG}" xmlns:xlink="{XLINK}"' if not open_elements else ""
        out.append(f"<{element}{declarations}{kept}>")
        open_elements.append(element)
        text.clear()

    def end(tag: str) -> None:
        nonlocal dropped_depth
        if dropped_depth:
            dropped_depth -= 1
            return
        element = open_elements.pop()
        inner = "".join(text)
        if element in TEXT_ELEMENTS and inner and (element != "style" or _safe_value(inner)):
            out.append(inner.replace("&", "&amp;").replace("<", "&lt;"))
        text.clear()
        out.append(f"</{element}>")

    def characters(data: str) -> None:
        if not dropped_depth and open_elements and open_elements[-1] in TEXT_ELEMENTS:
            text.append(data)

    def refuse(*_arguments):
        raise _Refused("entity declarations and external references are not allowed")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, characters
    parser.EntityDeclHandler = parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(content, True)
    except (expat.ExpatError, _Refused, ValueError) as error:
        raise UserError(f"{name}: not a readable SVG file ({str(error)[:80]})") from None
    if len(out) < 3:
        raise UserError(f"{name}: not an SVG image")
    written = "".join(out).encode("utf-8")
    if len(written) > MAX_SVG_BYTES:
        raise UserError(f"{name}: larger than {MAX_SVG_BYTES:,} bytes once written out")
    return written
