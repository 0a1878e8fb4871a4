"""A small OpenAI-compatible chat server over any :class:`~eef.agent.policy.Policy` (stdlib only).

It serves an eef checkpoint to other tools (the official ``openai`` client included) and gives
tests a real HTTP backend for :class:`~eef.agent.openai_policy.OpenAIPolicy`. Endpoints:
``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{name}`` and ``GET /health``.

Each HTTP request is handled on its own thread, but only one worker thread calls the policy (a
policy need not be thread-safe). The worker collects the requests arriving within
``batch_window_s`` (up to ``max_batch`` conversations), groups them by sampling settings and makes
one ``generate`` call per group, so concurrent clients share batches; a request's ``n`` choices
are ``n`` conversations of one batch, each with its own seed.

A policy returns whole completions, so ``stream: true`` is answered once the completion is done,
as server-sent events of OpenAI's ``chat.completion.chunk`` objects: per choice a chunk with the
role, one with the whole text and one with the finish reason; with
``stream_options.include_usage`` a last chunk with the usage; then ``data: [DONE]``. Clients that
stream therefore work unchanged; they see the text at once rather than token by token.

Every request is checked before it reaches the policy, since one unbounded request would stall
every client behind it: a bad field, a field this server cannot honour (``logprobs``, ``tools``,
...: refused by name rather than ignored), an unknown field, a ``max_tokens`` or ``n`` above the
server's limit, or a prompt that with ``max_tokens`` overflows the model's context gets a 400,
another model's name a 404, a missing or wrong API key a 401 and an oversized body a 413, each in
OpenAI's error shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import math
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote

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
# The most choices one request may ask for: each is a conversation of the batch.
DEFAULT_MAX_N = 16
# A message's role as the chat template names it; "developer" is OpenAI's newer name for system.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Request fields that are served.
SERVED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "seed",
        "stream",
        "stream_options",
    }
)
# Request fields that ask nothing of the answer (bookkeeping, or tool settings without tools):
# accepted and ignored.
IGNORED_FIELDS = frozenset(
    {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier"}
)
# Request fields this server cannot honour, accepted only at the values that ask for nothing;
# any other value is refused by name, since ignoring it would answer another question. Every
# other field is unknown and refused too, as OpenAI refuses an unrecognized argument.
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
}
# Message fields read (role, content) or ignored (a participant's name, which the chat template
# does not render); any other (tool_calls, audio, ...) must be empty, as clients echo them back.
MESSAGE_FIELDS = frozenset({"role", "content", "name"})


class ApiError(Exception):
    """A request answered with an error in OpenAI's shape.

    Args:
        status: the HTTP status.
        message: what is wrong, for the client's user.
        kind: OpenAI's error ``type``.
        param: the request field at fault, where there is one.
        code: OpenAI's error ``code`` (``model_not_found``, ``context_length_exceeded``, ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def payload(self) -> dict[str, Any]:
        """The error as OpenAI's JSON body."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class BadRequest(ApiError):
    """A request body the server cannot serve (answered with 400)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(400, message, param=param, code=code)


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat completion request.

    Attributes:
        messages: the conversation as role and text pairs.
        params: the sampling settings, shared by the choices.
        seeds: one seed per choice (``n`` of them).
        stream: whether to answer with server-sent events.
        include_usage: with ``stream``, whether a last event carries the usage.
    """

    messages: list[dict[str, str]]
    params: SamplingParams
    seeds: tuple[int, ...]
    stream: bool = False
    include_usage: bool = False

    def generation_requests(self) -> list[GenerationRequest]:
        """One request to the policy per choice."""
        return [GenerationRequest(self.messages, seed=seed) for seed in self.seeds]


def parse_chat_request(
    body: Any,
    *,
    model: str,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    max_n: int = DEFAULT_MAX_N,
) -> ChatRequest:
    """The checked request of a chat completion request body.

    Args:
        body: the decoded JSON body.
        model: the served model's name; a request may leave its ``model`` out.
        max_tokens_limit: the largest ``max_tokens`` served.
        max_n: the most choices served.

    Raises:
        ApiError: another model (404), or a missing or malformed field, a value out of range, or
            a field this server cannot honour (400).
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    _check_model(body.get("model"), model)
    _refuse_unserved(body)
    stream, include_usage = _streaming(body)
    n = _number(body.get("n"), "n", 1, int)
    if not 1 <= n <= max_n:
        raise BadRequest(f"'n' must be from 1 to this server's limit of {max_n}, got {n}", param="n")
    temperature = _number(body.get("temperature"), "temperature", DEFAULT_TEMPERATURE, float)
    if temperature < 0:
        raise BadRequest(f"'temperature' must be >= 0, got {temperature!r}", param="temperature")
    top_p = _number(body.get("top_p"), "top_p", DEFAULT_TOP_P, float)
    if not 0 < top_p <= 1:
        raise BadRequest(f"'top_p' must be in (0, 1], got {top_p!r}", param="top_p")
    params = SamplingParams(temperature, top_p, _max_tokens(body, max_tokens_limit), _stop(body.get("stop")))
    seeds = choice_seeds(_number(body.get("seed"), "seed", None, int), n)
    return ChatRequest(_messages(body.get("messages")), params, seeds, stream, include_usage)


