"""Report of a results file: plots (matplotlib, Agg), a markdown summary and a self-contained HTML page.

Per suite, into ``DIR``:

* ``<suite>-hv-evals.png`` — hypervolume (normalised space, the suite's reference point) of
  everything evaluated so far vs evaluations; line = mean over seeds, band = ± standard error;
* ``<suite>-hv-time.png`` — the same against the simulated clock (hours, log axis): the value after
  the last evaluation finished by each time, runs that have not started count as 0;
* ``<suite>-igd-evals.png`` — IGD+ against the table's Pareto front (when the release has a table);
* ``<suite>-fronts.png`` — one panel per algorithm (and per pair of objectives for 3+): the
  non-dominated set of its median run (by final hypervolume) in real units, the other algorithms'
  median fronts in grey, the table's Pareto front dashed;
* ``<suite>-eaf.png`` — empirical attainment surfaces over seeds (2 objectives, normalised axes,
  zoomed to the attained region): median (50 %) bold, 25/75 % dashed, best (0 %) and worst
  (100 %) dotted;
* ``summary.md`` and ``report.html`` (the same content, plots embedded as base64: one file) — per
  algorithm: runs, evaluations, final hypervolume mean ± SE, IGD+ to the table's front and the share
  of that front found, the best value of each objective in its unit (mean over seeds), mean rank
  (per seed, by final hypervolume, 1 = best, ties averaged), the algorithms it beats (two-sided
  Mann–Whitney U test on final hypervolumes across seeds, Holm-corrected over all pairs, p < 0.05),
  simulated hours, wall seconds and the fraction of the loop spent in queries; then the pairwise
  p-values, the architectures on each algorithm's final front (median run) with their values and
  the source of each value, and the table's Pareto front.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.files import write_text
from benchmark.moo.indicators import at_times, attainment, igd_plus, igd_plus_curve, nondominated
from benchmark.moo.runner import load_results

__all__ = ["write_report", "summarise", "pairwise_tests", "ALPHA"]

ALPHA = 0.05  # family-wise error rate of the pairwise tests (Holm)
UNITS = {"perplexity": "", "token_accuracy": "", "params": "", "flops": "FLOPs", "latency_ms": "ms",
         "energy_mj": "mJ", "memory_mb": "MB"}
NAMES = {"perplexity": "perplexity", "token_accuracy": "token error", "params": "params", "flops": "FLOPs",
         "latency_ms": "latency", "energy_mj": "energy", "memory_mb": "memory"}


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    m = np.nanmean(x, axis=0)
    n = np.sum(np.isfinite(x), axis=0)
    sd = np.nanstd(x, axis=0, ddof=1) if x.shape[0] > 1 else np.zeros_like(m)
    return m, np.where(n > 1, sd / np.sqrt(np.maximum(n, 1)), 0.0)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest; ties get the average rank."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(values, dtype=float), method="average")


def _objectives(s: dict) -> list[dict]:
    return list(s["suite"]["objectives"])


def _short(o: dict) -> str:
    """``latency (ms)``: the metric's name and unit (token accuracy enters as its error)."""
    unit = UNITS.get(o["metric"], "")
    return NAMES.get(o["metric"], o["metric"]) + (f" ({unit})" if unit else "")


def _axis_label(o: dict) -> str:
    where = ", ".join(str(x) for x in (o.get("device"), o.get("setting")) if x)
    return _short(o) + (f"\n{where}" if where else "")


