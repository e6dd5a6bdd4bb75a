"""The table schema: names, sources and kinds a table may hold, and the checks every table
operation applies to names, attributes and settings."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

import h5py
import numpy as np

from benchmark.errors import HwlmError
from benchmark.settings import DTYPES, MODES, Setting, SettingError  # noqa: F401  (part of this module's API)
from benchmark.spaces import get_space

# 2: /archs/id in the dash-separated id form. 1: the older concatenated form; readers upgrade it
# on read (ids recomputed from /archs/encoding, each stored id checked to name the same architecture).
SCHEMA_VERSION = 2
FORMAT = "hwlm-bench table"
SOURCES = ("measured", "exact", "modeled", "surrogate")  # of a /metrics dataset
DEVICE_SOURCES = ("measured", "modeled")  # of a /hardware/<device> group
DEVICE_KINDS = ("cpu", "gpu")
COMPRESSIONS = ("gzip", "lzf", None)
MEASURED_AT = "measured_at"
# root attributes the package owns; the rest are free (corpus_sha256, tokenizer_sha256, eval_tokens, ...)
RESERVED_ATTRS = ("format", "schema_version", "space", "created", "package_version", "merged_from")
SETTING_FIELDS = ("mode", "batch", "seq_len", "dtype")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
STR_DTYPE = h5py.string_dtype("utf-8")


class TableError(HwlmError):
    """An invalid table file or table operation; the message names the file and the problem."""


def check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise TableError.invalid(kind, name, "a name of letters, digits and _ . + - starting with a letter or digit")
    return name


def scalar_attr(what: str, v: Any) -> str | int | float | bool:
    """A value storable as an HDF5 attribute and comparable after a round trip."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (str, bool, int, float)):
        return v
    raise TableError.invalid(what, v, "a string, bool, int or float")


def plain_value(v: Any) -> Any:
    """numpy scalars/bytes read back from HDF5 -> plain Python values."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v




def device_kind(device: str, meta: Mapping[str, Any]) -> str | None:
    """The kind (cpu, gpu) of a table device from its ``devices()`` entry: the declared kind, else
    the provenance's, else the ``cpu-``/``gpu-`` prefix of its id; None when nothing says."""
    kind = meta.get("kind") or (meta.get("provenance") or {}).get("kind")
    if kind:
        return str(kind)
    return next((k for k in DEVICE_KINDS if device.startswith(k + "-")), None)


def same_value(a: Any, b: Any) -> bool:
    """Equal declarations/attributes; NaN (e.g. in a provenance dict) equals NaN."""
    if a == b:
        return True
    try:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return False


def as_float(what: str, v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, (str, bytes)) or isinstance(v, (bool, np.bool_)):
        raise TableError.invalid(what, v, "a real number or None (missing)")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TableError.invalid(what, v, "a real number or None (missing)") from None


# ---------------------------------------------------------------------------- settings
def parse_setting(s: Any) -> Setting:
    """``Setting.parse``, failing as a table operation does (TableError)."""
    try:
        return Setting.parse(s)
    except SettingError as e:
        raise TableError(str(e)) from None


def setting_name(s: Any) -> str:
    return parse_setting(s).name


def architecture_id(space: str, arch) -> str:
    """The canonical id of ``arch`` (an id in either form, Architecture, encoding, ...) in ``space``,
    validated."""
    return get_space(space).validate(arch).id