def _check_model(requested: Any, served: str) -> None:
    if requested is None or requested == served:
        return
    if not isinstance(requested, str):
        raise BadRequest(f"'model' must be a string, got {requested!r}", param="model")
    raise ApiError(
        404,
        f"the model {requested[:200]!r} does not exist: this server serves {served!r}",
        param="model",
        code="model_not_found",
    )


def _refuse_unserved(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in SERVED_FIELDS or key in IGNORED_FIELDS:
            continue
        if key not in NEUTRAL_VALUES:
            raise BadRequest(f"unrecognized request argument {key[:100]!r}", param=key, code="unknown_parameter")
        if value not in NEUTRAL_VALUES[key]:
            raise BadRequest(
                f"{key!r} = {json.dumps(value)[:100]} is not supported by this server; leave it out",
                param=key,
                code="unsupported_parameter",
            )


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    """Whether to stream, and whether the stream ends with the usage (``stream_options`` asks
    nothing of a reply that is not streamed, which always carries its usage)."""
    stream, options = body.get("stream"), body.get("stream_options")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be a boolean, got {stream!r}", param="stream")
    if options is None:
        return bool(stream), False
    include_usage = options.get("include_usage") if isinstance(options, dict) else None
    if not isinstance(options, dict) or not isinstance(include_usage, bool | None):
        raise BadRequest(
            f"'stream_options' must be an object with a boolean 'include_usage', got {options!r}",
            param="stream_options",
        )
    return bool(stream), bool(stream and include_usage)


def _stop(stop: Any) -> tuple[str, ...]:
    stop = [stop] if isinstance(stop, str) else [] if stop is None else stop
    if not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("'stop' must be a string or a list of strings", param="stop")
    return tuple(stop)


def choice_seeds(seed: int | None, n: int) -> tuple[int, ...]:
    """One sampling seed per choice: ``seed`` itself for the first (``n = 1`` samples as a lone
    request does) and seeds drawn from it for the others, so the choices differ and a request
    repeats with its seed; without a seed every choice samples afresh, as OpenAI's API does.

    >>> choice_seeds(7, 3) == choice_seeds(7, 3) and choice_seeds(7, 3)[0] == 7
    True
    """
    if seed is None:
        return tuple(random.getrandbits(32) for _ in range(n))
    draws = random.Random(seed)
    return (seed, *(draws.getrandbits(32) for _ in range(n - 1)))


def _messages(messages: Any) -> list[dict[str, str]]:
    """The conversation as role and text pairs; OpenAI's text content parts are joined."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    return [_message(message, f"messages[{i}]") for i, message in enumerate(messages)]


def _message(message: Any, path: str) -> dict[str, str]:
    if not (isinstance(message, dict) and isinstance(message.get("role"), str)):
        raise BadRequest(f"{path} must be an object with string 'role' and 'content'", param=path)
    role = message["role"]
    if role not in ROLES:
        raise BadRequest(f"{path}.role must be one of {', '.join(ROLES)}, got {role!r}", param=f"{path}.role")
    for key, value in message.items():
        if key not in MESSAGE_FIELDS and value not in (None, [], {}, ""):
            raise BadRequest(f"{path}.{key} is not supported by this server; leave it out", param=f"{path}.{key}")
    return {"role": ROLES[role], "content": _content(message.get("content"), f"{path}.content")}


def _content(content: Any, path: str) -> str:
    """A message's text: a string, or a list of text parts joined (other parts are refused)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{path} must be a string or a list of text parts, got {content!r}", param=path)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise BadRequest(f"{path}[{j}] must be an object with 'type' and 'text'", param=f"{path}[{j}]")
        if part.get("type") != "text":
            raise BadRequest(
                f"{path}[{j}].type is {part.get('type')!r}: this server reads only 'text' parts",
                param=f"{path}[{j}].type",
            )
        if not isinstance(part.get("text"), str):
            raise BadRequest(f"{path}[{j}].text must be a string", param=f"{path}[{j}].text")
        texts.append(part["text"])
    return "".join(texts)


def _max_tokens(body: dict[str, Any], limit: int) -> int:
    """The request's ``max_completion_tokens`` (or ``max_tokens``), checked against ``limit``."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body.get(key), key, min(DEFAULT_MAX_TOKENS, limit), int)
    if max_tokens < 1:
        raise BadRequest(f"'{key}' must be >= 1, got {max_tokens}", param=key)
    if max_tokens > limit:
        raise BadRequest(f"'{key}' is {max_tokens}, above this server's limit of {limit}", param=key)
    return max_tokens


def _number(value: Any, key: str, default: Any, kind: type) -> Any:
    """``value`` as ``kind``; null means the default, booleans and non-finite numbers are refused."""
    if value is None:
        return default
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
        raise BadRequest(
            f"'{key}' must be {'an integer' if kind is int else 'a finite number'}, got {value!r}", param=key
        )
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
            raise BadRequest(
                f"the conversation cannot be rendered: {type(error).__name__}: {error}", param="messages"
            ) from None
        if tokens + params.max_new_tokens > context:
            raise BadRequest(
                f"this model's context is {context} tokens, but the request needs {tokens + params.max_new_tokens}: "
                f"{tokens} in the messages and {params.max_new_tokens} for the completion ('max_tokens'); "
                "shorten the messages or lower 'max_tokens'",
                param="messages",
                code="context_length_exceeded",
            )

    return check


def _usage(completions: Sequence[Completion]) -> dict[str, int]:
    """Token counts of a request: its prompt once (every choice reads the same) and every choice's completion."""
    prompt = completions[0].prompt_tokens
    generated = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _header(kind: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def chat_completion(completions: Sequence[Completion], model: str) -> dict[str, Any]:
    """A request's completions (its choices, in order) as an OpenAI ``chat.completion`` object."""
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": completion.text},
            "logprobs": None,
            "finish_reason": completion.finish_reason,
        }
        for index, completion in enumerate(completions)
    ]
    return {**_header("chat.completion", model), "choices": choices, "usage": _usage(completions)}


