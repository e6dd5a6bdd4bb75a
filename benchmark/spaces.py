"""Search spaces and architectures.

A space is per-layer heterogeneous, as in HW-GPT-Bench: global ``embed_dim``, ``n_layer`` and
``bias``; per layer ``n_head[i]`` and ``mlp_ratio[i]``. Head size is fixed per space, so the
attention width of layer i is ``n_head[i] * head_size``, independent of ``embed_dim``.

An :class:`Architecture` is immutable and hashable. It has

* a canonical string id ``gpt-{space}-{L}-{E}-{mlp_1}-...-{mlp_L}-{head_1}-...-{head_L}-{True|False}``,
  HW-GPT-Bench's current format (``convert_arch_to_str``): the choices themselves (not indices),
  one dash between every value. The older concatenated form ``gpt-{space}-{L}-{E}-{mlps}-{heads}-{bias}``
  (per-layer values without separators, e.g. ``gpt-t-4-64-2342-2462-True``) is still accepted on
  input where its digits split into choices in exactly one way, and refused where they do not;
* a fixed-length integer encoding of choice indices
  ``[embed, layer, mlp_0..mlp_{Lmax-1}, head_0..head_{Lmax-1}, bias]`` where layers beyond
  ``n_layer`` are padded with ``-1``,
* a HW-GPT-Bench dict (``sample_embed_dim``, ``sample_n_layer``, ``sample_mlp_ratio``,
  ``sample_n_head``, ``sample_bias`` as the strings ``"True"``/``"False"``).

All conversions are lossless. Every invalid input raises :class:`ArchitectureError` (a
``ValueError``) naming the field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.errors import HwlmError
from benchmark.seeds import seeded_rng

PAD = -1  # encoding value of a layer slot beyond n_layer


class ArchitectureError(HwlmError):
    """Invalid architecture, space name, id, encoding or dict."""


def _as_int(field: str, value: Any, allowed: Any) -> int:
    # bool is an int subclass; a bool where a size is expected is a bug, not a 1.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArchitectureError.invalid(field, value, allowed)
    return int(value)


@dataclass(frozen=True)
class SearchSpace:
    """The choices of one search space and the fixed model constants that go with it."""

    name: str
    embed_dim_choices: tuple[int, ...]
    n_layer_choices: tuple[int, ...]
    n_head_choices: tuple[int, ...]
    mlp_ratio_choices: tuple[int, ...]
    bias_choices: tuple[bool, ...]
    head_size: int
    block_size: int  # context length
    vocab_size: int  # padded vocabulary size (rows of the embedding)

    @property
    def max_layers(self) -> int:
        return max(self.n_layer_choices)

    @property
    def encoding_length(self) -> int:
        return 3 + 2 * self.max_layers

    @property
    def encoding_choices(self) -> tuple[int, ...]:
        """Number of choices at each encoding position (for one-hot features and mutation)."""
        lm = self.max_layers
        return (
            (len(self.embed_dim_choices), len(self.n_layer_choices))
            + (len(self.mlp_ratio_choices),) * lm
            + (len(self.n_head_choices),) * lm
            + (len(self.bias_choices),)
        )

    def size(self) -> int:
        """Number of distinct architectures in the space."""
        per_layer = len(self.n_head_choices) * len(self.mlp_ratio_choices)
        return len(self.embed_dim_choices) * len(self.bias_choices) * sum(per_layer**n for n in self.n_layer_choices)

    # ------------------------------------------------------------------ construction
    def arch(self, embed_dim: int, n_layer: int, n_head: Sequence[int] | int, mlp_ratio: Sequence[int] | int,
             bias: bool) -> "Architecture":
        """Build a validated architecture; a scalar ``n_head``/``mlp_ratio`` is used for every layer."""
        if isinstance(n_head, (int, np.integer)) and not isinstance(n_head, bool):
            n_head = (int(n_head),) * _as_int("n_layer", n_layer, self.n_layer_choices)
        if isinstance(mlp_ratio, (int, np.integer)) and not isinstance(mlp_ratio, bool):
            mlp_ratio = (int(mlp_ratio),) * _as_int("n_layer", n_layer, self.n_layer_choices)
        return Architecture(self.name, embed_dim, n_layer, _as_tuple("n_head", n_head), _as_tuple("mlp_ratio", mlp_ratio), bias)

    def largest(self) -> "Architecture":
        return self.arch(max(self.embed_dim_choices), self.max_layers, max(self.n_head_choices),
                         max(self.mlp_ratio_choices), True)

    def smallest(self) -> "Architecture":
        return self.arch(min(self.embed_dim_choices), min(self.n_layer_choices), min(self.n_head_choices),
                         min(self.mlp_ratio_choices), False)

    # ------------------------------------------------------------------ sampling
    def sample(self, seed: int | np.random.Generator | None = None, n: int | None = None):
        """Uniform sample over the space (every architecture equally likely).

        Returns one Architecture, or a list of ``n`` (an integer >= 0). ``seed`` is an integer
        >= 0 or a Generator; ``None`` is refused, because an unseeded sample cannot be reproduced.
        """
        rng = _rng(seed)
        if n is None:
            return self._sample_one(rng)
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ArchitectureError.invalid("n", n, "an integer >= 0 (the number of architectures), or None (one)")
        return [self._sample_one(rng) for _ in range(int(n))]

    def _sample_one(self, rng: np.random.Generator) -> "Architecture":
        # n_layer is drawn in proportion to the number of architectures with that depth,
        # so that the sample is uniform over architectures rather than over depths.
        per_layer = len(self.n_head_choices) * len(self.mlp_ratio_choices)
        weights = np.array([float(per_layer) ** n for n in self.n_layer_choices])
        n_layer = self.n_layer_choices[int(rng.choice(len(weights), p=weights / weights.sum()))]
        embed = self.embed_dim_choices[int(rng.integers(len(self.embed_dim_choices)))]
        heads = tuple(self.n_head_choices[i] for i in rng.integers(len(self.n_head_choices), size=n_layer))
        mlps = tuple(self.mlp_ratio_choices[i] for i in rng.integers(len(self.mlp_ratio_choices), size=n_layer))
        bias = self.bias_choices[int(rng.integers(len(self.bias_choices)))]
        return Architecture(self.name, embed, n_layer, heads, mlps, bias)

    # ------------------------------------------------------------------ neighbourhood
    def neighbours(self, arch: "Architecture") -> list["Architecture"]:
        """All architectures that differ from ``arch`` in exactly one choice.

        Changing ``n_layer`` drops trailing layers or appends layers that copy the last one.
        """
        arch = self.validate(arch)
        out: list[Architecture] = []
        for e in self.embed_dim_choices:
            if e != arch.embed_dim:
                out.append(arch.replace(embed_dim=e))
        for n in self.n_layer_choices:
            if n != arch.n_layer:
                out.append(_resize(arch, n))
        for i in range(arch.n_layer):
            for h in self.n_head_choices:
                if h != arch.n_head[i]:
                    out.append(arch.replace(n_head=arch.n_head[:i] + (h,) + arch.n_head[i + 1:]))
            for m in self.mlp_ratio_choices:
                if m != arch.mlp_ratio[i]:
                    out.append(arch.replace(mlp_ratio=arch.mlp_ratio[:i] + (m,) + arch.mlp_ratio[i + 1:]))
        for b in self.bias_choices:
            if b != arch.bias:
                out.append(arch.replace(bias=b))
        return out

    def mutate(self, arch: "Architecture", seed: int | np.random.Generator, p: float | None = None) -> "Architecture":
        """Resample each choice with probability ``p`` (default 1/number of live choices); the result
        always differs from ``arch``."""
        arch = self.validate(arch)
        rng = _rng(seed)
        n_live = 3 + 2 * arch.n_layer
        if p is None:
            p = 1.0 / n_live
        elif isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise ArchitectureError.invalid("p", p, "a probability in (0, 1]")
        p = float(p)
        if not 0.0 < p <= 1.0:
            raise ArchitectureError.invalid("p", p, "a probability in (0, 1]")
        while True:
            embed, n_layer, bias = arch.embed_dim, arch.n_layer, arch.bias
            heads, mlps = list(arch.n_head), list(arch.mlp_ratio)
            if rng.random() < p:
                embed = self.embed_dim_choices[int(rng.integers(len(self.embed_dim_choices)))]
            if rng.random() < p:
                n_layer = self.n_layer_choices[int(rng.integers(len(self.n_layer_choices)))]
            for i in range(len(heads)):
                if rng.random() < p:
                    heads[i] = self.n_head_choices[int(rng.integers(len(self.n_head_choices)))]
                if rng.random() < p:
                    mlps[i] = self.mlp_ratio_choices[int(rng.integers(len(self.mlp_ratio_choices)))]
            if rng.random() < p:
                bias = self.bias_choices[int(rng.integers(len(self.bias_choices)))]
            new = _resize(Architecture(self.name, embed, arch.n_layer, tuple(heads), tuple(mlps), bias), n_layer)
            if new != arch:
                return new

    # ------------------------------------------------------------------ conversions
    def validate(self, arch: Any) -> "Architecture":
        """Coerce any accepted form (Architecture, id string, encoding, HW-GPT-Bench dict) to an
        Architecture of this space."""
        if isinstance(arch, Architecture):
            if arch.space != self.name:
                raise ArchitectureError.invalid("space", arch.space, f"{self.name!r} (this benchmark's space)")
            return arch
        if isinstance(arch, str):
            return self.from_id(arch)
        if isinstance(arch, Mapping):
            return self.from_hwgpt_dict(arch)
        if isinstance(arch, (np.ndarray, list, tuple)):
            return self.decode(arch)
        raise ArchitectureError.invalid("architecture", arch, "an Architecture, an id string, an integer encoding or a HW-GPT-Bench dict")

    def from_id(self, arch_id: str) -> "Architecture":
        return Architecture.from_id(arch_id, space=self.name)

    def encode_many(self, archs: Sequence["Architecture"]) -> np.ndarray:
        """``(N, encoding_length)`` int8 encodings (rows of :meth:`Architecture.encoding`), built as
        one byte string from each field's bytes (no numpy call per architecture)."""
        if type(archs) is not list and (isinstance(archs, (str, bytes, Mapping, Architecture))  # (typing's checks: slow)
                                        or not isinstance(archs, (Sequence, np.ndarray))):
            raise ArchitectureError.invalid("archs", archs, "a sequence of architectures (Architecture objects, ids, "
                                                            "encodings or HW-GPT-Bench dicts)")
        embed, layers, mlp, heads, bias, per_layer = _encoding_bytes(self)
        mlp_get, heads_get, name, parts = mlp[1].get, heads[1].get, self.name, []
        for a in archs:
            if type(a) is not Architecture or a.space != name:
                a = self.validate(a)
            parts += (embed[a.embed_dim], layers[a.n_layer], mlp_get(a.mlp_ratio) or per_layer(mlp, a.mlp_ratio),
                      heads_get(a.n_head) or per_layer(heads, a.n_head), bias[a.bias])
        return np.ndarray((len(archs), self.encoding_length), np.int8, bytearray(b"".join(parts)))  # writable

    def ids_of_encodings(self, encodings: np.ndarray) -> np.ndarray:
        """Canonical ids (object array) of valid ``(N, encoding_length)`` encodings, the strings
        :attr:`Architecture.id` builds, without an object per row: per token of the id, each row's
        bytes (from a lookup table) go into one buffer at that row's running offset."""
        blocks, width = _id_layout(self)
        enc = np.asarray(encodings)
        n = len(enc)
        out = np.zeros(n * width, np.uint8)
        pos = np.arange(n, dtype=np.int64) * width  # where each row's next token goes
        for table, lengths, col in blocks:
            idx = 0 if col is None else enc[:, col]
            for j in range(table.shape[1]):
                has = lengths[idx] > j
                if np.ndim(has) == 0:  # a constant token
                    out[pos + j] = table[0, j]
                else:
                    out[pos[has] + j] = table[idx[has], j]
            pos += lengths[idx]
        return out.view(f"S{width}").astype(f"U{width}").astype(object)

    def decode(self, encoding: Sequence[int] | np.ndarray) -> "Architecture":
        enc = self._encoding_values(encoding)
        lm = self.max_layers
        embed = _pick("embed_dim index", enc[0], self.embed_dim_choices)
        n_layer = _pick("n_layer index", enc[1], self.n_layer_choices)
        mlps = tuple(_pick(f"mlp_ratio[{i}] index", enc[2 + i], self.mlp_ratio_choices) for i in range(n_layer))
        heads = tuple(_pick(f"n_head[{i}] index", enc[2 + lm + i], self.n_head_choices) for i in range(n_layer))
        for i in range(n_layer, lm):
            if enc[2 + i] != PAD or enc[2 + lm + i] != PAD:
                raise ArchitectureError.invalid(f"encoding layer {i} (beyond n_layer={n_layer})",
                            (enc[2 + i], enc[2 + lm + i]), f"padding {PAD}")
        bias = _pick("bias index", enc[-1], self.bias_choices)
        return Architecture(self.name, embed, n_layer, heads, mlps, bias)

    def _encoding_values(self, encoding: Any) -> list[int]:
        """An encoding as Python ints, or the error naming it: exactly ``encoding_length`` integers
        (an integer array, or a sequence of ints; bools, floats and nested sequences are refused)."""
        allowed = f"{self.encoding_length} integers for space {self.name!r} (choice indices, {PAD} = padded layer)"
        if isinstance(encoding, np.ndarray):
            if encoding.shape != (self.encoding_length,) or encoding.dtype.kind not in "iu":
                raise ArchitectureError.invalid("encoding", encoding, allowed)
            return encoding.tolist()
        if (isinstance(encoding, (str, bytes)) or not isinstance(encoding, Sequence)
                or len(encoding) != self.encoding_length
                or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in encoding)):
            raise ArchitectureError.invalid("encoding", encoding, allowed)
        return [int(v) for v in encoding]

    def from_hwgpt_dict(self, d: Mapping[str, Any]) -> "Architecture":
        """Accept HW-GPT-Bench's dict; per-layer lists may be padded beyond ``sample_n_layer``."""
        keys = ("sample_embed_dim", "sample_n_layer", "sample_mlp_ratio", "sample_n_head", "sample_bias")
        if not isinstance(d, Mapping):
            raise ArchitectureError.invalid("HW-GPT-Bench dict", d, f"a mapping with the keys {list(keys)}")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ArchitectureError.invalid("HW-GPT-Bench dict keys", sorted(d, key=repr),
                                            f"all of {list(keys)} (missing {missing})")
        n_layer = _as_int("sample_n_layer", d["sample_n_layer"], list(self.n_layer_choices))
        if n_layer not in self.n_layer_choices:
            raise ArchitectureError.invalid("sample_n_layer", n_layer, list(self.n_layer_choices))
        lists = {}
        for k in ("sample_mlp_ratio", "sample_n_head"):
            v = d[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
                raise ArchitectureError.invalid(k, v, f"a list of at least n_layer={n_layer} integers")
            if len(v) < n_layer:
                raise ArchitectureError.invalid(k, v, f"a list of at least n_layer={n_layer} integers (got {len(v)})")
            lists[k] = _as_tuple(k, v[:n_layer])
        bias = d["sample_bias"]
        if isinstance(bias, str):
            if bias not in ("True", "False"):
                raise ArchitectureError.invalid("sample_bias", bias, ["True", "False"])
            bias = bias == "True"
        return Architecture(self.name, d["sample_embed_dim"], n_layer, lists["sample_n_head"],
                            lists["sample_mlp_ratio"], bias)


def _as_tuple(field: str, v: Any) -> tuple:
    if isinstance(v, (str, bytes)) or not isinstance(v, (Sequence, np.ndarray)):
        raise ArchitectureError.invalid(field, v, "a sequence of integers, one per layer")
    return tuple(v)


def _pick(field: str, i: int, choices: Sequence) -> Any:
    if not 0 <= i < len(choices):
        raise ArchitectureError.invalid(field, i, f"0..{len(choices) - 1} (choices {list(choices)})")
    return choices[i]


_CHOICE_INDICES: dict[str, tuple[dict, ...]] = {}


def _choice_indices(sp: SearchSpace) -> tuple[dict, ...]:
    """Per field, choice -> its index in the encoding (embed_dim, n_layer, mlp_ratio, n_head, bias)."""
    t = _CHOICE_INDICES.get(sp.name)
    if t is None:
        t = _CHOICE_INDICES[sp.name] = tuple({c: i for i, c in enumerate(ch)} for ch in (
            sp.embed_dim_choices, sp.n_layer_choices, sp.mlp_ratio_choices, sp.n_head_choices, sp.bias_choices))
    return t


_ENCODING_BYTES: dict[str, tuple] = {}
_MEMO_MAX = 1 << 16  # per-layer tuples remembered per field (s/m/l have far more than their samples need)


def _encoding_bytes(sp: SearchSpace) -> tuple:
    """:meth:`SearchSpace.encode_many`'s tables: per single field (embed_dim, n_layer, bias), choice
    -> its encoding byte; per per-layer field (mlp_ratio, n_head), (choice -> index, tuple of choices
    -> its padded encoding bytes, filled as met); and the function that fills the latter."""
    t = _ENCODING_BYTES.get(sp.name)
    if t is None:
        lm = sp.max_layers
        embed, layers, mlp, heads, bias = _choice_indices(sp)

        def per_layer(field: tuple, values: tuple) -> bytes:
            index, memo = field
            b = bytes([index[v] for v in values] + [PAD & 0xFF] * (lm - len(values)))
            if len(memo) < _MEMO_MAX:
                memo[values] = b
            return b

        one = lambda index: {c: bytes([i]) for c, i in index.items()}  # noqa: E731
        t = _ENCODING_BYTES[sp.name] = (one(embed), one(layers), (mlp, {}), (heads, {}), one(bias), per_layer)
    return t


_ID_LAYOUTS: dict[str, tuple[list, int]] = {}


def _id_layout(sp: SearchSpace) -> tuple[list, int]:
    """(``[(token byte table, token lengths, encoding column or None for a constant), ...]``, total
    width) of :attr:`Architecture.id`; a per-layer token carries its trailing dash, and index -1
    (padding, the table's last row) is the empty token."""
    if sp.name in _ID_LAYOUTS:
        return _ID_LAYOUTS[sp.name]

    def table(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        m = np.zeros((len(tokens), max(len(t) for t in tokens)), np.uint8)
        for i, t in enumerate(tokens):
            m[i, :len(t)] = np.frombuffer(t.encode(), np.uint8)
        return m, np.array([len(t) for t in tokens], np.int64)

    choices = lambda cs, col, end: (*table([f"{c}{end}" for c in cs] + [""]), col)  # noqa: E731
    lm = sp.max_layers
    blocks = [(*table([f"gpt-{sp.name}-"]), None), choices(sp.n_layer_choices, 1, "-"),
              choices(sp.embed_dim_choices, 0, "-")]
    blocks += [choices(sp.mlp_ratio_choices, 2 + i, "-") for i in range(lm)]
    blocks += [choices(sp.n_head_choices, 2 + lm + i, "-") for i in range(lm)] + [choices(sp.bias_choices, -1, "")]
    _ID_LAYOUTS[sp.name] = out = (blocks, sum(t.shape[1] for t, _, _ in blocks))
    return out


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seeded_rng(seed, "seed", ArchitectureError)


def _resize(arch: "Architecture", n_layer: int) -> "Architecture":
    if n_layer <= arch.n_layer:
        return arch.replace(n_layer=n_layer, n_head=arch.n_head[:n_layer], mlp_ratio=arch.mlp_ratio[:n_layer])
    extra = n_layer - arch.n_layer
    return arch.replace(n_layer=n_layer, n_head=arch.n_head + (arch.n_head[-1],) * extra,
                        mlp_ratio=arch.mlp_ratio + (arch.mlp_ratio[-1],) * extra)


SPACES: dict[str, SearchSpace] = {
    # Our CPU-scale space, trained end to end on two cores; the embedded default.
    "t": SearchSpace("t", (64, 128, 192), (4, 5, 6), (2, 4, 6), (2, 3, 4), (True, False),
                     head_size=32, block_size=256, vocab_size=4096),
    # HW-GPT-Bench's spaces, exactly.
    "s": SearchSpace("s", (192, 384, 768), (10, 11, 12), (4, 8, 12), (2, 3, 4), (True, False),
                     head_size=64, block_size=1024, vocab_size=50304),
    "m": SearchSpace("m", (256, 512, 1024), (22, 23, 24), (8, 12, 16), (2, 3, 4), (True, False),
                     head_size=64, block_size=1024, vocab_size=50304),
    "l": SearchSpace("l", (320, 640, 1280), (34, 35, 36), (8, 16, 20), (2, 3, 4), (True, False),
                     head_size=64, block_size=1024, vocab_size=50304),
}


def get_space(name: str | SearchSpace) -> SearchSpace:
    if isinstance(name, SearchSpace):
        return name
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise ArchitectureError.invalid("space", name, sorted(SPACES)) from None


@dataclass(frozen=True)
class Architecture:
    """One sub-network of a search space. Validated on construction; immutable and hashable."""

    space: str
    embed_dim: int
    n_layer: int
    n_head: tuple[int, ...]
    mlp_ratio: tuple[int, ...]
    bias: bool

    def __post_init__(self) -> None:
        sp = get_space(self.space)
        set_ = object.__setattr__  # frozen dataclass: normalise numpy scalars to plain Python values
        embed = _as_int("embed_dim", self.embed_dim, list(sp.embed_dim_choices))
        if embed not in sp.embed_dim_choices:
            raise ArchitectureError.invalid("embed_dim", self.embed_dim, list(sp.embed_dim_choices))
        n_layer = _as_int("n_layer", self.n_layer, list(sp.n_layer_choices))
        if n_layer not in sp.n_layer_choices:
            raise ArchitectureError.invalid("n_layer", self.n_layer, list(sp.n_layer_choices))
        for field, choices in (("n_head", sp.n_head_choices), ("mlp_ratio", sp.mlp_ratio_choices)):
            values = _as_tuple(field, getattr(self, field))
            if len(values) != n_layer:
                raise ArchitectureError.invalid(f"{field} (length)", len(values), f"n_layer={n_layer} values, one per layer")
            clean = []
            for i, v in enumerate(values):
                v = _as_int(f"{field}[{i}]", v, list(choices))
                if v not in choices:
                    raise ArchitectureError.invalid(f"{field}[{i}]", v, list(choices))
                clean.append(v)
            set_(self, field, tuple(clean))
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ArchitectureError.invalid("bias", self.bias, "True or False (a bool; HW-GPT-Bench's strings go through from_hwgpt_dict)")
        set_(self, "embed_dim", embed)
        set_(self, "n_layer", n_layer)
        set_(self, "bias", bool(self.bias))

    # ------------------------------------------------------------------ derived
    @property
    def search_space(self) -> SearchSpace:
        return SPACES[self.space]

    @property
    def head_size(self) -> int:
        return SPACES[self.space].head_size

    @property
    def id(self) -> str:
        values = "-".join(str(v) for v in self.mlp_ratio + self.n_head)
        return f"gpt-{self.space}-{self.n_layer}-{self.embed_dim}-{values}-{self.bias}"

    def __str__(self) -> str:
        return self.id

    def replace(self, **changes: Any) -> "Architecture":
        fields = dict(space=self.space, embed_dim=self.embed_dim, n_layer=self.n_layer, n_head=self.n_head,
                      mlp_ratio=self.mlp_ratio, bias=self.bias)
        fields.update(changes)
        return Architecture(**fields)

    def encoding(self) -> np.ndarray:
        sp = SPACES[self.space]
        lm = sp.max_layers
        enc = np.full(sp.encoding_length, PAD, dtype=np.int8)
        enc[0] = sp.embed_dim_choices.index(self.embed_dim)
        enc[1] = sp.n_layer_choices.index(self.n_layer)
        for i in range(self.n_layer):
            enc[2 + i] = sp.mlp_ratio_choices.index(self.mlp_ratio[i])
            enc[2 + lm + i] = sp.n_head_choices.index(self.n_head[i])
        enc[-1] = sp.bias_choices.index(self.bias)
        return enc

    def to_hwgpt_dict(self) -> dict[str, Any]:
        return {
            "sample_embed_dim": self.embed_dim,
            "sample_n_layer": self.n_layer,
            "sample_mlp_ratio": list(self.mlp_ratio),
            "sample_n_head": list(self.n_head),
            "sample_bias": str(self.bias),
        }

    @classmethod
    def from_id(cls, arch_id: str, space: str | None = None) -> "Architecture":
        """Parse an id: the canonical dash-separated form, or the older concatenated form where its
        digits split into the space's choices in exactly one way. ``space``: the space the id must
        belong to (an id of another space is refused)."""
        return _parse_id(arch_id, space)


def canonical_id(arch_id: str, space: str | None = None) -> str:
    """The canonical id of ``arch_id`` (either id form; see :meth:`Architecture.from_id`)."""
    return _parse_id(arch_id, space).id


MAX_ID_LENGTH = 1000  # far above the longest id of any space; bounds the work (and int()) on a pasted blob


def _check_id_length(arch_id: str) -> None:
    if len(arch_id) > MAX_ID_LENGTH:
        raise ArchitectureError.invalid("architecture id", arch_id,
                                        f"an id of at most {MAX_ID_LENGTH} characters (this one has {len(arch_id):,})")




ID_FORM = "gpt-{space}-{L}-{E}-{mlp_1}-...-{mlp_L}-{head_1}-...-{head_L}-{True|False}"
_OLD_FORM = "gpt-{space}-{L}-{E}-{mlps}-{heads}-{True|False} (per-layer digits concatenated)"


def _parse_id(arch_id: Any, space: str | None) -> Architecture:
    if not isinstance(arch_id, str):
        raise ArchitectureError.invalid("architecture id", arch_id, f"a string {ID_FORM}")
    _check_id_length(arch_id)
    parts = arch_id.split("-")
    if len(parts) < 7 or parts[0] != "gpt":
        raise ArchitectureError.invalid("architecture id", arch_id, f"the form {ID_FORM} (or the older {_OLD_FORM})")
    if parts[1] not in SPACES:
        raise ArchitectureError.invalid(f"space in id {arch_id!r}", parts[1], sorted(SPACES))
    sp = SPACES[parts[1]]
    if space is not None and sp.name != get_space(space).name:
        raise ArchitectureError.invalid(f"space of architecture id {arch_id!r}", sp.name,
                                        f"{get_space(space).name!r} (the space asked for)")
    n_layer = _id_choice(arch_id, "n_layer", parts[2], sp.n_layer_choices)
    embed = _id_choice(arch_id, "embed_dim", parts[3], sp.embed_dim_choices)
    if parts[-1] not in ("True", "False"):
        raise ArchitectureError.invalid(f"bias in id {arch_id!r}", parts[-1], ["True", "False"])
    if len(parts) == 5 + 2 * n_layer:
        values = parts[4:-1]
        mlps = tuple(_id_choice(arch_id, f"mlp_ratio[{i}]", v, sp.mlp_ratio_choices) for i, v in enumerate(values[:n_layer]))
        heads = tuple(_id_choice(arch_id, f"n_head[{i}]", v, sp.n_head_choices) for i, v in enumerate(values[n_layer:]))
        arch = Architecture(sp.name, embed, n_layer, heads, mlps, parts[-1] == "True")
        canonical = arch.id
    elif len(parts) == 7:
        mlps = _split_digits(arch_id, "mlp_ratio", parts[4], sp.mlp_ratio_choices, n_layer)
        heads = _split_digits(arch_id, "n_head", parts[5], sp.n_head_choices, n_layer)
        arch = Architecture(sp.name, embed, n_layer, heads, mlps, parts[-1] == "True")
        canonical = concatenated_id(arch)
    else:
        raise ArchitectureError.invalid(f"number of dash-separated fields in id {arch_id!r}", len(parts),
                                        f"{5 + 2 * n_layer} for n_layer={n_layer} ({ID_FORM}), or 7 ({_OLD_FORM})")
    if canonical != arch_id:  # e.g. leading zeros: one architecture, one spelling
        raise ArchitectureError.invalid("architecture id", arch_id, f"the canonical spelling {arch.id!r}")
    return arch


def _id_choice(arch_id: str, field: str, token: str, choices: Sequence[int]) -> int:
    if not (token.isascii() and token.isdigit()) or int(token) not in choices:
        raise ArchitectureError.invalid(f"{field} in id {arch_id!r}", token, list(choices))
    return int(token)


def concatenated_id(arch: Architecture) -> str:
    """The older concatenated id form (accepted on input; schema-1 tables and files written with it store it)."""
    mlps, heads = "".join(map(str, arch.mlp_ratio)), "".join(map(str, arch.n_head))
    return f"gpt-{arch.space}-{arch.n_layer}-{arch.embed_dim}-{mlps}-{heads}-{arch.bias}"


def _split_digits(arch_id: str, field: str, digits: str, choices: Sequence[int], n_layer: int) -> tuple[int, ...]:
    """Split the older form's separator-free per-layer digits into ``n_layer`` choices, e.g.
    '4812' -> (4, 8, 12); refused unless exactly one split exists."""
    tokens = [str(c) for c in choices]
    found: list[tuple[int, ...]] = []

    def walk(pos: int, acc: tuple[int, ...]) -> None:
        if len(found) > 1:
            return
        if pos == len(digits) or len(acc) == n_layer:
            if pos == len(digits) and len(acc) == n_layer:
                found.append(acc)
            return
        for t in tokens:
            if digits.startswith(t, pos):
                walk(pos + len(t), acc + (int(t),))

    walk(0, ())
    if not found:
        raise ArchitectureError.invalid(f"{field} digits in id {arch_id!r}", digits,
                                        f"{n_layer} values from {list(choices)} written without separators, "
                                        f"or the dash-separated form {ID_FORM}")
    if len(found) > 1:
        raise ArchitectureError.invalid(
            f"{field} digits in id {arch_id!r} (ambiguous: {found[0]} or {found[1]})", digits,
            f"an id whose digits split one way only; write it dash-separated, {ID_FORM}")
    return found[0]
