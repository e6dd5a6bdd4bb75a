"""Does weight sharing rank architectures correctly? Standalone vs supernet test perplexity.

    python scripts/rank_correlation.py --space t --threads 1          # resumable: rerun to continue
    taskset -c 1 python scripts/rank_correlation.py --space t         # a second worker on another core
    python scripts/rank_correlation.py --space t --report-only        # tables and plot from the JSON
    python scripts/rank_correlation.py --space t --remedy distill=runs/supernet-t-distill   # score a remedy
    python scripts/rank_correlation.py --space t --finetune finetune50=50   # fine-tune each architecture 50 steps

Designs the study (benchmark.supernet.ranking.design_study: 10 matched-size architectures per
embedding width plus the extremes), trains each standalone at the supernet's token budget per
model (runs/standalone/), reruns the supernet to its halfway checkpoint, trains a second seed of
10 architectures, and writes docs/supernet/<space>_rank_study.json (every raw number, rewritten
after each job), <space>_rank_study_summary.json, <space>_rank_study.md (the tables) and
<space>_rank_study.png. Workers started on one study claim its jobs, so one per free core shortens it.
"""

import argparse
import json
from pathlib import Path

from benchmark.files import write_text
from benchmark.supernet.ranking import design_study, plot_study, run_study, study_jobs, summarize, summary_markdown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="t")
    p.add_argument("--per-width", type=int, default=10, help="architectures per embedding width (default 10)")
    p.add_argument("--repeats", default="4,3,3",
                   help="second-seed runs per width, smallest width first (default 4,3,3)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per standalone run (default: the supernet's, i.e. its token budget per member)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--supernet", default=None, help="default data/supernet_<space>.safetensors")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs (rerun to continue)")
    p.add_argument("--report-only", action="store_true", help="only summarise and plot the existing JSON")
    p.add_argument("--remedy", action="append", default=[], metavar="NAME=SUPERNET",
                   help="score another supernet (a run directory or .safetensors file) on the study's "
                        "architectures as predictor supernet_NAME, then report (repeatable)")
    p.add_argument("--finetune", action="append", default=[], metavar="NAME=STEPS",
                   help="score per-architecture fine-tuning of --supernet for STEPS steps (at its final learning "
                        "rate; runs in runs/finetune/NAME/, resumable) as predictor supernet_NAME (repeatable)")
    a = p.parse_args()
    supernet = a.supernet or f"data/supernet_{a.space}.safetensors"
    docs = Path("docs/supernet")
    raw = docs / f"{a.space}_rank_study.json"
    if a.remedy or a.finetune:
        from benchmark.supernet.ranking import measure_finetune, measure_remedy

        for spec in a.remedy:
            name, sep, path = spec.partition("=")
            if not sep:
                p.error(f"--remedy {spec!r}: expected NAME=SUPERNET")
            result = measure_remedy(raw, name, path)
        for spec in a.finetune:
            name, sep, steps = spec.partition("=")
            if not sep or not steps.isdigit():
                p.error(f"--finetune {spec!r}: expected NAME=STEPS")
            result = measure_finetune(raw, name, supernet, int(steps), threads=a.threads)
    elif a.report_only:
        result = json.loads(raw.read_text())
    else:
        from benchmark.supernet.elastic import load_supernet

        sn_config = json.loads(load_supernet(supernet, a.space).metadata["train_config"])
        steps = a.steps or sn_config["steps"]
        design = design_study(a.space, per_width=a.per_width, seed=a.seed)
        widths = sorted({d["group"] for d in design if d["group"] != "extreme"}, key=lambda g: int(g[2:]))
        repeats = dict(zip(widths, (int(r) for r in a.repeats.split(","))))
        jobs = study_jobs(design, seed=a.seed, repeats=repeats)
        result = run_study(a.space, supernet, raw, design=design, jobs=jobs, steps=steps, seed=a.seed,
                           runs_dir="runs/standalone", base_config={"threads": a.threads}, max_jobs=a.max_jobs)
    summary = summarize(result)
    write_text(docs / f"{a.space}_rank_study_summary.json", json.dumps(summary, indent=1))
    write_text(docs / f"{a.space}_rank_study.md", summary_markdown(result, summary))
    if summary["predictors"]:
        png = plot_study(result, summary, docs / f"{a.space}_rank_study.png")
        s = summary["predictors"]["supernet"]
        print(f"{summary['n_archs']} architectures: Kendall tau {s['kendall_tau']:.3f} "
              f"[{s['kendall_tau_ci'][0]:.3f}, {s['kendall_tau_ci'][1]:.3f}], within width "
              f"{s['within_width_tau']:.3f}; plot {png}")
    print(f"raw results: {raw} ({summary['n_runs']} standalone runs)")


if __name__ == "__main__":
    main()
