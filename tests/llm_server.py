"""A real HTTP/1.1 server on 127.0.0.1 that speaks the chat-completions protocol and is
scripted to answer or to fail, for the annotation tests and benchmark.

It is written on raw asyncio streams (not a web framework) so that it can misbehave
the way real servers do: drop the connection before answering, send half a body, hang
past the client's timeout. It runs its own event loop in a thread (``start``/``stop``,
or ``with ChatServer(...) as server``), or as a process:
``python -m tests.llm_server --delay 0.05 --content '{"label": "positive"}'`` prints
its port and serves until killed.

Each request is answered by the next action of ``script`` (FIFO), then by
``responder(request_json, attempt)``, where ``attempt`` counts the earlier requests
with the same messages (so a rule like "fail twice, then answer" holds under any
concurrency). Actions: ``answer(content)``, ``status(code, retry_after=...)``,
``HANG``, ``DROP``, ``INVALID_JSON``, ``TRUNCATED``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Self

HANG, DROP, INVALID_JSON, TRUNCATED = ({"kind": k} for k in ("hang", "drop", "invalid_json", "truncated"))


def answer(content: str, delay_s: float = 0.0) -> dict:
    return {"kind": "answer", "content": content, "delay_s": delay_s}


def status(code: int, retry_after: str | None = None, body: str = "") -> dict:
    return {"kind": "status", "code": code, "retry_after": retry_after, "body": body}


def user_text(request: dict) -> str:
    """The first user message (the task prompt with the document in it)."""
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class ChatServer:
    def __init__(self, responder: Callable[[dict, int], dict] | None = None, script: list[dict] = (),
                 delay_s: float = 0.0, hang_s: float = 30.0):
        self.responder = responder or (lambda request, attempt: answer("{}"))
        self.script = list(script)
        self.delay_s = delay_s  # before every answer: a model's latency
        self.hang_s = hang_s
        self.requests: list[dict] = []  # json, headers, t (monotonic)
        self._attempts: Counter = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port: int | None = None

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- lifecycle ---
    def start(self) -> Self:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="chat-server")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("chat server did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- HTTP ---
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:  # keep-alive: one connection carries many requests
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if not await self._respond(json.loads(body or b"{}"), headers, writer):
                    return
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    def _next_action(self, request: dict, headers: dict) -> dict:
        key = json.dumps(request.get("messages"), sort_keys=True)
        with self._lock:
            self.requests.append({"json": request, "headers": headers, "t": time.monotonic()})
            attempt = self._attempts[key]
            self._attempts[key] += 1
            if self.script:
                return self.script.pop(0)
        return self.responder(request, attempt)

    async def _respond(self, request: dict, headers: dict, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        action = self._next_action(request, headers)
        kind = action["kind"]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if kind == "drop":
            writer.transport.abort()  # reset, no response at all
            return False
        if kind == "hang":
            await asyncio.sleep(self.hang_s)
            return False
        if kind == "answer":
            if action.get("delay_s"):
                await asyncio.sleep(action["delay_s"])
            content = action["content"]
            body = json.dumps({
                "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": request.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in request["messages"]),
                          "completion_tokens": len(content.split()),
                          "total_tokens": 0}}).encode()
            self._write(writer, 200, body)
        elif kind == "status":
            extra = {"Retry-After": action["retry_after"]} if action.get("retry_after") is not None else {}
            self._write(writer, action["code"], (action.get("body") or json.dumps(
                {"error": {"message": f"scripted {action['code']}"}})).encode(), extra)
        elif kind == "invalid_json":
            self._write(writer, 200, b'{"choices": [{"message": {"content": ')
        elif kind == "truncated":  # promise 400 bytes, send 20, hang up
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                         b'{"choices": [{"mess')
            await writer.drain()
            return False
        else:
            raise ValueError(f"unknown action {action!r}")
        await writer.drain()
        return True

    @staticmethod
    def _write(writer: asyncio.StreamWriter, code: int, body: bytes, extra: dict | None = None) -> None:
        head = [f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05, help="seconds before every answer")
    ap.add_argument("--content", default='{"label": "positive"}', help="the answer to every request")
    args = ap.parse_args()
    server = ChatServer(lambda request, attempt: answer(args.content), delay_s=args.delay).start()
    print(server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
