"""Find backends by name without importing any framework.

A backend is named by a built-in name (``torch``), an entry point of the group
``dropbench.backends``, or ``module:attr``. Resolution only maps names to references;
loading (which imports the adapter module, still not its framework) happens in the worker.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from backends import BUILTIN

ENTRY_POINT_GROUP = "dropbench.backends"


class UsageError(ValueError):
    """Bad user input: the CLI prints the message and exits 2."""


@dataclass(frozen=True)
class BackendRef:
    name: str  # what the user sees before the backend is loaded
    ref: str  # module:attr


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_backends() -> dict[str, str]:
    """Built-ins plus installed entry points, name -> module:attr."""
    return {**BUILTIN, **_entry_points()}


def resolve(names: list[str] | None) -> list[BackendRef]:
    """Every known backend when ``names`` is empty, else the named ones (UsageError if unknown)."""
    known = known_backends()
    if not names:
        return [BackendRef(name, ref) for name, ref in known.items()]
    refs = []
    for name in names:
        if name in known:
            refs.append(BackendRef(name, known[name]))
        elif ":" in name and all(part.strip() for part in name.split(":", 1)):
            refs.append(BackendRef(name, name))
        else:
            raise UsageError(f"unknown backend {name!r}; choose from {', '.join(known)} or give module:attr")
    return refs


def load(ref: str) -> Any:
    """Import ``module:attr``; a class is instantiated, an instance used as is."""
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def builtin_refs(attribute: str) -> dict[str, Any]:
    """Registry name -> a class attribute of each built-in adapter (None where it has none).

    Reads the class without instantiating it: no framework import, nothing that can fail slowly.
    """
    out: dict[str, Any] = {}
    for name, ref in BUILTIN.items():
        module_name, _, attr = ref.partition(":")
        try:
            out[name] = getattr(getattr(importlib.import_module(module_name), attr), attribute, None)
        except Exception:
            out[name] = None
    return out


def builtin_backends() -> list[Any]:
    """One instance of every built-in adapter that loads (adapter modules import no framework)."""
    out = []
    for ref in BUILTIN.values():
        try:
            out.append(load(ref))
        except Exception:  # a broken adapter module is reported where it is used by name
            continue
    return out


def api_names(ref: str) -> tuple[str, ...]:
    """The API names a backend declares (imports the adapter module, not its framework)."""
    return tuple(load(ref).apis)


def api_ids(ref: str) -> tuple[str, ...]:
    """Full API ids ("backend:api") under the backend's own name, which a registry name may not be
    (``keras3-jax`` declares ``keras3:jax``); imports the adapter module, not its framework."""
    backend = load(ref)
    return tuple(f"{backend.name}:{api}" for api in backend.apis)


def validate_apis(refs: list[BackendRef], apis: list[str]) -> set[str] | None:
    """API ids must exist; checked against the adapters' declared names without importing frameworks."""
    if not apis:
        return None
    known: set[str] = set()
    for ref in refs:
        try:
            known.update(api_ids(ref.ref))
        except Exception:  # a plugin that cannot load here: its worker will report it
            known.update(a for a in apis if a.startswith(f"{ref.name}:"))
    for api in apis:
        if api not in known:
            raise UsageError(f"unknown api {api!r}; choose from {', '.join(sorted(known))}")
    return set(apis)
