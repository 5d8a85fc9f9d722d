"""Sandboxed, bounded Jinja2 rendering for task templates (user templates included), and plain slot filling.

The sandbox (Jinja2's immutable sandbox) blocks escapes (``__class__``, ``mro``, mutating lists); on top of it
every render has resource limits, so a template cannot exhaust memory or run for ever:

* one value a template builds (``'A' * n``, ``+``, ``~``, ``%`` and ``format`` widths, ``center``, ``replace``,
  ``join``, ``batch``...) holds at most :data:`MAX_SIZE` characters or items;
* loop iterations and ``range()`` items together are at most :data:`MAX_STEPS` per render;
* a render emits at most :data:`MAX_OUTPUT` characters, blocks captured by ``{% set %}`` and macros included.

Going over a limit is a one-line :class:`TemplateError` naming the template. Text that is data (a translated
string, a sentence) is never compiled as a template: :func:`fill_slots` substitutes ``{{ name }}`` slots in it
and leaves everything else as it is.
"""
from __future__ import annotations

import contextvars
import math
import re
import string
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from harness.errors import TemplateError

MAX_SIZE = 1_000_000  # characters or items in one value a template builds
MAX_STEPS = 200_000  # loop iterations plus range() items per render
MAX_OUTPUT = 10_000_000  # characters one render emits
_MAX_INT_BITS = 1_000_000  # integers a template computes (``10 ** n``)
_SIZED_FILTERS = ("center", "indent", "batch", "slice", "wordwrap", "truncate")  # int arguments are sizes
_SIZED_METHODS = ("center", "ljust", "rjust", "zfill", "expandtabs")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


class LimitExceeded(Exception):
    """A template went over a rendering limit (reported as a TemplateError naming the template)."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.output = 0

    def step(self, n: int, what: str) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"{what} goes over the limit of {MAX_STEPS:,} loop iterations and range() items "
                                f"per render")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("conjugate_template_budget", default=None)


def _budget() -> _Budget:
    return _BUDGET.get() or _Budget()  # outside render(): the per-value limits still hold


def _size(n: int, what: str) -> None:
    if n > MAX_SIZE:
        raise LimitExceeded(f"{what} would build {n:,} characters or items (limit {MAX_SIZE:,})")


def _length(x: Any) -> int | None:
    return len(x) if isinstance(x, (str, list, tuple, dict)) else None


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _check_format(fmt: str, args: Any, style: str) -> None:
    """Widths and precisions in a ``%`` or ``{}`` (``style``) format string; ``*`` / nested widths in ``args``."""
    from_args = False
    if style == "%":
        for m in _PERCENT_SPEC.finditer(fmt):
            for part in m.groups():
                from_args |= part == "*"
                if part and part.isdigit():
                    _size(int(part), f"format width {part}")
    else:
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return  # str.format raises its own error
        for _, _, spec, _ in fields:
            if spec:
                from_args |= "{" in spec
                for num in re.findall(r"\d+", spec):
                    _size(int(num), f"format width {num}")
    if from_args:
        vals = args if isinstance(args, (list, tuple)) else list(args.values()) if isinstance(args, dict) else [args]
        for v in _ints(vals):
            _size(abs(v), f"format width {v}")


def _check_replace(s: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str):
        count = len(s) + 1 if old == "" else s.count(old)
        _size(len(s) + count * (len(new) - len(old)), "replace()")


def _check_join(sep: Any, items: Any) -> None:
    n = _length(items)
    if isinstance(sep, str) and n:
        _size(len(sep) * (n - 1) + (len(items) if isinstance(items, str) else 0), "join()")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size checks on operators, calls and filters, and a budget per render."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context, operator, left, right):  # type: ignore[override]
        ll, rl = _length(left), _length(right)
        if operator == "*":
            if ll is not None and isinstance(right, int):
                _size(ll * right, f"'...' * {right}")
            elif rl is not None and isinstance(left, int):
                _size(rl * left, f"{left} * '...'")
            elif _ints([left, right]) == [left, right] and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                raise LimitExceeded(f"a product of integers goes over the limit of {_MAX_INT_BITS:,} bits")
        elif operator == "**" and _ints([left, right]) == [left, right] and abs(left) > 1 and right > 0:
            if right * math.log2(abs(left)) > _MAX_INT_BITS:
                raise LimitExceeded(f"{left} ** {right} goes over the limit of {_MAX_INT_BITS:,} bits for integers")
        elif operator == "+" and ll is not None and rl is not None:
            _size(ll + rl, "'...' + '...'")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right, "%")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # type: ignore[override]  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            if method in _SIZED_METHODS:
                for v in _ints([*args, *kwargs.values()]):
                    _size(v, f"{method}({v})")
            elif method == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            elif method == "join" and args:
                _check_join(owner, args[0])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value):  # type: ignore[override]
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args, **kwargs):
            _check_format(fmt, [*args, *(v for m in args if isinstance(m, dict) for v in m.values()),
                                *kwargs.values()], "{}")
            return wrapped(*args, **kwargs)

        return checked

    def _parse(self, source, name, filename):  # type: ignore[override]
        return _bound_tree(super()._parse(source, name, filename))


def _through(node: nodes.Expr, name: str, lineno: int) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=lineno)


class _Bound(NodeTransformer):
    """Route loop iterables, ``~`` results and every piece of output through the budget filters."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _through(node.iter, "_conj_steps", node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return _through(node, "_conj_size", node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        self.generic_visit(node)
        node.nodes = [_through(nodes.Const(n.data) if isinstance(n, nodes.TemplateData) else n, "_conj_out",
                               node.lineno) for n in node.nodes]
        return node


