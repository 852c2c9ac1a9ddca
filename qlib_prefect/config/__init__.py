"""Configuration: runtime settings (``C``/``init``), class-path resolution, YAML loading."""

from qlib_prefect.config.runtime import REGION_DEFAULTS, C, get_provider, init, is_initialized

__all__ = ["REGION_DEFAULTS", "C", "get_provider", "init", "is_initialized"]
