"""The one Jinja2 environment for report.md, report.html and compare.html.

Sandboxed (templates only see the data they are given) and strict (an undefined name is an error, not
an empty string). Autoescaping is on for every template except ``*.md.j2``: model outputs are arbitrary
text, and HTML must show ``<script>`` rather than run it; Markdown escapes table pipes instead (the
``cell`` filter).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from harness.errors import TemplateError

TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENV: SandboxedEnvironment | None = None


def md_cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell: pipes escaped, newlines as spaces."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def environment() -> SandboxedEnvironment:
    """The shared sandboxed environment (created on first use: jinja2 loads only when writing)."""
    global _ENV
    if _ENV is None:
        _ENV = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=lambda name: not (name or "").endswith(".md.j2"),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        _ENV.filters["cell"] = md_cell
    return _ENV


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render ``templates/<name>`` with ``context``; failures are TemplateErrors naming the template."""
    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name} is missing from {TEMPLATES} (a broken install?)") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name} uses an undefined variable: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}") from None
