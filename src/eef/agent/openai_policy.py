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
import os
import random
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from eef.agent.policy import Completion, GenerationRequest, SamplingParams, apply_stop
from eef.errors import EefError

# Transient failures worth another attempt (with 429 and 5xx); any other 4xx means the request
# itself is wrong.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class OpenAIPolicy:
    """Chat completions from an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name sent with each request; also the policy's ``name``.
        api_key_env: the environment variable holding the API key; when it is unset or empty no
            ``Authorization`` header is sent (local servers).
        concurrency: requests in flight at once.
        timeout_s: timeout of each HTTP request.
        max_retries: further attempts after a connection error, a timeout, 429 or 5xx.
        backoff_s: the first retry's delay; it doubles with each retry (plus up to 10% jitter),
            unless the server sends a numeric ``Retry-After``.
        extra_body: fields added to every request body (e.g. vLLM's ``top_k``).

    Attributes:
        usage: prompt and completion tokens and requests so far, for cost estimates.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, timeout_s: float = 60, max_retries: int = 5,
                 backoff_s: float = 1.0, extra_body: dict[str, Any] | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.extra_body = dict(extra_body or {})
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        # The key lives only in the client's headers: never an attribute, a message or the repr.
        api_key = os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
        self._semaphore = asyncio.Semaphore(concurrency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eef-openai-policy", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"OpenAIPolicy(base_url={self.base_url!r}, model={self.name!r})"

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order.

        Raises:
            EefError: a request failed for good (a 4xx other than 429, or retries spent).
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
            "model": self.name, "messages": [dict(m) for m in request.messages],
            "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_new_tokens,
            "seed": request.seed, **self.extra_body,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        async with self._semaphore:
            data = await self._post(body)
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise EefError(f"{self.base_url}: malformed chat completion: {str(data)[:300]}") from None
        # Some servers keep the stop string in the text; cut it here too.
        text, stopped = apply_stop(content, params.stop)
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += completion_tokens
        self.usage["requests"] += 1
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Completion(text.strip(),  # stripped as HFPolicy does, so backends agree
                          prompt_tokens, completion_tokens,
                          "stop" if stopped else choice.get("finish_reason") or "stop",
                          {"cached_tokens": cached} if cached is not None else {})

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            retry_after = None
            try:
                response = await self._client.post(url, json=body)
            except RETRY_ERRORS as error:
                if attempt == self.max_retries:
                    raise EefError(f"{url}: {type(error).__name__}: {error} "
                                   f"(after {attempt + 1} attempts)") from error
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        raise EefError(f"{url}: the response is not JSON: {response.text[:300]!r}") from None
                retryable = response.status_code == 429 or response.status_code >= 500
                if not retryable or attempt == self.max_retries:
                    tries = f" (after {attempt + 1} attempts)" if retryable else ""
                    message = self._redact(error_message(response))
                    raise EefError(f"{url}: HTTP {response.status_code}: {message}{tries}")
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            delay = self.backoff_s * 2 ** attempt if retry_after is None else retry_after
            await asyncio.sleep(delay * random.uniform(1.0, 1.1))  # jitter spreads out clients' retries
            attempt += 1

    def _redact(self, text: str) -> str:
        """``text`` without the API key, should a server echo it back."""
        _, _, key = self._client.headers.get("authorization", "").partition(" ")
        return text.replace(key, "***") if key else text


def error_message(response: httpx.Response) -> str:
    """The server's error text: OpenAI's ``{"error": {"message"}}``, vLLM's and FastAPI's shapes,
    else the start of the body."""
    try:
        data = response.json()
    except ValueError:
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
    """Seconds of a numeric ``Retry-After``; None when absent or an HTTP date (backoff applies)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
