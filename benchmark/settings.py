"""Hardware measurement settings: mode, batch, sequence length and dtype (torch-free).

One :class:`Setting` serves the table (group names ``/hardware/<device>/<setting>``), the
measurement layer, the roofline model and the query API. Its canonical name is
``{mode}-b{batch}-s{seq_len}-{dtype}``: ``prefill`` is one forward over ``batch x seq_len``
tokens, ``decode`` generates one token per sequence with ``seq_len`` tokens of context in the
KV cache (timed over :data:`DEFAULT_DECODE_TOKENS` steps unless a table records otherwise).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.errors import HwlmError

__all__ = ["MODES", "DTYPES", "DEFAULT_DECODE_TOKENS", "SettingError", "Setting", "resolve_setting"]

MODES = ("prefill", "decode")
DTYPES = ("fp32", "fp16", "bf16")  # what --dtype accepts everywhere
DEFAULT_DECODE_TOKENS = 16  # decode steps a decode setting is timed and counted over
# torch's spellings, accepted from objects whose dtype is a torch dtype or its name
_TORCH_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


class SettingError(HwlmError):
    """An invalid setting (name, mode, batch, sequence length or dtype)."""


@dataclass(frozen=True)
class Setting:
    """A hardware measurement setting, named canonically ``{mode}-b{batch}-s{seq_len}-{dtype}``.

    ``prefill``: one forward over ``batch x seq_len`` tokens. ``decode``: generating one token
    per sequence with ``seq_len`` tokens of context in the KV cache.
    """

    mode: str
    batch: int
    seq_len: int
    dtype: str = "fp32"

    def __post_init__(self):
        if self.mode not in MODES:
            raise SettingError.invalid("setting mode", self.mode, list(MODES))
        for f in ("batch", "seq_len"):
            v = getattr(self, f)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SettingError.invalid(f"setting {f}", v, "an integer >= 1")
            object.__setattr__(self, f, int(v))
        if self.dtype not in DTYPES:
            raise SettingError.invalid("setting dtype", self.dtype, list(DTYPES))

    @property
    def name(self) -> str:
        return f"{self.mode}-b{self.batch}-s{self.seq_len}-{self.dtype}"

    def __str__(self) -> str:
        return self.name

    def attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def parse(cls, s: "str | Setting") -> "Setting":
        """A Setting from its canonical name (or a Setting, returned as is)."""
        if isinstance(s, Setting):
            return s
        # at most 9 digits: a sane batch or length, and int() never meets a pasted blob
        m = re.fullmatch(r"([a-z]+)-b([0-9]{1,9})-s([0-9]{1,9})-([a-z0-9]+)", s) if isinstance(s, str) else None
        if m is None:
            raise SettingError.invalid("setting name", s, "the form {prefill|decode}-b{batch}-s{seq_len}-{fp32|fp16|bf16}, "
                                                          "e.g. 'prefill-b1-s256-fp32'")
        st = cls(m[1], int(m[2]), int(m[3]), m[4])
        if st.name != s:  # e.g. leading zeros: one setting, one name
            raise SettingError.invalid("setting name", s, f"the canonical form {st.name!r}")
        return st


def resolve_setting(setting: Any) -> Setting:
    """A :class:`Setting` from a Setting, a canonical name, or any object with ``mode``, ``batch``,
    ``seq_len`` and optionally ``dtype`` attributes (a torch dtype or torch's name of one is accepted)."""
    if isinstance(setting, (Setting, str)):
        return Setting.parse(setting)
    try:
        mode, batch, seq_len = setting.mode, setting.batch, setting.seq_len
    except AttributeError:
        raise SettingError.invalid("setting", setting, "a name like 'prefill-b1-s256-fp32' or an object with mode, "
                                                       "batch, seq_len and dtype") from None
    dtype = str(getattr(setting, "dtype", "fp32")).replace("torch.", "")
    return Setting(str(mode), batch, seq_len, _TORCH_NAMES.get(dtype, dtype))
