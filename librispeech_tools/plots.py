"""What the report's plots share: matplotlib without a screen, and saving each figure under one report title."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (the report runs on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class FigureSaver:
    """Saves figures as PNG under `out`, each headed by its own heading over the report's `title`; `saved` lists
    their file names and headings."""

    def __init__(self, out: Path, title: str):
        self.out, self.title, self.saved = out, title, []

    def __call__(self, figure, name: str, heading: str) -> None:
        figure.suptitle(f"{heading}\n{self.title}", fontsize=9)
        figure.tight_layout()
        figure.savefig(self.out / name, dpi=110)
        pyplot().close(figure)
        self.saved.append((name, heading))


def plotted(table, columns, positive=()):
    """The rows of `table` with a finite value in every one of `columns` (and above 0 in those of `positive`: a
    logarithmic axis), and a note for the plot's heading that says how many are left out ("" when none): matplotlib
    would leave them out without a word."""
    import pandas as pd

    shown = np.ones(len(table), dtype=bool)
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        shown &= np.isfinite(values) & ((values > 0) if column in positive else True)
    left_out = len(table) - int(shown.sum())
    note = (f" ({int(shown.sum())} of {len(table)} samples; {left_out} left out: no finite value"
            + (", or one not above 0 on the log axis" if positive else "") + ")") if left_out else ""
    return table[shown], note
