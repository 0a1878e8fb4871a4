"""OpenAIPolicy against real servers on localhost: eef's own server over HFPolicy, and a scripted
stdlib server for retries and authentication."""

import asyncio
import importlib.util
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from eef.agent.backends import build_policy
from eef.agent.hf_policy import HFPolicy
from eef.agent.openai_policy import OpenAIPolicy, parse_retry_after
from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.agent.serve import serve
from eef.errors import EefError

CONVERSATIONS = [
    [{"role": "user", "content": "search for a blue scarf"}],
    [{"role": "system", "content": "You are a shopping agent."}, {"role": "user", "content": "click[Buy Now]"}],
    [
        {"role": "user", "content": "find a red wool hat under 30 dollars"},
        {"role": "assistant", "content": "Thought: search.\nAction: search[red wool hat]"},
        {"role": "user", "content": "Observation: Page 1 (3 results)"},
    ],
    [{"role": "user", "content": "Thought: I should buy it"}],
]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
SAMPLED = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8)


def requests_for(conversations, seed=0):
    return [GenerationRequest(m, seed=seed + i) for i, m in enumerate(conversations)]


def fields(completions):
    return [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in completions]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return HFPolicy.from_pretrained(tiny_model_dir, prefix_cache_entries=0)


@pytest.fixture(scope="module")
def hf_server(tiny_model_dir):
    with serve(HFPolicy.from_pretrained(tiny_model_dir), model_name="tiny") as server:
        yield server


@pytest.fixture
def client(hf_server):
    policy = OpenAIPolicy(hf_server.url, "tiny", max_retries=0)
    yield policy
    policy.close()


def test_greedy_matches_hf_policy(client, reference):
    served = client.generate(requests_for(CONVERSATIONS), GREEDY)
    assert fields(served) == fields(reference.generate(requests_for(CONVERSATIONS), GREEDY))
    assert all(c.completion_tokens > 0 for c in served)


def test_seeded_sampling_matches_hf_policy_and_repeats(client, reference):
    first = client.generate(requests_for(CONVERSATIONS, seed=7), SAMPLED)
    assert fields(first) == fields(reference.generate(requests_for(CONVERSATIONS, seed=7), SAMPLED))
    assert fields(client.generate(requests_for(CONVERSATIONS, seed=7), SAMPLED)) == fields(first)
    assert any(c.text for c in first)  # the untrained model samples text, so the comparison has teeth
    assert fields(client.generate(requests_for(CONVERSATIONS, seed=100), SAMPLED)) != fields(first)


def test_usage_is_counted(client):
    completions = client.generate(requests_for(CONVERSATIONS), GREEDY)
    assert client.usage == {
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "requests": len(CONVERSATIONS),
    }


def test_generate_works_from_threads_and_inside_an_event_loop(client):
    expected = fields(client.generate(requests_for(CONVERSATIONS[:2]), GREEDY))
    results = []
    thread = threading.Thread(target=lambda: results.append(client.generate(requests_for(CONVERSATIONS[:2]), GREEDY)))
    thread.start()
    thread.join()

    async def inside_a_loop():
        return client.generate(requests_for(CONVERSATIONS[:2]), GREEDY)

    assert fields(results[0]) == fields(asyncio.run(inside_a_loop())) == expected


