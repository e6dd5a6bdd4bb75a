"""Report of a results file: plots (matplotlib, Agg) and a markdown summary.

Per suite, into ``DIR``:

* ``<suite>-hv-evals.png`` — hypervolume (normalised space, the suite's reference point) of
  everything evaluated so far vs evaluations; line = mean over seeds, band = ± standard error;
* ``<suite>-hv-time.png`` — the same against the simulated clock (hours, log axis): the value after
  the last evaluation finished by each time, runs that have not started count as 0;
* ``<suite>-igd-evals.png`` — IGD+ against the table's best-known front (table-mode suites only);
* ``<suite>-fronts.png`` — the non-dominated set of each algorithm's median run (by final
  hypervolume), in normalised objectives (every pair of objectives for 3+ objectives), with the
  best-known front when there is one;
* ``<suite>-eaf.png`` — empirical attainment surfaces over seeds (2 objectives): median (50 %)
  bold, 25/75 % dashed, best (0 %) and worst (100 %) dotted;
* ``summary.md`` — per algorithm: runs, evaluations, final hypervolume mean ± SE, IGD+ mean ± SE,
  mean rank (per seed, by final hypervolume, 1 = best, ties averaged), simulated hours, wall seconds
  and the fraction of the loop spent in benchmark queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.moo.indicators import at_times, attainment, igd_plus_curve, nondominated
from benchmark.moo.runner import load_results

__all__ = ["write_report", "summarise"]


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


def summarise(s: dict) -> list[dict]:
    """Per-algorithm summary rows of one suite of a results file."""
    runs = s["runs"]
    front = s.get("reference_front")
    rows = []
    common = sorted(set.intersection(*[set(r) for r in runs.values()])) if runs else []
    rank_sum = {a: [] for a in runs}
    for seed in common:
        algs = sorted(runs)
        rk = _ranks([runs[a][seed]["hypervolume"][-1] for a in algs])
        for a, r in zip(algs, rk):
            rank_sum[a].append(r)
    for a in sorted(runs):
        rs = [runs[a][k] for k in sorted(runs[a])]
        hv = np.array([r["hypervolume"][-1] for r in rs])
        m, se = _mean_se(hv[:, None])
        row = {"algorithm": a, "runs": len(rs), "evaluations": int(np.mean([len(r["ids"]) for r in rs])),
               "hv_mean": float(m[0]), "hv_se": float(se[0]),
               "mean_rank": float(np.mean(rank_sum[a])) if rank_sum[a] else float("nan"),
               "sim_hours": float(np.mean([r["clock_s"][-1] for r in rs]) / 3600),
               "wall_s": float(np.mean([r["wall_s"] for r in rs])),
               "query_fraction": float(np.sum([r["query_s"] for r in rs]) / max(np.sum([r["wall_s"] for r in rs]), 1e-12)),
               "igd_mean": float("nan"), "igd_se": float("nan")}
        if front is not None and len(front):
            from benchmark.moo.indicators import igd_plus

            ig = np.array([igd_plus(r["normalised"], front) for r in rs])
            m, se = _mean_se(ig[:, None])
            row["igd_mean"], row["igd_se"] = float(m[0]), float(se[0])
        rows.append(row)
    return rows


def _plot_band(ax, x, Y, label):
    m, se = _mean_se(Y)
    (line,) = ax.plot(x, m, label=label, lw=1.5)
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


def write_report(results: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the plots and ``summary.md`` of ``results`` into ``out``; returns ``{"summary", "plots"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    content = load_results(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    md = ["# MOO benchmark report", "", f"Results: `{results}`", ""]
    for sname, s in content.items():
        suite, labels, runs = s["suite"], s["labels"], s["runs"]
        ref = np.asarray(suite["reference_point"], dtype=float)
        front = s.get("reference_front")
        md += [f"## Suite `{sname}`", "", suite.get("description", ""), "",
               f"Objectives (minimised, normalised to the suite's bounds): {', '.join(f'`{l}`' for l in labels)}; "
               f"reference point {ref.tolist()}; budget {suite['budget']}; mode `{suite['mode']}`; "
               f"candidates `{suite['candidates']}`; noise {suite['noise']}; release `{s.get('release') or 'embedded'}`.", ""]
        if not runs:
            md += ["No finished runs.", ""]
            continue
        def curves(fname, x, per_run, **axset):
            """One line (mean) and band (± SE) per algorithm of ``per_run(run)`` against ``x``."""
            fig, ax = plt.subplots(figsize=(6, 4))
            for a in sorted(runs):
                Y = np.array([per_run(r) for r in runs[a].values()])
                _plot_band(ax, x(Y), Y, f"{a} ({len(Y)})")
            ax.set(**axset)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            _save(fig, out / f"{sname}-{fname}.png", plots)

        evals = lambda Y: np.arange(1, Y.shape[1] + 1)  # noqa: E731
        curves("hv-evals", evals, lambda r: r["hypervolume"], xlabel="evaluations",
               ylabel="hypervolume (normalised)", title=f"{sname}: hypervolume vs evaluations")
        tmax = max(r["clock_s"][-1] for rr in runs.values() for r in rr.values())
        tmin = min(r["clock_s"][0] for rr in runs.values() for r in rr.values())
        grid = np.geomspace(max(tmin, 1e-3), max(tmax, tmin * 1.01, 1e-3 * 1.01), 200)
        curves("hv-time", lambda Y: grid / 3600,
               lambda r: np.nan_to_num(at_times(r["hypervolume"], r["clock_s"], grid), nan=0.0),
               xscale="log", xlabel="simulated profiling time (hours)", ylabel="hypervolume (normalised)",
               title=f"{sname}: hypervolume vs simulated time")
        if front is not None and len(front):
            curves("igd-evals", evals, lambda r: igd_plus_curve(r["normalised"], front), yscale="log",
                   xlabel="evaluations", ylabel="IGD+ to the table's front", title=f"{sname}: IGD+ vs evaluations")
        # Pareto fronts of the median run
        m = len(labels)
        pairs = [(0, j) for j in range(1, m)] if m > 2 else [(0, 1)]
        fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
        for a in sorted(runs):
            rs = list(runs[a].values())
            med = rs[int(np.argsort([r["hypervolume"][-1] for r in rs])[len(rs) // 2])]
            nd = nondominated(med["normalised"])
            for ax, (i, j) in zip(axes[0], pairs):
                P = nondominated(nd[:, [i, j]])
                P = P[np.argsort(P[:, 0])]
                ax.plot(P[:, 0], P[:, 1], "o-", ms=3, lw=0.8, label=a, drawstyle="steps-post")
        for ax, (i, j) in zip(axes[0], pairs):
            if front is not None and len(front):
                P = nondominated(np.asarray(front)[:, [i, j]])
                P = P[np.argsort(P[:, 0])]
                ax.plot(P[:, 0], P[:, 1], "k--", lw=1, label="best known (table)", drawstyle="steps-post")
            ax.set(xlabel=f"{labels[i]} (normalised)", ylabel=f"{labels[j]} (normalised)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{sname}: non-dominated set of the median run (normalised)", fontsize=9)
        _save(fig, out / f"{sname}-fronts.png", plots)
        # EAF (2 objectives)
        if m == 2:
            algs = sorted(runs)
            ncol = min(4, len(algs))
            nrow = (len(algs) + ncol - 1) // ncol
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False, sharex=True,
                                     sharey=True)
            for k, a in enumerate(algs):
                ax = axes[k // ncol][k % ncol]
                surf = attainment([r["normalised"] for r in runs[a].values()])
                for pct, style in ((0.0, dict(ls=":", lw=0.8)), (25.0, dict(ls="--", lw=0.8)),
                                   (50.0, dict(ls="-", lw=2.0)), (75.0, dict(ls="--", lw=0.8)),
                                   (100.0, dict(ls=":", lw=0.8))):
                    if len(surf.get(pct, [])):
                        _staircase(ax, surf[pct], ref, color="C0", label=f"{pct:.0f} %", **style)
                ax.set_title(f"{a} ({len(runs[a])} seeds)", fontsize=9)
                ax.grid(alpha=0.3)
            for k in range(len(algs), nrow * ncol):
                axes[k // ncol][k % ncol].axis("off")
            axes[0][0].legend(fontsize=6)
            fig.supxlabel(labels[0])
            fig.supylabel(labels[1])
            fig.suptitle(f"{sname}: empirical attainment surfaces (median bold; 25/75 % dashed; best/worst dotted)",
                         fontsize=9)
            _save(fig, out / f"{sname}-eaf.png", plots)
        # summary table
        rows = summarise(s)
        has_igd = front is not None and len(front)
        head = "| algorithm | runs | evaluations | final hypervolume (mean ± SE) |" + (
            " IGD+ (mean ± SE) |" if has_igd else "") + " mean rank | simulated hours | wall s | query fraction |"
        md += [head, "|" + " --- |" * (head.count("|") - 1)]
        for r in sorted(rows, key=lambda r: (r["mean_rank"] if np.isfinite(r["mean_rank"]) else 1e9, -r["hv_mean"])):
            md.append(f"| {r['algorithm']} | {r['runs']} | {r['evaluations']} | {r['hv_mean']:.4f} ± {r['hv_se']:.4f} |"
                      + (f" {r['igd_mean']:.4f} ± {r['igd_se']:.4f} |" if has_igd else "")
                      + f" {r['mean_rank']:.2f} | {r['sim_hours']:.2f} | {r['wall_s']:.2f} | {r['query_fraction']:.1%} |")
        md += ["", "Plots: " + ", ".join(f"[{q.name}]({q.name})" for q in plots if q.name.startswith(f"{sname}-")), ""]
    summary = out / "summary.md"
    tmp = summary.with_name(f".{summary.name}.tmp")
    tmp.write_text("\n".join(md) + "\n")
    tmp.replace(summary)
    return {"summary": summary, "plots": plots}
