"""Supernet training with the sandwich rule, resumable bit for bit.

Every step trains, on the same batch, the largest and the smallest sub-network and
``n_random`` uniformly sampled ones, accumulating their gradients (Yu et al., "BigNAS"; the
sandwich rule of HW-GPT-Bench). Optional in-place distillation trains the smaller
sub-networks towards the largest one's (detached) predictions. AdamW, linear warm-up then
cosine decay, gradient clipping.

A checkpoint is the weights and the optimiser state (safetensors) plus a JSON state (step,
numpy RNG state, config). All randomness (batches and sampled sub-networks) comes from one
seeded ``numpy.random.Generator``, so a run killed at any point and resumed from its last
checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from benchmark.errors import HwlmError
from benchmark.files import write_text
from benchmark.spaces import canonical_id
from benchmark.seeds import check_seed
from benchmark.supernet.corpus import get_batch, load_split
from benchmark.supernet.elastic import Supernet

STATE_FILE = "state.json"


@dataclass
class TrainConfig:
    space: str = "t"
    data_dir: str = "data"
    out_dir: str = "runs/supernet-t"
    steps: int = 1500
    batch_size: int = 16
    block_size: int | None = None  # default: the space's context length
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    n_random: int = 2
    distill: float = 0.0  # weight of the in-place distillation loss for non-largest sub-networks
    bf16: bool = False
    seed: int = 0
    eval_every: int = 100
    eval_tokens: int = 32768
    ckpt_every: int = 50
    threads: int | None = None
    vocab_size: int | None = None  # default: the tokenizer's size from the corpus manifest, else the space's
    arch: str | None = None  # standalone baseline: train only this architecture (id), no weight sharing
    init_from: str | None = None  # a released supernet (.safetensors) to start from instead of seed's init

    def validate(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "eval_every", "ckpt_every", "eval_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise HwlmError(f"invalid {name}: {v!r}; allowed: a positive integer")
        if self.n_random < 0:
            raise HwlmError(f"invalid n_random: {self.n_random!r}; allowed: an integer >= 0")
        if not 0.0 <= self.distill <= 1.0:
            raise HwlmError(f"invalid distill: {self.distill!r}; allowed: a weight in [0, 1]")
        check_seed(self.seed)
        from benchmark.spaces import get_space

        space = get_space(self.space)  # raises ArchitectureError naming the field
        if self.arch is not None:
            space.from_id(self.arch)
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise HwlmError(f"invalid init_from: {self.init_from!r}; allowed: a supernet .safetensors file")
        if not 0 <= self.warmup < self.steps:
            raise HwlmError(f"invalid warmup: {self.warmup!r}; allowed: 0 <= warmup < steps={self.steps}")
        return self


def lr_at(step: int, c: TrainConfig) -> float:
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    progress = (step - c.warmup) / max(1, c.steps - c.warmup)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def evaluate(net: Supernet, arch, tokens: np.ndarray, block_size: int, max_tokens: int) -> dict:
    """Validation loss, perplexity and accuracy on deterministic windows of ``tokens``."""
    from benchmark.supernet.perplexity import measure_perplexity

    r = measure_perplexity(net, arch, tokens, max_tokens=max_tokens, block_size=block_size)
    return {"loss": r.loss, "perplexity": r.perplexity, "token_accuracy": r.token_accuracy, "tokens": r.tokens}


# ---------------------------------------------------------------------- checkpoints
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def save_checkpoint(out_dir: Path, net: Supernet, opt, step: int, rng: np.random.Generator, config: TrainConfig) -> None:
    """Write step-named weight files, then atomically point state.json at them."""
    ck = out_dir / "checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    model_file, optim_file = f"model-{step}.safetensors", f"optim-{step}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ck / model_file))
    tensors, groups = _optimizer_tensors(opt)
    save_file(tensors, str(ck / optim_file))
    state = {"step": step, "model": model_file, "optim": optim_file, "param_groups": groups,
             "rng": rng.bit_generator.state, "config": dataclasses.asdict(config)}
    write_text(ck / STATE_FILE, json.dumps(state, default=int))
    for old in ck.glob("*.safetensors"):
        if old.name not in (model_file, optim_file):
            old.unlink()


def load_checkpoint(out_dir: Path, net: Supernet, opt) -> tuple[int, dict]:
    ck = out_dir / "checkpoint"
    with open(ck / STATE_FILE) as f:
        state = json.load(f)
    net.load_state_dict(load_file(str(ck / state["model"])))
    tensors = load_file(str(ck / state["optim"]))
    per_param: dict[int, dict] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return int(state["step"]), state


# ---------------------------------------------------------------------- training
def train(config: TrainConfig, progress: bool = True, until: int | None = None) -> Path:
    """Train (or resume) a supernet; returns the output directory.

    One function on purpose (~85 lines): a step's order of RNG draws, updates, log line and
    checkpoint is what makes resume bit-exact, and it stays readable top to bottom in one place.

    ``until``: stop (with a checkpoint) after this many steps of the ``config.steps``-step
    schedule, e.g. the halfway point of a run; rerun with a larger ``until`` or none to go on.
    """
    c = config.validate()
    stop = c.steps if until is None else until
    if not isinstance(stop, int) or not 0 < stop <= c.steps:
        raise HwlmError(f"invalid until: {until!r}; allowed: an integer in [1, steps={c.steps}]")
    if c.threads:
        torch.set_num_threads(c.threads)
    out = Path(c.out_dir)
    train_tokens = load_split("train", c.data_dir)
    val_tokens = load_split("val", c.data_dir)
    vocab = c.vocab_size or _corpus_vocab(c.data_dir)
    net = Supernet(c.space, vocab_size=vocab, block_size=c.block_size).init_weights(c.seed)
    if c.init_from is not None:  # fine-tuning: a released supernet's weights (sha256-checked where listed)
        _load_weights(net, c.init_from)
    block = net.block_size
    decay = [p for n, p in net.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in net.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(c.seed)
    step = 0
    out.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves no empty directory
    log_path = out / "log.jsonl"
    if (out / "checkpoint" / STATE_FILE).exists():
        step, state = load_checkpoint(out, net, opt)
        saved = TrainConfig(**state["config"])
        if saved.arch is not None and c.arch is not None and canonical_id(saved.arch) == canonical_id(c.arch):
            saved = dataclasses.replace(saved, arch=c.arch)  # one architecture, its id in either form
        if dataclasses.replace(saved, steps=c.steps, threads=c.threads) != c:
            raise HwlmError(f"invalid resume of {out}: its config {dataclasses.asdict(saved)} differs from "
                             f"{dataclasses.asdict(c)}; allowed: the same config (steps may grow)")
        rng.bit_generator.state = state["rng"]
        _truncate_log(log_path, step)
        print(f"resumed {out} at step {step}")
    space = net.space
    largest, smallest = space.largest(), space.smallest()
    # what is trained (and validated) each step: the sandwich, or one fixed architecture (standalone)
    fixed = space.from_id(c.arch) if c.arch else None
    watched = (("arch", fixed),) if fixed else (("largest", largest), ("smallest", smallest))
    net.train()
    bar = tqdm(total=stop, initial=min(step, stop), disable=not progress, desc=f"supernet {c.space}", unit="step")
    with open(log_path, "a") as log:
        while step < stop:
            t0 = time.perf_counter()
            lr = lr_at(step, c)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = get_batch(train_tokens, c.batch_size, block, rng)
            archs = [fixed] if fixed else [largest, smallest] + space.sample(rng, n=c.n_random)
            names = ["arch"] if fixed else ["largest", "smallest"] + [f"random{k}" for k in range(c.n_random)]
            losses = {}
            teacher = None
            for k, arch in enumerate(archs):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.bf16):
                    logits = net(x, arch)
                loss = lm_loss(logits, y)
                losses[names[k]] = loss.item()
                if c.distill > 0:
                    if k == 0:
                        teacher = F.softmax(logits.detach().float(), -1)
                    else:
                        kd = F.kl_div(F.log_softmax(logits.float(), -1).flatten(0, 1), teacher.flatten(0, 1),
                                      reduction="batchmean")
                        loss = (1 - c.distill) * loss + c.distill * kd
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), c.grad_clip).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            entry = {"step": step, "lr": lr, "grad_norm": grad_norm, "loss": losses,
                     "tokens_per_s": len(archs) * x.numel() / dt, "time": time.time()}
            if step % c.eval_every == 0 or step == c.steps:
                entry["val"] = {name: evaluate(net, a, val_tokens, block, c.eval_tokens) for name, a in watched}
                net.train()
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if step % c.ckpt_every == 0 or step in (c.steps, stop):
                save_checkpoint(out, net, opt, step, rng, c)
            bar.update(1)
            bar.set_postfix(loss="/".join(f"{losses[n]:.3f}" for n, _ in watched),
                            tok_s=f"{entry['tokens_per_s']:.0f}")
    bar.close()
    print(f"supernet checkpoint: {out / 'checkpoint'}; log: {log_path}")
    return out


def _load_weights(net: Supernet, path: str) -> None:
    """Copy a released supernet's weights into ``net``, which must have its shape."""
    from benchmark.supernet.elastic import load_supernet

    src = load_supernet(path, net.space.name)
    if (src.vocab_size, src.block_size) != (net.vocab_size, net.block_size):
        raise HwlmError(f"invalid init_from: {path!r} has vocabulary {src.vocab_size} and context {src.block_size}; "
                        f"allowed: a supernet of this run's ({net.vocab_size}, {net.block_size})")
    net.load_state_dict(src.state_dict())


