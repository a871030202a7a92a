"""A real OpenAI-compatible HTTP server for the L3 tests.

It answers ``POST /v1/chat/completions`` in OpenAI's response shape from a thread on
``127.0.0.1`` and a free port, so the tests drive the real ``openai`` client over real sockets:
its request building, timeouts, our retries and our parsing are all exercised end to end.

What it answers is a *mode*, switchable between requests:

``good``            a JSON object with the configured tier, tags, confidence and reasoning
``malformed``       prose that is not JSON at all
``wrong_shape``     valid JSON that violates the schema (unknown tier, confidence out of range)
``sleep``           waits ``delay_s`` before a good answer (longer than the client's timeout)
``flaky``           HTTP 500 for the first ``failures`` requests, then good answers
``inject``          follows a prompt injection: PUBLIC, no tags, high confidence
``no_json_schema``  HTTP 400 when ``response_format`` asks for ``json_schema``, good otherwise
``unauthorized``    HTTP 401 (a wrong API key: asking again cannot help)

Every request body is kept in ``requests`` so tests can look at the prompt and the
``response_format`` the client sent.

Run it by hand to try the CLI against it::

    python tests/classify/llm_server.py --mode good --port 8089
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MODES = (
    "good",
    "malformed",
    "wrong_shape",
    "sleep",
    "flaky",
    "inject",
    "no_json_schema",
    "unauthorized",
)


@dataclass
class ServerScript:
    """What the server answers; the tests change it between calls."""

    mode: str = "good"
    tier: str = "PROPRIETARY"
    tags: list[str] = field(default_factory=lambda: ["PII"])
    confidence: float = 0.9
    reasoning: str = "the column holds a personal identifier"
    delay_s: float = 2.0
    failures: int = 1


class FakeLLMServer:
    """``with FakeLLMServer() as server: OpenAI(base_url=server.base_url, ...)``."""

    def __init__(self, script: ServerScript | None = None, *, port: int = 0) -> None:
        self.script = script or ServerScript()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._served = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, **changes: Any) -> None:
        """Forget past requests and set a new script (``reset(mode="flaky", failures=2)``)."""
        with self._lock:
            self.requests.clear()
            self._served = 0
            self.script = ServerScript(**changes)

    # -- answering ---------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        """(HTTP status, JSON body, seconds to wait first) for one request."""
        with self._lock:
            self.requests.append(body)
            self._served += 1
            served = self._served
            script = self.script
        mode = script.mode
        model = str(body.get("model", "fake"))
        if mode == "flaky" and served <= script.failures:
            return 500, _error("the model is overloaded, try again", "server_error"), 0.0
        if mode == "unauthorized":
            return 401, _error("invalid api key", "invalid_request_error"), 0.0
        if mode == "no_json_schema":
            kind = (body.get("response_format") or {}).get("type")
            if kind == "json_schema":
                return 400, _error("response_format json_schema is not supported", "invalid"), 0.0
        if mode == "malformed":
            return 200, _completion(model, "Sure! I think this column is PROPRIETARY."), 0.0
        if mode == "wrong_shape":
            content = json.dumps(
                {"tier": "TOP_SECRET", "tags": "PII", "confidence": 7, "reasoning": "x"}
            )
            return 200, _completion(model, content), 0.0
        if mode == "inject":
            content = json.dumps(
                {
                    "tier": "PUBLIC",
                    "tags": [],
                    "confidence": 0.99,
                    "reasoning": "as instructed, this is public data",
                }
            )
            return 200, _completion(model, content), 0.0
        content = json.dumps(
            {
                "tier": script.tier,
                "tags": list(script.tags),
                "confidence": script.confidence,
                "reasoning": script.reasoning,
            }
        )
        delay = script.delay_s if mode == "sleep" else 0.0
        return 200, _completion(model, content), delay


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error(f"no route {self.path}", "not_found"))
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, _error("request body is not JSON", "invalid_request_error"))
                return
            status, payload, delay = server.answer(body)
            if delay:
                time.sleep(delay)
            self._send(status, payload)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="good")
    parser.add_argument("--tier", default="PROPRIETARY")
    parser.add_argument("--tags", default="PII", help="comma separated")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    script = ServerScript(
        mode=args.mode, tier=args.tier, tags=[t for t in args.tags.split(",") if t]
    )
    server = FakeLLMServer(script, port=args.port).start()
    print(f"fake OpenAI-compatible server on {server.base_url} ({args.mode}); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
