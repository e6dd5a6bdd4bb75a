"""Saving matplotlib figures: one way for every plot the package writes."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write ``fig`` to ``path`` atomically (a temporary name, then a rename, so a reader
    never sees a half-written plot), close it and return the path. Parent folders are created."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
