"""Which version each alias names, kept current without a restart.

A background thread reads the model's alias pointers (one small indexed query) every
`SERVE_POLL_SECONDS` (0.5 by default). When an alias moves, the new version is loaded
through the cache first and only then the alias map is replaced as a whole (one pointer
assignment), so requests see either the old or the new version, never a half-loaded one.
A version that fails to load (damaged artifact, library skew) is never swapped in: the
alias keeps answering with what it had, and `/readyz` names the problem.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from core.errors import AltruismError, BadInput
from core.registry import Registry, parse_ref
from core.registry.serving import AliasPointer
from core.serving.cache import ModelCache, Served

log = logging.getLogger("core.serving")
NUMBER_TTL_S = 5.0  # how long a version looked up by number is trusted (archive, status)


class RegistryFollower:
    """Alias -> `Served`, refreshed by polling; versions by number on demand."""

    def __init__(self, registry: Registry, model: str, cache: ModelCache, poll_s: float) -> None:
        self.registry, self.model, self.cache, self.poll_s = registry, model, cache, poll_s
        self._aliases: dict[str, Served] = {}
        self._pointers: dict[str, AliasPointer] = {}
        self._numbers: dict[int, tuple[float, Served]] = {}
        self._latest: tuple[float, Served] | None = None
        self.problems: dict[str, str] = {}
        self.polled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="registry-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception as exc:  # a registry hiccup must not end the follower
                log.warning("registry poll failed: %s", exc)

    # --- polling -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the alias pointers; load and swap in the versions of those that moved."""
        pointers = {p.alias: p for p in self.registry.alias_pointers(self.model)}
        if pointers != self._pointers:
            self._swap(pointers)
        self.polled = True

    def _swap(self, pointers: dict[str, AliasPointer]) -> None:
        current = self._aliases
        updated: dict[str, Served] = {}
        problems: dict[str, str] = {}
        for alias, pointer in pointers.items():
            held = current.get(alias)
            if held is not None and held.version_id == pointer.version_id:
                updated[alias] = held
                continue
            try:
                updated[alias] = self.cache.served(self.registry.get_by_id(pointer.version_id))
            except (AltruismError, OSError) as exc:
                problems[alias] = f"v{pointer.version}: {exc}"
                if held is not None:
                    updated[alias] = held
        self._aliases, self.problems = updated, problems  # one assignment each
        if not problems:
            self._pointers = pointers
        for alias, served in updated.items():
            if current.get(alias) is not served:
                log.info("alias %s now serves v%s", alias, served.version)

    # --- lookups -----------------------------------------------------------------------
    def resolve(self, ref: str) -> tuple[Served, str | None]:
        """The snapshot for a version number or alias, and the alias (None for a number)."""
        kind, value = parse_ref(ref)
        if kind == "alias":
            served = self._aliases.get(str(value))
            if served is None:
                served = self._load_alias(str(value))
            return served, str(value)
        if kind == "latest":
            return self._newest(), None
        return self._by_number(int(value)), None

    def _load_alias(self, alias: str) -> Served:
        """An alias not yet seen by the poll (just created): read it now."""
        row = self.registry.resolve(alias, self.model)
        return self.cache.served(row)

    def _newest(self) -> Served:
        """`latest`, read from the registry at most once per poll interval (like an alias)."""
        hit = self._latest
        if hit is not None and time.monotonic() - hit[0] < self.poll_s:
            return hit[1]
        served = self.cache.served(self.registry.resolve("latest", self.model))
        self._latest = (time.monotonic(), served)
        return served

    def _by_number(self, number: int) -> Served:
        hit = self._numbers.get(number)
        if hit is not None and time.monotonic() - hit[0] < NUMBER_TTL_S:
            return hit[1]
        row = self.registry.resolve(number, self.model)
        if row.archived:
            raise BadInput(f"version {number} is archived")
        served = self.cache.served(row)
        self._numbers[number] = (time.monotonic(), served)
        return served

    def aliases(self) -> dict[str, Served]:
        return dict(self._aliases)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the first poll is done and every alias's version is loaded."""
        served = {alias: s.version for alias, s in self._aliases.items()}
        missing = sorted(set(self._pointers_seen()) - set(served))
        ok = self.polled and not self.problems and not missing
        return ok, {"aliases": served, "problems": self.problems, "missing": missing}

    def _pointers_seen(self) -> list[str]:
        return list(self._pointers)
