"""Making a run's SVG figures safe to publish.

An SVG opened by its own address is a document of the site's origin: a
`<script>`, an `onload` or a `<foreignObject>` in it would run there, and an
external reference would call another host. The site therefore publishes each
figure only after rebuilding it from an allow-list that keeps what matplotlib
writes: shapes, groups, clip paths, glyph references inside the file, and
embedded PNG images. Everything else (scripts, event handlers, foreign objects,
links, animations, external or `javascript:` references, metadata) is dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

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
              "mask", "overflow", "markerWidth", "markerHeight", "refX", "refY", "orient", "href"}
# The only references kept: to an element of the same file, and embedded raster images.
LOCAL = re.compile(r"#[A-Za-z0-9_.:-]*")
EMBEDDED_IMAGE = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=\s]*")
URL = re.compile(r"url\(\s*['\"]?([^)'\"]*)", re.IGNORECASE)
MAX_SVG_BYTES = 16 * 2**20

ET.register_namespace("", SVG)
ET.register_namespace("xlink", XLINK)


def _safe_value(value: str) -> bool:
    """No reference out of the file in an attribute or a style: url() only to #ids, no @import."""
    lowered = value.lower()
    if "@import" in lowered or "javascript:" in lowered or "expression(" in lowered:
        return False
    return all(LOCAL.fullmatch(target.strip()) for target in URL.findall(value))


def _clean(element: ET.Element) -> ET.Element | None:
    namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
    if namespace != SVG or name not in ELEMENTS:
        return None
    kept = ET.Element(element.tag)
    for key, value in element.attrib.items():
        attribute_namespace, _, attribute = key[1:].partition("}") if key.startswith("{") else ("", "", key)
        if attribute_namespace not in ("", XLINK) or attribute not in ATTRIBUTES or not _safe_value(value):
            continue
        if attribute == "href" and not (LOCAL.fullmatch(value) or (name == "image" and EMBEDDED_IMAGE.fullmatch(value))):
            continue
        kept.set(key, value)
    if name == "style":
        kept.text = element.text if element.text and _safe_value(element.text) else ""
        return kept
    kept.text = element.text if name in ("title", "desc") else None
    for child in element:
        cleaned = _clean(child)
        if cleaned is not None:
            cleaned.tail = None
            kept.append(cleaned)
    return kept


def clean_svg(content: bytes, name: str = "figure.svg") -> bytes:
    """The SVG rebuilt from what the allow-list keeps; a file that is not SVG is a UserError."""
    if len(content) > MAX_SVG_BYTES:
        raise UserError(f"{name}: larger than {MAX_SVG_BYTES:,} bytes")
    try:
        root = fromstring(content, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as error:
        raise UserError(f"{name}: not a readable SVG file ({str(error)[:80]})") from None
    cleaned = _clean(root)
    if cleaned is None or root.tag != f"{{{SVG}}}svg":
        raise UserError(f"{name}: not an SVG image")
    return ET.tostring(cleaned, encoding="utf-8", xml_declaration=True)
