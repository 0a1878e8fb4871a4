"""A small OpenAI-compatible chat server over any :class:`~eef.agent.policy.Policy` (stdlib only).

It serves an eef checkpoint to other tools and gives tests a real HTTP backend for
:class:`~eef.agent.openai_policy.OpenAIPolicy`. Endpoints: ``POST /v1/chat/completions``,
``GET /v1/models`` and ``GET /health``.

Each HTTP request is handled on its own thread, but only one worker thread calls the policy (a
policy need not be thread-safe). The worker collects the requests arriving within
``batch_window_s`` (at most ``max_batch``), groups them by sampling settings and makes one
``generate`` call per group, so concurrent clients share batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.errors import EefError

logger = logging.getLogger(__name__)

# OpenAI's defaults where a request leaves a field out (max_tokens has none there: ours is finite).
DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEFAULT_MAX_TOKENS = 1.0, 1.0, 256


class BadRequest(ValueError):
    """A request body the server cannot serve (answered with 400)."""


def parse_chat_request(body: Any) -> tuple[GenerationRequest, SamplingParams]:
    """The generation request and sampling settings of a chat completion request body.

    Raises:
        BadRequest: a missing or malformed field, or an unsupported option (``n > 1``, streaming).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise BadRequest(f"messages[{i}] must be an object with string 'role' and 'content'")
    if body.get("n") not in (None, 1):
        raise BadRequest("only n = 1 is supported")
    if body.get("stream"):
        raise BadRequest("streaming is not supported")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else [] if stop is None else stop
    if not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("'stop' must be a string or a list of strings")
    temperature = _number(body.get("temperature"), "temperature", DEFAULT_TEMPERATURE, float)
    top_p = _number(body.get("top_p"), "top_p", DEFAULT_TOP_P, float)
    max_tokens = _number(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens",
                         DEFAULT_MAX_TOKENS, int)
    try:
        params = SamplingParams(temperature, top_p, max_tokens, tuple(stop))
    except ValueError as error:  # out of range
        raise BadRequest(str(error)) from None
    # Without a seed each request samples afresh, as OpenAI's API does.
    seed = _number(body.get("seed"), "seed", random.getrandbits(32), int)
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    return GenerationRequest(messages, seed=seed), params


