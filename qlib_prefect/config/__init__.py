"""Configuration: runtime settings (``C``/``configure``), class-path resolution, YAML loading.

``qlib_prefect.init`` (qlib's ``qlib.init``) lives at the package root: it configures ``C`` here and rebuilds
``R`` in the workflow layer. The data provider is the data layer's (``qlib_prefect.data.registry``).
"""

from qlib_prefect.config.runtime import REGION_DEFAULTS, C, configure, is_initialized

__all__ = ["REGION_DEFAULTS", "C", "configure", "is_initialized"]
