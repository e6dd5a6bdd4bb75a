"""The query engine behind :class:`benchmark.Benchmark`, one concept per module:

* :mod:`~benchmark.query.catalog`: what a release offers (devices, settings, metrics, units);
* :mod:`~benchmark.query.inputs`: architectures in any accepted form -> table rows and encodings;
* :mod:`~benchmark.query.lookup`: table columns (medians, repeats, 5-95 % of repeats) and exact costs;
* :mod:`~benchmark.query.models`: surrogate loading and prediction, modeled devices' roofline models;
* :mod:`~benchmark.query.standalone`: what a space without a release offers (``s``, ``m``, ``l``);
* :mod:`~benchmark.query.plan`: each requested metric resolved to its source once per
  (metrics, device, setting);
* :mod:`~benchmark.query.execute`: the one executor over a plan (single queries and batches);
* :mod:`~benchmark.query.fastpath`: the values-only path a NAS loop asks, the same values in
  fewer numpy calls; :mod:`~benchmark.query.compiled`: its kernels compiled (numba, optional);
* :mod:`~benchmark.query.results`: :class:`QueryResult`, batch answers as dicts or frames.
"""

from benchmark.query.results import QueryError, QueryResult

__all__ = ["QueryError", "QueryResult"]
