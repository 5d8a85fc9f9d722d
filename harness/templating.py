"""Sandboxed Jinja2 rendering for task templates (user templates included)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from harness.errors import TemplateError

_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
)


@lru_cache(maxsize=256)
def compile_template(source: str, name: str = "<template>") -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None


def render(source: str, context: dict[str, Any], name: str = "<template>") -> str:
    """Render ``source`` with ``context`` in a sandbox; errors name the template."""
    template = compile_template(source, name)
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template {name} uses an undefined variable: {exc.message}. Available: {', '.join(sorted(context))}"
        ) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}") from None
    except Exception as exc:  # any other render-time failure is the template's fault
        raise TemplateError(f"template {name} failed to render: {type(exc).__name__}: {exc}") from None
