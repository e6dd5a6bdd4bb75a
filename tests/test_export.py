"""Export of sub-networks as transformers models: loadable without the package, same logits."""

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from benchmark.export import ExportError, export_architecture, generate_text, resolve_architecture  # noqa: E402
from benchmark.hf import CODE_FILES, HF_DIR  # noqa: E402
from benchmark.spaces import get_space  # noqa: E402
from benchmark.supernet.elastic import CheckpointError, Supernet, save_supernet  # noqa: E402

T = get_space("t")
VOCAB = 300
SAMPLE = os.path.join(os.path.dirname(__file__), "data", "corpus_sample.txt")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models: one thread is faster than two fighting over busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 300-token BPE, a random supernet (non-zero biases) and its fp32 checkpoint."""
    from benchmark.supernet.corpus import train_tokenizer

    d = tmp_path_factory.mktemp("export_assets")
    with open(SAMPLE, encoding="utf-8") as f:
        texts = [t for t in f.read().split("\n\n") if t.strip()]
    tok = train_tokenizer(texts, VOCAB, progress=False)
    tok.save(str(d / "tokenizer.json"))
    net = Supernet("t", vocab_size=VOCAB).init_weights(0).eval()
    with torch.no_grad():  # non-zero biases, so that bias on/off matters
        for p in net.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    ckpt = d / "supernet_t.safetensors"
    save_supernet(net, ckpt, dtype=torch.float32, step="3")
    return {"dir": d, "tok": d / "tokenizer.json", "ckpt": ckpt, "net": net}


# ------------------------------------------------------------------------------------ clean process

_CHILD = textwrap.dedent(r"""
    import importlib, json, sys
    # this package is installed editable: take its import hooks away, as if it were not installed
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
    sys.path_importer_cache.clear()
    try:
        import benchmark  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("hwlm-bench is importable in the clean process: " + benchmark.__file__)

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    report = {}
    for d in sys.argv[1:]:
        tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True, local_files_only=True).eval()
        x = torch.from_numpy(np.load(d + "/../x.npy"))
        expected = np.load(d + "/../logits.npy")
        greedy = np.load(d + "/../greedy.npy")
        with torch.no_grad():
            logits = model(x).logits.numpy()
            # greedy decoding with transformers' KV cache (DynamicCache) = the supernet's greedy continuation
            cont = model.generate(torch.from_numpy(greedy[:, :8]), max_new_tokens=greedy.shape[1] - 8,
                                  do_sample=False, attention_mask=torch.ones(greedy.shape[0], 8, dtype=torch.long))
            ids = tok("ROMEO: Good morrow", return_tensors="pt")
            torch.manual_seed(0)
            sampled = model.generate(**ids, max_new_tokens=5, do_sample=True, top_k=20)
        report[d] = {
            "model_module": type(model).__module__,
            "max_abs_diff": float(np.abs(logits - expected).max()),
            "greedy_matches_supernet": bool(np.array_equal(cont.numpy(), greedy)),
            "sampled_len": int(sampled.shape[1] - ids["input_ids"].shape[1]),
            "text": tok.decode(sampled[0]),
            "eos_token": tok.eos_token,
            "eos_token_id": tok.eos_token_id,
            "round_trip": tok.decode(tok("Thou  art\nmore lovely")["input_ids"]),
        }
    # AutoTokenizer without trust_remote_code also works (transformers falls back to a plain config)
    plain = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
    report["plain_tokenizer_eos"] = plain.eos_token
    print("REPORT" + json.dumps(report))
""")


def _expected(net, arch, out_root, seed):
    """Write the supernet's logits for a fixed input and its greedy continuation beside an export."""
    x = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        np.save(out_root / "x.npy", x.numpy())
        np.save(out_root / "logits.npy", net(x, arch).numpy())
        seq = x[:, :8]
        for _ in range(10):
            seq = torch.cat([seq, net(seq, arch)[:, -1].argmax(-1, keepdim=True)], 1)
        np.save(out_root / "greedy.npy", seq.numpy())


