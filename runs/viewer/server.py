"""``esc-eval view STORE [STORE...]``: browse finished and running stores in a local web page.

The page (``static/``) shows the leaderboard with intervals and paired comparisons, the
episode list, one episode (dialogue, the seeker's hidden state per turn, scores with the
judge's raw replies, timings, retries and faults), two supporters side by side on one card,
and charts. Stores are opened read-only; the page polls ``/api/version`` and reloads the
summary when a store changed, so a running store is followed live.

The server is guarded as the annotation page is (``esc_eval.runs.web.LocalServer``: loopback by
default, per-start token, Host and Origin checks, CSP); it has no write route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from esc_eval.runs.store import Store
from esc_eval.runs.viewer import ViewerError, data
from esc_eval.runs.web import LocalServer


class ViewerServer(LocalServer):
    """The viewer page and its read-only JSON API: ``/api/summary``, ``/api/episode?id=``, ``/api/search?q=``, ``/api/version``."""

    command = "esc-eval view"
    page_package = "esc_eval.runs.viewer"
    error = ViewerError

    def __init__(self, stores: Sequence[tuple[Path, Store]], *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.stores = list(stores)

    def app(self) -> Any:
        from aiohttp import web

        stores = self.stores
        reading = asyncio.Lock()

        async def read(build: Callable[..., Any], *args: Any) -> Any:
            """Store reads run on one worker thread, one at a time: a leaderboard that takes
            seconds on a large store does not stall the loop (other pages, the static files)."""
            async with reading:
                return await asyncio.get_running_loop().run_in_executor(None, build, *args)

        def versioned_summary() -> dict[str, Any]:
            """The summary and the version it shows: the stores' marks read first (never newer than the data), and
            whether its leaderboards are complete read from them, so the page reloads once the worker completes them."""
            marks = data.version(stores)
            built = data.summary(stores, wait=False)
            return built | {"version": [[*mark[:-1], int(data.complete(part["leaderboard"]))]
                                        for mark, part in zip(marks, built["stores"])]}

        async def summary(request: web.Request) -> web.Response:
            return web.json_response(await read(versioned_summary))

        async def version(request: web.Request) -> web.Response:
            return web.json_response({"version": await read(data.version, stores)})

        async def episode(request: web.Request) -> web.Response:
            index, _, key = request.query.get("id", "").partition(":")
            found = None
            if index.isdigit() and int(index) < len(stores):
                found = await read(data.episode, int(index), stores[int(index)][1], key)
            if found is None:
                return web.json_response({"error": f"no episode {request.query.get('id', '')!r}"}, status=404)
            return web.json_response(found)

        async def search(request: web.Request) -> web.Response:
            query = request.query.get("q", "")
            ids = await read(data.search, stores, query) if query else []
            return web.json_response({"q": query, "ids": ids})

        def routes(app: web.Application) -> None:
            app.router.add_get("/api/summary", summary)
            app.router.add_get("/api/version", version)
            app.router.add_get("/api/episode", episode)
            app.router.add_get("/api/search", search)

        return self.guarded_app(routes, max_body=1024)


def view_command(paths: Sequence[Path], *, host: str = "127.0.0.1", port: int = 8766, ready: Callable[[str], Any] = print) -> int:
    """Serve the viewer over ``paths`` (opened read-only) until interrupted."""
    for path in paths:
        if not path.is_file():
            raise ViewerError(f"{path}: no such store")
    with ExitStack() as stack:
        stores = [(path, stack.enter_context(Store.open(path, readonly=True))) for path in paths]
        server = ViewerServer(stores, host=host, port=port)

        async def main() -> None:
            await server.start()
            counts = ", ".join(f"{path.name}: {sum(store.counts().values())} episodes" for path, store in stores)
            ready(f"esc-eval view: {counts}; open {server.url}  (Ctrl-C to stop; read-only, follows the stores live)")
            try:
                await asyncio.Event().wait()
            finally:
                await server.stop()

        asyncio.run(main())
    return 0