def chat_completion_chunks(
    completions: Sequence[Completion], model: str, *, include_usage: bool = False
) -> Iterator[dict[str, Any]]:
    """A request's finished completions as the ``chat.completion.chunk`` objects of a stream: per
    choice its role, its text (when there is any) and its finish reason; with ``include_usage``
    every chunk has a ``usage`` field, null but in a last chunk without choices, as OpenAI's do."""
    header = _header("chat.completion.chunk", model)

    def chunk(index: int, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**header, "choices": [choice], **({"usage": None} if include_usage else {})}

    for index, completion in enumerate(completions):
        yield chunk(index, {"role": "assistant", "content": ""})
        if completion.text:
            yield chunk(index, {"content": completion.text})
        yield chunk(index, {}, completion.finish_reason)
    if include_usage:
        yield {**header, "choices": [], "usage": _usage(completions)}


def event_stream(chunks: Iterator[dict[str, Any]]) -> bytes:
    """Chunks as a server-sent event stream, ended by OpenAI's ``[DONE]`` event."""
    return b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + b"data: [DONE]\n\n"


@dataclass
class _Pending:
    """One HTTP request's choices, waiting for their completions."""

    requests: list[GenerationRequest]
    params: SamplingParams
    done: threading.Event = field(default_factory=threading.Event)
    completions: list[Completion] = field(default_factory=list)
    error: BaseException | None = None