def pairwise_tests(final_hv: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Holm-corrected p-values of two-sided Mann–Whitney U tests between every pair of algorithms'
    final hypervolumes (one value per seed): ``{(a, b): p}`` for ``a < b``."""
    from scipy.stats import mannwhitneyu

    algs = sorted(a for a, v in final_hv.items() if len(v) >= 2)
    pairs = [(a, b) for i, a in enumerate(algs) for b in algs[i + 1:]]
    raw = []
    for a, b in pairs:
        x, y = np.asarray(final_hv[a], float), np.asarray(final_hv[b], float)
        raw.append(1.0 if np.array_equal(np.sort(x), np.sort(y)) else float(mannwhitneyu(x, y).pvalue))
    # Holm's step-down: sort ascending, multiply the k-th smallest by (n - k), keep it monotone
    order = np.argsort(raw, kind="stable")
    adj, running = np.empty(len(raw)), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(raw) - k) * raw[i]))
        adj[i] = running
    return {p: float(v) for p, v in zip(pairs, adj)}


def _table_front(s: dict, bench) -> tuple[np.ndarray | None, list[str]]:
    """The table's Pareto front of the suite's objectives: raw (minimised) values and ids."""
    if bench is None or getattr(bench, "table", None) is None:
        return None, []
    objs = _objectives(s)
    df = bench.pareto_front([(o["metric"], o.get("device"), o.get("setting")) for o in objs])
    F = np.column_stack([np.asarray(df.iloc[:, 1 + j], dtype=float) for j in range(len(objs))])
    F = np.where(np.array([o["metric"] == "token_accuracy" for o in objs]), 1.0 - F, F)
    return F, [str(i) for i in df["id"]]


def _normalise(s: dict, F: np.ndarray) -> np.ndarray:
    from benchmark.moo.indicators import normalise_objectives
    from benchmark.moo.suites import Suite

    d = s["suite"]
    return normalise_objectives(Suite.from_dict(d["name"], {k: v for k, v in d.items() if k not in ("name", "version")}), F)


def summarise(s: dict, front: np.ndarray | None = None, front_ids: list[str] | None = None) -> list[dict]:
    """Per-algorithm summary rows of one suite of a results file; ``front`` (normalised) and
    ``front_ids``: the table's Pareto front (default: the results file's reference front, no ids)."""
    runs = s["runs"]
    front = s.get("reference_front") if front is None else front
    rows = []
    common = sorted(set.intersection(*[set(r) for r in runs.values()])) if runs else []
    rank_sum = {a: [] for a in runs}
    for seed in common:
        algs = sorted(runs)
        rk = _ranks([runs[a][seed]["hypervolume"][-1] for a in algs])
        for a, r in zip(algs, rk):
            rank_sum[a].append(r)
    final = {a: np.array([r["hypervolume"][-1] for r in runs[a].values()]) for a in runs}
    tests = pairwise_tests(final)
    for a in sorted(runs):
        rs = [runs[a][k] for k in sorted(runs[a])]
        hv = final[a]
        m, se = _mean_se(hv[:, None])
        beats = sorted(b for (x, y), p in tests.items() if p < ALPHA and a in (x, y)
                       for b in [y if x == a else x] if np.median(hv) > np.median(final[b]))
        row = {"algorithm": a, "runs": len(rs), "evaluations": int(np.mean([len(r["ids"]) for r in rs])),
               "hv_mean": float(m[0]), "hv_se": float(se[0]),
               "mean_rank": float(np.mean(rank_sum[a])) if rank_sum[a] else float("nan"),
               "best": np.mean([np.min(r["objectives"], axis=0) for r in rs], axis=0).tolist(),
               "beats": beats,
               "sim_hours": float(np.mean([r["clock_s"][-1] for r in rs]) / 3600),
               "wall_s": float(np.mean([r["wall_s"] for r in rs])),
               "query_fraction": float(np.sum([r["query_s"] for r in rs]) / max(np.sum([r["wall_s"] for r in rs]), 1e-12)),
               "igd_mean": float("nan"), "igd_se": float("nan"), "found_mean": float("nan")}
        if front is not None and len(front):
            ig = np.array([igd_plus(r["normalised"], front) for r in rs])
            m, se = _mean_se(ig[:, None])
            row["igd_mean"], row["igd_se"] = float(m[0]), float(se[0])
        if front_ids:
            row["found_mean"] = float(np.mean([len(set(front_ids) & set(r["ids"])) / len(front_ids) for r in rs]))
        rows.append(row)
    return rows


def _median_run(rs: list[dict]) -> dict:
    return rs[int(np.argsort([r["hypervolume"][-1] for r in rs], kind="stable")[len(rs) // 2])]


def _front_rows(run: dict) -> list[int]:
    """Indices of the evaluations on the run's final non-dominated set (first occurrence of each id)."""
    import moocore

    F = np.asarray(run["objectives"], float)
    first = sorted({i: k for k, i in reversed(list(enumerate(run["ids"])))}.values())
    keep = np.asarray(moocore.is_nondominated(F[first], keep_weakly=True), dtype=bool)
    rows = [k for k, ok in zip(first, keep) if ok]
    return sorted(rows, key=lambda k: tuple(F[k]))


