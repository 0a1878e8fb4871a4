"""A small OpenAI-compatible chat server over any :class:`~eef.agent.policy.Policy` (stdlib only).

It serves an eef checkpoint to other tools and gives tests a real HTTP backend for
:class:`~eef.agent.openai_policy.OpenAIPolicy`. Endpoints: ``POST /v1/chat/completions``,
``GET /v1/models`` and ``GET /health``.

Each HTTP request is handled on its own thread, but only one worker thread calls the policy (a
policy need not be thread-safe). The worker collects the requests arriving within
``batch_window_s`` (at most ``max_batch``), groups them by sampling settings and makes one
``generate`` call per group, so concurrent clients share batches.

Every request is checked before it reaches the policy: a bad field, a ``max_tokens`` above the
server's limit or an oversized body is answered with a 400 (413) in OpenAI's error shape, since
one unbounded request would stall every client behind it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from eef.agent.card import AgentCard, read_agent_card
from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.errors import EefError

logger = logging.getLogger(__name__)

# OpenAI's defaults where a request leaves a field out (max_tokens has none there: ours is finite).
DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEFAULT_MAX_TOKENS = 1.0, 1.0, 256
# The max_tokens limit when neither the caller nor the model's config gives one.
DEFAULT_MAX_TOKENS_LIMIT = 4096
# The largest request body read (a long conversation is well under it).
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
ROLES = ("system", "user", "assistant")


class BadRequest(ValueError):
    """A request body the server cannot serve (answered with 400)."""


def parse_chat_request(
    body: Any, *, max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT
) -> tuple[GenerationRequest, SamplingParams]:
    """The generation request and sampling settings of a chat completion request body.

    Args:
        body: the decoded JSON body.
        max_tokens_limit: the largest ``max_tokens`` served.

    Raises:
        BadRequest: a missing or malformed field, a value out of range, or an unsupported option
            (``n > 1``, streaming).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = _messages(body.get("messages"))
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise BadRequest(f"only n = 1 is supported, got 'n' = {n!r}")
    if body.get("stream") not in (None, False):
        raise BadRequest("streaming is not supported")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else [] if stop is None else stop
    if not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("'stop' must be a string or a list of strings")
    temperature = _number(body.get("temperature"), "temperature", DEFAULT_TEMPERATURE, float)
    if temperature < 0:
        raise BadRequest(f"'temperature' must be >= 0, got {temperature!r}")
    top_p = _number(body.get("top_p"), "top_p", DEFAULT_TOP_P, float)
    if not 0 < top_p <= 1:
        raise BadRequest(f"'top_p' must be in (0, 1], got {top_p!r}")
    max_tokens = _max_tokens(body, max_tokens_limit)
    # Without a seed each request samples afresh, as OpenAI's API does.
    seed = _number(body.get("seed"), "seed", random.getrandbits(32), int)
    return GenerationRequest(messages, seed=seed), SamplingParams(temperature, top_p, max_tokens, tuple(stop))


def _messages(messages: Any) -> list[dict[str, str]]:
    """The conversation as role and text pairs; OpenAI's text content parts are joined."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    out = []
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)):
            raise BadRequest(f"messages[{i}] must be an object with string 'role' and 'content'")
        if message["role"] not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {message['role']!r}")
        out.append({"role": message["role"], "content": _content(message.get("content"), i)})
    return out


def _content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    parts_ok = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    )
    if not parts_ok:
        raise BadRequest(
            f"messages[{i}] must be an object with string 'role' and 'content' (a string or a list of text parts)"
        )
    return "".join(part["text"] for part in content)


def _max_tokens(body: dict[str, Any], limit: int) -> int:
    """The request's ``max_completion_tokens`` (or ``max_tokens``), checked against ``limit``."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body.get(key), key, min(DEFAULT_MAX_TOKENS, limit), int)
    if max_tokens < 1:
        raise BadRequest(f"'{key}' must be >= 1, got {max_tokens}")
    if max_tokens > limit:
        raise BadRequest(f"'{key}' is {max_tokens}, above this server's limit of {limit}")
    return max_tokens


def _number(value: Any, key: str, default: Any, kind: type) -> Any:
    """``value`` as ``kind``; null means the default, booleans and non-finite numbers are refused."""
    if value is None:
        return default
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
        raise BadRequest(f"'{key}' must be {'an integer' if kind is int else 'a finite number'}, got {value!r}")
    return kind(value)


@runtime_checkable
class CountsPromptTokens(Protocol):
    """A policy that counts a conversation's prompt tokens and may know its model's context length
    (:class:`~eef.agent.hf_policy.HFPolicy` does)."""

    @property
    def context_length(self) -> int | None:
        """The most tokens the model reads, prompt and completion together; None when unknown."""
        ...

    def encode_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the conversation followed by the assistant header."""
        ...


def context_length(policy: Policy) -> int | None:
    """The model's context length, where the policy knows it."""
    length = policy.context_length if isinstance(policy, CountsPromptTokens) else None
    return length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None


