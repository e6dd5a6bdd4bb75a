"""Export a sub-network of a trained supernet as a Hugging Face ``transformers`` model.

:func:`export_architecture` slices the weights of one architecture out of a supernet and writes
a directory that ``transformers`` loads in a process that never imports this package::

    out/
      config.json              HwlmConfig (model_type "hwlm", auto_map -> the two files below,
                               the architecture id and where the weights came from)
      configuration_hwlm.py    copied from benchmark/hf/ (imports only transformers)
      modeling_hwlm.py         copied from benchmark/hf/ (imports only torch and transformers)
      model.safetensors        the sliced weights (float32 by default)
      generation_config.json   bos/eos/pad = <|endoftext|>
      tokenizer.json           the byte-level BPE of the supernet's corpus
      tokenizer_config.json    PreTrainedTokenizerFast, eos/bos/pad <|endoftext|>, left padding
      README.md                a short model card

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("out", trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained("out")
    ids = tok("ROMEO:", return_tensors="pt")
    print(tok.decode(model.generate(**ids, max_new_tokens=40, do_sample=True)[0]))

Before it returns, the export is checked: the exported model (loaded in this process with the
copied modelling code) must give the supernet's logits for that architecture (max abs diff
< 1e-4 in float32; for float16/bfloat16 exports, against the supernet's weights rounded to that
dtype). ``hwlm export`` is the command line (:func:`add_export_parser`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import HwlmError
from benchmark.files import sha256_file
from benchmark.settings import DTYPES
from benchmark.spaces import Architecture, ArchitectureError, SearchSpace, get_space

if TYPE_CHECKING:  # torch is imported where an export runs, so that `hwlm --help` does not pay for it
    import torch

__all__ = [
    "ExportError",
    "EXPORT_FILES",
    "VERIFY_ATOL",
    "default_checkpoint",
    "default_tokenizer",
    "resolve_architecture",
    "export_architecture",
    "verify_export",
    "generate_text",
    "add_export_parser",
    "run_export",
]

EXPORT_FILES = ("config.json", "configuration_hwlm.py", "modeling_hwlm.py", "model.safetensors",
                "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md")
VERIFY_ATOL = 1e-4
ARCH_KEYWORDS = ("largest", "smallest")


class ExportError(HwlmError):
    """Invalid input to an export: architecture, output directory, dtype, tokenizer or checkpoint."""


def default_checkpoint() -> Path:
    from benchmark.paths import data_dir

    return data_dir() / "supernet_t.safetensors"


def default_tokenizer() -> Path:
    from benchmark.paths import data_dir

    return data_dir() / "tokenizer.json"


# --------------------------------------------------------------------------------------------
# inputs


def _allowed_archs(sp: SearchSpace) -> str:
    return (f"an architecture id of space {sp.name!r}, gpt-{sp.name}-{{L}}-{{E}}-{{mlp_1}}-...-{{mlp_L}}-"
            f"{{head_1}}-...-{{head_L}}-{{True|False}} with L in {list(sp.n_layer_choices)}, E in "
            f"{list(sp.embed_dim_choices)}, mlp_ratio in {list(sp.mlp_ratio_choices)}, n_head in "
            f"{list(sp.n_head_choices)} (e.g. {sp.smallest().id!r}), an Architecture of that space, "
            f"or one of {list(ARCH_KEYWORDS)}")


def resolve_architecture(arch: Any, space: str | SearchSpace) -> Architecture:
    """An :class:`Architecture` of ``space`` from an Architecture, an id, an encoding, a
    HW-GPT-Bench dict or ``"largest"`` / ``"smallest"``; :class:`ExportError` otherwise."""
    sp = get_space(space)
    if isinstance(arch, str) and arch in ARCH_KEYWORDS:
        return sp.largest() if arch == "largest" else sp.smallest()
    try:
        return sp.validate(arch)
    except ArchitectureError as e:
        shown = arch.id if isinstance(arch, Architecture) else arch
        raise ExportError(f"architecture {shown!r} is not an architecture of the supernet's space {sp.name!r} "
                          f"({e}); allowed: {_allowed_archs(sp)}") from None


def _dtype(dtype: str | torch.dtype) -> tuple[str, torch.dtype]:
    """``(torch's name, torch dtype)`` of a package dtype name (fp32, fp16, bf16) or a torch dtype;
    the exported files use torch's names, which ``transformers`` reads."""
    from benchmark.model import TORCH_DTYPES

    for name, dt in TORCH_DTYPES.items():
        if dtype == name or dtype == dt:
            return str(dt).removeprefix("torch."), dt
    raise ExportError.invalid("dtype", dtype, list(TORCH_DTYPES))


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"output directory {str(out)!r} is an existing file; allowed: a new or empty directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        n = sum(1 for _ in out.iterdir())
        raise ExportError(f"output directory {str(out)!r} exists and is not empty ({n} entries); allowed: a new "
                          "or empty directory, or force=True (--force) to overwrite the export files in it")


def _load_net(supernet):
    from benchmark.supernet.elastic import CheckpointError, Supernet, load_supernet

    if isinstance(supernet, Supernet):
        return supernet, None
    path = Path(supernet) if supernet is not None else default_checkpoint()
    if path.is_dir():
        raise CheckpointError(f"supernet checkpoint {path}: is a directory; allowed: a .safetensors file written "
                              "by save_supernet (hwlm train, or hwlm download for a release)")
    if not path.exists():
        raise CheckpointError(f"supernet checkpoint {path}: no such file; allowed: a .safetensors file written by "
                              "save_supernet (train one with `hwlm train`, or pass --checkpoint PATH)")
    return load_supernet(path), path


def _load_tokenizer(path):
    from benchmark.supernet.corpus import CorpusError, load_tokenizer

    path = Path(path) if path is not None else default_tokenizer()
    try:
        return load_tokenizer(path), path
    except CorpusError as e:
        raise ExportError(f"tokenizer {str(path)!r}: {e}") from None
    except Exception as e:  # tokenizers raises a bare Exception on a corrupt file
        raise ExportError(f"tokenizer {str(path)!r}: not a readable tokenizer.json ({e}); allowed: a tokenizer.json "
                          "written by hwlm prepare-corpus (data/tokenizer.json)") from None




# --------------------------------------------------------------------------------------------
# export


# One linear pipeline (resolve the inputs, slice, write every file into a temporary directory,
# verify, move into place), kept in one function so that the temporary's cleanup covers all of it.
def export_architecture(supernet_path_or_net=None, arch: Any = None, out_dir=None, tokenizer_path=None,
                        dtype: str = "fp32", *, force: bool = False, verify: bool = True) -> Path:
    """Write architecture ``arch`` of a supernet as a ``transformers`` model directory.

    Args:
        supernet_path_or_net: a :class:`~benchmark.supernet.elastic.Supernet`, or the path of a
            checkpoint written by ``save_supernet`` (default ``<data dir>/supernet_t.safetensors``).
        arch: an :class:`Architecture` of the supernet's space, its id, ``"largest"`` or ``"smallest"``.
        out_dir: the directory to write; must not exist or be empty, unless ``force``.
        tokenizer_path: the ``tokenizer.json`` (default ``<data dir>/tokenizer.json``).
        dtype: ``"fp32"`` (default), ``"fp16"`` or ``"bf16"`` for the saved weights.
        force: write into an existing non-empty directory, replacing the export files in it.
        verify: load the export back and check its logits against the supernet's (see module doc).

    Returns the output directory. Raises :class:`ExportError` (or
    :class:`~benchmark.supernet.elastic.CheckpointError` for a bad checkpoint), both ``ValueError``,
    naming the bad input and what is allowed.
    """
    from safetensors.torch import save_file

    from benchmark.version import __version__
    from benchmark.hf import AUTO_MAP, CODE_FILES, HF_DIR
    from benchmark.supernet.corpus import EOT_TOKEN, eot_id

    if arch is None:
        raise ExportError(f"architecture: missing; allowed: {_allowed_archs(get_space('t'))}")
    if out_dir is None:
        raise ExportError("output directory: missing; allowed: a new or empty directory")
    out = Path(out_dir)
    _check_out_dir(out, force)
    dtype_name, torch_dtype = _dtype(dtype)
    tok, tok_path = _load_tokenizer(tokenizer_path)
    net, ckpt_path = _load_net(supernet_path_or_net)
    arch = resolve_architecture(arch, net.space)
    if tok.get_vocab_size() > net.vocab_size:
        raise ExportError(f"tokenizer {str(tok_path)!r} has {tok.get_vocab_size()} tokens, more than the "
                          f"supernet's {net.vocab_size} embedding rows; allowed: the tokenizer the supernet was "
                          "trained with")

    from transformers import GenerationConfig

    from benchmark.hf.configuration_hwlm import HwlmConfig

    eot = eot_id(tok)
    meta = dict(getattr(net, "metadata", None) or {})
    source: dict[str, Any] = {"hwlm_bench_version": __version__, "space": net.space.name,
                              "supernet_vocab_size": net.vocab_size, "supernet_block_size": net.block_size}
    if ckpt_path is not None:
        source.update(checkpoint=ckpt_path.name, checkpoint_sha256=sha256_file(ckpt_path))
    source.update({f"checkpoint_{k}": v for k, v in meta.items() if k not in ("format",)})
    config = HwlmConfig(
        vocab_size=net.vocab_size, embed_dim=arch.embed_dim, n_head=list(arch.n_head),
        mlp_ratio=list(arch.mlp_ratio), bias=arch.bias, head_size=net.space.head_size, block_size=net.block_size,
        architecture_id=arch.id, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, torch_dtype=dtype_name,
        hwlm_source=source,
    )
    config.architectures = ["HwlmForCausalLM"]
    config.auto_map = dict(AUTO_MAP)

    sd = {f"model.{k}": v.to(torch_dtype).contiguous() for k, v in net.sub_state_dict(arch).items()}
    n_params = sum(v.numel() for v in sd.values())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config.save_pretrained(tmp)
        for name in CODE_FILES:
            shutil.copyfile(HF_DIR / name, tmp / name)
        save_file(sd, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "architecture_id": arch.id, "dtype": dtype_name})
        GenerationConfig(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot).save_pretrained(tmp)
        tok.save(str(tmp / "tokenizer.json"))
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT_TOKEN, "eos_token": EOT_TOKEN,
                      "pad_token": EOT_TOKEN, "model_max_length": net.block_size, "padding_side": "left",
                      "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"]}
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
        (tmp / "README.md").write_text(_model_card(arch, n_params, dtype_name, source, tok.get_vocab_size()))
        if verify:
            verify_export(tmp, net, arch)
        if out.is_dir():  # empty, or force: replace our files, leave others alone
            for f in tmp.iterdir():
                os.replace(f, out / f.name)
            tmp.rmdir()
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def verify_export(model_dir, net, arch: Architecture, atol: float = VERIFY_ATOL, seq_len: int = 32) -> float:
    """Max abs logit difference between the export in ``model_dir`` (run in float32 with its
    modelling code) and ``net`` for ``arch`` (for half-precision exports, with ``net``'s weights
    rounded to that dtype); :class:`ExportError` if it is ``atol`` or more."""
    from safetensors import safe_open

    from benchmark.hf.configuration_hwlm import HwlmConfig
    from benchmark.hf.modeling_hwlm import HwlmForCausalLM

    import torch

    model_dir = Path(model_dir)
    config = HwlmConfig.from_pretrained(model_dir)
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
    saved_dtype = next(iter(sd.values())).dtype
    with torch.device("meta"):
        model = HwlmForCausalLM(config)
    model = model.to_empty(device="cpu")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model.eval()
    T = min(seq_len, net.block_size)
    x = torch.randint(0, net.vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    net_param = next(net.parameters())
    with torch.no_grad():
        if saved_dtype == torch.float32 and net_param.dtype == torch.float32:
            ref = net(x.to(net_param.device), arch)
        else:  # the dense model with the weights as saved, in float32
            dense = net.extract_dense(arch).float()
            for p in dense.parameters():
                p.data = p.data.to(saved_dtype).float()
            ref = dense(x.to(net_param.device))
        got = model(x, use_cache=False).logits
    diff = float((got - ref.float().cpu()).abs().max())
    if not diff < atol:
        raise ExportError(f"exported model in {str(model_dir)!r} does not reproduce the supernet's logits for "
                          f"{arch.id}: max abs diff {diff:.3g}; allowed: < {atol:g}")
    return diff


def _model_card(arch: Architecture, n_params: int, dtype: str, source: dict, tok_vocab: int) -> str:
    heads = ", ".join(str(h) for h in arch.n_head)
    mlps = ", ".join(str(m) for m in arch.mlp_ratio)
    prov = "\n".join(f"| {k} | `{v}` |" for k, v in source.items())
    return f"""# {arch.id}

A sub-network of the hwlm-bench weight-sharing supernet of space `{arch.space}`, exported with
`hwlm export`. Its weights are the supernet's, sliced (first-k) to this architecture; it has not
been fine-tuned on its own.

| field | value |
| --- | --- |
| layers | {arch.n_layer} |
| embed_dim | {arch.embed_dim} |
| heads per layer (size {arch.head_size}) | {heads} |
| MLP ratio per layer | {mlps} |
| bias | {arch.bias} |
| parameters | {n_params:,} |
| weights dtype | {dtype} |
| tokenizer | byte-level BPE, {tok_vocab} tokens, `<|endoftext|>` = bos/eos/pad |

GPT-NeoX-style dense GPT: parallel residual, LayerNorm (eps 1e-5), exact GELU, rotary position
embedding on the first half of each head (rotate-half, base 10000), tied embeddings, causal
attention. The modelling code is in `modeling_hwlm.py` (torch + transformers only).

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(".", trust_remote_code=True)
tok = AutoTokenizer.from_pretrained(".")
ids = tok("ROMEO:", return_tensors="pt")
out = model.generate(**ids, max_new_tokens=40, do_sample=True, top_k=40)
print(tok.decode(out[0]))
```

## Provenance

| key | value |
| --- | --- |
{prov}
"""


# --------------------------------------------------------------------------------------------
# generation demo


def generate_text(model_dir, prompt: str, max_new_tokens: int = 50, *, temperature: float = 0.8,
                  top_k: int | None = 40, seed: int = 0) -> str:
    """Load an export with ``transformers`` (``trust_remote_code``, local files only) and return
    ``prompt`` followed by ``max_new_tokens`` generated tokens (or fewer, at ``<|endoftext|>`` or the
    context length). Sampling with ``temperature`` / ``top_k`` and a seed (greedy when
    ``temperature == 0``); the global torch RNG state is left as it was."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"model directory {str(model_dir)!r} has no config.json; allowed: a directory written "
                          "by export_architecture / hwlm export")
    if not isinstance(prompt, str) or not prompt:
        raise ExportError(f"invalid prompt: {prompt!r}; allowed: a non-empty string")
    if max_new_tokens < 1:
        raise ExportError(f"invalid max_new_tokens: {max_new_tokens!r}; allowed: an int >= 1")
    # trust_remote_code for the tokenizer too: transformers 5 reads config.json (our HwlmConfig) to
    # pick the tokenizer class and would otherwise ask on stdin whether to run the export's code
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, local_files_only=True).eval()
    ids = tok(prompt, return_tensors="pt")
    room = model.config.block_size - ids["input_ids"].shape[1]
    if room < 1:
        raise ExportError(f"prompt of {ids['input_ids'].shape[1]} tokens; allowed: fewer than the context length "
                          f"{model.config.block_size}")
    kwargs: dict[str, Any] = dict(max_new_tokens=min(max_new_tokens, room), pad_token_id=tok.pad_token_id)
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=float(temperature), top_k=top_k or 0)
    else:
        kwargs.update(do_sample=False)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        out = model.generate(**ids, **kwargs)
    return tok.decode(out[0], skip_special_tokens=True)


# --------------------------------------------------------------------------------------------
# command line


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hwlm export`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "export", help="export a sub-network as a Hugging Face transformers model (+ tokenizer)",
        description="Slice one architecture out of a trained supernet and write a directory that "
                    "transformers loads with AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True) "
                    "and AutoTokenizer.from_pretrained(DIR), without hwlm-bench installed. The export is checked "
                    "against the supernet's logits before the command succeeds.")
    p.add_argument("--arch", required=True,
                   help="architecture id (e.g. gpt-t-4-64-2-2-2-2-2-2-2-2-False), 'largest' or 'smallest'")
    p.add_argument("--out", required=True, help="output directory (must be new or empty unless --force)")
    p.add_argument("--checkpoint", default=None,
                   help="supernet checkpoint (default: <data dir>/supernet_t.safetensors)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: <data dir>/tokenizer.json)")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="weights dtype (default fp32)")
    p.add_argument("--force", action="store_true", help="write into an existing non-empty directory")
    p.add_argument("--no-verify", action="store_true", help="skip the logits check against the supernet")
    p.add_argument("--generate", metavar="PROMPT", default=None,
                   help="after exporting, load the export with transformers and print a continuation of PROMPT")
    p.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default 50)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="sample from the k most likely tokens (default 40)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    """``hwlm export``; a bad argument raises the package's error, which ``hwlm`` prints as one line."""
    out = export_architecture(args.checkpoint, args.arch, args.out, tokenizer_path=args.tokenizer,
                              dtype=args.dtype, force=args.force, verify=not args.no_verify)
    config = json.loads((out / "config.json").read_text())
    print(f"exported {config['architecture_id']} to {out}")
    if args.generate is not None:
        print(generate_text(out, args.generate, args.max_new_tokens, temperature=args.temperature,
                            top_k=args.top_k, seed=args.seed))
    return 0