def _sources(s: dict, bench, ids: list[str]) -> dict[str, list[str]]:
    """The query API's source of each objective value of ``ids`` (table, surrogate, modeled, exact)."""
    if bench is None or not ids:
        return {i: ["?"] * len(_objectives(s)) for i in ids}
    out = {}
    mode = s["suite"].get("mode", "auto")
    for i in ids:
        src = []
        for o in _objectives(s):
            try:
                r = bench.query(i, metrics=[o["metric"]], device=o.get("device"), setting=o.get("setting"),
                                mode=mode, intervals=False)
                src.append(str(r.sources[o["metric"]]))
            except ValueError:  # the release changed since the run: say so rather than guess
                src.append("?")
        out[i] = src
    return out


def _fmt(v: float) -> str:
    v = float(v)
    if not np.isfinite(v):
        return "–"
    if abs(v) >= 1e5:
        return f"{v:.3g}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.4f}"


# ---------------------------------------------------------------------------- output: markdown + HTML
class _Doc:
    """The report as blocks, written both as markdown and as one self-contained HTML page."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (head, rows)))

    def image(self, path: Path) -> None:
        self.blocks.append(("img", path))

    def markdown(self) -> str:
        out = []
        for kind, b in self.blocks:
            if kind == "h":
                out += ["#" * b[0] + " " + b[1], ""]
            elif kind == "p":
                out += [b, ""]
            elif kind == "table":
                head, rows = b
                out += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
                out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
            elif kind == "img":
                out += [f"![{b.stem}]({b.name})", ""]
        return "\n".join(out)

    def html(self) -> str:
        import re

        def inline(t: str) -> str:
            t = html.escape(t)
            t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
            return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)

        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>MOO benchmark report</title>",
               "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
               "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
               "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eee}"
               "img{max-width:100%}code{background:#f4f4f4}</style></head><body>"]
        for kind, b in self.blocks:
            if kind == "h":
                out.append(f"<h{b[0]}>{inline(b[1])}</h{b[0]}>")
            elif kind == "p":
                out.append(f"<p>{inline(b)}</p>")
            elif kind == "table":
                head, rows = b
                out.append("<table><tr>" + "".join(f"<th>{inline(h)}</th>" for h in head) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "img":
                data = base64.b64encode(b.read_bytes()).decode("ascii")
                out.append(f"<p><img alt='{html.escape(b.stem)}' src='data:image/png;base64,{data}'></p>")
        out.append("</body></html>")
        return "\n".join(out)


def _open_release(s: dict):
    """The release the runs queried, for the table's front and the sources of values (None if gone)."""
    from benchmark import Benchmark

    try:
        return Benchmark(space=s["suite"]["space"], path=s.get("release") or None)
    except (ValueError, OSError):
        return None


# ---------------------------------------------------------------------------- plots
def _plot_band(ax, x, Y, label, **kw):
    m, se = _mean_se(Y)
    (line,) = ax.plot(x, m, label=label, lw=1.5, **kw)
    ax.fill_between(x, m - se, m + se, color=line.get_color(), alpha=0.2, lw=0)


def _save(fig, path: Path, plots: list) -> None:
    from benchmark.plotting import save_figure

    plots.append(save_figure(fig, path))


def _staircase(ax, P, ref, **kw):
    """A 2-D attainment surface (minimisation) as a staircase closed at the reference point."""
    P = P[np.all(P < ref, axis=1)] if len(P) else P
    if len(P) == 0:
        return None
    P = P[np.argsort(P[:, 0], kind="stable")]
    xs = np.concatenate([[P[0, 0]], P[:, 0], [ref[0]]])
    ys = np.concatenate([[ref[1]], P[:, 1], [P[-1, 1]]])
    return ax.step(xs, ys, where="post", **kw)


def _front_line(ax, P, i, j, **kw):
    P = nondominated(np.asarray(P)[:, [i, j]])
    P = P[np.argsort(P[:, 0])]
    ax.step(P[:, 0], P[:, 1], where="post", **kw)