Check = Callable[[GenerationRequest, SamplingParams], None]


def context_check(policy: Policy) -> Check | None:
    """A check that a request's prompt plus ``max_tokens`` fits the model's context, where the
    policy can count prompt tokens and knows its context length (:class:`CountsPromptTokens`).

    The check raises :class:`BadRequest`, also for a conversation the chat template refuses.
    """
    context = context_length(policy)
    if context is None or not isinstance(policy, CountsPromptTokens):
        return None
    encode = policy.encode_prompt

    def check(request: GenerationRequest, params: SamplingParams) -> None:
        try:
            tokens = len(encode(request.messages))
        except Exception as error:  # the template refused the conversation: the client's to fix
            raise BadRequest(f"the conversation cannot be rendered: {type(error).__name__}: {error}") from None
        if tokens + params.max_new_tokens > context:
            raise BadRequest(
                f"the conversation has {tokens} tokens; with 'max_tokens' {params.max_new_tokens} "
                f"it exceeds the model's context of {context}"
            )

    return check


def chat_completion(completion: Completion, model: str) -> dict[str, Any]:
    """A completion in the shape of an OpenAI ``chat.completion`` object."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
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
        check: called on each request before it joins a batch (on this thread, since the policy
            need not be thread-safe); what it raises goes to that request's client alone.
    """

    def __init__(
        self, policy: Policy, *, batch_window_s: float = 0.01, max_batch: int = 32, check: Check | None = None
    ):
        self.policy, self.batch_window_s, self.max_batch = policy, batch_window_s, max_batch
        self.check = check
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        # Guards the closed flag and the queue together: nothing is queued behind the stop marker.
        self._lock = threading.Lock()
        self._closed = False
        self._busy_since: float | None = None
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

    def load(self) -> dict[str, Any]:
        """Requests waiting and how long the current ``generate`` call has run (for ``/health``)."""
        busy_since = self._busy_since
        return {
            "queued": self._queue.qsize(),
            "generating_s": round(time.monotonic() - busy_since, 3) if busy_since is not None else 0.0,
        }

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

    def _admitted(self, item: _Pending) -> bool:
        if self.check is None:
            return True
        try:
            self.check(item.request, item.params)
        except Exception as error:  # the request alone fails; its batch goes on
            item.error = error
            item.done.set()
            return False
        return True

    def _generate(self, batch: list[_Pending]) -> None:
        groups: dict[SamplingParams, list[_Pending]] = {}
        for item in batch:
            if self._admitted(item):
                groups.setdefault(item.params, []).append(item)
        for params, items in groups.items():
            self._busy_since = time.monotonic()
            try:
                completions = self.policy.generate([item.request for item in items], params)
                for item, completion in zip(items, completions, strict=True):
                    item.completion = completion
            except Exception as error:  # reported to each waiting client; the server keeps going
                logger.exception("generate failed for a batch of %d", len(items))
                for item in items:
                    item.error = error
            finally:
                self._busy_since = None
                for item in items:
                    item.done.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        batcher: Batcher,
        model: str,
        *,
        max_tokens_limit: int,
        max_body_bytes: int,
        card: AgentCard | None = None,
    ):
        super().__init__(address, _Handler)
        self.batcher, self.model, self.card = batcher, model, card
        self.max_tokens_limit, self.max_body_bytes = max_tokens_limit, max_body_bytes

    @property
    def url(self) -> str:
        """The API root on the bound address and port."""
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
    timeout = 60  # seconds a client may go silent mid-request (or idle between keep-alive requests)

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/health":
            self._send(200, {"status": "ok", **self.server.batcher.load()})
        elif path == "/v1/models":
            entry: dict[str, Any] = {"id": self.server.model, "object": "model", "created": 0, "owned_by": "eef"}
            if self.server.card is not None:  # clients run the model with the prompt it was trained with
                entry["eef_agent"] = self.server.card.to_dict()
            self._send(200, {"object": "list", "data": [entry]})
        else:
            self._error(404, f"no such endpoint: GET {self.path}", "not_found_error")

    def do_POST(self) -> None:
        raw = self._read_body()
        if raw is None:
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no such endpoint: POST {self.path}", "not_found_error")
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
            self._error(400, f"the body is not valid JSON: {error}", "invalid_request_error")
            return
        try:
            request, params = parse_chat_request(body, max_tokens_limit=self.server.max_tokens_limit)
        except BadRequest as error:
            self._error(400, str(error), "invalid_request_error")
            return
        try:
            completion = self.server.batcher.submit(request, params)
        except BadRequest as error:
            self._error(400, str(error), "invalid_request_error")
            return
        except Exception as error:
            self._error(500, f"{type(error).__name__}: {error}", "server_error")
            return
        self._send(200, chat_completion(completion, self.server.model))

    def _read_body(self) -> bytes | None:
        """The request body, read before answering (even a 404) to keep the connection usable; None
        when it was refused (the connection is then closed, its body unread)."""
        length = self.headers.get("Content-Length") or "0"
        if not (length.isascii() and length.isdigit()):
            self.close_connection = True
            self._error(400, f"bad Content-Length: {length[:40]!r}", "invalid_request_error")
            return None
        if len(length) > 15 or int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._error(
                413,
                f"the body has {length[:40]} bytes, above this server's limit of {self.server.max_body_bytes}",
                "invalid_request_error",
            )
            return None
        return self.rfile.read(int(length))

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # `format`: the stdlib's signature
        logger.debug("%s %s", self.address_string(), format % args)


