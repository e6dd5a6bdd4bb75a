"""Hugging Face ``transformers`` modelling code for exported sub-networks.

``configuration_hwlm.py`` and ``modeling_hwlm.py`` are self-contained (they import only
``torch`` and ``transformers``): :func:`benchmark.export.export_architecture` copies them beside
the weights, so that ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``
loads an export in a process that does not have this package installed.

Importing this package does not import ``transformers``; import the two modules for the
classes (``benchmark.hf.modeling_hwlm.HwlmForCausalLM``).
"""

from pathlib import Path

HF_DIR = Path(__file__).resolve().parent
#: the files copied into every export directory, in the order they are written
CODE_FILES = ("configuration_hwlm.py", "modeling_hwlm.py")
MODEL_TYPE = "hwlm"
AUTO_MAP = {
    "AutoConfig": "configuration_hwlm.HwlmConfig",
    "AutoModel": "modeling_hwlm.HwlmModel",
    "AutoModelForCausalLM": "modeling_hwlm.HwlmForCausalLM",
}

__all__ = ["HF_DIR", "CODE_FILES", "MODEL_TYPE", "AUTO_MAP"]
