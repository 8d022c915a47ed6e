"""Report figures (matplotlib, seaborn palettes); each function returns a ``matplotlib.figure.Figure``.

Figures are built with ``Figure()`` directly (no pyplot state, no display needed).

* :mod:`.tradeoff`: Pareto frontiers, accuracies with CIs, tables rendered as real text.
* :mod:`.evidence`: embeddings (t-SNE / PCA), attack panels, theory panel, entropy bins.
* :mod:`.uploads`: misattribution against the number of uploads linked to one device.
"""

from reports.figures.evidence import (attack_figure, embedding_figure, entropy_figure, latex_lines, render_math,
                                      theory_figure)
from reports.figures.tradeoff import (FAMILY_COLORS, accuracy_figure, pareto_figure, series, table_figure,
                                      text_page)
from reports.figures.uploads import uploads_figure

__all__ = ["FAMILY_COLORS", "accuracy_figure", "attack_figure", "embedding_figure", "entropy_figure", "latex_lines",
           "pareto_figure", "render_math", "series", "table_figure", "text_page", "theory_figure",
           "uploads_figure"]