class ServerHandle:
    """A server running on a background thread; a context manager that closes it.

    Attributes:
        url: the API root to give clients, e.g. ``http://127.0.0.1:8000/v1``.
    """

    def __init__(self, server: _Server):
        self._server = server
        self.url = server.url
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


def _make_server(
    policy: Policy,
    host: str,
    port: int,
    batch_window_s: float,
    max_batch: int,
    model_name: str | None,
    max_tokens_limit: int | None,
    max_body_bytes: int,
    card: AgentCard | None = None,
) -> _Server:
    limit = max_tokens_limit if max_tokens_limit is not None else context_length(policy) or DEFAULT_MAX_TOKENS_LIMIT
    for name, value in (("max_tokens_limit", limit), ("max_body_bytes", max_body_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EefError(f"{name} must be an integer >= 1, got {value!r}")
    batcher = Batcher(policy, batch_window_s=batch_window_s, max_batch=max_batch, check=context_check(policy))
    try:
        return _Server(
            (host, port),
            batcher,
            model_name or policy.name,
            max_tokens_limit=limit,
            max_body_bytes=max_body_bytes,
            card=card,
        )
    except (OSError, OverflowError) as e:  # the port is taken, or no port at all (70000)
        batcher.close()
        raise EefError(f"cannot serve on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None


def serve(
    policy: Policy,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    batch_window_s: float = 0.01,
    max_batch: int = 32,
    model_name: str | None = None,
    max_tokens_limit: int | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    card: AgentCard | None = None,
) -> ServerHandle:
    """Serve ``policy`` on a background thread.

    Args:
        policy: the policy answering the requests (called from one worker thread only).
        host: the address to listen on.
        port: the port; 0 picks a free one (read it from the handle's ``url``).
        batch_window_s: how long a request waits for others to share its batch.
        max_batch: the most requests in one ``generate`` call.
        model_name: the model name listed by ``/v1/models``; defaults to ``policy.name``.
        max_tokens_limit: the largest ``max_tokens`` a request may ask for (larger ones get a
            400); defaults to the model's context length where the policy knows it, else
            ``DEFAULT_MAX_TOKENS_LIMIT``.
        max_body_bytes: the largest request body read (larger ones get a 413).
        card: the model's agent card, listed by ``/v1/models`` under ``eef_agent``.

    Returns:
        The running server's handle; close it (or use it as a context manager) to stop it.
    """
    return ServerHandle(
        _make_server(policy, host, port, batch_window_s, max_batch, model_name, max_tokens_limit, max_body_bytes, card)
    )


def run_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_window_s: float = 0.01,
    max_batch: int = 32,
    max_tokens_limit: int | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Load a checkpoint with :class:`~eef.agent.hf_policy.HFPolicy` and serve it until interrupted
    (``max_tokens_limit`` and ``max_body_bytes`` as in :func:`serve`)."""
    from eef.agent.hf_policy import HFPolicy

    # Requests name no conversation, so a prefix cache would never be hit.
    policy = HFPolicy.from_pretrained(
        model_path, device=device, dtype=dtype, max_batch_size=max_batch, prefix_cache_entries=0
    )
    card = read_agent_card(model_path) if Path(model_path).is_dir() else None
    try:
        server = _make_server(
            policy, host, port, batch_window_s, max_batch, None, max_tokens_limit, max_body_bytes, card
        )
    except EefError:
        policy.close()
        raise
    trained = "" if card is None else f" (trained on {card.env}: its prompt is listed by GET /v1/models)"
    print(f"serving {policy.name} at {server.url}{trained}", file=sys.stderr, flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
        server.batcher.close()
        policy.close()