def _number(value: Any, key: str, default: Any, kind: type) -> Any:
    """``value`` as ``kind``; null means the default, booleans are refused."""
    if value is None:
        return default
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise BadRequest(f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def chat_completion(completion: Completion, model: str) -> dict[str, Any]:
    """A completion in the shape of an OpenAI ``chat.completion`` object."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                     "logprobs": None, "finish_reason": completion.finish_reason}],
        "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                  "total_tokens": completion.prompt_tokens + completion.completion_tokens},
    }


@dataclass
class _Pending:
    request: GenerationRequest
    params: SamplingParams
    done: threading.Event = field(default_factory=threading.Event)
    completion: Completion | None = None
    error: BaseException | None = None


class Batcher:
    """The one thread that calls the policy, batching the requests that arrive together.

    Args:
        policy: the policy to call.
        batch_window_s: how long the first request of a batch waits for company.
        max_batch: the most requests in one batch.
    """

    def __init__(self, policy: Policy, *, batch_window_s: float = 0.01, max_batch: int = 32):
        self.policy, self.batch_window_s, self.max_batch = policy, batch_window_s, max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        # Guards the closed flag and the queue together: nothing is queued behind the stop marker.
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="eef-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        """Queue one request and wait for its completion (called from the handler threads).

        Raises:
            EefError: the batcher is closed.
            Exception: whatever the policy raised for the request's batch.
        """
        pending = _Pending(request, params)
        with self._lock:
            if self._closed:
                raise EefError("the server is shutting down")
            self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.completion is not None
        return pending.completion

    def close(self) -> None:
        """Refuse new requests, serve those already queued and stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stopping = [first], False
            deadline = time.monotonic() + self.batch_window_s
            while len(batch) < self.max_batch and (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._generate(batch)
            if stopping:
                return

    def _generate(self, batch: list[_Pending]) -> None:
        groups: dict[SamplingParams, list[_Pending]] = {}
        for item in batch:
            groups.setdefault(item.params, []).append(item)
        for params, items in groups.items():
            try:
                completions = self.policy.generate([item.request for item in items], params)
                for item, completion in zip(items, completions, strict=True):
                    item.completion = completion
            except Exception as error:  # reported to each waiting client; the server keeps going
                logger.exception("generate failed for a batch of %d", len(items))
                for item in items:
                    item.error = error
            finally:
                for item in items:
                    item.done.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], batcher: Batcher, model: str):
        super().__init__(address, _Handler)
        self.batcher, self.model = batcher, model


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.server.model, "object": "model", "created": 0, "owned_by": "eef"}]})
        else:
            self._error(404, f"no such endpoint: GET {self.path}", "not_found_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)  # read before answering, even a 404, to keep the connection usable
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no such endpoint: POST {self.path}", "not_found_error")
            return
        try:
            body = json.loads(raw)
        except ValueError as error:
            self._error(400, f"the body is not valid JSON: {error}", "invalid_request_error")
            return
        try:
            request, params = parse_chat_request(body)
        except BadRequest as error:
            self._error(400, str(error), "invalid_request_error")
            return
        try:
            completion = self.server.batcher.submit(request, params)
        except Exception as error:
            self._error(500, f"{type(error).__name__}: {error}", "server_error")
            return
        self._send(200, chat_completion(completion, self.server.model))

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        logger.debug("%s %s", self.address_string(), format % args)


class ServerHandle:
    """A server running on a background thread; a context manager that closes it.

    Attributes:
        url: the API root to give clients, e.g. ``http://127.0.0.1:8000/v1``.
    """

    def __init__(self, server: _Server):
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/v1"
        # A short poll interval makes close() quick (shutdown waits for the loop to notice).
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="eef-serve", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting requests, finish the batch under way and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server.batcher.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _make_server(policy: Policy, host: str, port: int, batch_window_s: float, max_batch: int,
                 model_name: str | None) -> _Server:
    batcher = Batcher(policy, batch_window_s=batch_window_s, max_batch=max_batch)
    try:
        return _Server((host, port), batcher, model_name or policy.name)
    except OSError as e:  # e.g. the port is taken
        batcher.close()
        raise EefError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


def serve(policy: Policy, host: str = "127.0.0.1", port: int = 0, *, batch_window_s: float = 0.01,
          max_batch: int = 32, model_name: str | None = None) -> ServerHandle:
    """Serve ``policy`` on a background thread.

    Args:
        policy: the policy answering the requests (called from one worker thread only).
        host: the address to listen on.
        port: the port; 0 picks a free one (read it from the handle's ``url``).
        batch_window_s: how long a request waits for others to share its batch.
        max_batch: the most requests in one ``generate`` call.
        model_name: the model name listed by ``/v1/models``; defaults to ``policy.name``.

    Returns:
        The running server's handle; close it (or use it as a context manager) to stop it.
    """
    return ServerHandle(_make_server(policy, host, port, batch_window_s, max_batch, model_name))


def run_server(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, device: str = "auto",
               dtype: str = "auto", batch_window_s: float = 0.01, max_batch: int = 32) -> None:
    """Load a checkpoint with :class:`~eef.agent.hf_policy.HFPolicy` and serve it until interrupted."""
    from eef.agent.hf_policy import HFPolicy

    # Requests name no conversation, so a prefix cache would never be hit.
    policy = HFPolicy.from_pretrained(model_path, device=device, dtype=dtype, max_batch_size=max_batch,
                                      prefix_cache_entries=0)
    server = _make_server(policy, host, port, batch_window_s, max_batch, None)
    bound_host, bound_port = server.server_address[:2]
    print(f"serving {policy.name} at http://{bound_host}:{bound_port}/v1", file=sys.stderr, flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
        server.batcher.close()
        policy.close()
