"""The backends of a run: one per distinct endpoint, shared by every role that uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from agents.backends import ChatBackend, create_backend
from runs.config import EndpointConfig

if TYPE_CHECKING:
    from agents.backends.openai_http import HTTPSessions


class BackendPool:
    """One backend per distinct endpoint (kind, url, model, key variable), shared by every role using it.

    Sharing matters for local models: the seeker and a supporter on the embedded model
    load it once and have their requests micro-batched together. HTTP backends on one
    server share its connection pool (``HTTPSessions``).
    """

    def __init__(self, overrides: Mapping[str, ChatBackend] | None = None):
        self._by_endpoint: dict[tuple[object, ...], ChatBackend] = {}
        self.overrides = dict(overrides or {})
        self._http: HTTPSessions | None = None

    def get(self, role_name: str, endpoint: EndpointConfig) -> ChatBackend:
        if role_name in self.overrides:
            return self.overrides[role_name]
        ident = (endpoint.backend, endpoint.base_url, endpoint.model, endpoint.api_key_env, tuple(sorted(endpoint.lora.items())))
        if ident not in self._by_endpoint:
            if endpoint.backend == "openai":
                from agents.backends.openai_http import HTTPSessions

                self._http = self._http or HTTPSessions()
                backend = create_backend(
                    "openai", base_url=endpoint.base_url, model=endpoint.model, api_key_env=endpoint.api_key_env,
                    max_connections=endpoint.max_connections, timeout=endpoint.timeout,
                    max_attempts=endpoint.max_attempts, max_retry_time=endpoint.max_retry_time, name=role_name, sessions=self._http,
                )
            elif endpoint.backend == "vllm":
                backend = create_backend("vllm", model=endpoint.model, lora=dict(endpoint.lora), name=role_name)
            elif endpoint.backend == "transformers" and endpoint.lora:
                from agents.backends.lora_local import LoraLocalBackend

                backend = LoraLocalBackend(endpoint.model, adapters=dict(endpoint.lora), name=role_name)
            else:
                backend = create_backend(endpoint.backend, model=endpoint.model, name=role_name)
            self._by_endpoint[ident] = backend
        return self._by_endpoint[ident]

    def all(self) -> list[ChatBackend]:
        return list({id(b): b for b in [*self._by_endpoint.values(), *self.overrides.values()]}.values())

    async def aclose(self) -> None:
        for backend in self.all():
            await backend.aclose()
        if self._http is not None:
            await self._http.aclose()
