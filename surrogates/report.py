"""Markdown quality report of a surrogate directory (``index.json``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["render_report", "write_report"]


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def render_report(index: dict) -> str:
    lines = [
        f"# Surrogate quality — space `{index['space']}`",
        "",
        f"Fitted on table sha256 `{index.get('table_sha256', '?')}`; held-out split: "
        f"{index.get('test_fraction', 0):.0%} of the architectures, seed {index.get('split_seed')}. "
        "Every figure is measured on held-out architectures the model never saw (written by "
        "`hwlm fit` / `scripts/fit_surrogates.py`).",
        "",
        "R² is in the metric's units; τ = Kendall, ρ = Spearman; MAPE in %; coverage = share of held-out "
        "repeats inside the predicted 5–95 % interval (the quantile model's spread centred on the point "
        "prediction, widened by a split-conformal offset from the training split; ideal 0.90, noisy "
        "metrics only); HV ratio = "
        "hypervolume of the true values of the architectures the surrogate puts on its front over that of "
        "the true front (≤ 1, objectives in the last column). "
        "Metrics stored without repeats have no quantile model: the query API gives their 90 % interval as a split-conformal half-width from these held-out architectures' residuals (no coverage figure here, it is at least 0.90 by construction).",
        "",
        "| metric | device | setting | source of data | transform | n train | n test | depth / eta / rounds "
        "| R² | τ | ρ | MAPE % | coverage 90 % | HV ratio | objectives |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in index.get("models", []):
        q = m.get("quality", {})
        hp = m.get("hyperparameters", {})
        par = q.get("pareto") or {}
        lines.append(
            f"| {m['metric']} | {m.get('device') or '–'} | {m.get('setting') or '–'} | {m.get('target_source')} "
            f"| {m.get('transform', '–')} | {_fmt(m.get('n_train'))} | {_fmt(q.get('n_test'))} | {hp or '–'} "
            f"| {_fmt(q.get('r2'))} | {_fmt(q.get('kendall_tau'))} | {_fmt(q.get('spearman_rho'))} "
            f"| {_fmt(q.get('mape'), 1)} | {_fmt(q.get('coverage_90'))} | {_fmt(par.get('hv_ratio'))} "
            f"| {', '.join(par.get('objectives', [])) or '–'} |")
    if index.get("roofline"):
        lines += ["", "## Modeled devices: evaluated by the roofline model directly", "",
                  "These devices' `latency_ms` and `energy_mj` are outputs of the roofline and power model "
                  "(`benchmark/profiling/roofline.py`), a deterministic function of the architecture. No "
                  "surrogate is fitted for them: the query API evaluates the model itself, with the parameters "
                  "and spec sheet stored in the release, for profiled and unprofiled architectures alike "
                  "(source `modeled`, exact, no interval).", "",
                  "| device | settings | metrics | eff_compute / eff_memory / overhead µs / idle fraction |",
                  "| --- | --- | --- | --- |"]
        for dev, e in sorted(index["roofline"].items()):
            p = e.get("provenance", {}).get("roofline_params", {})
            metrics = sorted({m for units in e.get("metrics", {}).values() for m in units})
            par = (f"{p['eff_compute']:.3g} / {p['eff_memory']:.3g} / {p['overhead_s'] * 1e6:.3g} / "
                   f"{p['idle_fraction']:.3g}") if p else "–"
            lines.append(f"| {dev} | {', '.join(sorted(e.get('metrics', {})))} | {', '.join(metrics)} | {par} |")
    if index.get("missing"):
        lines += ["", "## Not fitted (no or too few values in the table)", "", "| metric | device | setting | reason |",
                  "| --- | --- | --- | --- |"]
        for m in index["missing"]:
            lines.append(f"| {m['metric']} | {m.get('device') or '–'} | {m.get('setting') or '–'} | {m['reason']} |")
    return "\n".join(lines) + "\n"


def write_report(surrogate_directory: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Render the report of ``<surrogate_directory>/index.json`` to ``out`` (atomically)."""
    from benchmark.files import write_text
    from surrogates.model import read_index

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, render_report(read_index(surrogate_directory)))
    return out
