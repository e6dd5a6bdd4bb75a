"""Does weight sharing rank architectures correctly? A study designed so that it could fail.

Architectures are trained *standalone* (from scratch, no weight sharing) with the supernet's
data, optimiser, schedule shape, context and token budget per model, and their test perplexity is
compared with the perplexity the trained supernet gives them with inherited weights. Both are
measured the same way (:func:`benchmark.supernet.perplexity.measure_perplexity`: the held-out
test split, the same windows).

The design (:func:`design_study`) keeps parameter count from deciding the answer: per embedding
width, ``per_width`` architectures are drawn from a narrow band of parameter counts around the
width's median (matched sizes, different depth / head / MLP allocations, spread by farthest-point
selection), plus the space's largest and smallest architecture. Within a width, ranking by
parameter count is then close to chance, and the supernet has to know more than size.

Jobs (:func:`study_jobs`) run one at a time, interleaving widths so that a partial study already
covers all of them: every design architecture with seed ``seed``, the halfway supernet (the same
training rerun to half its steps, for the "does longer training help" baseline), then a second
standalone seed for the first few architectures of each width (standalone noise: the ceiling for
any rank correlation). Each job is an ordinary resumable training run; the JSON of raw results is
rewritten atomically after every job, so an interrupted study loses at most the job in flight
(which itself resumes from its last checkpoint).

:func:`summarize` turns the raw results into Kendall tau / Spearman rho with bootstrap intervals,
overall and within widths, against baselines (parameter count, FLOPs, the halfway supernet), the
standalone seed-to-seed ceiling and top-k agreement. :func:`measure_remedy` adds a candidate remedy
(another supernet's inherited perplexities) to the same comparison, :func:`measure_finetune` another
(the released supernet's weights fine-tuned briefly per architecture).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmark.errors import HwlmError
from benchmark import costs
from benchmark.files import WriterLock, write_text
from benchmark.spaces import canonical_id, concatenated_id, get_space
from benchmark.supernet.corpus.tokens import DEFAULT_EVAL_TOKENS

HALFWAY = "halfway-supernet"  # the job id of the halfway supernet run
HEADER = ("config", "seed", "supernet_config", "design")  # what identifies a study in its JSON
MIN_ARCHS = 6  # fewer architectures give no statistics (bootstrap intervals of 3 points mean nothing)
MIN_PER_WIDTH = 3  # the same within one width


# ---------------------------------------------------------------------- design
def design_study(space: str, per_width: int = 10, seed: int = 0, pool: int = 20000,
                 band: float = 0.05) -> list[dict]:
    """``per_width`` matched-size architectures per embedding width, plus the two extremes.

    Returns ``[{"id", "group", "rank_in_group"}]``; ``group`` is ``"E=<width>"`` or ``"extreme"``.
    Within a width the candidates are the sampled architectures whose parameter count lies within
    ``band`` (relative) of the width's median; from them a seeded farthest-point walk over
    (layers, mean MLP ratio, mean heads, bias), each scaled to [0, 1], picks diverse allocations.
    """
    if not isinstance(per_width, int) or per_width < 2:
        raise HwlmError(f"invalid per_width: {per_width!r}; allowed: an integer >= 2")
    if not 0 < band < 1:
        raise HwlmError(f"invalid band: {band!r}; allowed: a fraction in (0, 1)")
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    sample = sorted(set(sp.sample(seed, pool)), key=lambda a: a.id)
    design = []
    for width in sp.embed_dim_choices:
        cands = [a for a in sample if a.embed_dim == width]
        p = costs.params(cands).astype(float)
        near = np.abs(p / np.median(p) - 1) <= band
        cands = [a for a, keep in zip(cands, near) if keep]
        if len(cands) < per_width:
            raise HwlmError(f"invalid band: {band!r}; only {len(cands)} architectures of embed_dim={width} "
                             f"within it; allowed: a wider band or a larger pool")
        feats = np.array([[a.n_layer, np.mean(a.mlp_ratio), np.mean(a.n_head), float(a.bias)] for a in cands])
        span = feats.max(0) - feats.min(0)
        feats = (feats - feats.min(0)) / np.where(span > 0, span, 1)
        picked = [int(rng.integers(len(cands)))]
        dist = np.linalg.norm(feats - feats[picked[0]], axis=1)
        while len(picked) < per_width:
            nxt = int(np.argmax(dist))
            picked.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(feats - feats[nxt], axis=1))
        design += [{"id": cands[i].id, "group": f"E={width}", "rank_in_group": k} for k, i in enumerate(picked)]
    design += [{"id": sp.largest().id, "group": "extreme", "rank_in_group": 0},
               {"id": sp.smallest().id, "group": "extreme", "rank_in_group": 1}]
    return design


def study_jobs(design: list[dict], seed: int = 0, repeats: dict[str, int] | None = None,
               halfway: bool = True) -> list[dict]:
    """The ordered job list: ``{"kind": "standalone", "id", "seed"}`` or ``{"kind": "halfway"}``.

    First seeds round-robin over the widths, then the extremes, then the halfway supernet, then
    the second seed (``seed + 1``) of the first ``repeats[group]`` architectures of each group.
    """
    groups = sorted({d["group"] for d in design if d["group"] != "extreme"},
                    key=lambda g: int(g.split("=")[1]))
    by_group = {g: sorted((d for d in design if d["group"] == g), key=lambda d: d["rank_in_group"]) for g in groups}
    jobs = []
    for k in range(max(len(v) for v in by_group.values())):
        jobs += [{"kind": "standalone", "id": by_group[g][k]["id"], "seed": seed} for g in groups
                 if k < len(by_group[g])]
    jobs += [{"kind": "standalone", "id": d["id"], "seed": seed} for d in design if d["group"] == "extreme"]
    if halfway:
        jobs.append({"kind": "halfway"})
    for g, n in (repeats or {}).items():
        jobs += [{"kind": "standalone", "id": d["id"], "seed": seed + 1} for d in by_group[g][:n]]
    return jobs


def job_key(job: dict) -> str:
    return HALFWAY if job["kind"] == "halfway" else f"{job['id']}@seed{job['seed']}"


# ---------------------------------------------------------------------- running
def canonical_ids(result: dict) -> dict:
    """``result`` with every architecture id in the canonical form (a study JSON written before the
    dash-separated ids holds the older concatenated form; both name the same architectures)."""
    space = result["config"]["space"]
    cid = lambda i: canonical_id(i, space)  # noqa: E731
    runs = {}
    for key, r in result.get("runs", {}).items():
        if r.get("kind") == "standalone":
            r = {**r, "id": cid(r["id"])}
            key = job_key(r)
        runs[key] = r
    return {**result, "design": [{**d, "id": cid(d["id"])} for d in result["design"]],
            "supernet": {cid(i): v for i, v in result.get("supernet", {}).items()},
            "halfway": {cid(i): v for i, v in result.get("halfway", {}).items()}, "runs": runs}


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


def run_study(space: str, supernet_path: str | Path, out_json: str | Path, *, design: list[dict],
              jobs: list[dict], steps: int, runs_dir: str | Path = "runs/standalone",
              data_dir: str | Path | None = None, eval_tokens: int = DEFAULT_EVAL_TOKENS, base_config: dict | None = None,
              supernet_config: dict | None = None, seed: int = 0, max_jobs: int | None = None,
              progress: bool = True) -> dict:
    """Run the jobs not yet in ``out_json`` (at most ``max_jobs`` of them) and return the raw results.

    ``base_config``: :class:`~benchmark.supernet.train.TrainConfig` fields shared by every standalone
    run (``steps`` and warm-up come from ``steps`` and the supernet's own schedule shape).
    ``supernet_config``: the supernet's training config (default: read from the checkpoint's
    metadata); the halfway job reruns it to ``steps // 2`` of its own schedule. ``seed``: the
    standalone seed the comparison uses (the jobs' other seed measures standalone noise).
    Results: ``{"config", "design", "supernet": {id: ppl}, "halfway": {id: ppl}, "runs": {key: {...}}}``.
    Several processes may run one study at once: each claims a job with a lock next to its run
    directory (a killed worker's claim dies with it) and merges its result into ``out_json``.
    """
    from benchmark.supernet.elastic import load_supernet
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.train import TrainConfig, load_run, train

    ddir = _data_dir(data_dir)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(runs_dir)
    test = _test_tokens(ddir)
    supernet = load_supernet(supernet_path, space)
    sn_config = dict(supernet_config or json.loads(supernet.metadata["train_config"]))
    base = dict(base_config or {})
    warmup = round(sn_config["warmup"] * steps / sn_config["steps"])  # the supernet's schedule shape
    config = dict(space=space, steps=steps, warmup=max(1, warmup), eval_every=steps, ckpt_every=50,
                  data_dir=str(ddir), **base)
    header = {"config": {**config, "eval_tokens": eval_tokens}, "seed": seed, "supernet_config": sn_config,
              "design": design}
    result = {**header, "supernet": {}, "halfway": {}, "runs": {}}
    if out_json.exists():
        prev = canonical_ids(json.loads(out_json.read_text()))
        if all(prev.get(k) == v for k, v in header.items()):
            result = prev
    archs = {d["id"]: get_space(space).from_id(d["id"]) for d in design}

    def perplexities(net) -> dict:
        return {i: measure_perplexity(net, a, test, max_tokens=eval_tokens).perplexity for i, a in archs.items()}

    if set(result["supernet"]) != set(archs):
        result["supernet"] = perplexities(supernet)
        result = _merge_and_write(out_json, header, result)
    todo = [j for j in jobs if job_key(j) not in result["runs"]]
    done = 0
    for job in todo:
        if max_jobs is not None and done >= max_jobs:
            break
        key = job_key(job)
        run = runs_dir / (HALFWAY if job["kind"] == "halfway" else f"{job['id']}-seed{job['seed']}")
        try:  # workers sharing a study claim jobs; one held by another worker is theirs
            claim = WriterLock(run, busy=_Claimed)
        except _Claimed:
            continue
        with claim:
            result = _merged(out_json, header, result)  # another worker may have finished it meanwhile
            if key in result["runs"]:
                continue
            if progress:
                print(f"[{len(result['runs']) + 1}/{len(jobs)}] {key}", flush=True)
            if job["kind"] == "halfway":
                cfg = {**sn_config, "out_dir": str(run), "data_dir": str(ddir),
                       "threads": base.get("threads", sn_config.get("threads"))}
                train(TrainConfig(**cfg), progress=progress, until=sn_config["steps"] // 2)
                net, state = load_run(run)
                result["halfway"] = perplexities(net)
                record = {"kind": "halfway", "step": state["step"], "of_steps": sn_config["steps"]}
            else:
                older = runs_dir / f"{concatenated_id(archs[job['id']])}-seed{job['seed']}"
                if older.exists() and not run.exists():  # a run started under the older id form resumes there
                    run = older
                train(TrainConfig(arch=job["id"], out_dir=str(run), seed=job["seed"], **config), progress=progress)
                net, _ = load_run(run)
                r = measure_perplexity(net, archs[job["id"]], test, max_tokens=eval_tokens)
                record = {"kind": "standalone", "id": job["id"], "seed": job["seed"],
                          "standalone_ppl": r.perplexity, "eval_tokens": r.tokens}
            result["runs"][key] = record
            result = _merge_and_write(out_json, header, result)
            done += 1
    return _merged(out_json, header, result)


class _Claimed(Exception):
    pass


def _merged(out_json: Path, header: dict, result: dict) -> dict:
    """``result`` plus the runs other workers of the same study have written to ``out_json``."""
    if not out_json.exists():
        return result
    disk = canonical_ids(json.loads(out_json.read_text()))
    if any(disk.get(k) != v for k, v in header.items()):
        return result
    merged = {**result, "halfway": result["halfway"] or disk.get("halfway", {}),
              "runs": {**disk.get("runs", {}), **result["runs"]}}
    if disk.get("remedies") or result.get("remedies"):
        merged["remedies"] = {**disk.get("remedies", {}), **result.get("remedies", {})}
    return merged


def _merge_and_write(out_json: Path, header: dict, result: dict) -> dict:
    while True:  # one writer at a time, so no worker overwrites another's finished run
        try:
            with WriterLock(out_json, busy=_Claimed):
                result = _merged(out_json, header, result)
                _write_json(out_json, result)
                return result
        except _Claimed:
            time.sleep(0.2)


def _open_study(out_json: str | Path, name: str) -> tuple[Path, dict]:
    """A started study's JSON (canonical ids) for a remedy called ``name``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise HwlmError(f"invalid remedy name: {name!r}; allowed: a name of letters, digits and underscores")
    out_json = Path(out_json)
    if not out_json.exists():
        raise HwlmError(f"invalid study: {out_json} does not exist; allowed: the JSON of a started study")
    return out_json, canonical_ids(json.loads(out_json.read_text()))


def _store_remedy(out_json: Path, result: dict, name: str, remedy: dict) -> dict:
    header = {k: result[k] for k in HEADER}
    return _merge_and_write(out_json, header, {**result, "remedies": {**result.get("remedies", {}), name: remedy}})


def measure_remedy(out_json: str | Path, name: str, supernet: str | Path, data_dir: str | Path | None = None) -> dict:
    """Score a remedy: the study's architectures' inherited-weight test perplexity on another supernet
    (e.g. trained with in-place distillation or a larger sandwich), stored in ``out_json`` under
    ``remedies[name]`` with that supernet's training config, step and sha256, so that
    :func:`summarize` ranks it against standalone like the released supernet (``supernet_<name>``).

    ``supernet``: a released ``.safetensors`` file or a training run directory (its latest
    checkpoint, fp32, as the halfway supernet is read). Measured as the study measures every
    perplexity (the test split, the study's ``eval_tokens``)."""
    from benchmark.files import sha256_file
    from benchmark.supernet.elastic import load_supernet
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.train import STATE_FILE, load_run

    out_json, result = _open_study(out_json, name)
    space, supernet = result["config"]["space"], Path(supernet)
    if supernet.is_dir():
        if not (supernet / "checkpoint" / STATE_FILE).exists():
            raise HwlmError(f"invalid supernet: {supernet} holds no training checkpoint; allowed: a run directory "
                            f"of `hwlm train` or a .safetensors supernet")
        net, state = load_run(supernet)
        config, step = state["config"], state["step"]
        digest = sha256_file(supernet / "checkpoint" / state["model"])
    elif supernet.is_file():
        net = load_supernet(supernet, space)
        config, step = json.loads(net.metadata["train_config"]), int(net.metadata.get("step", -1))
        digest = sha256_file(supernet)
    else:
        raise HwlmError(f"invalid supernet: {supernet} does not exist; allowed: a run directory or a .safetensors file")
    if config.get("space") != space:
        raise HwlmError(f"invalid supernet: {supernet} is a supernet of space {config.get('space')!r}; "
                        f"allowed: one of the study's space {space!r}")
    test = _test_tokens(data_dir)
    sp = get_space(space)
    ppl = {d["id"]: measure_perplexity(net, sp.from_id(d["id"]), test,
                                       max_tokens=result["config"]["eval_tokens"]).perplexity
           for d in result["design"]}
    remedy = {"supernet": str(supernet), "sha256": digest, "step": step, "train_config": config, "ppl": ppl}
    return _store_remedy(out_json, result, name, remedy)


def measure_finetune(out_json: str | Path, name: str, supernet: str | Path, steps: int, lr: float | None = None,
                     runs_dir: str | Path = "runs/finetune", data_dir: str | Path | None = None, threads: int = 1,
                     progress: bool = True) -> dict:
    """Score per-architecture fine-tuning as a remedy: each study architecture starts from the
    released ``supernet``'s weights and trains alone for ``steps`` steps at a constant ``lr`` (default:
    the supernet's final learning rate) with the supernet's batch size, optimiser settings and data
    seed, then its test perplexity is measured as the study measures every perplexity. Stored under
    ``remedies[name]`` like :func:`measure_remedy`, with the fine-tuning settings; resumable (the JSON
    is rewritten after each architecture, each run resumes from its checkpoint), and
    :func:`summarize` ranks it once every architecture has its value."""
    from benchmark.files import sha256_file
    from benchmark.supernet.elastic import load_supernet
    from benchmark.supernet.perplexity import measure_perplexity
    from benchmark.supernet.train import TrainConfig, load_run, train

    out_json, result = _open_study(out_json, name)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise HwlmError(f"invalid steps: {steps!r}; allowed: a positive integer (fine-tuning steps per architecture)")
    space = result["config"]["space"]
    meta = load_supernet(supernet, space).metadata
    sn = json.loads(meta["train_config"])
    lr = float(sn["min_lr"] if lr is None else lr)
    if not lr > 0:
        raise HwlmError(f"invalid lr: {lr!r}; allowed: a positive learning rate")
    tune = {"steps": steps, "lr": lr, "batch_size": sn["batch_size"], "seed": result["seed"]}
    digest = sha256_file(supernet)
    remedy = result.get("remedies", {}).get(name)
    if remedy is None or remedy.get("sha256") != digest or remedy.get("finetune") != tune:
        remedy = {"supernet": str(supernet), "sha256": digest, "step": int(meta.get("step", -1)), "train_config": sn,
                  "finetune": tune, "ppl": {}}
    ddir = _data_dir(data_dir)
    test = _test_tokens(ddir)
    sp = get_space(space)
    todo = [d["id"] for d in result["design"] if d["id"] not in remedy["ppl"]]
    for arch_id in todo:
        if progress:
            print(f"[{len(remedy['ppl']) + 1}/{len(result['design'])}] fine-tune {arch_id}", flush=True)
        run = Path(runs_dir) / name / arch_id
        train(TrainConfig(space=space, data_dir=str(ddir), out_dir=str(run), steps=steps, batch_size=sn["batch_size"],
                          block_size=int(meta["block_size"]), vocab_size=int(meta["vocab_size"]), lr=lr, min_lr=lr,
                          warmup=0, weight_decay=sn["weight_decay"], grad_clip=sn["grad_clip"], seed=result["seed"],
                          eval_every=steps, eval_tokens=sn["eval_tokens"], ckpt_every=steps, threads=threads,
                          arch=arch_id, init_from=str(supernet)), progress=False)
        net, _ = load_run(run)
        remedy["ppl"][arch_id] = measure_perplexity(net, sp.from_id(arch_id), test,
                                                    max_tokens=result["config"]["eval_tokens"]).perplexity
        result = _store_remedy(out_json, result, name, remedy)  # after each architecture: resumable
    return result


def _data_dir(data_dir: str | Path | None) -> Path:
    from benchmark.paths import data_dir as default_data_dir

    return Path(data_dir) if data_dir is not None else default_data_dir()


def _test_tokens(data_dir: str | Path | None) -> np.ndarray:
    from benchmark.supernet.corpus import load_split

    return np.asarray(load_split("test", _data_dir(data_dir)))


# ---------------------------------------------------------------------- analysis
def _tau(a, b) -> float:
    from scipy import stats

    return float(stats.kendalltau(a, b).statistic) if len(a) >= 2 else float("nan")


def _rho(a, b) -> float:
    from scipy import stats

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:  # constant: no ranking to agree with
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _centred(v, groups: np.ndarray) -> np.ndarray:
    """``v`` (rows, or rows x columns) minus each group's mean: what is left within the groups."""
    v = np.array(v, dtype=float)
    for g in np.unique(groups):
        v[groups == g] -= v[groups == g].mean(0)
    return v


def _within_tau(x, y, groups) -> float:
    """Kendall tau over pairs of architectures of the same group only (pair-weighted over groups)."""
    conc = disc = 0
    for g in np.unique(groups):
        m = groups == g
        xs, ys = x[m], y[m]
        i, j = np.triu_indices(len(xs), 1)
        s = np.sign(xs[i] - xs[j]) * np.sign(ys[i] - ys[j])
        conc += int((s > 0).sum())
        disc += int((s < 0).sum())
    return (conc - disc) / (conc + disc) if conc + disc else float("nan")


def _within_rho(x, y, groups) -> float:
    """Spearman rho within groups: the correlation of ranks taken within each group and centred
    there, pooled over groups (each group weighted by its size; a group's own rho when only one)."""
    from scipy import stats

    rx = np.empty(len(x))
    ry = np.empty(len(y))
    for g in np.unique(groups):
        m = groups == g
        rx[m] = stats.rankdata(x[m]) - (m.sum() + 1) / 2
        ry[m] = stats.rankdata(y[m]) - (m.sum() + 1) / 2
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / den) if den else float("nan")


def _bootstrap(stat, groups: np.ndarray, reps: int, seed: int) -> list[float]:
    """95 % percentile interval of ``stat(index)``, resampling architectures within their groups."""
    rng = np.random.default_rng(seed)
    idx_by_group = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    vals = []
    for _ in range(reps):
        idx = np.concatenate([rng.choice(ix, len(ix)) for ix in idx_by_group])
        v = stat(idx)
        if np.isfinite(v):
            vals.append(v)
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else [float("nan")] * 2


def summarize(result: dict, seed: int = 0, reps: int = 2000, top: tuple[int, int] = (5, 10)) -> dict:
    """Rank agreement of every predictor with standalone perplexity (first seed), with intervals."""
    result = canonical_ids(result)
    space = result["config"]["space"]
    first = result["seed"]
    runs = [r for r in result["runs"].values() if r["kind"] == "standalone"]
    stand = {r["id"]: r["standalone_ppl"] for r in runs if r["seed"] == first}
    group_of = {d["id"]: d["group"] for d in result["design"]}
    ids = [d["id"] for d in result["design"] if d["id"] in stand]
    summary = {"n_archs": len(ids), "n_runs": len(runs), "predictors": {}}
    if len(ids) < MIN_ARCHS:
        return summary
    archs = [get_space(space).from_id(i) for i in ids]
    x = np.array([stand[i] for i in ids])
    groups = np.array([group_of[i] for i in ids])
    predictors = {
        "supernet": np.array([result["supernet"][i] for i in ids]),
        # smaller models have higher perplexity: rank by minus size so that agreement is positive
        "params": -costs.params(archs).astype(float),
        "flops": -costs.flops_prefill(archs, batch=1, seq_len=get_space(space).block_size).astype(float),
    }
    if result.get("halfway"):
        predictors["supernet_halfway"] = np.array([result["halfway"][i] for i in ids])
    for name, remedy in result.get("remedies", {}).items():
        if all(i in remedy["ppl"] for i in ids):  # a remedy still being measured is left out
            predictors[f"supernet_{name}"] = np.array([remedy["ppl"][i] for i in ids])
    inner = groups != "extreme"
    x_in, g_in = x[inner], groups[inner]  # architectures of the widths, without the extremes
    for name, y in predictors.items():
        y_in = y[inner]
        s = {"kendall_tau": _tau(x, y), "spearman_rho": _rho(x, y),
             "kendall_tau_ci": _bootstrap(lambda k: _tau(x[k], y[k]), groups, reps, seed),
             "spearman_rho_ci": _bootstrap(lambda k: _rho(x[k], y[k]), groups, reps, seed),
             "within_width_tau": _within_tau(x_in, y_in, g_in) if len(x_in) >= MIN_ARCHS else float("nan"),
             "within_width_tau_ci": _bootstrap(lambda k: _within_tau(x_in[k], y_in[k], g_in[k]), g_in, reps, seed)
             if len(x_in) >= MIN_ARCHS else [float("nan")] * 2,
             "within_width_rho": _within_rho(x_in, y_in, g_in) if len(x_in) >= MIN_ARCHS else float("nan"),
             "within_width_rho_ci": _bootstrap(lambda k: _within_rho(x_in[k], y_in[k], g_in[k]), g_in, reps, seed)
             if len(x_in) >= MIN_ARCHS else [float("nan")] * 2,
             "per_width_tau": {g: _tau(x[groups == g], y[groups == g]) for g in np.unique(g_in)
                               if (groups == g).sum() >= MIN_PER_WIDTH}}
        k_best, k_pred = top
        if len(x) > k_pred:
            best = set(np.argsort(x)[:k_best])
            s[f"top{k_best}_in_top{k_pred}"] = len(best & set(np.argsort(y)[:k_pred]))
        summary["predictors"][name] = s
    summary["vs_supernet"] = _paired_gains(x, predictors, groups, inner, reps, seed)
    summary["error_vs_design"] = _error_vs_design(
        x[inner], {n: y[inner] for n, y in predictors.items() if n.startswith("supernet")},
        [a for a, k in zip(archs, inner) if k], g_in, reps, seed)
    # standalone noise: the same architecture trained with two seeds
    pairs = {}
    for r in runs:
        pairs.setdefault(r["id"], {})[r["seed"]] = r["standalone_ppl"]
    twice_ids = [i for i, v in pairs.items() if first in v and first + 1 in v]
    if twice_ids:
        a, b = np.array([(pairs[i][first], pairs[i][first + 1]) for i in twice_ids]).T
        g2 = np.array([group_of[i] for i in twice_ids])
        inner2 = g2 != "extreme"
        summary["seed_noise"] = {
            "n": len(twice_ids), "median_rel_diff": float(np.median(np.abs(a - b) / a)),
            "max_rel_diff": float(np.max(np.abs(a - b) / a)),
            "kendall_tau_seed_vs_seed": _tau(a, b) if len(twice_ids) >= 2 else float("nan"),
            "within_width_tau_seed_vs_seed": _within_tau(a[inner2], b[inner2], g2[inner2])}
        summary["within_width_ceiling"] = _within_width_ceiling(np.log(b / a), np.log(x_in), g_in, reps, seed)
    return summary


def _paired_gains(x, predictors: dict, groups: np.ndarray, inner: np.ndarray, reps: int, seed: int) -> dict:
    """Before/after for every other supernet (halfway, remedies): its Kendall tau and within-width tau
    minus the released supernet's, with a paired bootstrap interval (both taus on the same resampled
    architectures, so the interval is of the difference, not of two overlapping intervals)."""
    base = predictors["supernet"]
    x_in, g_in, b_in = x[inner], groups[inner], base[inner]
    out = {}
    for name, y in predictors.items():
        if not name.startswith("supernet_"):
            continue
        y_in = y[inner]
        out[name] = {
            "delta_tau": _tau(x, y) - _tau(x, base),
            "delta_tau_ci": _bootstrap(lambda k: _tau(x[k], y[k]) - _tau(x[k], base[k]), groups, reps, seed),
            "delta_within_width_tau": _within_tau(x_in, y_in, g_in) - _within_tau(x_in, b_in, g_in),
            "delta_within_width_tau_ci": _bootstrap(
                lambda k: _within_tau(x_in[k], y_in[k], g_in[k]) - _within_tau(x_in[k], b_in[k], g_in[k]),
                g_in, reps, seed)}
    return out


def _within_width_ceiling(seed_log_diffs: np.ndarray, log_ppl: np.ndarray, groups: np.ndarray, reps: int,
                          seed: int) -> dict:
    """How well *any* predictor can agree with one standalone seed within a width.

    A standalone run's log perplexity is the architecture's true value plus seed noise of variance
    ``s2`` (from the seed pairs: half the mean squared log difference). Within a width, the spread of
    the first seed's log perplexities is the true spread plus that noise; the share that is true
    (``reliability``) bounds the correlation of a perfect predictor with one seed by
    ``sqrt(reliability)``, i.e. Kendall tau by ``2/pi asin(sqrt(reliability))`` for normal errors, and
    two seeds' tau by ``2/pi asin(reliability)``. Bootstrap: seed pairs and architectures resampled."""
    def ceiling(d, x, g) -> tuple[float, float, float, float]:
        var = float(np.sum(_centred(x, g) ** 2) / max(len(x) - len(np.unique(g)), 1))
        noise = float(np.mean(np.square(d)) / 2)
        rel = max(0.0, 1.0 - noise / var) if var > 0 else float("nan")
        return rel, 2 / np.pi * float(np.arcsin(np.sqrt(rel))), var, noise

    rel, tau, var, noise = ceiling(seed_log_diffs, log_ppl, groups)
    out = {"n_pairs": len(seed_log_diffs), "noise_sd_log_ppl": float(np.sqrt(noise)),
           "within_width_sd_log_ppl": float(np.sqrt(var)), "reliability": rel, "tau_ceiling": tau,
           "expected_tau_seed_vs_seed": 2 / np.pi * float(np.arcsin(rel))}
    if len(seed_log_diffs) >= 2 and len(log_ppl) >= MIN_ARCHS:
        rng = np.random.default_rng(seed)
        by_group = [np.flatnonzero(groups == k) for k in np.unique(groups)]
        taus = []
        for _ in range(reps):
            d = seed_log_diffs[rng.integers(len(seed_log_diffs), size=len(seed_log_diffs))]
            idx = np.concatenate([rng.choice(ix, len(ix)) for ix in by_group])
            taus.append(ceiling(d, log_ppl[idx], groups[idx])[1])
        out["tau_ceiling_ci"] = [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))]
    return out


