"""A policy over any OpenAI-compatible ``/v1/chat/completions`` endpoint: vLLM serve, SGLang,
``eef serve`` (:mod:`eef.agent.serve`) or a hosted API.

Requests go out concurrently (at most ``concurrency`` in flight) from a private event loop on a
background thread, so ``generate`` is an ordinary blocking call that works from any thread, with
or without a running event loop of its own. Each request carries its own seed; servers that honour
per-request seeds (vLLM, eef serve) then sample a conversation the same way whatever else is in
flight.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx

from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams, apply_stop
from eef.checks import FieldErrors, above, at_least, check_fields
from eef.errors import EefError

# Transient failures worth another attempt (with 429 and 5xx); any other 4xx means the request
# itself is wrong.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.DecodingError)


class MalformedReply(ValueError):
    """A successful reply whose body is not a readable chat completion.

    Attributes:
        field: where in the body the problem is (``choices[0].message.content``).
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"malformed reply: field '{field}': {problem}")


class _Transient(Exception):
    """One attempt failed in a way another attempt may not (the message is its cause)."""

    def __init__(self, cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.retry_after = retry_after


class OpenAIPolicy(Policy):
    """Chat completions from an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name sent with each request; also the policy's ``name``.
        api_key_env: the environment variable holding the API key; when it is unset or empty no
            ``Authorization`` header is sent (local servers).
        concurrency: requests in flight at once.
        timeout_s: the wall-clock deadline of one attempt, from connecting to the last byte of the
            reply (a server trickling its body cannot outlast it).
        max_retries: further attempts after a connection error, a timeout, 429, 5xx or a
            malformed reply.
        backoff_s: the first retry's delay; it doubles with each retry (plus up to 10% jitter),
            unless the server sends a numeric ``Retry-After``.
        max_backoff_s: the longest wait before a retry, also for the server's ``Retry-After``.
        extra_body: fields added to every request body (e.g. vLLM's ``top_k``).

    Attributes:
        usage: prompt and completion tokens and requests so far, for cost estimates.
        metrics: counters of incidents: ``retries``, ``timeouts``, ``malformed_replies`` and
            ``usage_unknown`` (replies whose token counts were unreadable, counted as 0).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 60,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
    ):
        check_settings(
            concurrency=concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.max_retries = float(timeout_s), max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.extra_body = dict(extra_body or {})
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        self.metrics: Counter[str] = Counter()
        # The key lives only in the client's headers: never an attribute, a message or the repr.
        api_key = os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._semaphore = asyncio.Semaphore(concurrency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eef-openai-policy", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"OpenAIPolicy(base_url={self.base_url!r}, model={self.name!r})"

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order.

        Raises:
            EefError: a request failed for good (a 4xx other than 429, or retries spent), in one
                line naming the URL, the attempts and the last cause.
        """
        if self._loop.is_closed():
            raise EefError(f"{self!r} is closed")
        future = asyncio.run_coroutine_threadsafe(self._generate(requests, params), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C: stop the requests still in flight
            raise

    def close(self) -> None:
        """Close the connections and stop the event loop; the policy cannot be used afterwards."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        tasks = [asyncio.ensure_future(self._complete(r, params)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:  # one request failed for good: the others would be wasted (and billed)
                task.cancel()
            raise

    async def _complete(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [dict(m) for m in request.messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": request.seed,
            **self.extra_body,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        async with self._semaphore:
            reply = await self._post(body)
        # Some servers keep the stop string in the text; cut it here too.
        text, stopped = apply_stop(reply.content, params.stop)
        self.usage["prompt_tokens"] += reply.prompt_tokens or 0
        self.usage["completion_tokens"] += reply.completion_tokens or 0
        self.usage["requests"] += 1
        extra: dict[str, Any] = {}
        if reply.cached_tokens is not None:
            extra["cached_tokens"] = reply.cached_tokens
        if reply.usage_unknown:
            self.metrics["usage_unknown"] += 1
            extra["usage_unknown"] = True
        return Completion(
            text.strip(),  # stripped as HFPolicy does, so backends agree
            reply.prompt_tokens or 0,
            reply.completion_tokens or 0,
            "stop" if stopped else reply.finish_reason or "stop",
            extra,
        )

    async def _post(self, body: dict[str, Any]) -> Reply:
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            try:
                return await self._attempt(url, body)
            except _Transient as failure:
                if attempt == self.max_retries:
                    tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                    raise EefError(f"{url}: {failure} (after {tries})") from None
                delay = self._delay(attempt, failure.retry_after)
            self.metrics["retries"] += 1
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, url: str, body: dict[str, Any]) -> Reply:
        """One request and its reply, read whole within the deadline.

        Raises:
            _Transient: a failure worth another attempt.
            EefError: the server refused the request itself (a 4xx other than 429).
        """
        try:
            async with asyncio.timeout(self.timeout_s):  # httpx's own timeout is per read, not per reply
                response = await self._client.post(url, json=body)
        except (TimeoutError, httpx.TimeoutException):
            self.metrics["timeouts"] += 1
            raise _Transient(f"no complete reply within {self.timeout_s:g} s") from None
        except RETRY_ERRORS as error:
            raise _Transient(one_line(f"{type(error).__name__}: {error}")) from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:  # e.g. a URL without http://: no retry helps
            raise EefError(one_line(f"{url}: {type(error).__name__}: {error}")) from None
        if response.is_success:
            try:
                return read_reply(response.json())
            except (ValueError, RecursionError) as error:  # not JSON (or nested past reading), or a MalformedReply
                self.metrics["malformed_replies"] += 1
                problem = (
                    str(error)
                    if isinstance(error, MalformedReply)
                    else f"the reply is not JSON: {response.text[:200]!r}"
                )
                raise _Transient(one_line(self._redact(problem))) from None
        message = one_line(self._redact(error_message(response)))
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(
                f"HTTP {response.status_code}: {message}", parse_retry_after(response.headers.get("retry-after"))
            )
        raise EefError(f"{url}: HTTP {response.status_code}: {message}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt + 1``: the server's ``Retry-After`` or the backoff, capped."""
        delay = self.backoff_s * 2 ** min(attempt, 60) if retry_after is None else retry_after
        # Jitter spreads out clients' retries; the cap keeps a huge Retry-After from hanging us.
        return min(delay * random.uniform(1.0, 1.1), self.max_backoff_s)

    def _redact(self, text: str) -> str:
        """``text`` without the API key, should a server echo it back."""
        _, _, key = self._client.headers.get("authorization", "").partition(" ")
        return text.replace(key, "***") if key else text


def check_settings(**settings: float) -> None:
    """Refuse client settings that could not work (a zero timeout, negative retries).

    Raises:
        EefError: every bad setting, named.
    """
    try:
        check_fields(
            SimpleNamespace(**settings),
            concurrency=at_least(1),
            timeout_s=above(0),
            max_retries=at_least(0),
            backoff_s=at_least(0),
            max_backoff_s=at_least(0),
        )
    except FieldErrors as e:
        raise EefError(f"openai backend: {e}") from None


@dataclass(frozen=True)
class Reply:
    """What a chat completion says: the text, why it ended and its token counts (None: unknown).

    Attributes:
        usage_unknown: the reply had token counts that were not non-negative integers.
    """

    content: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    usage_unknown: bool = False


def read_reply(data: Any) -> Reply:
    """The parts of a chat completion body that a policy uses.

    Raises:
        MalformedReply: no readable ``choices[0].message.content``.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("choices", f"expected a non-empty list, got {_shown(choices)}")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedReply("choices[0]", f"expected an object, got {_shown(choice)}")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedReply("choices[0].message", f"expected an object, got {_shown(message)}")
    content = message_text(message.get("content"), "choices[0].message.content")
    finish_reason = choice.get("finish_reason")
    return Reply(content, finish_reason if isinstance(finish_reason, str) else None, **read_usage(data.get("usage")))


def message_text(content: Any, field: str) -> str:
    """A message's text: a string, null (no text) or OpenAI's content parts, whose text parts are
    joined.

    Raises:
        MalformedReply: any other type, or a part that is not an object.
    """
    if content is None:
        return ""  # e.g. a reply that only calls tools
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise MalformedReply(field, f"expected a string or a list of parts, got {_shown(content)}")
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise MalformedReply(f"{field}[{i}]", f"expected an object, got {_shown(part)}")
        if part.get("type", "text") != "text":
            continue  # images, refusals and other parts carry no action text
        if not isinstance(part.get("text"), str):
            raise MalformedReply(f"{field}[{i}].text", f"expected a string, got {_shown(part.get('text'))}")
        texts.append(part["text"])
    return "".join(texts)


def read_usage(usage: Any) -> dict[str, Any]:
    """Token counts of a reply's ``usage``; counts that are not non-negative integers are unknown
    (None) rather than an error, since the text is what matters."""
    if usage is None:
        return {}
    if not isinstance(usage, dict):
        return {"usage_unknown": True}
    details = usage.get("prompt_tokens_details")
    counts = {
        "prompt_tokens": _count(usage.get("prompt_tokens")),
        "completion_tokens": _count(usage.get("completion_tokens")),
        "cached_tokens": _count(details.get("cached_tokens")) if isinstance(details, dict) else None,
    }
    unknown = (
        any(counts[k] is None and usage.get(k) is not None for k in ("prompt_tokens", "completion_tokens"))
        or (details is not None and not isinstance(details, dict))
        or (isinstance(details, dict) and counts["cached_tokens"] is None and details.get("cached_tokens") is not None)
    )
    return {**counts, "usage_unknown": unknown}


def _count(value: Any) -> int | None:
    """``value`` if it is a non-negative integer (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _shown(value: Any) -> str:
    """A short description of an unexpected value for an error message."""
    return "nothing" if value is None else f"{type(value).__name__} {str(value)[:60]!r}"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_message(response: httpx.Response) -> str:
    """The server's error text: OpenAI's ``{"error": {"message"}}``, vLLM's and FastAPI's shapes,
    else the start of the body."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return str(data)[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a numeric ``Retry-After``; None when absent, not finite or an HTTP date (backoff
    applies)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds is not None and math.isfinite(seconds) else None