def test_export_loads_in_clean_process_with_same_logits(assets, tmp_path):
    net = assets["net"]
    arch = T.sample(5)
    dirs = []
    for bias in (True, False):
        a = arch.replace(bias=bias)
        root = tmp_path / f"bias{bias}"
        root.mkdir()
        out = export_architecture(assets["ckpt"], a.id, root / "model", tokenizer_path=assets["tok"])
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["config.json", "configuration_hwlm.py", "modeling_hwlm.py", "model.safetensors",
             "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md"])
        config = json.loads((out / "config.json").read_text())
        assert config["architecture_id"] == a.id and config["bias"] is bias
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hwlm.HwlmForCausalLM"
        assert config["hwlm_source"]["checkpoint_step"] == "3"
        _expected(net, a, root, seed=int(bias))
        dirs.append(str(out))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    r = subprocess.run([sys.executable, "-I", str(script), *dirs], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(r.stdout.split("REPORT", 1)[1])
    for d in dirs:
        rep = report[d]
        assert rep["model_module"].startswith("transformers_modules"), rep
        assert rep["max_abs_diff"] < 1e-4, rep
        assert rep["greedy_matches_supernet"], rep
        assert rep["sampled_len"] == 5
        assert rep["text"].startswith("ROMEO: Good morrow")
        assert rep["eos_token"] == "<|endoftext|>" and rep["eos_token_id"] == 0
        assert rep["round_trip"] == "Thou  art\nmore lovely"
    assert report["plain_tokenizer_eos"] == "<|endoftext|>"


# ------------------------------------------------------------------------------------ modelling code


def test_modelling_files_import_only_torch_and_transformers():
    for name in CODE_FILES:
        tree = ast.parse((HF_DIR / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = set() if node.level else {node.module.split(".")[0]}
            else:
                continue
            assert roots <= {"torch", "transformers", "__future__", "dataclasses"}, (name, roots)


def _hf_model(net, arch):
    from benchmark.hf.configuration_hwlm import HwlmConfig
    from benchmark.hf.modeling_hwlm import HwlmForCausalLM

    config = HwlmConfig(vocab_size=VOCAB, embed_dim=arch.embed_dim, n_head=arch.n_head, mlp_ratio=arch.mlp_ratio,
                        bias=arch.bias, head_size=T.head_size, block_size=T.block_size)
    model = HwlmForCausalLM(config).eval()
    model.load_state_dict({f"model.{k}": v for k, v in net.sub_state_dict(arch).items()}, strict=True)
    return model


@pytest.mark.parametrize("bias", [True, False])
def test_cache_padding_and_loss(assets, bias):
    net = assets["net"]
    arch = T.sample(11).replace(bias=bias, embed_dim=64)
    model = _hf_model(net, arch)
    x = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x, arch)
        out = model(x, use_cache=True)
        assert (out.logits - ref).abs().max() < 1e-4
        # incremental: a prefix, a chunk of 4, then single tokens, all through the returned cache
        first = model(x[:, :12], use_cache=True)
        cache = first.cache if hasattr(first, "cache") else first.past_key_values
        parts = [first.logits, model(x[:, 12:16], cache=cache).logits]
        parts += [model(x[:, i:i + 1], cache=cache).logits for i in range(16, 20)]
        assert (torch.cat(parts, 1) - ref).abs().max() < 1e-4
        # left padding: row 1 is a shorter prompt padded on the left
        am = torch.ones(2, 20, dtype=torch.long)
        am[1, :6] = 0
        padded = model(x, attention_mask=am).logits
        assert (padded[0] - ref[0]).abs().max() < 1e-4
        assert (padded[1, 6:] - net(x[1:, 6:], arch)[0]).abs().max() < 1e-4
        gen_b = model.generate(x[:, :12], attention_mask=am[:, :12], max_new_tokens=5, do_sample=False,
                               pad_token_id=0)
        gen_1 = model.generate(x[1:, 6:12], max_new_tokens=5, do_sample=False, pad_token_id=0)
        assert torch.equal(gen_b[1, 12:], gen_1[0, 6:])
        no_cache = model.generate(x[1:, 6:12], max_new_tokens=5, do_sample=False, pad_token_id=0, use_cache=False)
        assert torch.equal(no_cache, gen_1)
        loss = model(x, labels=x).loss
        expected = torch.nn.functional.cross_entropy(ref[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        assert abs(float(loss) - float(expected)) < 1e-4


def test_half_precision_export_and_generate_text(assets, tmp_path):
    out = export_architecture(assets["net"], "smallest", tmp_path / "m16", tokenizer_path=assets["tok"],
                              dtype="bf16")
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("model.wte.weight").dtype == torch.bfloat16
    a = generate_text(out, "ROMEO:", 6, temperature=0.8, seed=1)
    b = generate_text(out, "ROMEO:", 6, temperature=0.8, seed=1)
    assert a == b and a.startswith("ROMEO:")


# ------------------------------------------------------------------------------------ bad input


def test_bad_architectures(assets, tmp_path):
    kw = dict(tokenizer_path=assets["tok"])
    with pytest.raises(ExportError, match=r"space 't'.*allowed: an architecture id of space 't'"):
        export_architecture(assets["ckpt"], get_space("s").smallest().id, tmp_path / "a", **kw)
    with pytest.raises(ExportError, match=r"space 't'"):
        export_architecture(assets["net"], get_space("s").largest(), tmp_path / "a", **kw)
    with pytest.raises(ExportError, match=r"'gpt-t-banana'.*allowed:.*largest"):
        export_architecture(assets["ckpt"], "gpt-t-banana", tmp_path / "a", **kw)
    with pytest.raises(ExportError, match=r"n_layer"):
        export_architecture(assets["ckpt"], "gpt-t-9-64-222222222-222222222-True", tmp_path / "a", **kw)
    assert not (tmp_path / "a").exists()
    assert resolve_architecture("largest", "t") == T.largest()


def test_bad_checkpoint_tokenizer_dtype(assets, tmp_path):
    kw = dict(tokenizer_path=assets["tok"])
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: no such file"):
        export_architecture(tmp_path / "missing.safetensors", "smallest", tmp_path / "a", **kw)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match=r"corrupt\.safetensors: not a readable"):
        export_architecture(bad, "smallest", tmp_path / "a", **kw)
    with pytest.raises(ExportError, match=r"tokenizer .*nope\.json"):
        export_architecture(assets["ckpt"], "smallest", tmp_path / "a", tokenizer_path=tmp_path / "nope.json")
    with pytest.raises(ExportError, match=r"invalid dtype: 'int8'; allowed: \['fp32', 'fp16', 'bf16'\]"):
        export_architecture(assets["ckpt"], "smallest", tmp_path / "a", dtype="int8", **kw)


def test_output_directory_rules(assets, tmp_path):
    kw = dict(tokenizer_path=assets["tok"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"exists and is not empty.*--force"):
        export_architecture(assets["net"], "smallest", out, **kw)
    export_architecture(assets["net"], "smallest", out, force=True, **kw)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ExportError, match="existing file"):
        export_architecture(assets["net"], "smallest", f, **kw)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_architecture(assets["net"], "smallest", empty, **kw) == empty
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left


def test_cli(assets, tmp_path, monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.setenv("HWLM_DATA_DIR", str(assets["dir"]))  # default checkpoint and tokenizer
    out = tmp_path / "cli"
    assert main(["export", "--arch", "smallest", "--out", str(out), "--generate", "ROMEO:",
                 "--max-new-tokens", "4", "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    assert f"exported {T.smallest().id} to {out}" in text and "ROMEO:" in text
    assert main(["export", "--arch", "smallest", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", "--arch", "gpt-s-10-192-2222222222-4444444444-True", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "hwlm export: " in err and "space 't'" in err and len(err.strip().splitlines()) == 1
    assert main(["export", "--arch", "smallest", "--out", str(tmp_path / "y"),
                 "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_names_the_extra_when_transformers_is_missing(assets, tmp_path, monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.setenv("HWLM_DATA_DIR", str(assets["dir"]))
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails as if not installed
    assert main(["export", "--arch", "smallest", "--out", str(tmp_path / "x")]) == 2
    assert "pip install -e '.[export]'" in capsys.readouterr().err