def _plot_fronts(plt, sname, s, runs, table_F, out, plots):
    from matplotlib.ticker import FuncFormatter

    objs = _objectives(s)
    m = len(objs)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    algs = sorted(runs)
    medians = {a: np.asarray(_median_run(list(runs[a].values()))["objectives"], float) for a in algs}
    if m == 2:
        ncol = min(4, len(algs))
        nrow = (len(algs) + ncol - 1) // ncol
        panels = [(k // ncol, k % ncol, a, 0) for k, a in enumerate(algs)]
    else:  # one row per algorithm, one column per pair of objectives
        nrow, ncol = len(algs), len(pairs)
        panels = [(r, c, a, c) for r, a in enumerate(algs) for c in range(len(pairs))]
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False)
    for r, c, a, p in panels:
        ax = axes[r][c]
        i, j = pairs[p]
        for b in algs:
            if b != a:
                _front_line(ax, medians[b], i, j, color="0.8", lw=0.8)
        if table_F is not None and len(table_F):
            _front_line(ax, table_F, i, j, color="k", ls="--", lw=0.9, label="table's Pareto front")
        _front_line(ax, medians[a], i, j, color="C3", lw=1.6, marker="o", ms=3, label=f"{a} (median run)")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 60, not 6 x 10^1
        for axis, o, set_scale in ((ax.xaxis, objs[i], ax.set_xscale), (ax.yaxis, objs[j], ax.set_yscale)):
            set_scale("log" if o.get("log") else "linear")
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
        ax.set_title(a if m == 2 or p == 0 else "", fontsize=9, loc="left")
        if r == nrow - 1 or m > 2 or r * ncol + c + ncol >= len(panels):
            ax.set_xlabel(_axis_label(objs[i]), fontsize=7)
        if c == 0 or m > 2:
            ax.set_ylabel(_axis_label(objs[j]), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    for k in range(len(panels), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle(f"{sname}: non-dominated set of each algorithm's median run (red), other algorithms (grey)",
                 fontsize=9)
    _save(fig, out / f"{sname}-fronts.png", plots)


def _plot_eaf(plt, sname, s, runs, ref, out, plots):
    objs = _objectives(s)
    algs = sorted(runs)
    ncol = min(4, len(algs))
    nrow = (len(algs) + ncol - 1) // ncol
    surfs = {a: attainment([r["normalised"] for r in runs[a].values()]) for a in algs}
    pts = np.vstack([p for sf in surfs.values() for p in sf.values() if len(p)] or [np.zeros((1, 2))])
    pts = pts[np.all(pts < ref, axis=1)]
    lo = pts.min(axis=0) if len(pts) else np.zeros(2)
    hi = np.minimum(pts.max(axis=0), ref) if len(pts) else ref
    pad = 0.05 * np.maximum(hi - lo, 1e-3)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False, sharex=True, sharey=True,
                            )
    for k, a in enumerate(algs):
        ax = axes[k // ncol][k % ncol]
        for pct, style in ((0.0, dict(ls=":", lw=1.0)), (25.0, dict(ls="--", lw=0.9)), (50.0, dict(ls="-", lw=2.0)),
                           (75.0, dict(ls="--", lw=0.9)), (100.0, dict(ls=":", lw=1.0))):
            if len(surfs[a].get(pct, [])):
                _staircase(ax, surfs[a][pct], ref, color="C0", label=f"{pct:.0f} %", **style)
        ax.set_title(f"{a} ({len(runs[a])} seeds)", fontsize=9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for k in range(len(algs), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=6)
    fig.supxlabel(f"{_short(objs[0])}, normalised (0 = {_fmt(objs[0]['bounds'][0])}, 1 = {_fmt(objs[0]['bounds'][1])}"
                  f"{', log' if objs[0].get('log') else ''})", fontsize=8)
    fig.supylabel(f"{_short(objs[1])}, normalised (0 = {_fmt(objs[1]['bounds'][0])}, 1 = {_fmt(objs[1]['bounds'][1])}"
                  f"{', log' if objs[1].get('log') else ''})", fontsize=8)
    fig.suptitle(f"{sname}: empirical attainment surfaces (median bold; 25/75 % dashed; best/worst dotted), "
                 "zoomed to the attained region", fontsize=9)
    _save(fig, out / f"{sname}-eaf.png", plots)


# ---------------------------------------------------------------------------- the report
def write_report(results: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the plots, ``summary.md`` and ``report.html`` of ``results`` into ``out``; returns
    ``{"summary", "html", "plots"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    content = load_results(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    doc = _Doc()
    doc.heading(1, "MOO benchmark report")
    doc.para(f"Results: `{results}`")
    for sname, s in content.items():
        _suite_section(doc, plt, sname, s, out, plots)
    summary = write_text(out / "summary.md", doc.markdown() + "\n")
    page = write_text(out / "report.html", doc.html() + "\n")
    return {"summary": summary, "html": page, "plots": plots}


def _suite_section(doc: "_Doc", plt, sname: str, s: dict, out: Path, plots: list[Path]) -> None:
    """One suite: its description, plots, summary table, pairwise tests and fronts."""
    suite, labels, runs = s["suite"], s["labels"], s["runs"]
    objs = _objectives(s)
    ref = np.asarray(suite["reference_point"], dtype=float)
    doc.heading(2, f"Suite `{sname}`")
    doc.para(suite.get("description", ""))
    doc.para(f"Objectives (minimised): {', '.join(f'`{l}`' for l in labels)}; normalised to the suite's bounds "
             + "; ".join(f"{_short(o)} {_fmt(o['bounds'][0])}–{_fmt(o['bounds'][1])}{' (log)' if o.get('log') else ''}"
                         for o in objs)
             + f"; hypervolume reference point {ref.tolist()} (normalised); budget {suite['budget']}; "
             f"mode `{suite['mode']}`; candidates `{suite['candidates']}`; noise {suite['noise']}; "
             f"release `{s.get('release') or 'embedded'}`.")
    if not runs:
        doc.para("No finished runs.")
        return
    bench = _open_release(s)
    table_F, table_ids = _table_front(s, bench)
    front = _normalise(s, table_F) if table_F is not None and len(table_F) else s.get("reference_front")
    _curve_plots(plt, sname, runs, front, out, plots)
    _plot_fronts(plt, sname, s, runs, table_F, out, plots)
    if len(objs) == 2:
        _plot_eaf(plt, sname, s, runs, ref, out, plots)
    _summary_table(doc, s, objs, front, table_ids)
    _tests_table(doc, runs)
    doc.heading(3, "Plots")
    for q in plots:
        if q.name.startswith(f"{sname}-"):
            doc.image(q)
    _front_tables(doc, s, bench, runs, objs, table_F, table_ids)


def _curve_plots(plt, sname: str, runs: dict, front, out: Path, plots: list[Path]) -> None:
    """Hypervolume against evaluations and simulated time; IGD+ against evaluations."""

    def curves(fname, x, per_run, **axset):
        """One line (mean) and band (± SE) per algorithm of ``per_run(run)`` against ``x``."""
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for k, a in enumerate(sorted(runs)):
            Y = np.array([per_run(r) for r in runs[a].values()])
            _plot_band(ax, x(Y), Y, f"{a} ({len(Y)})", ls="-" if k < 10 else "--")
        ax.set(**axset)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
        _save(fig, out / f"{sname}-{fname}.png", plots)

    evals = lambda Y: np.arange(1, Y.shape[1] + 1)  # noqa: E731
    curves("hv-evals", evals, lambda r: r["hypervolume"], xlabel="evaluations",
           ylabel="hypervolume (normalised space)", title=f"{sname}: hypervolume vs evaluations")
    tmax = max(r["clock_s"][-1] for rr in runs.values() for r in rr.values())
    tmin = min(r["clock_s"][0] for rr in runs.values() for r in rr.values())
    grid = np.geomspace(max(tmin, 1e-3), max(tmax, tmin * 1.01, 1e-3 * 1.01), 200)
    curves("hv-time", lambda Y: grid / 3600,
           lambda r: np.nan_to_num(at_times(r["hypervolume"], r["clock_s"], grid), nan=0.0),
           xscale="log", xlabel="simulated profiling time (hours)", ylabel="hypervolume (normalised space)",
           title=f"{sname}: hypervolume vs simulated time")
    if front is not None and len(front):
        curves("igd-evals", evals, lambda r: igd_plus_curve(r["normalised"], front), yscale="log",
               xlabel="evaluations", ylabel="IGD+ to the table's Pareto front (normalised space)",
               title=f"{sname}: IGD+ vs evaluations")


def _summary_table(doc: "_Doc", s: dict, objs: list, front, table_ids: list) -> None:
    """Per algorithm: hypervolume, IGD+, share of the table's front found, best values, ranks, tests."""
    rows = summarise(s, front, table_ids)
    has_front = front is not None and len(front)
    head = ["algorithm", "runs", "evaluations", "final hypervolume (mean ± SE)"]
    head += ["IGD+ (mean ± SE)", "table front found"] if has_front else []
    head += [f"best {_short(o)}" for o in objs]
    head += ["mean rank", f"beats (Holm p < {ALPHA})", "simulated hours", "wall s", "query fraction"]
    body = []
    for r in sorted(rows, key=lambda r: (r["mean_rank"] if np.isfinite(r["mean_rank"]) else 1e9, -r["hv_mean"])):
        row = [r["algorithm"], str(r["runs"]), str(r["evaluations"]), f"{r['hv_mean']:.4f} ± {r['hv_se']:.4f}"]
        if has_front:
            row += [f"{r['igd_mean']:.4f} ± {r['igd_se']:.4f}",
                    "–" if not np.isfinite(r["found_mean"]) else f"{r['found_mean']:.0%}"]
        row += [_fmt(v) for v in r["best"]]
        row += [f"{r['mean_rank']:.2f}", ", ".join(r["beats"]) or "–", f"{r['sim_hours']:.2f}",
                f"{r['wall_s']:.2f}", f"{r['query_fraction']:.1%}"]
        body.append(row)
    doc.table(head, body)
    doc.para("Hypervolume and IGD+ are computed in the normalised space; best values are the minimum over a "
             "run's evaluations in the objective's unit, mean over seeds. \"Table front found\": share of the "
             f"table's {len(table_ids)} Pareto-optimal architectures among a run's evaluations, mean over seeds. "
             "\"Beats\": a two-sided Mann–Whitney U test on the final hypervolumes over seeds rejects equality "
             f"after Holm's correction over all pairs (family-wise error {ALPHA}), and the median is higher.")


def _tests_table(doc: "_Doc", runs: dict) -> None:
    """The matrix of Holm-corrected pairwise p-values on the final hypervolumes."""
    final = {a: np.array([r["hypervolume"][-1] for r in runs[a].values()]) for a in runs}
    tests = pairwise_tests(final)
    if not tests:
        return
    algs = sorted({a for pair in tests for a in pair})
    doc.heading(3, "Pairwise tests (Holm-corrected p-values, final hypervolume)")
    mat = []
    for a in algs:
        cells = []
        for b in algs:
            p = tests.get((a, b), tests.get((b, a)))
            cells.append("–" if p is None else (f"**{p:.3g}**" if p < ALPHA else f"{p:.3g}"))
        mat.append([a] + cells)
    doc.table([""] + algs, mat)


def _front_tables(doc: "_Doc", s: dict, bench, runs: dict, objs: list, table_F, table_ids: list) -> None:
    """The architectures on each algorithm's final front (median run), and the table's front."""
    doc.heading(3, "Final fronts (median run of each algorithm)")
    units = [_short(o) for o in objs]
    fr_rows, all_ids = [], []
    for a in sorted(runs):
        med = _median_run(list(runs[a].values()))
        for k in _front_rows(med):
            fr_rows.append((a, med["ids"][k], np.asarray(med["objectives"][k], float)))
            all_ids.append(med["ids"][k])
    srcs = _sources(s, bench, sorted(set(all_ids) | set(table_ids)))
    in_table = set(table_ids)
    doc.table(["algorithm", "architecture"] + units + ["sources", "on the table's front"],
              [[a, f"`{i}`"] + [_fmt(v) for v in F] + [", ".join(srcs[i]), "yes" if i in in_table else "no"]
               for a, i, F in fr_rows])
    if table_F is not None and len(table_F):
        doc.heading(3, f"The table's Pareto front ({len(table_ids)} architectures)")
        doc.table(["architecture"] + units + ["sources"],
                  [[f"`{i}`"] + [_fmt(v) for v in F] + [", ".join(srcs[i])] for i, F in zip(table_ids, table_F)])
