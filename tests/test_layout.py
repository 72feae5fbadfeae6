"""The printed report as a teacher holds it: every figure inside the text area, on the page of its
caption, sharp enough to print; no page left mostly empty; a short appendix; a bilingual report
not much longer than the Chinese one. Read from the PDFs with PyMuPDF."""

import re
from pathlib import Path

import pymupdf

MM = 72 / 25.4
# The text area of report.css's @page: A4 less 22 mm at the top, 20 mm at the foot, 18 mm at the sides.
TOP, BOTTOM, SIDE = 22 * MM, 20 * MM, 18 * MM
CAPTION = re.compile(r"^(?:图[\xa0 ](\d+)\u2002|Figure[\xa0 ](\d+)\.\s)")   # a caption, not a cross-reference
APPENDIX = re.compile(r"^(?:附录|Appendix)\b")
SECTION = re.compile(r"^(?:[一二三四五六七八九十]+、|\d+\.\s\S|参考文献|References|附录|Appendix)")
FINGERPRINT = re.compile(r"[0-9a-f]{40}")


def layout_problems(path: Path) -> list[str]:
    """Every way a report PDF breaks the layout rules, as sentences; [] when it keeps them all."""
    problems, image_pages, caption_pages, appendix_from = [], [], {}, None
    blocks, fullness, sizes = [], [], []
    with pymupdf.open(path) as document:
        pages = len(document)
        for number, page in enumerate(document, start=1):
            area = pymupdf.Rect(SIDE, TOP, page.rect.width - SIDE, page.rect.height - BOTTOM)
            bottom = area.y0
            for image in sorted(page.get_image_info(), key=lambda info: info["bbox"][1]):
                box = pymupdf.Rect(image["bbox"])
                if not (area + (-1, -1, 1, 1)).contains(box):
                    problems.append(f"page {number}: a figure crosses the text area ({box})")
                ppi = image["width"] / (box.width / 72)
                if ppi < 150:
                    problems.append(f"page {number}: a figure printed at {ppi:.0f} ppi")
                image_pages.append(number)
                bottom = max(bottom, box.y1)
            blocks.append([])
            for x0, y0, x1, y1, text, *_ in page.get_text("blocks"):
                if y0 >= area.y0 - 1 and y1 <= area.y1 + 1:
                    bottom = max(bottom, y1)
                    blocks[-1] += [line.strip() for line in text.splitlines() if line.strip()]
                    for line in text.splitlines():
                        if match := CAPTION.match(line.strip()):
                            caption_pages.setdefault(int(match[1] or match[2]), number)
                        if APPENDIX.match(line.strip()) and number > 1:
                            appendix_from = number
            fullness.append((bottom - area.y0) / area.height)
            sizes += [span["size"] for block in page.get_text("dict")["blocks"] for line in block.get("lines", [])
                      for span in line["spans"] if span["text"].strip()]
    for number, full in enumerate(fullness[:-1], start=1):
        # Only a chapter's last page (the next page opens a section) may be more than 40% empty.
        if full < 0.60 and not (blocks[number] and SECTION.match(blocks[number][0])):
            problems.append(f"page {number}: {100 * (1 - full):.0f}% empty")
    if sizes and min(sizes) < 6:
        problems.append(f"text set at {min(sizes):.1f} pt")
    fingerprint = [number for number, lines in enumerate(blocks, start=1) if any(FINGERPRINT.search(line) for line in lines)]
    if fingerprint and len(blocks[fingerprint[0] - 1]) < 8:
        problems.append(f"page {fingerprint[0]}: the fingerprint alone")
    for figure, page in enumerate(image_pages, start=1):
        if caption_pages.get(figure) != page:
            problems.append(f"figure {figure}: image on page {page}, caption on page {caption_pages.get(figure)}")
    if appendix_from is None or pages - appendix_from + 1 > 2:
        problems.append(f"the appendix runs from page {appendix_from} to page {pages}")
    return problems


def test_the_printed_reports_keep_the_layout_rules(reported):
    for language in ("zh", "en", "zh-en"):
        assert layout_problems(reported / "report" / f"report.{language}.pdf") == [], language


def test_the_bilingual_report_is_not_much_longer_than_the_chinese(reported):
    def pages(language):
        with pymupdf.open(reported / "report" / f"report.{language}.pdf") as document:
            return len(document)
    assert pages("zh-en") <= 1.35 * pages("zh")   # the formulas, figures and listings come once


def test_the_checker_sees_a_figure_that_crosses_the_page_foot(tmp_path):
    """The rules are checked for real: a PDF with a figure running into the footer breaks them."""
    document = pymupdf.open()
    page = document.new_page(width=595.28, height=841.89)
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 100, 100), False)
    page.insert_image(pymupdf.Rect(100, 700, 400, 830), pixmap=pixmap)
    page.insert_text((60, 100), "图 1 A caption")
    document.new_page()
    document.save(tmp_path / "broken.pdf")
    problems = layout_problems(tmp_path / "broken.pdf")
    assert any("crosses the text area" in problem for problem in problems)
    assert any("ppi" in problem for problem in problems)


def test_the_weasyprint_internals_that_the_figure_floats_use_are_there():
    """labbook/report/pdf.py places figures as floats by reading WeasyPrint's layout (page._page_box, box
    children, positions, heights) and re-rendering its tree: internals, not API. A WeasyPrint that
    has changed them must fail here, loudly, not silently lay reports out without floats."""
    import weasyprint

    from labbook.report import pdf
    # A short paragraph, then a figure too tall for the rest of the page: it leaves a hole.
    figure = '<figure><div style="height:900px"></div></figure>'
    html = (f"<html><body><section><p>{'text ' * 60}</p>{figure}<p>after</p><p>more</p><p>last</p>"
            f"</section></body></html>")
    page = weasyprint.HTML(string=html)
    try:
        document = page.render(stylesheets=[weasyprint.CSS(string="@page { size: A4; margin: 20mm }")])
        fixes = pdf._figure_fixes(document)
        for fix in fixes:
            fix(page.etree_element)
        page.wrapper_element  # noqa: B018 - re-rendering the changed tree sets this
    except (AttributeError, StopIteration, TypeError) as error:
        raise AssertionError(f"WeasyPrint {weasyprint.__version__} no longer has what labbook/report/pdf.py's figure "
                             f"floats read ({type(error).__name__}: {error}); keep the version in "
                             f"requirements/*.lock, or update pdf.py") from None
    assert len(fixes) == 1   # the figure that left a hole moves below the text after it
