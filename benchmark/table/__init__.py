"""The benchmark table: one HDF5 file per search space (schema v1, documented in docs/table.md).

Layout::

    /                       attrs: format, schema_version, space, created, package_version,
                                   [merged_from], [dropped_from], + free attrs (corpus/tokenizer ids, ...)
    /archs/encoding         (N, L) int8   choice indices, -1 = padded layer
    /archs/id               (N,)   str    canonical architecture ids (UTF-8)
    /metrics/<name>         (N,)   float64, NaN = missing; attrs unit, source, description, [missing_reason]
    /hardware/<device>                     attrs: source (measured|modeled), provenance (JSON), [kind]
    /hardware/<device>/<setting>           attrs: mode, batch, seq_len, dtype, + free (warmup, repeats, ...)
    /hardware/<device>/<setting>/<metric>  (N, R) float64, NaN = not measured; attrs unit, repeats, [missing_reason]
    /hardware/<device>/<setting>/measured_at  (N,) float64 unix time of the row's measurement (NaN = unknown)
    /log/<name>/<column>    aligned 1-D columns (float64 or UTF-8) of free records (e.g. drift re-timings)

Writers keep the content in memory and every flush rewrites the whole file to a temporary
name in the same directory, fsyncs it and renames it into place (``os.replace``), so a crash
or ``kill -9`` leaves either the previous or the new table, never a half-written one. One
writer per file at a time (an advisory lock, released by the OS when a process dies).
Reopening a path resumes it: rows already present are skipped, never duplicated. Readers open
the file read-only only while they load what was asked for, and notice when a writer has
replaced the file since they opened it.

Modules: :mod:`.schema` (names, sources, kinds, checks), :mod:`.storage` (content in memory, the
atomic HDF5 rewrite, the writer lock), :mod:`.writer` (:class:`TableWriter`), :mod:`.reader`
(:class:`Table`), :mod:`.merge` (:func:`merge_tables`), :mod:`.drop` (:func:`drop_from_table`). This package re-exports their public API.
"""

from benchmark.settings import DTYPES, MODES, Setting, SettingError  # noqa: F401  part of the table's API
from benchmark.table.drop import drop_from_table
from benchmark.table.merge import merge_tables
from benchmark.table.reader import Table
from benchmark.table.schema import (  # noqa: F401
                                    COMPRESSIONS,
                                    DEVICE_KINDS,
                                    DEVICE_SOURCES,
                                    FORMAT,
                                    MEASURED_AT,
                                    RESERVED_ATTRS,
                                    SCHEMA_VERSION,
                                    SOURCES,
                                    TableError,
                                    device_kind,
)
from benchmark.table.writer import TableWriter

__all__ = ["SCHEMA_VERSION", "FORMAT", "SOURCES", "DEVICE_SOURCES", "DEVICE_KINDS", "MODES", "DTYPES",
           "TableError", "Setting", "device_kind", "TableWriter", "Table", "merge_tables", "drop_from_table"]
