"""Endpoint pre-flight: each served endpoint is asked once for ``/models`` before a store exists.

A closed port or a misspelt host otherwise shows only as every episode failing after its retries (a
minute of ``reset`` events and a store full of failures); here it is bad input (exit 2) named with its
config section within the endpoint's timeout (at most ``PROBE_SECONDS``). A model the server does not list
is a warning: some servers list aliases only, or nothing. Answers with any HTTP status (401/403 too: the run
reports refused keys as before) count as reachable. Local engines (transformers, vllm, scripted, plugins
without a ``base_url``) and roles given backend objects are not probed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import aiohttp

from esc_eval.runs.config import ConfigError, EndpointConfig
from esc_eval.runs.execution.plan import RunPlan

log = logging.getLogger(__name__)

PROBE_SECONDS = 10.0
"""The longest one probe may take, whatever the endpoint's ``timeout``: pre-flight answers within seconds."""


@dataclass(frozen=True)
class Probe:
    """One distinct endpoint and every config section (and model) that uses it."""

    base_url: str
    sections: tuple[str, ...]
    models: tuple[str, ...]
    timeout: float
    api_key_env: str | None


def probes(plan: RunPlan, overridden: Collection[str] = ()) -> list[Probe]:
    """The distinct served endpoints of ``plan``, skipping roles in ``overridden`` (backend objects) and local engines."""
    found: dict[str, tuple[list[str], list[str], float, str | None]] = {}
    for role, where, endpoint in _endpoints(plan):
        if role in overridden or endpoint.backend != "openai" or not endpoint.base_url:
            continue
        url = endpoint.base_url.rstrip("/")
        sections, models, timeout, key = found.setdefault(url, ([], [], endpoint.timeout, endpoint.api_key_env))
        sections.append(where)
        if endpoint.model and endpoint.model not in models:
            models.append(endpoint.model)
        found[url] = (sections, models, min(timeout, endpoint.timeout), key)
    return [Probe(url, tuple(s), tuple(m), t, k) for url, (s, m, t, k) in found.items()]


def _endpoints(plan: RunPlan) -> Iterator[tuple[str, str, EndpointConfig]]:
    config = plan.config
    for index, seeker in enumerate(plan.seeker_plans()):
        yield seeker.role, config.seeker_where(index), seeker.section
    for index, supporter in enumerate(config.supporters):
        yield supporter.name, f"[supporters[{index}]]", supporter
    if config.judge is not None:
        yield "judge", "[judge]", config.judge
    if plan.safety is not None:
        yield "safety", "[safety]", plan.safety.endpoint


async def preflight(plan: RunPlan, overridden: Collection[str] = ()) -> None:
    """Probe every endpoint of ``plan`` at once; ``ConfigError`` names the first one that cannot be reached."""
    checks = probes(plan, overridden)
    if not checks:
        return
    async with aiohttp.ClientSession() as session:
        errors = await asyncio.gather(*(_probe(session, probe) for probe in checks))
    for probe, error in zip(checks, errors, strict=True):
        if error is not None:
            raise ConfigError(f"{plan.config.path}: {', '.join(probe.sections)} field 'base_url': {probe.base_url} {error} "
                              "(nothing was started; --no-preflight skips this check)")


async def _probe(session: aiohttp.ClientSession, probe: Probe) -> str | None:
    """``None`` when the endpoint answered (warning about models it does not list), else why it cannot be reached."""
    headers = {}
    key = os.environ.get(probe.api_key_env or "", "") if probe.api_key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = aiohttp.ClientTimeout(total=min(probe.timeout, PROBE_SECONDS))
    try:
        async with session.get(f"{probe.base_url}/models", headers=headers, timeout=timeout) as response:
            if response.status != 200:
                return None  # reachable; 401/403 are reported by the run as before, other statuses by its requests
            try:
                listed = {str(m.get("id")) for m in (await response.json(content_type=None)).get("data", [])}
            except (ValueError, AttributeError, TypeError, aiohttp.ClientError):
                return None  # a server without a model list
    except aiohttp.ClientConnectorDNSError:
        return "cannot be reached: its host name does not resolve"
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "cannot be reached: connection refused (is the server running on that port?)"
        return f"cannot be reached: {exc.os_error.strerror or exc.os_error}" if exc.os_error else "cannot be reached"
    except aiohttp.InvalidURL:
        return "is not a valid URL"
    except TimeoutError:  # a busy server may still serve the run: its requests have their own retries
        log.warning("%s (%s) did not answer /models within %g s", probe.base_url, ", ".join(probe.sections),
                    min(probe.timeout, PROBE_SECONDS))
        return None
    except aiohttp.ClientError as exc:
        return f"cannot be reached ({type(exc).__name__}: {exc})"
    missing = [model for model in probe.models if model not in listed]
    if listed and missing:
        log.warning("%s (%s) does not list model %s among /models (%s); its requests may fail", probe.base_url,
                    ", ".join(probe.sections), ", ".join(missing), ", ".join(sorted(listed)[:5]))
    return None