def test_models_and_health(hf_server):
    root = hf_server.url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").status_code == 200
    models = httpx.get(f"{hf_server.url}/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert httpx.get(f"{hf_server.url}/nothing").status_code == 404


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, "'n' must be from 1"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": 5}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "8"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": 1.5}, "seed"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3_000_000}, "limit of 4096"),  # the context
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": True}, "'n' must be an integer"),
        ([1, 2], "JSON object"),
    ],
)
def test_server_rejects_bad_bodies(hf_server, body, message):
    response = httpx.post(f"{hf_server.url}/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_server_rejects_invalid_json(hf_server):
    response = httpx.post(f"{hf_server.url}/chat/completions", content=b"{not json")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_client_raises_on_a_bad_request(hf_server):
    policy = OpenAIPolicy(hf_server.url, "tiny", extra_body={"logprobs": True})
    try:
        with pytest.raises(EefError, match=r"HTTP 400: 'logprobs' = true is not supported"):
            policy.generate(requests_for(CONVERSATIONS[:1]), GREEDY)
    finally:
        policy.close()


class EchoPolicy(Policy):
    """Answers with the last message and its seed; records the size of each batch."""

    name = "echo"

    def __init__(self):
        self.batches = []

    def generate(self, requests, params):
        self.batches.append((len(requests), params))
        return [Completion(f"{r.messages[-1]['content']}|{r.seed}|{params.temperature}", 3, 2) for r in requests]


def test_concurrent_requests_are_batched_and_come_back_in_order():
    echo = EchoPolicy()
    with serve(echo, batch_window_s=0.05) as server:
        policy = OpenAIPolicy(server.url, "echo", concurrency=8)
        try:
            conversations = [[{"role": "user", "content": f"request {i}"}] for i in range(20)]
            results = {}

            def run(temperature):
                params = SamplingParams(temperature=temperature, max_new_tokens=4)
                results[temperature] = policy.generate(requests_for(conversations, seed=100), params)

            threads = [threading.Thread(target=run, args=(t,)) for t in (0.0, 0.5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            policy.close()
    for temperature, completions in results.items():
        assert [c.text for c in completions] == [f"request {i}|{100 + i}|{temperature}" for i in range(20)]
    assert sum(size for size, _ in echo.batches) == 40
    assert len(echo.batches) < 40  # concurrent requests shared generate calls
    assert policy.usage == {"prompt_tokens": 120, "completion_tokens": 80, "requests": 40}


class FailingPolicy(EchoPolicy):
    """Fails on a marked request, so one bad batch can be told from the server's health."""

    def generate(self, requests, params):
        if any(r.messages[-1]["content"] == "fail" for r in requests):
            raise RuntimeError("out of memory")
        return super().generate(requests, params)


def test_policy_errors_become_500_and_the_server_keeps_serving():
    with serve(FailingPolicy()) as server:
        policy = OpenAIPolicy(server.url, "echo", max_retries=0)
        try:
            with pytest.raises(EefError, match=r"HTTP 500: RuntimeError: out of memory"):
                policy.generate([GenerationRequest([{"role": "user", "content": "fail"}])], GREEDY)
            assert one_request(policy).text == f"{CONVERSATIONS[0][-1]['content']}|5|0.0"
        finally:
            policy.close()


class ScriptedServer:
    """A stdlib HTTP server answering POSTs with scripted (status, body, headers) responses, the
    last one repeated; it records each request's Authorization header and body. A body given as
    bytes is sent as is; the header ``X-Trickle: SECONDS`` sends it one byte at a time, and the
    status ``None`` answers nothing until the server closes."""

    def __init__(self, responses):
        self.responses, self.hits = list(responses), []
        self.closing = threading.Event()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                scripted.hits.append((self.headers.get("Authorization"), body))
                status, payload, headers = scripted.responses[min(len(scripted.hits), len(scripted.responses)) - 1]
                if status is None:
                    scripted.closing.wait()
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = dict(headers)
                trickle = float(headers.pop("X-Trickle", 0))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for i in range(0, len(data), 1 if trickle else len(data)):
                        if scripted.closing.wait(trickle):
                            return
                        self.wfile.write(data[i : i + (1 if trickle else len(data))])
                        self.wfile.flush()
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def ok(text="Action: click[Buy Now]", finish_reason="stop", usage=USAGE, **headers):
    return (
        200,
        {
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
            ],
            "usage": usage,
        },
        headers,
    )


def error(status, message, **headers):
    return status, {"error": {"message": message, "type": "error"}}, headers


@pytest.fixture
def scripted():
    servers = []

    def start(*responses):
        servers.append(ScriptedServer(responses))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def one_request(policy, params=GREEDY):
    return policy.generate([GenerationRequest(CONVERSATIONS[0], seed=5)], params)[0]


def test_request_body_and_client_side_stop(scripted, monkeypatch):
    monkeypatch.delenv("EEF_TEST_API_KEY", raising=False)
    server = scripted(ok("Action: click[Buy Now]\nObservation: done", finish_reason="length"))
    policy = OpenAIPolicy(server.url, "m", api_key_env="EEF_TEST_API_KEY", extra_body={"top_k": 5})
    try:
        params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=12, stop=("\nObservation",))
        completion = one_request(policy, params)
    finally:
        policy.close()
    assert completion == Completion("Action: click[Buy Now]", 11, 5, "stop")
    authorization, body = server.hits[0]
    assert authorization is None  # no key: no header
    assert body == {
        "model": "m",
        "messages": CONVERSATIONS[0],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 12,
        "stop": ["\nObservation"],
        "seed": 5,
        "top_k": 5,
    }


def test_retries_server_errors_then_succeeds(scripted):
    server = scripted(error(503, "overloaded"), error(503, "overloaded"), ok())
    policy = OpenAIPolicy(server.url, "m", max_retries=3, backoff_s=0.01)
    try:
        assert one_request(policy).text == "Action: click[Buy Now]"
    finally:
        policy.close()
    assert len(server.hits) == 3


@pytest.mark.parametrize(
    "retry_after, settings",
    [
        ("0", {"backoff_s": 30}),  # honoured: only Retry-After keeps the wait short
        ("100000", {"backoff_s": 0.01, "max_backoff_s": 0.05}),  # capped at max_backoff_s
    ],
)
def test_retry_after_is_honoured_up_to_the_cap(scripted, retry_after, settings):
    server = scripted(error(429, "slow down", **{"Retry-After": retry_after}), ok())
    policy = OpenAIPolicy(server.url, "m", max_retries=1, **settings)
    start = time.monotonic()
    try:
        assert one_request(policy).text == "Action: click[Buy Now]"
    finally:
        policy.close()
    assert len(server.hits) == 2 and time.monotonic() - start < 5
    assert policy.metrics["retries"] == 1


def test_gives_up_after_max_retries(scripted):
    server = scripted(error(500, "boom"))
    policy = OpenAIPolicy(server.url, "m", max_retries=2, backoff_s=0.01)
    try:
        with pytest.raises(EefError, match=r"HTTP 500: boom \(after 3 attempts\)"):
            one_request(policy)
    finally:
        policy.close()
    assert len(server.hits) == 3


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01)
    try:
        with pytest.raises(EefError, match=r"ConnectError.*after 2 attempts"):
            one_request(policy)
    finally:
        policy.close()


