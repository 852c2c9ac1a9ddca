"""Jinja2 rendering of a config file's text, like qrun's ``render_template`` (``qlib/cli/run.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from qlib_prefect.errors import ConfigError

__all__ = ["render_template"]


def render_template(text: str, env: Mapping[str, str] | None = None, *, source: str = "<string>") -> tuple[str, list]:
    """Render ``text`` as a Jinja2 template like qrun; returns ``(rendered, undefined_variable_names)``.

    Only undeclared variables present in ``env`` (default ``os.environ``) are passed in. An undefined variable
    is a :class:`ConfigError` naming it (``StrictUndefined``; qrun renders it as an empty string, which silently
    turned e.g. ``provider_uri: {{ DATA }}`` into the current directory); ``{{ X | default('y') }}`` still works.
    The second item of the result is kept for callers and is always empty.
    """
    import jinja2
    from jinja2 import meta

    mapping = os.environ if env is None else env
    missing: list[str] = []

    jenv = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    try:
        ast = jenv.parse(text)
        names = meta.find_undeclared_variables(ast)
        context = {n: mapping[n] for n in names if n in mapping}
        rendered = jenv.from_string(ast).render(context)
    except jinja2.UndefinedError as e:
        undefined = sorted(n for n in names if n not in mapping)
        raise ConfigError(
            f"{source}: undefined template variable(s) {', '.join(undefined) or e.message}: set them in the "
            "environment or give a default ({{ NAME | default('value') }})"
        ) from None
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{source}: line {e.lineno}: Jinja2 template error: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"{source}: Jinja2 template error: {e}") from None
    return rendered, sorted(set(missing))
