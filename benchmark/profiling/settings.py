"""Run settings (mode, batch, sequence length, dtype) without importing torch.

:class:`RunSetting` and :func:`resolve_setting` are what the measurement layer
(:mod:`benchmark.profiling.latency`, which re-exports them) and the roofline model
(:mod:`benchmark.profiling.roofline`) accept as a setting; they live here so that the query API can
evaluate the roofline model of a modeled device without importing torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.profiling.devices import DTYPES

__all__ = ["DEFAULT_DECODE_TOKENS", "MODES", "RunSetting", "resolve_setting"]

DEFAULT_DECODE_TOKENS = 16
MODES = ("prefill", "decode")


@dataclass(frozen=True)
class RunSetting:
    """What a measurement needs of a setting. Any object with ``mode``, ``batch``, ``seq_len`` and
    ``dtype`` attributes (e.g. ``benchmark.table.Setting``) or a name such as
    ``"prefill-b1-s256-fp32"`` / ``"decode-b8-s128-bf16"`` is accepted wherever a setting is;
    for ``decode``, ``seq_len`` is the context length ``c``."""

    mode: str
    batch: int
    seq_len: int
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"invalid mode: {self.mode!r}; allowed: {list(MODES)}")
        for field in ("batch", "seq_len"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"invalid {field}: {v!r}; allowed: an integer >= 1")
            object.__setattr__(self, field, int(v))
        if self.dtype not in DTYPES:
            raise ValueError(f"invalid dtype: {self.dtype!r}; allowed: {list(DTYPES)}")

    @property
    def name(self) -> str:
        return f"{self.mode}-b{self.batch}-s{self.seq_len}-{self.dtype}"

    def __str__(self) -> str:
        return self.name


_SETTING_RE = re.compile(r"(prefill|decode)-b(\d+)-s(\d+)-(fp32|fp16|bf16)")


def resolve_setting(setting: Any) -> RunSetting:
    """Coerce a setting object or name to a validated :class:`RunSetting`."""
    if isinstance(setting, RunSetting):
        return setting
    if isinstance(setting, str):
        m = _SETTING_RE.fullmatch(setting)
        if m is None:
            raise ValueError(f"invalid setting: {setting!r}; allowed: names like 'prefill-b1-s256-fp32' or "
                             f"'decode-b1-s128-fp32' (mode-b<batch>-s<seq_len>-<fp32|fp16|bf16>)")
        return RunSetting(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4))
    try:
        mode, batch, seq_len = setting.mode, setting.batch, setting.seq_len
    except AttributeError:
        raise ValueError(f"invalid setting: {setting!r}; allowed: a name like 'prefill-b1-s256-fp32' or an object "
                         f"with mode, batch, seq_len and dtype") from None
    dtype = str(getattr(setting, "dtype", "fp32"))
    dtype = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype.replace("torch.", ""), dtype)
    return RunSetting(str(mode), batch, seq_len, dtype)
