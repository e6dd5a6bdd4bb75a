"""Saving matplotlib figures: one way for every plot the package writes."""

from __future__ import annotations

from pathlib import Path

from benchmark.files import atomic_path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write ``fig`` to ``path`` atomically (a temporary name, then a rename, so a reader
    never sees a half-written plot), close it and return the path. Parent folders are created."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
    finally:
        plt.close(fig)
    return path
