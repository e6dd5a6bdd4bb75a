"""Surrogate models fitted on hwlm-bench tables (XGBoost, saved as JSON/UBJ, never pickle)."""
