"""Load and validate qrun-format workflow configs: ``load_config(path_or_dict) -> WorkflowConfig``.

This module runs the steps below in order; each step lives in its own module (:mod:`~qlib_prefect.config.template`,
:mod:`~qlib_prefect.config.yaml_codec`, :mod:`~qlib_prefect.config.merge`, :mod:`~qlib_prefect.config.sys_path`,
:mod:`~qlib_prefect.config.validation` with :mod:`~qlib_prefect.config.signature`,
:mod:`~qlib_prefect.config.workflow_config`); their public names are re-exported here.

What happens, in qrun's order (``qlib/cli/run.py``):

1. **Jinja2**: the file text is rendered as a template; undeclared variables are looked up in ``env``
   (default ``os.environ``). Undefined variables render as empty strings like qrun, and a
   :class:`ConfigWarning` lists them (``{{ X | default(5) }}`` is not reported).
2. **YAML** with YAML 1.2 scalars, like qrun's ``ruamel.yaml`` safe loader: ``1e-3`` is a float, ``yes``/``on``
   are strings, ``2008-01-01`` (unquoted) is a ``datetime.date`` (kept; downstream uses ``pd.Timestamp``).
   Anchors/aliases and ``<<`` merge keys work; a duplicated key is an error (ruamel refuses it too).
3. **BASE_CONFIG_PATH**: the base file (relative to the config file's directory, then to the working directory)
   is loaded the same way and the config is deep-merged on top (qlib's ``update_config``; ``"__DROP__"`` deletes
   a key). A base may itself name a base (cycles are errors).
4. **sys**: ``sys.path`` entries (as given) and ``sys.rel_path`` entries (relative to the config directory)
   are appended to ``sys.path`` once (idempotent), before classes are resolved.
5. **Validation** (``validate=True``): structure (:mod:`qlib_prefect.config.models`), then every class config
   (``task.model``, ``task.dataset`` and nested handler/loader/processors, each record, PortAnaRecord's
   strategy/executor, ``qlib_init.exp_manager``) is resolved and its ``kwargs`` are checked against the
   constructor signature. LGBModel's extra kwargs are checked against LightGBM's parameter names and aliases.
   All problems are reported in one :class:`~qlib_prefect.errors.ConfigError`, one line each, e.g.
   ``task.model.kwargs.learning_rat: unknown parameter for LGBModel; did you mean 'learning_rate'?
   (file workflow.yaml)``.

Placeholders (``<MODEL>``, ``<DATASET>``, ``<PRED>``, ``<a.b.0>``) are left untouched: they are filled at run time
(``qlib_prefect.utils.placeholder.fill_placeholder``).

Example:
    >>> cfg = load_config("workflow_config_lightgbm_Alpha158.yaml")  # doctest: +SKIP
    >>> cfg.experiment_name, cfg.config_hash("task.model")  # doctest: +SKIP
    ('workflow', '5f0c...')
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qlib_prefect.config.merge import S_DROP, update_config
from qlib_prefect.config.signature import lightgbm_param_names
from qlib_prefect.config.sys_path import apply_sys_path
from qlib_prefect.config.template import render_template
from qlib_prefect.config.validation import RUNTIME_PLACEHOLDERS, Source, Validator
from qlib_prefect.config.workflow_config import DEFAULT_EXPERIMENT_NAME, WorkflowConfig
from qlib_prefect.config.yaml_codec import dump_yaml, parse_yaml
from qlib_prefect.errors import ConfigError

__all__ = [
    "DEFAULT_EXPERIMENT_NAME",
    "RUNTIME_PLACEHOLDERS",
    "S_DROP",
    "ConfigWarning",
    "WorkflowConfig",
    "apply_sys_path",
    "dump_yaml",
    "lightgbm_param_names",
    "load_config",
    "parse_yaml",
    "render_template",
    "update_config",
]


logger = logging.getLogger(__name__)


class ConfigWarning(UserWarning):
    """A config is usable but suspicious (undefined template variable, unknown qlib_init key, near-miss key)."""


# -------------------------------------------------------------------------------------------- loading
def _read_file(path: Path, name: str, env: Mapping[str, str] | None) -> tuple[dict, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {name}") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config file: {e}") from None
    rendered, undefined = render_template(text, env, source=name)
    data = parse_yaml(rendered, source=name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: a workflow config must be a YAML mapping, got {type(data).__name__}")
    return data, undefined


def _find_base(base: Any, config_dir: Path, where: str) -> Path:
    if not isinstance(base, (str, Path)) or not str(base).strip():
        raise ConfigError(f"BASE_CONFIG_PATH: expected a file path, got {base!r} (file {where})")
    p = Path(str(base)).expanduser()
    for cand in (p,) if p.is_absolute() else (config_dir / p, Path.cwd() / p):
        if cand.is_file():
            return cand.resolve()
    raise ConfigError(f"BASE_CONFIG_PATH: cannot find the base config {str(base)!r} (file {where})")


def load_config(
    path_or_dict: str | Path | Mapping[str, Any] | WorkflowConfig,
    *,
    env: Mapping[str, str] | None = None,
    validate: bool | str = True,
    apply_sys: bool = True,
) -> WorkflowConfig:
    """Load a qrun-format workflow config (see the module docstring).

    Args:
        path_or_dict: a YAML file, or an already-parsed dict (no template rendering; ``BASE_CONFIG_PATH`` and
            ``sys.rel_path`` are then relative to the working directory).
        env: variables for the Jinja2 template (default ``os.environ``).
        validate: ``True`` (structure + classes + kwargs), ``"structure"`` (keys only, no class import) or
            ``False``.
        apply_sys: apply the ``sys`` section to ``sys.path``.

    Raises:
        ConfigError: unreadable file, template/YAML error, missing base file, or (when validating) every
            invalid key, one line each, naming its dotted path, a suggestion and the file.
    """
    if isinstance(path_or_dict, WorkflowConfig):
        return path_or_dict
    if validate not in (True, False, "structure"):
        raise ConfigError(f"load_config: validate must be True, False or 'structure', got {validate!r}")
    pending_warnings: list[str] = []
    sources: list[Source] = []
    if isinstance(path_or_dict, Mapping):
        path = None
        config_dir = Path.cwd()
        data = copy.deepcopy(dict(path_or_dict))
        sources_names: list[str] = []
    else:
        path = Path(path_or_dict).expanduser()
        config_dir = path.resolve().parent
        name = str(path_or_dict)
        data, undefined = _read_file(path, name, env)
        if undefined:
            pending_warnings.append(f"{name}: undefined template variable(s) rendered as empty: {', '.join(undefined)}")
        sources.append(Source(name, data))
        sources_names = [name]
    chain = [data]  # the top file first, then its base, the base's base, ...
    seen = {path.resolve()} if path is not None else set()
    cur, cur_dir, where = data, config_dir, (sources_names[0] if sources_names else "<dict>")
    while cur.get("BASE_CONFIG_PATH"):
        base_path = _find_base(cur["BASE_CONFIG_PATH"], cur_dir, where)
        if base_path in seen:
            raise ConfigError(f"BASE_CONFIG_PATH: cycle through {base_path} (file {where})")
        seen.add(base_path)
        base_name = str(base_path)
        base_data, undefined = _read_file(base_path, base_name, env)
        if undefined:
            pending_warnings.append(
                f"{base_name}: undefined template variable(s) rendered as empty: {', '.join(undefined)}"
            )
        sources.append(Source(base_name, base_data))
        sources_names.append(base_name)
        chain.append(base_data)
        cur, cur_dir, where = base_data, base_path.parent, base_name
    raw = chain[-1] if len(chain) == 1 else copy.deepcopy(chain[-1])
    for ext in reversed(chain[:-1]):
        raw = update_config(raw, ext)
    if apply_sys:
        try:
            apply_sys_path(raw, config_dir)
        except ConfigError as e:
            if not sources_names:
                raise
            raise ConfigError(f"{e} (file {sources_names[0]})") from None
    spec = None
    errors: list[str] = []
    if validate:
        v = Validator(raw, sources, deep=validate is True)
        spec = v.run()
        pending_warnings.extend(v.warnings)
        errors = v.errors
    _emit(pending_warnings)
    if errors:
        err = ConfigError("\n".join(errors))
        err.problems = list(errors)  # type: ignore[attr-defined]
        raise err
    return WorkflowConfig(raw=raw, spec=spec, path=path, sources=tuple(sources_names), warnings=tuple(pending_warnings))


def _emit(messages: list[str]) -> None:
    for m in messages:
        logger.info(m)
        warnings.warn(m, ConfigWarning, stacklevel=3)