def _bound_tree(tree: nodes.Template) -> nodes.Template:
    return _Bound().visit(tree)


@pass_context
def _steps(_ctx, iterable):
    budget = _budget()
    if isinstance(iterable, jinja2.Undefined):
        yield from iterable
        return
    for item in iterable:
        budget.step(1, "a loop")
        yield item


@pass_context
def _cat_size(_ctx, value):
    n = _length(value)
    if n is not None:
        _size(n, "'...' ~ '...'")
    return value


@pass_context
def _out(_ctx, value):
    if not isinstance(value, jinja2.Undefined):
        budget = _budget()
        budget.output += len(str(value))
        if budget.output > MAX_OUTPUT:
            raise LimitExceeded(f"the output goes over the limit of {MAX_OUTPUT:,} characters")
    return value


def _range(*args: int) -> range:
    r = range(*args)
    _budget().step(len(r), f"range() of {len(r):,} items")
    return r


def _sized_filter(name: str, func):
    """A builtin filter whose integer arguments are sizes (``center(n)``, ``batch(n)``) with them checked."""
    @pass_context
    def checked(_ctx, value, *args, **kwargs):
        for v in _ints([*args, *kwargs.values()]):
            _size(v, f"|{name}({v})")
        return func(value, *args, **kwargs)

    return checked


def _make_env() -> BoundedEnvironment:
    env = BoundedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.globals["range"] = _range
    env.globals.pop("lipsum", None)  # lipsum(n) builds n paragraphs; no task needs it
    builtin = dict(env.filters)
    for name in _SIZED_FILTERS:
        env.filters[name] = _sized_filter(name, builtin[name])
    replace, join, fmt = builtin["replace"], builtin["join"], builtin["format"]

    @pass_context
    def do_replace(ctx, s, old, new, count=None):
        _check_replace(str(s), old, new)
        return replace(ctx.eval_ctx, s, old, new, count)

    @pass_context
    def do_join(ctx, value, d="", attribute=None):
        _check_join(d, value)
        return join(ctx.eval_ctx, value, d, attribute)

    @pass_context
    def do_format(_ctx, value, *args, **kwargs):
        _check_format(str(value), [*args, *kwargs.values()], "%")
        return fmt(value, *args, **kwargs)

    env.filters.update(replace=do_replace, join=do_join, format=do_format)
    env.filters.update(_conj_steps=_steps, _conj_size=_cat_size, _conj_out=_out)
    return env


_ENV = _make_env()


@lru_cache(maxsize=256)
def compile_template(source: str, name: str = "<template>") -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None


def render(source: str, context: dict[str, Any], name: str = "<template>") -> str:
    """Render ``source`` with ``context`` in a bounded sandbox; errors name the template."""
    template = compile_template(source, name)
    token = _BUDGET.set(_Budget())
    try:
        return template.render(**context)
    except LimitExceeded as exc:
        raise TemplateError(f"template {name} failed to render: {exc}; a prompt template should not build "
                            f"anything that large") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template {name} uses an undefined variable: {exc.message}. Available: {', '.join(sorted(context))}"
        ) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}") from None
    except Exception as exc:  # any other render-time failure is the template's fault
        raise TemplateError(f"template {name} failed to render: {type(exc).__name__}: {exc}") from None
    finally:
        _BUDGET.reset(token)


_SLOT = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def fill_slots(text: str, values: dict[str, Any]) -> str:
    """``text`` with each ``{{ name }}`` slot of ``values`` replaced by its value; nothing is evaluated.

    For strings that are data, not templates (translations, sentences): ``{{ 7*7 }}``, ``{% ... %}`` and slots
    not in ``values`` stay as they are.
    """
    return _SLOT.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)
