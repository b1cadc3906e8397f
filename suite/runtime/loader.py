"""Find backends by name without importing any framework.

A backend is named by a built-in name (``torch``), an entry point of the group
``dropbench.backends``, or ``module:attr``. Resolution only maps names to references;
loading (which imports the adapter module, still not its framework) happens in the worker.
"""
from __future__ import annotations

import importlib
import platform
import sys
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


def _families() -> dict[str, list[str]]:
    """A built-in backend's own name (the prefix of its API ids) -> the registry entries that run it,
    where that name is not itself an entry: ``keras3`` -> keras3-jax, keras3-torch, ..."""
    out: dict[str, list[str]] = {}
    for entry, own in builtin_refs("name").items():
        if isinstance(own, str) and own and own not in BUILTIN:
            out.setdefault(own, []).append(entry)
    return out


def resolve(names: list[str] | None) -> list[BackendRef]:
    """Every known backend when ``names`` is empty, else the named ones (UsageError if unknown).

    A name is a registry entry (``keras3-jax``), the backend name of several entries (``keras3``:
    all of them, as its API ids ``keras3:jax`` ... suggest), or ``module:attr``.
    """
    known = known_backends()
    if not names:
        return [BackendRef(name, ref) for name, ref in known.items()]
    refs: list[BackendRef] = []
    families: dict[str, list[str]] | None = None
    for name in names:
        if name in known:
            refs.append(BackendRef(name, known[name]))
            continue
        if ":" in name and all(part.strip() for part in name.split(":", 1)):
            refs.append(BackendRef(name, name))
            continue
        families = _families() if families is None else families
        if name in families:
            refs.extend(BackendRef(entry, known[entry]) for entry in families[name])
        else:
            choices = [*known, *(f for f in families if f not in known)]
            raise UsageError(f"unknown backend {name!r}; choose from {', '.join(choices)} or give module:attr")
    return list(dict.fromkeys(refs))


def _declared_ids(ref: BackendRef, apis: list[str]) -> set[str]:
    try:
        return set(api_ids(ref.ref))
    except Exception:  # a plugin that cannot load here: its worker will report it
        return {a for a in apis if a.startswith(f"{ref.name}:")}


def select(names: list[str], apis: list[str]) -> list[str]:
    """The backends to start: ``names`` as given, narrowed by ``--api`` to the workers that run those APIs.

    With API ids and no names, the ids name their backends (``torch:nn.Dropout2d`` starts only the
    torch worker). With both, every API must belong to a named backend and every named backend must
    run one of the APIs; otherwise a UsageError says which and what to give instead.
    """
    if not apis:
        return list(names)
    chosen = resolve(names)
    owners = {ref.name: _declared_ids(ref, apis) for ref in chosen}
    for api in apis:
        if any(api in ids for ids in owners.values()):
            continue
        if names:
            elsewhere = [ref.name for ref in resolve([]) if api in _declared_ids(ref, apis)]
            if elsewhere:
                raise UsageError(f"api {api!r} is not run by --backend {' '.join(names)}: it runs in the "
                                 f"{' / '.join(elsewhere)} worker; add --backend {elsewhere[0]} or leave --backend out")
        known = sorted(set().union(*owners.values()))
        raise UsageError(f"unknown api {api!r}; choose from {', '.join(known)}")
    for name in names:
        members = [ref.name for ref in resolve([name])]
        if not any(set(apis) & owners[m] for m in members):
            raise UsageError(f"--backend {name} runs none of the --api ids given ({', '.join(apis)}); "
                             "leave it out or add one of its API ids")
    return [ref.name for ref in chosen if set(apis) & owners[ref.name]]


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


class ContractError(TypeError):
    """A plugin breaks the backend contract (README, "Adding a backend"); the message names the rule."""


def contract_problems(backend: Any) -> list[str]:
    """The rules of the declared contract that ``backend`` breaks, one line each (empty: none)."""
    problems = []
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        problems.append(f"`name` must be a non-empty str, got {name!r}")
    apis = getattr(backend, "apis", None)
    if not isinstance(apis, (tuple, list)) or not apis or not all(isinstance(a, str) and a for a in apis):
        problems.append(f"`apis` must be a non-empty tuple of API names (str), got {apis!r}")
    for method in ("available", "versions", "devices", "forward", "forward_backward"):
        if not callable(getattr(backend, method, None)):
            problems.append(f"`{method}` must be a method")
    return problems


def _checked(backend: Any, method: str, expected: type | tuple[type, ...], what: str) -> Any:
    value = getattr(backend, method)()
    if not isinstance(value, expected) or (expected is bool and not isinstance(value, bool)):
        raise ContractError(f"contract: {method}() must return {what}, got {type(value).__name__} {value!r:.60}")
    return value


def interpreter() -> str:
    """Which interpreter runs this worker: its environment (sys.prefix) and Python version."""
    return f"{sys.prefix} (Python {platform.python_version()})"


def load_for_worker(ref: str) -> tuple[Any | None, dict[str, Any]]:
    """Load a backend inside a worker: (backend or None, the facts every task reports first).

    A failing import, a missing framework or a broken contract is reported with its reason, never raised.
    """
    def unavailable(reason: str, name: str = ref) -> tuple[None, dict[str, Any]]:
        return None, {"backend": name, "available": False, "reason": reason, "versions": {}, "records": [],
                      "python": interpreter()}

    try:
        backend = load(ref)
    except Exception as exc:
        return unavailable(f"loading {ref} failed: {type(exc).__name__}: {exc}")
    name = getattr(backend, "name", ref) if isinstance(getattr(backend, "name", None), str) else ref
    problems = contract_problems(backend)
    if problems:
        return unavailable("contract: " + "; ".join(problems), name)
    try:
        if not _checked(backend, "available", bool, "a bool"):
            getter = getattr(backend, "unavailable_reason", None)
            return unavailable((getter() if callable(getter) else None) or f"{name} reports itself unavailable", name)
        versions = _checked(backend, "versions", dict, "a dict of package versions")
        _checked(backend, "devices", list, 'a list of device names like ["cpu"]')
    except ContractError as exc:
        return unavailable(str(exc), name)
    except Exception as exc:  # the framework failed while answering: unavailable, with its words
        return unavailable(f"{type(exc).__name__}: {exc}", name)
    return backend, {"backend": name, "available": True, "reason": None, "versions": dict(versions), "records": [],
                     "python": interpreter()}