DESIGN_FEATURES = ("layers", "mean MLP ratio", "mean heads", "bias")


def _error_vs_design(x, supernets: dict, archs: list, groups: np.ndarray, reps: int, seed: int) -> dict:
    """Where a supernet errs: per design choice, Spearman rho between the supernet's log error
    ``log(supernet ppl / standalone ppl)`` and the choice (layers, mean MLP ratio and heads over the
    live layers, bias), both centred within each width, with a bootstrap interval. A positive rho:
    the supernet under-rates architectures with more of that choice."""
    if len(x) < MIN_ARCHS:
        return {}
    feats = _centred([[a.n_layer, np.mean(a.mlp_ratio[:a.n_layer]), np.mean(a.n_head[:a.n_layer]), float(a.bias)]
                      for a in archs], groups)
    out = {}
    for name, y in supernets.items():
        err = _centred(np.log(y) - np.log(x), groups)
        out[name] = {f: {"spearman_rho": _rho(err, feats[:, j]),
                         "ci": _bootstrap(lambda k, j=j: _rho(err[k], feats[k, j]), groups, reps, seed)}
                     for j, f in enumerate(DESIGN_FEATURES)}
    return out


def plot_study(result: dict, summary: dict, out_png: str | Path) -> Path:
    """Left: standalone vs supernet perplexity per width; right: tau with 95 % intervals per predictor."""
    result = canonical_ids(result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    first = result["seed"]
    stand = {r["id"]: r["standalone_ppl"] for r in result["runs"].values()
             if r["kind"] == "standalone" and r["seed"] == first}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for g in sorted({d["group"] for d in result["design"]}):
        ids = [d["id"] for d in result["design"] if d["group"] == g and d["id"] in stand]
        a1.scatter([stand[i] for i in ids], [result["supernet"][i] for i in ids], label=g,
                   marker="*" if g == "extreme" else "o")
    a1.set(xlabel="standalone test perplexity", ylabel="supernet (inherited) test perplexity",
           xscale="log", yscale="log", title=f"{summary['n_archs']} architectures")
    for axis in (a1.xaxis, a1.yaxis):  # plain numbers on the log axes (not 6 x 10^1)
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    a1.legend()
    a1.grid(alpha=0.3)
    names = list(summary["predictors"])
    for off, (key, label) in enumerate((("kendall_tau", "overall"), ("within_width_tau", "within width"))):
        vals = [summary["predictors"][n][key] for n in names]
        ci = np.array([summary["predictors"][n][f"{key}_ci"] for n in names])
        pos = np.arange(len(names)) + (off - 0.5) * 0.3
        a2.errorbar(pos, vals, yerr=[np.subtract(vals, ci[:, 0]), np.subtract(ci[:, 1], vals)], fmt="o",
                    capsize=4, label=f"Kendall τ, {label}")
    if "seed_noise" in summary:
        a2.axhline(summary["seed_noise"]["kendall_tau_seed_vs_seed"], ls="--", c="grey",
                   label="standalone seed vs seed")
    if "within_width_ceiling" in summary:
        a2.axhline(summary["within_width_ceiling"]["tau_ceiling"], ls=":", c="tab:orange",
                   label="within-width ceiling (noise-free predictor vs one seed)")
    a2.set_xticks(range(len(names)), [n.replace("supernet_", "supernet\n") for n in names], fontsize=8)
    a2.set(ylabel="Kendall τ vs standalone (95 % bootstrap interval)", ylim=(-1, 1))
    a2.axhline(0, c="k", lw=0.5)
    a2.legend(fontsize=8)
    return save_figure(fig, out_png)


def summary_markdown(result: dict, summary: dict) -> str:
    """The study's tables (agreement per predictor, per-architecture raw numbers) as markdown."""
    result = canonical_ids(result)
    def ci(v, lo_hi):
        return f"{v:.3f} [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if np.isfinite(v) else "–"

    runs = result["runs"]
    jobs_done = sum(r["kind"] == "standalone" for r in runs.values())
    lines = [f"Standalone runs finished: {jobs_done} ({summary['n_archs']} of {len(result['design'])} designed "
             f"architectures with the first seed); halfway supernet: "
             f"{'done' if result.get('halfway') else 'not yet'}.", ""]
    remedies = result.get("remedies", {})
    for name, r in remedies.items():  # what each remedy changed in the supernet's training
        changed = {k: v for k, v in r["train_config"].items()
                   if k in result["supernet_config"] and v != result["supernet_config"][k]
                   and k not in ("out_dir", "data_dir")}
        if "finetune" in r:
            f = r["finetune"]
            how = (f"the weights of `{r['supernet']}` (step {r['step']}, sha256 {r['sha256'][:12]}…) fine-tuned per "
                   f"architecture for {f['steps']} steps at a constant learning rate {f['lr']:g} (batch "
                   f"{f['batch_size']}, data seed {f['seed']})")
        else:
            how = (f"`{r['supernet']}` (step {r['step']}, sha256 {r['sha256'][:12]}…), trained as the released "
                   f"supernet but for " + (", ".join(f"{k} = {v}" for k, v in changed.items()) or "nothing"))
        lines += [f"Remedy `supernet_{name}`: {how}; {len(r['ppl'])} of {len(result['design'])} architectures "
                  f"measured.", ""]
    if not summary["predictors"]:
        lines += [f"No statistics yet: they need at least {MIN_ARCHS} architectures with standalone results.", ""]
    if summary["predictors"]:
        widths = sorted({g for p in summary["predictors"].values() for g in p["per_width_tau"]},
                        key=lambda g: int(g[2:]))
        head = (["ranking by", "Kendall τ [95 % CI]", "Spearman ρ [95 % CI]", "within-width τ [95 % CI]",
                 "within-width ρ [95 % CI]"]
                + [f"τ {g}" for g in widths] + ["standalone top 5 in its top 10"])
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for name, p in summary["predictors"].items():
            cells = ([name, ci(p["kendall_tau"], p["kendall_tau_ci"]), ci(p["spearman_rho"], p["spearman_rho_ci"]),
                      ci(p["within_width_tau"], p["within_width_tau_ci"]),
                      ci(p["within_width_rho"], p["within_width_rho_ci"]) if "within_width_rho" in p else "–"]
                     + [f"{p['per_width_tau'][g]:.3f}" if g in p["per_width_tau"] else "–" for g in widths]
                     + [str(p.get("top5_in_top10", "–"))])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if summary.get("vs_supernet"):
        lines += ["Against the released supernet (difference in τ, paired bootstrap 95 % CI: both on the same "
                  "resampled architectures; an interval that excludes 0 is a real change):", "",
                  "| supernet | Δ Kendall τ [95 % CI] | Δ within-width τ [95 % CI] |", "| --- | --- | --- |"]
        for name, d in summary["vs_supernet"].items():
            lines.append(f"| {name} | {ci(d['delta_tau'], d['delta_tau_ci'])} | "
                         f"{ci(d['delta_within_width_tau'], d['delta_within_width_tau_ci'])} |")
        lines.append("")
    if summary.get("error_vs_design"):
        lines += ["Where the supernet errs (within widths, the extremes left out): Spearman ρ [95 % CI] between "
                  "its log error, log(supernet ppl / standalone ppl), and each choice, both centred per width; "
                  "ρ > 0: it under-rates architectures with more of the choice.", "",
                  "| supernet | " + " | ".join(DESIGN_FEATURES) + " |", "|" + " --- |" * (len(DESIGN_FEATURES) + 1)]
        for name, by_feature in summary["error_vs_design"].items():
            lines.append(f"| {name} | " + " | ".join(ci(v["spearman_rho"], v["ci"]) for v in by_feature.values()) + " |")
        lines.append("")
    if "seed_noise" in summary:
        s = summary["seed_noise"]
        lines += [f"Standalone seed-to-seed noise over {s['n']} architectures trained twice: median relative "
                  f"difference {100 * s['median_rel_diff']:.2f} % (max {100 * s['max_rel_diff']:.2f} %), Kendall τ "
                  f"between the two seeds' rankings {s['kendall_tau_seed_vs_seed']:.3f} (within widths "
                  f"{s['within_width_tau_seed_vs_seed']:.3f}).", ""]
    if "within_width_ceiling" in summary:
        c = summary["within_width_ceiling"]
        lo_hi = c.get("tau_ceiling_ci", [float("nan")] * 2)
        lines += [f"Ceiling within widths: seed noise of {100 * c['noise_sd_log_ppl']:.2f} % (sd of log perplexity, "
                  f"{c['n_pairs']} seed pairs) against a spread of {100 * c['within_width_sd_log_ppl']:.2f} % among "
                  f"the first seed's architectures of one width: reliability {c['reliability']:.2f}, so a predictor "
                  f"that knew every architecture's noise-free perplexity would reach an expected within-width τ "
                  f"of only {ci(c['tau_ceiling'], lo_hi)} against one standalone seed (two seeds against each "
                  f"other: {c['expected_tau_seed_vs_seed']:.3f}).", ""]
    space = result["config"]["space"]
    lines += ["| group | architecture | params | standalone ppl (seed 0 / seed 1) | supernet ppl | halfway ppl |"
              + "".join(f" {name} ppl |" for name in remedies),
              "| --- | --- | --- | --- | --- | --- |" + " --- |" * len(remedies)]
    by_id = {}
    for r in runs.values():
        if r["kind"] == "standalone":
            by_id.setdefault(r["id"], {})[r["seed"]] = r["standalone_ppl"]
    first = result["seed"]
    for d in result["design"]:
        if d["id"] not in by_id:
            continue
        s = by_id[d["id"]]
        stand = " / ".join(f"{s[k]:.2f}" for k in (first, first + 1) if k in s)
        half = result.get("halfway", {}).get(d["id"])
        p = int(costs.params([get_space(space).from_id(d["id"])])[0])
        lines.append(f"| {d['group']} | `{d['id']}` | {p:,} | {stand} | {result['supernet'][d['id']]:.2f} | "
                     f"{'–' if half is None else f'{half:.2f}'} |"
                     + "".join(f" {r['ppl'][d['id']]:.2f} |" if d["id"] in r["ppl"] else " – |"
                               for r in remedies.values()))
    return "\n".join(lines) + "\n"