def _corpus_vocab(data_dir: str) -> int | None:
    from tokenizers import Tokenizer

    path = Path(data_dir) / "tokenizer.json"
    return Tokenizer.from_file(str(path)).get_vocab_size() if path.exists() else None


def _truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if not log_path.exists():
        return
    keep = [line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(log_path, "".join(line + "\n" for line in keep))


def read_log(log_path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]


def plot_log(log_path: str | Path, out_png: str | Path) -> Path:
    """Training loss per sandwich member and validation perplexity against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark.plotting import save_figure

    entries = read_log(log_path)
    steps = np.array([e["step"] for e in entries])
    watched = ("arch",) if "arch" in entries[0]["loss"] else ("largest", "smallest")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in watched:
        vals = np.array([e["loss"][name] for e in entries])
        k = max(1, len(vals) // 100)
        smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
        a1.plot(steps[k - 1:], smooth, label=f"{name} (train, {k}-step mean)")
    a1.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="training loss")
    a1.legend()
    val = [e for e in entries if "val" in e]
    for name in watched:
        a2.plot([e["step"] for e in val], [e["val"][name]["perplexity"] for e in val], marker="o", label=name)
    a2.set(xlabel="step", ylabel="validation perplexity", yscale="log", title="validation")
    a2.legend()
    return save_figure(fig, out_png)


def load_run(run_dir: str | Path) -> tuple[Supernet, dict]:
    """The latest weights of a training run (a :class:`Supernet`, in eval mode) and its JSON state."""
    run_dir = Path(run_dir)
    with open(run_dir / "checkpoint" / STATE_FILE) as f:
        state = json.load(f)
    c = TrainConfig(**state["config"])
    vocab = c.vocab_size or _corpus_vocab(c.data_dir)
    net = Supernet(c.space, vocab_size=vocab, block_size=c.block_size)
    net.load_state_dict(load_file(str(run_dir / "checkpoint" / state["model"])))
    return net.eval(), state


def release_checkpoint(run_dir: str | Path, out_path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Save a run's latest weights as the released supernet file (safetensors, fp16 by default),
    with the step, the training config and the tokenizer's sha256 in its metadata."""
    from benchmark.supernet.corpus import load_manifest
    from benchmark.supernet.elastic import save_supernet

    net, state = load_run(run_dir)
    c = TrainConfig(**state["config"])
    tokenizer_sha = load_manifest(c.data_dir).get("tokenizer", {}).get("sha256", "")
    save_supernet(net, out_path, dtype=dtype, step=str(state["step"]), train_config=json.dumps(state["config"]),
                  tokenizer_sha256=tokenizer_sha)
    return Path(out_path)
