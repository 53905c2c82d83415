"""What the report's plots share: matplotlib without a screen, and saving each figure under one report title."""
from __future__ import annotations

from pathlib import Path


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
