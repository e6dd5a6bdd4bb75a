"""Leave-one-device-out validation of ``hwlm device add`` (bring your own device).

    taskset -c 1 python scripts/byod_validation.py --out docs/byod_validation.json --plot docs/byod_validation.png

Every measured device D of the release is hidden in turn: its surrogates leave the reference
columns, and a modeled device calibrated on D's timings contributes its kind's uncalibrated
roofline instead. For each K, design and seed, K of D's table rows are drawn exactly as
``hwlm device add`` draws them (their measured medians stand in for a fresh measurement); every
method of :mod:`surrogates.transfer` is fitted on them, plus ``selected`` (the method the
command would ship: least cross-validated error on the K rows); predictions are scored on all
of D's other rows: Kendall tau, Spearman rho, MAPE, and the hypervolume ratio of the
perplexity-vs-latency front picked by the predictions (evaluated at the true latencies) to the
true front. ``noise ceiling``: tau between the medians of D's even and odd repeats.

``--modeled N`` adds a sanity check, labelled as such: the same procedure with N modeled devices
held out (their "measurements" are a roofline model, so the roofline method is near exact there).
Writes a JSON file with the aggregated table (``--runs``: and every run); ``--markdown`` prints
the tables for docs/devices.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

KS = (5, 10, 20, 30, 50, 100)
METHODS_SHOWN = ("flops", "roofline", "xgboost", "transfer", "selected")


def hv_ratio(ppl: np.ndarray, true_ms: np.ndarray, pred_ms: np.ndarray) -> float:
    """HV of the rows non-dominated under (perplexity, predicted latency), at their true latencies,
    over the HV of the true front; objectives min-max normalised, reference point 1.1."""
    import moocore

    F = np.column_stack([ppl, true_ms])
    lo, hi = F.min(0), F.max(0)
    F = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = np.array([1.1, 1.1])
    true_hv = moocore.hypervolume(F[moocore.is_nondominated(F)], ref=ref)
    picked = moocore.is_nondominated(np.column_stack([ppl, pred_ms]))
    return float(moocore.hypervolume(F[picked], ref=ref) / true_hv)


def own_spec(table, device: str, kind: str, setting: str) -> dict:
    """The spec-sheet provenance of a held-out device (what hwlm device add reads of this machine)."""
    from benchmark.profiling.devices import match_registry
    from benchmark.profiling.modeled import modeled_provenance
    from benchmark.profiling.roofline import DEFAULT_PARAMS
    from surrogates.transfer import cpu_spec_provenance

    prov = table.provenance(device)
    if table.devices()[device]["source"] == "modeled":  # sanity check: its own spec, uncalibrated
        p = dict(prov)
        p["roofline_params"] = DEFAULT_PARAMS[kind].__dict__.copy()
        return p
    if kind == "gpu":
        spec = match_registry(str(prov.get("gpu_name", "")))
        if spec is None:
            raise SystemExit(f"GPU {prov.get('gpu_name')!r} of {device} matches no registry entry")
        return modeled_provenance(spec, DEFAULT_PARAMS["gpu"], "uncalibrated defaults", setting.rsplit("-", 1)[1])
    return cpu_spec_provenance(str(prov.get("cpu_model", "")), int(prov.get("torch_threads") or 1))


def validate_device(bench, device: str, ks, seeds, designs, log) -> tuple[list[dict], dict]:
    from scipy import stats

    from benchmark.byod import choose_rows, design_scores, fit_device, setting_inputs
    from surrogates.transfer import predict_log, scores

    t = bench.table
    kind = bench.catalog.devices[device]["kind"]
    settings = [s for s in t.settings(device) if "latency_ms" in t.hardware_metrics(device, s)]
    rep = {s: np.asarray(t.hardware(device, s, "latency_ms"), np.float64) for s in settings}
    truth = {s: np.nanmedian(rep[s], 1) for s in settings}
    ok = np.all([np.isfinite(truth[s]) for s in settings], 0)
    rows_ok = np.flatnonzero(ok)
    enc = np.asarray(t.encodings)[rows_ok]
    ppl = np.asarray(t.metric("perplexity"), np.float64)[rows_ok]
    spec = own_spec(t, device, kind, settings[0])
    inputs = {s: setting_inputs(bench, s, int(t.setting_attrs(device, s).get("decode_tokens", 16)), enc, spec,
                                exclude=[device], uncalibrated_from=[device]) for s in settings}
    ceiling = {}
    for s in settings:
        a, b = np.nanmedian(rep[s][rows_ok][:, 0::2], 1), np.nanmedian(rep[s][rows_ok][:, 1::2], 1)
        good = np.isfinite(a) & np.isfinite(b)
        ceiling[s] = float(stats.kendalltau(a[good], b[good]).statistic) if good.sum() > 2 and rep[s].shape[1] > 1 \
            else None
    sc = design_scores([inp.refs for _, inp in inputs.values()])
    runs = []
    for design in designs:
        for k in ks:
            if k > len(rows_ok) - 2:
                continue
            for seed in seeds:
                t0 = time.monotonic()
                rows = choose_rows(sc, k, seed, design)
                test = np.setdiff1d(np.arange(len(rows_ok)), rows)
                fits = fit_device(inputs, rows, {s: truth[s][rows_ok][rows] for s in settings}, spec, seed)
                for f in fits:
                    s = f["setting"]
                    inp = inputs[s][1].take(test)
                    y = truth[s][rows_ok][test]
                    for m in METHODS_SHOWN:
                        method = f["method"] if m == "selected" else m
                        pred = np.exp(predict_log(method, f["models"][method], inp))
                        runs.append({"device": device, "source": t.devices()[device]["source"], "setting": s,
                                     "design": design, "k": k, "seed": seed, "method": m, "chosen": method,
                                     **scores(pred, y), "hv_ratio": hv_ratio(ppl[test], y, pred),
                                     "n_test": int(len(test))})
                log(f"{device} {design} K={k} seed={seed}: {time.monotonic() - t0:.1f} s; chosen "
                    f"{[f['method'] for f in fits]}")
    return runs, {"settings": settings, "noise_ceiling_tau": ceiling, "rows": int(len(rows_ok)),
                  "reference_columns": {s: [r["name"] for r in inputs[s][0]] for s in settings}}


def aggregate(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["source"], r["device"], r["setting"], r["design"], r["k"], r["method"]), []).append(r)
    out = []
    for (src, dev, st, design, k, m), rs in groups.items():
        e = {"source": src, "device": dev, "setting": st, "design": design, "k": k, "method": m, "seeds": len(rs)}
        for key in ("kendall_tau", "spearman_rho", "mape", "hv_ratio"):
            v = np.array([r[key] for r in rs])
            e[key] = float(v.mean())
            e[key + "_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        if m == "selected":
            e["chosen"] = {c: sum(r["chosen"] == c for r in rs) for c in sorted({r["chosen"] for r in rs})}
        out.append(e)
    return out


def summary_table(summary: dict, k: int) -> str:
    """One row per measured device and setting: Kendall tau of every method at ``k`` (stratified
    design), the noise ceiling, the shipped model's MAPE and what it chose."""
    agg = [e for e in summary["aggregate"] if e["source"] == "measured" and e["design"] == "stratified"
           and e["k"] == k]
    lines = [f"Kendall τ on the held-out rows at K = {k} (stratified design, mean over {summary['seeds']} seeds); "
             f"best baseline = the better of FLOPs scaling and the calibrated roofline\n",
             "| held-out device | setting | split-half τ | " + " | ".join(METHODS_SHOWN)
             + " | selected − best baseline | selected MAPE % | chosen |", "|" + " --- |" * (len(METHODS_SHOWN) + 6)]
    for dev, st in sorted({(e["device"], e["setting"]) for e in agg}):
        cell = {e["method"]: e for e in agg if (e["device"], e["setting"]) == (dev, st)}
        ceil = summary["devices"][dev]["noise_ceiling_tau"].get(st)
        sel = cell["selected"]
        gain = sel["kendall_tau"] - max(cell["flops"]["kendall_tau"], cell["roofline"]["kendall_tau"])
        lines.append(f"| {dev} | {st} | {'n/a' if ceil is None else f'{ceil:.3f}'} | "
                     + " | ".join(f"{cell[m]['kendall_tau']:.3f}" for m in METHODS_SHOWN)
                     + f" | {gain:+.3f} | {100 * sel['mape']:.1f} | "
                     + ", ".join(f"{c} {n}" for c, n in sel["chosen"].items()) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: dict) -> str:
    agg = summary["aggregate"]
    lines = []
    for src in ("measured", "modeled"):
        devs = sorted({e["device"] for e in agg if e["source"] == src})
        for dev in devs:
            label = "measured device held out" if src == "measured" else "SANITY CHECK, modeled device held out"
            lines.append(f"\n**{dev}** ({label}; {summary['devices'][dev]['rows']} rows; design stratified; "
                         f"mean ± sd over {summary['seeds']} seeds)\n")
            for st in summary["devices"][dev]["settings"]:
                ceil = summary["devices"][dev]["noise_ceiling_tau"].get(st)
                lines.append(f"\n`{st}` — Kendall τ on the held-out rows (noise ceiling: split-half τ "
                             f"{'n/a' if ceil is None else f'{ceil:.3f}'})\n")
                lines.append("| K | " + " | ".join(METHODS_SHOWN) + " | selected: ρ | MAPE % | HV ratio | chosen |")
                lines.append("|" + " --- |" * (len(METHODS_SHOWN) + 5))
                for k in summary["ks"]:
                    cell = {e["method"]: e for e in agg if e["device"] == dev and e["setting"] == st
                            and e["design"] == "stratified" and e["k"] == k}
                    if not cell:
                        continue
                    sel = cell["selected"]
                    taus = " | ".join(f"{cell[m]['kendall_tau']:.3f} ± {cell[m]['kendall_tau_sd']:.3f}"
                                      for m in METHODS_SHOWN)
                    lines.append(f"| {k} | {taus}" +
                                 f" | {sel['spearman_rho']:.3f} | {100 * sel['mape']:.1f} ± {100 * sel['mape_sd']:.1f}"
                                 f" | {sel['hv_ratio']:.3f} ± {sel['hv_ratio_sd']:.3f} | "
                                 + ", ".join(f"{c} {n}" for c, n in sel["chosen"].items()) + " |")
    if "random" in summary["designs"]:
        lines.append("\nDesign: Kendall τ of `selected`, stratified vs uniform (random) draws of the K rows, "
                     "measured devices\n")
        lines.append("| device | setting | " + " | ".join(f"K={k}" for k in summary["ks"]) + " |")
        lines.append("|" + " --- |" * (len(summary["ks"]) + 2))
        for e0 in sorted({(e["device"], e["setting"]) for e in agg if e["source"] == "measured"}):
            cells = []
            for k in summary["ks"]:
                v = {e["design"]: e["kendall_tau"] for e in agg if (e["device"], e["setting"]) == e0 and e["k"] == k
                     and e["method"] == "selected"}
                cells.append(f"{v.get('stratified', float('nan')):.3f} / {v.get('random', float('nan')):.3f}")
            lines.append(f"| {e0[0]} | {e0[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    agg = [e for e in summary["aggregate"] if e["source"] == "measured" and e["design"] == "stratified"]
    devices = sorted({e["device"] for e in agg})
    ncol = max(len({e["setting"] for e in agg if e["device"] == d}) for d in devices)
    # one row per held-out device, one column per setting
    fig, axes = plt.subplots(len(devices), ncol, figsize=(4.2 * ncol, 3.3 * len(devices)), squeeze=False)
    panels = [(ax, d, st) for r, d in enumerate(devices)
              for ax, st in zip(axes[r], sorted({e["setting"] for e in agg if e["device"] == d}))]
    for ax, dev, st in panels:
        for m in METHODS_SHOWN:
            es = sorted((e for e in agg if (e["device"], e["setting"], e["method"]) == (dev, st, m)),
                        key=lambda e: e["k"])
            ax.errorbar([e["k"] for e in es], [e["kendall_tau"] for e in es], [e["kendall_tau_sd"] for e in es],
                        label=m, marker="o", ms=3, capsize=2, lw=2.2 if m == "selected" else 1.0)
        ceil = summary["devices"][dev]["noise_ceiling_tau"].get(st)
        if ceil is not None:
            ax.axhline(ceil, color="grey", ls=":", lw=1, label="split-half τ")
        ax.set_xscale("log")
        ax.set_xticks(summary["ks"], [str(k) for k in summary["ks"]])
        ax.set_xlabel("K (architectures measured)")
        ax.set_ylabel("Kendall τ, held-out rows")
        ax.set_title(f"{dev}\n{st}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"hwlm device add, leave-one-device-out ({len(devices)} measured device(s); "
                 f"mean ± sd over {summary['seeds']} seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> int:
    from benchmark import Benchmark
    from benchmark.files import write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--release", default=None, help="release directory (default: the embedded one)")
    p.add_argument("--space", default="t")
    p.add_argument("--ks", type=int, nargs="+", default=list(KS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--designs", nargs="+", default=["stratified", "random"])
    p.add_argument("--modeled", type=int, default=0, help="also hold out N modeled devices (sanity check)")
    p.add_argument("--out", required=True, help="JSON with the aggregate (and with --runs every run)")
    p.add_argument("--runs", action="store_true", help="also store every single run in --out")
    p.add_argument("--plot", default=None, help="PNG: Kendall tau vs K per method")
    p.add_argument("--markdown", action="store_true", help="print the tables for docs/devices.md")
    p.add_argument("--summary-k", type=int, default=None, metavar="K",
                   help="with --markdown: print only the one-table summary at K (and the design table)")
    p.add_argument("--from-json", action="store_true", help="read --out (a finished validation) instead of "
                   "running one: redraw --plot and print --markdown from it")
    a = p.parse_args()

    if a.from_json:
        summary = json.loads(Path(a.out).read_text())
        if a.plot:
            plot(summary, Path(a.plot))
        if a.markdown:
            print(summary_table(summary, a.summary_k) if a.summary_k is not None else markdown(summary))
        return 0

    bench = Benchmark(a.space, a.release)
    devs = bench.table.devices()
    held = sorted(d for d, m in devs.items() if m["source"] == "measured")
    if a.modeled:
        modeled = sorted(d for d, m in devs.items() if m["source"] == "modeled")
        pick = np.random.default_rng(0).choice(len(modeled), min(a.modeled, len(modeled)), replace=False)
        held += [modeled[i] for i in sorted(pick)]
    runs, per_device = [], {}
    t0 = time.monotonic()
    for d in held:
        designs = a.designs if devs[d]["source"] == "measured" else ["stratified"]
        r, info = validate_device(bench, d, a.ks, list(range(a.seeds)), designs,
                                  lambda msg: print(msg, file=sys.stderr, flush=True))
        runs += r
        per_device[d] = info
    summary = {"release_table_sha256": bench.table.sha256(), "ks": a.ks, "seeds": a.seeds, "designs": a.designs,
               "devices": per_device, "seconds": time.monotonic() - t0, "aggregate": aggregate(runs)}
    if a.runs:
        summary["runs"] = runs
    write_text(a.out, json.dumps(summary, indent=1) + "\n")
    if a.plot:
        plot(summary, Path(a.plot))
    if a.markdown:
        print(summary_table(summary, a.summary_k) if a.summary_k is not None else markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
