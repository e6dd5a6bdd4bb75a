"""The data card of a table: what was measured where, how long it took, how noisy it is.

:func:`write_data_card` reads a table (nothing else) and writes a markdown page plus plots:
rows and provenance per device; profiling time (log ``timing_passes`` of timing passes, else the
per-setting ``measured_at`` stamps); noise per measured device and setting (coefficient of
variation of the stored repeats); the timing-protocol evidence it is given; drift of the re-timed
reference architectures (log ``reference_timings``, older single-block tables); the modeled devices and their
calibration error; how rankings change across devices (:mod:`benchmark.crossdevice`: latency rank
agreement as heat maps, Pareto-front overlap, what each device rewards); and the distribution of
every metric.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from benchmark import crossdevice
from benchmark.spaces import canonical_id
from benchmark.table import Table


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def noise_table(t: Table) -> list[dict]:
    """Per measured (device, setting, metric with repeats > 1): rows measured, median and p90 CV."""
    out = []
    for dev, meta in t.devices().items():
        if meta["source"] != "measured":
            continue
        for s in t.settings(dev):
            for m, mm in t.hardware_metrics(dev, s).items():
                x = t.hardware(dev, s, m)
                ok = np.isfinite(x).sum(1) >= 2
                if mm["repeats"] < 2 or not ok.any():
                    continue
                cv = np.nanstd(x[ok], 1, ddof=1) / np.nanmean(x[ok], 1)
                out.append({"device": dev, "setting": s, "metric": m, "rows": int(ok.sum()),
                            "median": float(np.nanmedian(x[ok])), "cv_median": float(np.median(cv)),
                            "cv_p90": float(np.quantile(cv, 0.9))})
    return out


def _profiling_time(t: Table, dev: str) -> dict:
    stamps = np.stack([t.measured_at(dev, s) for s in t.settings(dev)], 1)
    timed = np.isfinite(stamps).any(1)  # rows never timed on this device have no first stamp
    first = np.sort(np.nanmin(stamps[timed], 1))
    if first.size < 2:
        return {}
    gaps = np.diff(first)
    gaps = gaps[gaps < 600]  # a gap of minutes is a pause between runs, not profiling time
    return {"start": float(first[0]), "end": float(first[-1]), "rows": int(first.size),
            "busy_s": float(gaps.sum()), "s_per_row": float(np.median(gaps))}


def _plots(t: Table, out_dir: Path, stem: str) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    figs = []
    panels = [(m, t.metric(m), t.metrics()[m]["unit"]) for m in ("perplexity", "token_accuracy", "params")
              if m in t.metrics() and np.isfinite(t.metric(m)).any()]
    for dev, meta in t.devices().items():
        if meta["source"] != "measured":
            continue
        for s in t.settings(dev):
            for m, meta in t.hardware_metrics(dev, s).items():
                values = t.hardware(dev, s, m)
                values = values[np.isfinite(values).any(1)]  # rows outside a subset (memory) have none
                if len(values):
                    panels.append((f"{m}\n{dev} {s}", np.nanmedian(values, 1), meta["unit"]))
    if panels:
        cols = 3
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, (name, x, unit) in zip(axes.flat, panels):
            ax.hist(x[np.isfinite(x)], bins=40)
            ax.set_title(name, fontsize=8)
            ax.set_xlabel(unit, fontsize=8)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        p = save_figure(fig, out_dir / f"{stem}_distributions.png", dpi=100)
        figs.append(("Distribution of every measured metric (hardware: median of repeats)", p.name))
    if "reference_timings" in t.logs():
        log = t.log("reference_timings")
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for arch in sorted(set(log["arch"])):
            k = log["arch"] == arch
            ax.plot((log["unix_time"][k] - log["unix_time"].min()) / 60, log["median_ms"][k], marker="o", label=arch)
        ax.set(xlabel="minutes since the first reference timing", ylabel="median latency (ms)", yscale="log",
               title="drift: reference architectures re-timed during profiling")
        ax.legend(fontsize=7)
        p = save_figure(fig, out_dir / f"{stem}_drift.png", dpi=100)
        figs.append(("Drift of the reference architectures", p.name))
    return figs


def _measured_what(p: dict) -> str:
    """One line on a measured device: CPU/GPU, runtime, dtype, threads, export and quantisation."""
    if p.get("runtime_name"):
        parts = [str(p.get("cpu_model")), f"{p['runtime_name']} {p.get('runtime_version')}", str(p.get("dtype")),
                 f"{p.get('threads')} thread(s)"]
        if p.get("export_opset"):
            parts.append(f"ONNX opset {p['export_opset']}")
        if p.get("graph_optimization"):
            parts.append(f"graph optimisation: {p['graph_optimization']}")
        q = p.get("quantization")
        if isinstance(q, dict):
            parts.append(f"quantisation: {q.get('method')} ({q.get('weight_type')} weights, activations "
                         f"{q.get('activation_type')}; quantised: {q.get('nodes')})")
        elif q not in (None, "none"):
            parts.append(f"quantisation: {q}")
        if p.get("timing_protocol"):
            tp = p["timing_protocol"]
            parts.append(f"rounds protocol {tp['rounds']}×{tp['repeats_per_round']}")
        return ", ".join(parts)
    return (f"{p.get('cpu_model')}, {p.get('torch_threads')} thread(s), torch {p.get('torch_version')}"
            + (f", GPU {p.get('gpu_name')} (driver {p.get('driver_version')})" if p.get("gpu_name") else ""))


def _protocol_section(rows: list[dict]) -> list[str]:
    """The timing-protocol evidence (``surrogates.drift``) as a markdown section."""
    def f(r, k):
        return f"{r[k]:.3f}" if isinstance(r.get(k), (int, float)) else "–"

    lines = ["", "## Timing protocol evidence", "",
             "Out-of-fold residuals of a latency surrogate (log median latency, 5 folds; `surrogates.drift`, "
             "computed from the timing-pass shards' raw timings by `scripts/build_release.py`). *Held-out R²*: the "
             "surrogate's; *split-half R²*: one half of the rounds predicting the other — the ceiling that "
             "measurement noise sets for any surrogate; *lag-1*: autocorrelation of the residuals in the order the "
             "architectures were first timed (≈ 0 when drift does not land on individual architectures); *visit "
             "lag-1*: the same over single visits, raw and divided by the anchor's latency at that moment.", "",
             "| device | setting | rows | rounds | held-out R² | split-half R² | lag-1 | visit lag-1 raw | "
             "visit lag-1 anchor-normalised | held-out R² anchor-normalised |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['device']}` | `{r['setting']}` | {r['rows']} | {r['rounds']} | {f(r, 'r2_oof')} | "
                     f"{f(r, 'split_half_r2')} | {f(r, 'lag1')} | {f(r, 'visit_lag1_raw')} | "
                     f"{f(r, 'visit_lag1_normalised')} | {f(r, 'r2_oof_normalised')} |")
    return lines


def _runtime_section(check: dict) -> list[str]:
    """Each runtime's agreement with PyTorch eager fp32 (``scripts/check_runtimes.py``): a runtime
    that changes the answer is a different model, so int8 and bf16 show their perplexity deltas."""
    tol = check.get("fp32_tolerance")
    lines = ["", "## Runtime correctness", "",
             f"Checked before any timing by `scripts/check_runtimes.py` ({check.get('host', {}).get('date_utc', '?')[:10]}, "
             f"inherited supernet weights, test split): relative logit error "
             f"({check.get('relative_error', 'max |logits - ref| / max |ref|')}) against PyTorch eager fp32 on "
             f"{check.get('agreement_inputs', 'the same inputs')}; perplexity on the first "
             f"{check.get('perplexity_tokens', '?')} test tokens. fp32 runtimes must agree within {tol}.", "",
             "| runtime | max prefill error | max decode error | max perplexity change | min top-1 agreement | fp32 check |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in check.get("summary", {}).items():
        ok = {True: "pass", False: "FAIL"}.get(r.get("fp32_pass"), "– (not fp32)")
        lines.append(f"| {check.get('devices', {}).get(name, name)} | {r['max_prefill_rel_error']:.2g} | "
                     f"{r['max_decode_rel_error']:.2g} | {r['max_abs_perplexity_delta_rel']:.3%} | "
                     f"{r['min_top1_agreement']:.1%} | {ok} |")
    archs = check.get("architectures", [])
    lossy = [b for b in check.get("summary", {}) if b.endswith(("int8", "bf16"))]
    if archs and lossy:
        lines += ["", "Perplexity per architecture (PyTorch fp32, and the change under each reduced-precision runtime):", "",
                  "| architecture | params | perplexity fp32 | " + " | ".join(f"Δ {b}" for b in lossy) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in lossy) + " |"]
        for a in archs:
            ref = a["backends"]["torch-fp32"]["perplexity"]
            lines.append(f"| `{canonical_id(a['arch'])}` | {a['params']:,} | {ref:.3f} | " + " | ".join(
                f"{a['backends'][b]['perplexity_delta']:+.3f} ({a['backends'][b]['perplexity_delta_rel']:+.3%})"
                for b in lossy) + " |")
    return lines


def _short(dev: str) -> str:
    return dev.replace("cpu-", "").replace("gpu-", "")


def _cross_device(t: Table, out_dir: Path, stem: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The "Across devices" section: τ heat maps (one panel per shape), Pareto overlap of the
    measured devices, and the latency exponents of every device at the first shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    shapes = crossdevice.shapes(t)
    if not shapes:
        return [], []
    measured = [d for d, m in t.devices().items() if m["source"] == "measured"]
    taus = [crossdevice.rank_agreement(t, s) for s in shapes]
    fig, axes = plt.subplots(1, len(taus), figsize=(6.5 * len(taus), 6), squeeze=False)
    for ax, m in zip(axes.flat, taus):
        im = ax.imshow(m.values, vmin=min(0.0, np.nanmin(m.values)), vmax=1, cmap="viridis")
        names = [_short(d) + (" *" if d in measured else "") for d in m.devices]
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(f"Kendall τ of latency, {m.shape}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    p = save_figure(fig, out_dir / f"{stem}_rank_agreement.png", dpi=100)
    lines = ["", "## Across devices", "",
             "How the latency order of the architectures changes from device to device (`benchmark.crossdevice`; "
             "devices compared at a shape, i.e. a setting without its dtype; latency = median of the repeats; "
             "measured devices are starred in the heat maps, every other device is the roofline model).", ""]
    lines += ["| shape | devices | τ measured vs measured (min) | τ measured vs modeled (min–max) | τ modeled vs modeled (min) |",
              "| --- | --- | --- | --- | --- |"]
    for m in taus:
        k = np.array([d in measured for d in m.devices])
        off = ~np.eye(len(k), dtype=bool)
        mm = m.values[np.ix_(k, k)][off[np.ix_(k, k)]]
        mo = m.values[np.ix_(k, ~k)]
        oo = m.values[np.ix_(~k, ~k)][off[np.ix_(~k, ~k)]]
        lines.append(f"| `{m.shape}` | {len(k)} | {_fmt(mm.min()) if mm.size else '–'} | "
                     f"{(_fmt(mo.min()) + '–' + _fmt(mo.max())) if mo.size else '–'} | {_fmt(oo.min()) if oo.size else '–'} |")
    if "perplexity" in t.metrics() and measured:
        lines += _overlap_tables(t, shapes, measured)
    el = crossdevice.elasticities(t, shapes[0])
    lines += ["", f"**What each device rewards** at `{shapes[0]}`: exponents of a least-squares fit "
              "latency ∝ n_layer^a · embed_dim^b · mean_heads^c · mean_mlp_ratio^d (larger = that choice costs more "
              "latency there).", "", "| device | source | n_layer | embed_dim | mean heads | mean MLP ratio | fit R² |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for d, e in el.items():
        lines.append(f"| `{d}` | {t.devices()[d]['source']} | " + " | ".join(f"{e[k]:.2f}" for k in crossdevice.ELASTICITY_TERMS)
                     + f" | {e['r2']:.2f} |")
    if len(shapes) > 1 and measured:  # the measured devices at the other shapes: prefill rewards other choices
        lines += ["", "The measured devices at every shape (the same fit):", "",
                  "| shape | device | n_layer | embed_dim | mean heads | mean MLP ratio | fit R² |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for s in shapes[1:]:
            for d, e in crossdevice.elasticities(t, s).items():
                if d in measured:
                    lines.append(f"| `{s}` | `{d}` | " + " | ".join(f"{e[k]:.2f}" for k in crossdevice.ELASTICITY_TERMS)
                                 + f" | {e['r2']:.2f} |")
    return lines, [("Latency rank agreement between devices (Kendall τ)", p.name)]


def _overlap_tables(t: Table, shapes: list[str], measured: list[str]) -> list[str]:
    """Pareto-front overlap, one table per shape: the measured devices against each other, and
    against the modeled devices (their range)."""
    lines = ["", "**Pareto-front overlap** (perplexity vs latency): the share of the row device's Pareto-optimal "
             "architectures that are also Pareto-optimal on the column device (the modeled devices: the lowest "
             "and highest share among them).", ""]
    for s in shapes:
        ov = crossdevice.pareto_overlap(t, s)
        rows = [d for d in measured if d in ov.devices]
        if not rows:
            continue
        modeled = [j for j, o in enumerate(ov.devices) if o not in measured]
        lines += [f"`{s}`:", "", "| Pareto-optimal on | " + " | ".join(f"`{_short(d)}`" for d in rows)
                  + " | modeled devices |", "|" + " --- |" * (len(rows) + 2)]
        for d in rows:
            i = ov.devices.index(d)
            cells = ["–" if o == d else f"{ov.values[i, ov.devices.index(o)]:.0%}" for o in rows]
            mod = ov.values[i, modeled] if modeled else np.array([])
            lines.append(f"| `{_short(d)}` | " + " | ".join(cells) + " | "
                         + (f"{mod.min():.0%}–{mod.max():.0%}" if mod.size else "–") + " |")
        lines.append("")
    return lines


def write_data_card(table: str | Path, out_md: str | Path, title: str | None = None, notes: str = "",
                    protocol_evidence: list[dict] | None = None, runtime_check: dict | None = None) -> Path:
    """Write the data card of ``table`` to ``out_md`` (plots beside it); returns the path.
    ``notes``: markdown on the conditions of the measurement that the table cannot know (e.g.
    other work on the machine), printed under the summary. ``protocol_evidence``: rows of
    ``surrogates.drift.setting_evidence`` (computed where the raw timings are, i.e. from the
    timing-pass shards), printed as the timing-protocol section. ``runtime_check``: the JSON of
    ``scripts/check_runtimes.py`` (agreement of each runtime with PyTorch fp32, perplexity deltas)."""
    t = Table(table)
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    stem = out_md.stem
    a = t.attrs
    lines = [f"# {title or f'Data card: {Path(table).name}'}", "",
             f"Generated by `benchmark.datacard` from `{Path(table).name}` (sha256 `{t.sha256()[:16]}…`). "
             f"Space `{t.space.name}`, {len(t)} architectures, schema {a.get('schema_version', 1)}, "
             f"created {a.get('created', '?')}.", ""]
    if notes:
        lines += [notes.strip(), ""]
    if "perplexity" in t.metrics():
        ppl = t.metric("perplexity")
        lines += [f"**Perplexity**: {int(np.isfinite(ppl).sum())} of {len(t)} rows, inherited supernet weights "
                  f"(`supernet_sha256` {str(a.get('supernet_sha256', '?'))[:16]}…) on {a.get('eval_tokens', '?')} "
                  f"held-out test tokens; range {_fmt(np.nanmin(ppl))}–{_fmt(np.nanmax(ppl))}, median "
                  f"{_fmt(np.nanmedian(ppl))}.", ""]
    lines += ["## Devices", "", "| device | source | settings | rows with values | what |", "| --- | --- | --- | --- | --- |"]
    for dev, meta in t.devices().items():
        p = meta["provenance"]
        n = max((int(np.isfinite(t.hardware(dev, s, m)).any(1).sum()) for s in t.settings(dev)
                 for m in t.hardware_metrics(dev, s)), default=0)
        what = (_measured_what(p) if meta["source"] == "measured" else f"{p.get('spec_name', dev)}; roofline model")
        lines.append(f"| `{dev}` | {meta['source']} | {len(t.settings(dev))} | {n} | {what} |")
    lines += ["", "## Profiling time", ""]
    passes = t.log("timing_passes") if "timing_passes" in t.logs() else None
    for dev, meta in t.devices().items():
        if passes is not None and dev in set(passes["device"]):
            k = passes["device"] == dev
            busy, visits = float(passes["busy_s"][k].sum()), int(passes["visits"][k].sum())
            lines.append(f"- `{dev}`: timing pass of {int(passes['archs'][k].sum())} architectures in {visits} visits "
                         f"(rounds and anchors) between {_when(passes['start'][k].min())} and "
                         f"{_when(passes['end'][k].max())}; {busy / 3600:.2f} h of timing, {busy / max(visits, 1):.1f} s "
                         "per visit (model build, export, warm-up and repeats of every setting).")
        elif meta["source"] == "measured":
            pt = _profiling_time(t, dev)
            if pt:
                lines.append(f"- `{dev}`: {pt['rows']} rows between {_when(pt['start'])} and {_when(pt['end'])}; "
                             f"{pt['busy_s'] / 3600:.2f} h of profiling, median {pt['s_per_row']:.1f} s per "
                             f"architecture (all settings, warm-up and repeats; perplexity when measured in the same pass).")
    noise = noise_table(t)
    if noise:
        lines += ["", "## Noise of the measured devices", "",
                  "Coefficient of variation (std/mean) of the stored repeats of each architecture.", "",
                  "| device | setting | metric | rows | median value | median CV | p90 CV |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| `{r['device']}` | `{r['setting']}` | {r['metric']} | {r['rows']} | {_fmt(r['median'])} | "
                  f"{r['cv_median']:.1%} | {r['cv_p90']:.1%} |" for r in noise]
    if protocol_evidence:
        lines += _protocol_section(protocol_evidence)
    if runtime_check:
        lines += _runtime_section(runtime_check)
    if "reference_timings" in t.logs():
        log = t.log("reference_timings")
        lines += ["", "## Drift", "", "The largest and smallest architectures are re-timed at the first setting at "
                  "the start of every run and every 50 rows.", "", "| reference | timings | min ms | max ms | max/min |",
                  "| --- | --- | --- | --- | --- |"]
        for arch in sorted(set(log["arch"])):
            x = log["median_ms"][log["arch"] == arch]
            lines.append(f"| `{arch}` | {len(x)} | {_fmt(x.min())} | {_fmt(x.max())} | {x.max() / x.min():.2f} |")
    modeled = {d: m for d, m in t.devices().items() if m["source"] == "modeled"}
    if modeled:
        cal = {}
        for d, m in modeled.items():
            c = m["provenance"].get("calibration")
            cal[m.get("kind")] = c
        lines += ["", "## Modeled devices", "", f"{len(modeled)} devices, every value `modeled` (roofline latency, "
                  "utilisation power model for energy): " + ", ".join(f"`{d}`" for d in modeled) + ".", ""]
        for kind, c in cal.items():
            if isinstance(c, dict):
                lines.append(f"- {kind.upper()} parameters fitted on measured `{c['measured_device']}` (spec "
                             f"`{c['spec']}`). Two-fold cross-validated error on it:")
                lines += [f"  - `{s}`: MAPE {v['mape']:.1%}, RMS log error {v['rmse_log']:.2f}, Kendall τ "
                          f"{v['kendall_tau']:.2f}, Spearman ρ {v['spearman_rho']:.2f} ({v['n']} architectures)"
                          for s, v in c["two_fold_cv"].items()]
            else:
                lines.append(f"- {(kind or 'devices').upper()}: {c}.")
    cross, cross_figs = _cross_device(t, out_md.parent, stem)
    lines += cross
    figs = _plots(t, out_md.parent, stem) + cross_figs
    if figs:
        lines += ["", "## Plots", ""] + [f"{cap}:\n\n![{cap}]({name})\n" for cap, name in figs]
    out_md.write_text("\n".join(lines) + "\n")
    return out_md