def test_client_errors_are_not_retried_and_the_key_stays_secret(scripted, monkeypatch):
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("EEF_TEST_API_KEY", key)
    server = scripted(error(401, f"Incorrect API key provided: {key}"))
    policy = OpenAIPolicy(server.url, "m", api_key_env="EEF_TEST_API_KEY", max_retries=3, backoff_s=0.01)
    try:
        with pytest.raises(EefError) as raised:
            one_request(policy)
    finally:
        policy.close()
    assert len(server.hits) == 1
    assert server.hits[0][0] == f"Bearer {key}"
    assert "HTTP 401: Incorrect API key provided" in str(raised.value)
    for text in (str(raised.value), repr(raised.value), repr(policy), str(vars(policy))):
        assert key not in text


def test_closed_policy_refuses_work(scripted):
    policy = OpenAIPolicy(scripted(ok()).url, "m")
    policy.close()
    policy.close()  # idempotent
    with pytest.raises(EefError, match="closed"):
        one_request(policy)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_policy_says_how_to_install_vllm(tmp_path):
    from eef.agent.vllm_policy import VLLMPolicy

    with pytest.raises(EefError, match=r"vLLM is not installed: pip install 'eef\[gpu\]'"):
        VLLMPolicy.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "value, seconds",
    [("3", 3.0), ("-2", 0.0), ("inf", None), ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_a_trickled_body_meets_the_deadline(scripted):
    # Each byte arrives well within httpx's per-read timeout; only a whole-reply deadline stops it.
    status, payload, _ = ok()
    server = scripted((status, json.dumps(payload).encode(), {"X-Trickle": "0.05"}))
    policy = OpenAIPolicy(server.url, "m", timeout_s=0.3, max_retries=1, backoff_s=0.01)
    start = time.monotonic()
    try:
        with pytest.raises(EefError) as raised:
            one_request(policy)
    finally:
        policy.close()
    assert time.monotonic() - start < 3
    message = str(raised.value)
    assert message == f"{server.url}/chat/completions: no complete reply within 0.3 s (after 2 attempts)"
    assert policy.metrics["timeouts"] == 2


def test_a_silent_server_fails_after_the_configured_timeout_and_retries(scripted):
    server = scripted((None, {}, {}))
    policy = build_policy("openai", "m", base_url=server.url, timeout_s=0.2, max_retries=0)
    start = time.monotonic()
    try:
        with pytest.raises(EefError, match=r"/chat/completions: no complete reply within 0.2 s \(after 1 attempt\)$"):
            one_request(policy)
    finally:
        policy.close()
    assert time.monotonic() - start < 2 and len(server.hits) == 1


def test_the_final_error_is_one_line(scripted):
    server = scripted(error(500, "Traceback (most recent call last):\n  File x\nRuntimeError: boom"))
    policy = OpenAIPolicy(server.url, "m", max_retries=1, backoff_s=0.01)
    try:
        with pytest.raises(EefError) as raised:
            one_request(policy)
    finally:
        policy.close()
    assert "\n" not in str(raised.value)
    assert str(raised.value).endswith(
        "HTTP 500: Traceback (most recent call last): File x RuntimeError: boom (after 2 attempts)"
    )


@pytest.mark.parametrize(
    "settings, word",
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_backoff_s": -1}, "max_backoff_s"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_unworkable_settings_are_refused(settings, word):
    with pytest.raises(EefError, match=word):
        OpenAIPolicy("http://127.0.0.1:1/v1", "m", **settings)


def test_a_url_without_a_scheme_is_a_clear_error():
    policy = OpenAIPolicy("localhost:8000/v1", "m", max_retries=3, backoff_s=0.01)
    try:
        with pytest.raises(EefError, match=r"^localhost:8000/v1/chat/completions: UnsupportedProtocol"):
            one_request(policy)
    finally:
        policy.close()


def test_text_content_parts_are_joined(scripted):
    parts = [
        {"type": "text", "text": "Thought: buy.\n"},
        {"type": "refusal", "refusal": "no"},
        {"type": "text", "text": "Action: click[Buy Now]"},
    ]
    policy = OpenAIPolicy(scripted(ok(parts)).url, "m")
    try:
        assert one_request(policy).text == "Thought: buy.\nAction: click[Buy Now]"
    finally:
        policy.close()


@pytest.mark.parametrize(
    "content, field",
    [
        (5, "choices[0].message.content"),
        ({"text": "hi"}, "choices[0].message.content"),
        (["hi"], "choices[0].message.content[0]"),
        ([{"type": "text", "text": 3}], "choices[0].message.content[0].text"),
    ],
)
def test_a_malformed_reply_is_retried_then_reported_in_one_line(scripted, content, field):
    server = scripted(ok(content))
    policy = OpenAIPolicy(server.url, "m", max_retries=1, backoff_s=0.01)
    try:
        with pytest.raises(EefError) as raised:
            one_request(policy)
    finally:
        policy.close()
    message = str(raised.value)
    assert message.startswith(f"{server.url}/chat/completions: malformed reply: field '{field}': ")
    assert message.endswith("(after 2 attempts)") and "\n" not in message
    assert len(server.hits) == 2 and policy.metrics["malformed_replies"] == 2


@pytest.mark.parametrize(
    "bad",
    [
        (200, {"choices": []}, {}),
        (200, {"choices": "x"}, {}),
        (200, [1], {}),
        (200, b"<html>oops", {}),
        (200, {"choices": [{"message": None}]}, {}),
    ],
)
def test_a_malformed_reply_then_a_good_one_succeeds(scripted, bad):
    server = scripted(bad, ok())
    policy = OpenAIPolicy(server.url, "m", max_retries=1, backoff_s=0.01)
    try:
        assert one_request(policy).text == "Action: click[Buy Now]"
    finally:
        policy.close()
    assert policy.metrics["malformed_replies"] == 1


@pytest.mark.parametrize(
    "usage, counts",
    [
        ({"prompt_tokens": "many", "completion_tokens": 5}, (0, 5)),
        ([11, 5], (0, 0)),
        ("lots", (0, 0)),
        ({"prompt_tokens": 11, "completion_tokens": -5}, (11, 0)),
        ({"prompt_tokens": True, "completion_tokens": 5.5}, (0, 0)),
        ({"prompt_tokens": 11, "completion_tokens": 5, "prompt_tokens_details": "cached"}, (11, 5)),
        ({"prompt_tokens": 11, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": "x"}}, (11, 5)),
    ],
)
def test_unreadable_usage_is_ignored(scripted, usage, counts):
    policy = OpenAIPolicy(scripted(ok(usage=usage)).url, "m", max_retries=0)
    try:
        completion = one_request(policy)
    finally:
        policy.close()
    assert completion.text == "Action: click[Buy Now]"
    assert (completion.prompt_tokens, completion.completion_tokens) == counts
    assert completion.extra == {"usage_unknown": True}
    assert policy.usage == {"prompt_tokens": counts[0], "completion_tokens": counts[1], "requests": 1}
    assert policy.metrics["usage_unknown"] == 1


def test_readable_usage_with_cached_tokens(scripted):
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 8}}
    policy = OpenAIPolicy(scripted(ok(usage=usage), ok(usage=None)).url, "m", max_retries=0)
    try:
        assert one_request(policy).extra == {"cached_tokens": 8}
        assert one_request(policy) == Completion("Action: click[Buy Now]", 0, 0, "stop")  # no usage: no counts
    finally:
        policy.close()
    assert policy.metrics["usage_unknown"] == 0
