"""Child process: a fake OpenAI server (``testing/fake_server.py``) answering after a fixed delay.

Prints ``PORT <n>`` when ready; serves until its stdin closes. Replies are short: judge
requests (model ``judge``) get ``Score: 3``, everyone else one short line.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

from aiohttp import web

from esc_eval.testing.fake_server import FakeOpenAIServer


def responder(body: dict[str, Any]) -> str:
    if body.get("model") == "judge":
        return "Score: 3"
    return "I hear you. That sounds hard; tell me more."


async def start(server: FakeOpenAIServer) -> None:
    """``FakeOpenAIServer.start`` with a listen backlog for thousands of simultaneous connects."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server._chat)
    server._runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await server._runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server.port = sock.getsockname()[1]
    await web.SockSite(server._runner, sock, backlog=8192).start()


async def main(delay: float, jitter: float) -> None:
    server = FakeOpenAIServer(responder=responder, delay=delay, jitter=jitter, record=False)
    await start(server)
    print(f"PORT {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--jitter", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.delay, args.jitter))
    except ImportError:
        asyncio.run(main(args.delay, args.jitter))