class Batcher:
    """The one thread that calls the policy, batching the requests that arrive together.

    Args:
        policy: the policy to call.
        batch_window_s: how long the first request of a batch waits for company.
        max_batch: the most conversations gathered for one batch (one HTTP request's choices are
            never split, so its last request may take a batch past it).
        check: called on each HTTP request's first choice before it joins a batch (on this thread,
            since the policy need not be thread-safe); what it raises goes to that request's
            client alone.
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

    def submit(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """Queue the choices of one HTTP request and wait for their completions, in order (called
        from the handler threads).

        Raises:
            EefError: the batcher is closed.
            Exception: what the check raised for the request, or the policy for its batch.
        """
        pending = _Pending(list(requests), params)
        with self._lock:
            if self._closed:
                raise EefError("the server is shutting down")
            self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.completions

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
            size = len(first.requests)
            deadline = time.monotonic() + self.batch_window_s
            while size < self.max_batch and (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item.requests)
            self._generate(batch)
            if stopping:
                return

    def _admitted(self, item: _Pending) -> bool:
        if self.check is None:
            return True
        try:
            self.check(item.requests[0], item.params)  # the choices share their conversation
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
            requests = [request for item in items for request in item.requests]
            try:
                completions = self.policy.generate(requests, params)
                if len(completions) != len(requests):
                    raise EefError(f"the policy returned {len(completions)} completions for {len(requests)} requests")
                start = 0
                for item in items:
                    item.completions = completions[start : start + len(item.requests)]
                    start += len(item.requests)
            except Exception as error:  # reported to each waiting client; the server keeps going
                logger.exception("generate failed for a batch of %d", len(requests))
                for item in items:
                    item.error = error
            finally:
                self._busy_since = None
                for item in items:
                    item.done.set()


@dataclass(frozen=True)
class ServeOptions:
    """How a server answers (each as in :func:`serve`)."""

    model_name: str | None = None
    api_key: str | None = None
    batch_window_s: float = 0.01
    max_batch: int = 32
    max_tokens_limit: int | None = None
    max_n: int = DEFAULT_MAX_N
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        batcher: Batcher,
        options: ServeOptions,
        *,
        model: str,
        max_tokens_limit: int,
        card: AgentCard | None = None,
    ):
        super().__init__(address, _Handler)
        self.batcher, self.options, self.model, self.card = batcher, options, model, card
        self.max_tokens_limit = max_tokens_limit  # the option's, else the model's context, else the default

    @property
    def url(self) -> str:
        """The API root on the bound address and port."""
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def model_entry(self) -> dict[str, Any]:
        """The served model as an entry of ``/v1/models``."""
        entry: dict[str, Any] = {"id": self.model, "object": "model", "created": 0, "owned_by": "eef"}
        if self.card is not None:  # clients run the model with the prompt it was trained with
            entry["eef_agent"] = self.card.to_dict()
        return entry


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
    timeout = 60  # seconds a client may go silent mid-request (or idle between keep-alive requests)

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/health":  # open without a key: load balancers and launchers probe it
            self._send_json(200, {"status": "ok", **self.server.batcher.load()})
            return
        try:
            self._authorize()
            self._send_json(200, self._get(path))
        except ApiError as error:
            self._send_json(error.status, error.payload())

    def _get(self, path: str) -> dict[str, Any]:
        if path == "/v1/models":
            return {"object": "list", "data": [self.server.model_entry()]}
        if path.startswith("/v1/models/"):
            name = unquote(path.removeprefix("/v1/models/"))
            _check_model(name, self.server.model)
            return self.server.model_entry()
        raise ApiError(404, f"no such endpoint: GET {self.path}", kind="not_found_error")

    def do_POST(self) -> None:
        raw = self._read_body()
        if raw is None:
            return
        try:
            self._authorize()
            if self.path.rstrip("/") != "/v1/chat/completions":
                raise ApiError(404, f"no such endpoint: POST {self.path}", kind="not_found_error")
            request = self._chat_request(raw)
            completions = self.server.batcher.submit(request.generation_requests(), request.params)
        except ApiError as error:
            self._send_json(error.status, error.payload())
            return
        except Exception as error:
            self._send_json(500, ApiError(500, f"{type(error).__name__}: {error}", kind="server_error").payload())
            return
        if request.stream:
            chunks = chat_completion_chunks(completions, self.server.model, include_usage=request.include_usage)
            self._send(200, "text/event-stream", event_stream(chunks))
        else:
            self._send_json(200, chat_completion(completions, self.server.model))

    def _chat_request(self, raw: bytes) -> ChatRequest:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
            raise BadRequest(f"the body is not valid JSON: {error}") from None
        server = self.server
        return parse_chat_request(
            body, model=server.model, max_tokens_limit=server.max_tokens_limit, max_n=server.options.max_n
        )

    def _authorize(self) -> None:
        """Refuse a request without the server's API key, where it has one (OpenAI's 401)."""
        key = self.server.options.api_key
        if key is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        # compare_digest: the time taken does not tell how much of a guess was right
        if not (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())):
            problem = "no API key was given" if not given else "the API key is not this server's"
            raise ApiError(
                401,
                f"{problem}: send the header 'Authorization: Bearer KEY' with the key the server was started with",
                code="invalid_api_key",
            )

    def _read_body(self) -> bytes | None:
        """The request body, read before answering (even a 404) to keep the connection usable; None
        when it was refused (the connection is then closed, its body unread)."""
        length = self.headers.get("Content-Length") or "0"
        refusal: ApiError | None = None
        if not (length.isascii() and length.isdigit()):
            refusal = BadRequest(f"bad Content-Length: {length[:40]!r}")
        elif len(length) > 15 or int(length) > self.server.options.max_body_bytes:
            limit = self.server.options.max_body_bytes
            refusal = ApiError(413, f"the body has {length[:40]} bytes, above this server's limit of {limit}")
        if refusal is not None:
            self.close_connection = True
            self._send_json(refusal.status, refusal.payload())
            return None
        return self.rfile.read(int(length))

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:  # RFC 6750: a 401 names the scheme it asks for
            self.send_header("WWW-Authenticate", "Bearer")
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


def _make_server(policy: Policy, host: str, port: int, options: ServeOptions, card: AgentCard | None = None) -> _Server:
    limit = (
        options.max_tokens_limit
        if options.max_tokens_limit is not None
        else context_length(policy) or DEFAULT_MAX_TOKENS_LIMIT
    )
    for name, value in (
        ("max_tokens_limit", limit),
        ("max_n", options.max_n),
        ("max_body_bytes", options.max_body_bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EefError(f"{name} must be an integer >= 1, got {value!r}")
    if options.api_key is not None and not options.api_key.strip():
        raise EefError("the API key must not be empty (leave it out to serve without one)")
    batcher = Batcher(
        policy, batch_window_s=options.batch_window_s, max_batch=options.max_batch, check=context_check(policy)
    )
    try:
        return _Server(
            (host, port), batcher, options, model=options.model_name or policy.name, max_tokens_limit=limit, card=card
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
    api_key: str | None = None,
    max_tokens_limit: int | None = None,
    max_n: int = DEFAULT_MAX_N,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    card: AgentCard | None = None,
) -> ServerHandle:
    """Serve ``policy`` on a background thread.

    Args:
        policy: the policy answering the requests (called from one worker thread only).
        host: the address to listen on.
        port: the port; 0 picks a free one (read it from the handle's ``url``).
        batch_window_s: how long a request waits for others to share its batch.
        max_batch: the most conversations in one ``generate`` call.
        model_name: the model name listed by ``/v1/models``, the only one requests may name;
            defaults to ``policy.name``.
        api_key: when given, every endpoint but ``/health`` asks for ``Authorization: Bearer
            API_KEY`` (a 401 without it).
        max_tokens_limit: the largest ``max_tokens`` a request may ask for (larger ones get a
            400); defaults to the model's context length where the policy knows it, else
            ``DEFAULT_MAX_TOKENS_LIMIT``.
        max_n: the most choices (``n``) a request may ask for.
        max_body_bytes: the largest request body read (larger ones get a 413).
        card: the model's agent card, listed by ``/v1/models`` under ``eef_agent``.

    Returns:
        The running server's handle; close it (or use it as a context manager) to stop it.
    """
    options = ServeOptions(model_name, api_key, batch_window_s, max_batch, max_tokens_limit, max_n, max_body_bytes)
    return ServerHandle(_make_server(policy, host, port, options, card))


def served_model_name(model: str | Path) -> str:
    """The name a checkpoint is served under by default: its directory's name (a path would tell
    clients where the server keeps its files), or a hub id as given.

    >>> served_model_name("Qwen/Qwen2.5-0.5B-Instruct")
    'Qwen/Qwen2.5-0.5B-Instruct'
    """
    return Path(model).resolve().name if Path(model).is_dir() else str(model)


def run_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    device: str = "auto",
    dtype: str = "auto",
    options: ServeOptions | None = None,
    decode: str = "auto",
) -> None:
    """Load a checkpoint with :class:`~eef.agent.hf_policy.HFPolicy` on ``device`` in ``dtype``
    (see :mod:`eef.models.loading`), decoding as ``decode`` says, and serve it until interrupted.

    ``options.model_name`` defaults to :func:`served_model_name`; the other options are as in
    :func:`serve`.
    """
    from eef.agent.hf_policy import HFPolicy

    options = options or ServeOptions()
    if options.model_name is None:
        options = dataclasses.replace(options, model_name=served_model_name(model_path))
    # Requests name no conversation, so a prefix cache would never be hit.
    policy = HFPolicy.from_pretrained(
        model_path,
        device=device,
        dtype=dtype,
        max_batch_size=options.max_batch,
        prefix_cache_entries=0,
        decode=decode,
    )
    card = read_agent_card(model_path) if Path(model_path).is_dir() else None
    try:
        server = _make_server(policy, host, port, options, card)
    except EefError:
        policy.close()
        raise
    trained = "" if card is None else f" (trained on {card.env}: its prompt is listed by GET /v1/models)"
    dtype_name = str(policy.model.dtype).removeprefix("torch.")
    keyed = ", API key required" if options.api_key is not None else ""
    print(
        f"serving {model_path} as {server.model!r} on {policy.device} in {dtype_name}{keyed} at {server.url}{trained}",
        file=sys.stderr,
        flush=True,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
        server.batcher.close()
        policy.close()
