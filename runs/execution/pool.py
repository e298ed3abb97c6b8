"""The backends of a run: one per distinct endpoint, shared by every role that uses it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from esc_eval.agents.backends import BACKENDS, ChatBackend, Shared, resolve_backend, role_adapter
from esc_eval.runs.config import EndpointConfig
from esc_eval.runs.execution.caching import OFF, CachingBackend, ResponseCacheSession


class BackendPool:
    """One backend per distinct endpoint (kind, url, model, key variable), shared by every role using it.

    Sharing matters for local models: the seeker and a supporter on the embedded model
    load it once and have their requests batched together. HTTP backends on one
    server share its connection pool (``Shared``). The endpoint's ``backend`` names the
    factory in ``esc_eval.agents.backends.BACKENDS``, called with its ``options`` as keyword arguments
    (checked against the factory's signature when the config was loaded); ``auto`` is resolved here,
    and ``kinds`` records the backend each role got (the run's meta keeps it).

    With a response ``cache`` (path, mode; ``esc_eval.runs.execution.caching``) every endpoint's backend is
    wrapped in a ``CachingBackend``; backend objects passed in (``overrides``) are not: what model answers
    there is theirs to know, not the config's.
    """

    def __init__(self, overrides: Mapping[str, ChatBackend] | None = None, *, cache: tuple[str | Path | None, str] = (None, OFF)):
        self._by_endpoint: dict[tuple[object, ...], ChatBackend] = {}
        self.overrides = dict(overrides or {})
        self._shared = Shared()
        self._cache_path, self._cache_mode = cache
        self.cache: ResponseCacheSession | None = None
        """The run's use of the cache file, opened with the first endpoint's backend."""
        self._kind_of: dict[tuple[object, ...], str] = {}
        self.kinds: dict[str, str] = {}
        """Role name -> the backend it runs on (``auto`` resolved; ``override`` for a backend passed in)."""

    def get(self, role_name: str, endpoint: EndpointConfig) -> ChatBackend:
        if role_name in self.overrides:
            self.kinds[role_name] = "override"
            return self.overrides[role_name]
        ident = (endpoint.backend, endpoint.base_url, endpoint.model, endpoint.api_key_env, tuple(sorted(endpoint.lora.items())),
                 json.dumps(endpoint.options, sort_keys=True, default=str))
        if ident not in self._by_endpoint:
            kind = resolve_backend(endpoint.backend, name=role_name, model=endpoint.model)
            backend = BACKENDS.get(kind)(endpoint, name=role_name, shared=self._shared, **endpoint.options)
            if self._cache_path is not None and self._cache_mode != OFF:
                if self.cache is None:
                    self.cache = ResponseCacheSession(self._cache_path, self._cache_mode)
                backend = CachingBackend(backend, self.cache, model=endpoint.model, adapter=role_adapter(endpoint, role_name))
            self._by_endpoint[ident] = backend
            self._kind_of[ident] = kind
        self.kinds[role_name] = self._kind_of[ident]
        return self._by_endpoint[ident]

    def all(self) -> list[ChatBackend]:
        return list({id(b): b for b in [*self._by_endpoint.values(), *self.overrides.values()]}.values())

    async def aclose(self) -> None:
        for backend in self.all():
            await backend.aclose()
        await self._shared.aclose()
        if self.cache is not None:
            await self.cache.aclose()
