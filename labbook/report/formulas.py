"""The formulas of the principles section, written in LaTeX for the run's own recipe, and set as
MathML in the HTML report (browsers draw it natively) and as SVG in the PDF (WeasyPrint has no
MathML): latex2mathml and ziamath, both pure Python. Every formula is built here from labbook's
own text and the run's integers, never from free text in a run folder."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import latex2mathml.converter
from markupsafe import Markup

from labbook.config import IMAGE_SIZE, NUM_CLASSES, Config

# ziamath draws at this size in CSS pixels: the body text's 12 pt.
FORMULA_PIXELS = 16


def formulas(config: Config) -> dict[str, str]:
    """Each formula the principles section shows for this run, by name, in LaTeX."""
    kernel, padding = 5, 2        # model.py's `5, padding=2`, the lab's, for both convolutions
    half, quarter = IMAGE_SIZE // 2, IMAGE_SIZE // 4
    channels = config.model.depth[1]
    train, decay = config.train, config.train.weight_decay > 0
    gradient = r"g = \nabla_{\theta} L" + (r" + \lambda \theta" if decay and train.optimizer != "adamw" else "")
    found = {
        "conv_size": rf"O = \left\lfloor \frac{{W - K + 2P}}{{S}} \right\rfloor + 1, \qquad "
                     rf"\frac{{{IMAGE_SIZE} - {kernel} + 2 \times {padding}}}{{1}} + 1 = {IMAGE_SIZE}",
        "pool_size": rf"\frac{{{IMAGE_SIZE} - 2}}{{2}} + 1 = {half}, \qquad \frac{{{half} - 2}}{{2}} + 1 = {quarter}, "
                     rf"\qquad {quarter} \times {quarter} \times {channels} = {quarter * quarter * channels}",
        "relu": r"\mathrm{ReLU}(x) = \max(0,\, x)",
        "pool": {"max": r"y_{i,j} = \max_{a,\, b \in \{0, 1\}} x_{2i+a,\, 2j+b}",
                 "avg": r"y_{i,j} = \frac{1}{4} \sum_{a=0}^{1} \sum_{b=0}^{1} x_{2i+a,\, 2j+b}",
                 "blur": r"u_{i,j} = \max_{a,\, b \in \{0, 1\}} x_{i+a,\, j+b}, \qquad y_{i,j} = \sum_{a,\, b} B_{a,b}\,"
                         r" u_{2i+a,\, 2j+b}, \qquad B = \frac{1}{16} \begin{pmatrix} 1 & 2 & 1 \\ 2 & 4 & 2 \\ 1 & 2 & 1"
                         r" \end{pmatrix}"}[config.model.pooling],
        "softmax": rf"p_k = \frac{{e^{{z_k}}}}{{\sum_{{j=0}}^{{{NUM_CLASSES - 1}}} e^{{z_j}}}}, \qquad "
                   r"L = -\frac{1}{N} \sum_{n=1}^{N} \log p_{y_n}",
        # Adam and AdamW keep the same running averages; they differ in where the decay goes (adam_step).
        "update": gradient + (r", \qquad v \leftarrow \mu v + g, \qquad \theta \leftarrow \theta - \eta v"
                              if train.optimizer == "sgd" else
                              r", \qquad m \leftarrow \beta_1 m + (1 - \beta_1)\, g, \qquad "
                              r"v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2"),
        "dropout": r"\tilde{h}_i = \frac{r_i\, h_i}{1 - p}, \qquad r_i \sim \mathrm{Bernoulli}(1 - p)",
        "saliency": r"S_{i,j} = \left| \frac{\partial \log p_c(x)}{\partial x_{i,j}} \right|, \qquad "
                    r"\Delta = \log p_c(x) - \log p_c(x \odot M)",
        "coherence": r"J = \sum_{u,\, v} \nabla k_{u,v}\, \nabla k_{u,v}^{\top}, \qquad "
                     r"C = \frac{\lambda_1 - \lambda_2}{\lambda_1 + \lambda_2}",
        "cosine": r"\cos(a, b) = \frac{a \cdot b}{\lVert a \rVert\, \lVert b \rVert}",
        "consistency": r"\mathrm{Cons} = P\bigl(f(T_s x) = f(T_{s'} x)\bigr), \qquad "
                       r"P_{\mathrm{flip}} = P\bigl(f(T_e x) \neq f(x)\bigr), \ \lVert e \rVert = 1",
    }
    if train.optimizer != "sgd":
        found["adam_step"] = (r"\hat{m} = \frac{m}{1 - \beta_1^t}, \qquad \hat{v} = \frac{v}{1 - \beta_2^t}, \qquad "
                              r"\theta \leftarrow \theta - \eta \left( \frac{\hat{m}}{\sqrt{\hat{v}} + \epsilon}"
                              + (r" + \lambda \theta" if decay and train.optimizer == "adamw" else "") + r" \right)")
    return found


@lru_cache(maxsize=256)
def mathml(latex: str) -> Markup:
    return Markup(latex2mathml.converter.convert(latex, display="block"))


# The formulas drawn for PDFs, by the file name the page uses: the PDF renderer's fetcher serves these
# (labbook's own drawings) and the run's files, nothing else.
DRAWN: dict[str, bytes] = {}
FORMULA_FOLDER = "formula/"


@lru_cache(maxsize=256)
def svg_image(latex: str) -> Markup:
    import ziamath    # loads its math font: only when a PDF is made
    drawing = ziamath.Latex(latex, size=FORMULA_PIXELS).svg().encode("utf-8")
    name = hashlib.sha256(drawing).hexdigest()[:16] + ".svg"
    DRAWN[name] = drawing
    return Markup('<img class="formula" alt="" src="{}">').format(FORMULA_FOLDER + name)


def formula(latex: str, for_pdf: bool) -> Markup:
    """One formula as its own line: SVG for the PDF, MathML for the page."""
    return Markup('<div class="formula">{}</div>').format(svg_image(latex) if for_pdf else mathml(latex))
