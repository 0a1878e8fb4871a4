"""eef serve refuses what it cannot serve (400 or 413 in OpenAI's error shape) before the policy
sees it, and keeps serving the next client."""

import http.client
import json
import threading

import httpx
import pytest

from eef.agent.policy import Completion, Policy
from eef.agent.serve import DEFAULT_MAX_TOKENS_LIMIT, parse_chat_request, serve
from eef.errors import EefError

HI = [{"role": "user", "content": "hi"}]


class CountingPolicy(Policy):
    """Echoes the last message; counts tokens as words; records every generate call."""

    name = "counting"

    def __init__(self, context=None):
        self.calls = []
        self.context_length = context

    def encode_prompt(self, messages):
        if any(m["content"] == "unrenderable" for m in messages):
            raise ValueError("Conversation roles must alternate user/assistant")
        return [0] * sum(len(m["content"].split()) for m in messages)

    def generate(self, requests, params):
        self.calls.append((len(requests), params.max_new_tokens))
        return [Completion(r.messages[-1]["content"], 1, 1) for r in requests]


def post(server, body):
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=10)


def assert_refused(response, status, *words):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    for word in words:
        assert word in error["message"]


@pytest.fixture
def server():
    policy = CountingPolicy(context=64)
    with serve(policy) as handle:
        handle.policy = policy
        yield handle


def test_max_tokens_above_the_limit_is_refused_and_others_are_served(server):
    response = post(server, {"messages": HI, "max_tokens": 3_000_000})
    assert_refused(response, 400, "'max_tokens' is 3000000", "limit of 64")
    assert_refused(post(server, {"messages": HI, "max_completion_tokens": 65}), 400, "limit of 64")
    assert server.policy.calls == []  # refused before the policy saw it
    assert post(server, {"messages": HI, "max_tokens": 5}).json()["choices"][0]["message"]["content"] == "hi"
    assert server.policy.calls == [(1, 5)]


def test_the_limit_defaults_to_the_context_else_a_constant_and_can_be_set():
    with serve(CountingPolicy()) as plain:
        assert_refused(
            post(plain, {"messages": HI, "max_tokens": DEFAULT_MAX_TOKENS_LIMIT + 1}),
            400,
            f"limit of {DEFAULT_MAX_TOKENS_LIMIT}",
        )
        assert post(plain, {"messages": HI, "max_tokens": DEFAULT_MAX_TOKENS_LIMIT}).status_code == 200
    with serve(CountingPolicy(context=64), max_tokens_limit=8) as capped:
        assert_refused(post(capped, {"messages": HI, "max_tokens": 9}), 400, "limit of 8")
        assert post(capped, {"messages": HI}).status_code == 200  # the default 256 would be over: cut to 8
    with pytest.raises(EefError, match="max_tokens_limit must be an integer >= 1"):
        serve(CountingPolicy(), max_tokens_limit=0)


def test_prompt_and_max_tokens_must_fit_the_context(server):
    long = [{"role": "user", "content": "word " * 60}]
    assert_refused(
        post(server, {"messages": long, "max_tokens": 5}), 400, "has 60 tokens", "'max_tokens' 5", "context of 64"
    )
    assert post(server, {"messages": long, "max_tokens": 4}).status_code == 200
    bad = [{"role": "user", "content": "unrenderable"}]
    assert_refused(post(server, {"messages": bad}), 400, "cannot be rendered", "must alternate")


def test_a_refused_request_does_not_fail_its_batch():
    policy = CountingPolicy(context=64)
    with serve(policy, batch_window_s=0.3) as server:
        results = {}

        def send(name, messages):
            results[name] = post(server, {"messages": messages, "max_tokens": 8})

        threads = [
            threading.Thread(target=send, args=("long", [{"role": "user", "content": "w " * 60}])),
            threading.Thread(target=send, args=("short", HI)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results["long"].status_code == 400 and results["short"].status_code == 200
    assert policy.calls == [(1, 8)]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"temperature": -0.5}, ["temperature", ">= 0"]),
        ({"temperature": "hot"}, ["temperature", "finite number"]),
        ({"top_p": 0}, ["top_p", "(0, 1]"]),
        ({"top_p": 1.5}, ["top_p", "(0, 1]"]),
        ({"n": 2}, ["n = 1"]),
        ({"n": 0}, ["n = 1"]),
        ({"n": True}, ["n = 1"]),
        ({"max_tokens": 0}, ["max_tokens", ">= 1"]),
        ({"max_tokens": -3}, ["max_tokens", ">= 1"]),
        ({"max_tokens": 1.5}, ["max_tokens", "integer"]),
        ({"seed": "x"}, ["seed", "integer"]),
        ({"stream": "yes"}, ["stream"]),
        ({"stop": [1]}, ["stop"]),
        ({"messages": [{"role": "robot", "content": "hi"}]}, ["messages[0].role", "robot"]),
        ({"messages": [{"role": "user", "content": 5}]}, ["messages[0]", "text parts"]),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, ["messages[0]"]),
        ({"messages": "hi"}, ["messages"]),
    ],
)
def test_out_of_range_and_malformed_fields_get_400(server, extra, words):
    assert_refused(post(server, {"messages": HI, **extra}), 400, *words)
    assert server.policy.calls == []


@pytest.mark.parametrize(
    "raw, word",
    [
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "top_p"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_non_finite_numbers_and_absurd_nesting_get_400(server, raw, word):
    response = httpx.post(f"{server.url}/chat/completions", content=raw, timeout=10)
    assert_refused(response, 400, word)


def test_text_content_parts_are_joined(server):
    parts = [{"type": "text", "text": "click"}, {"type": "text", "text": "[Buy Now]"}]
    response = post(server, {"messages": [{"role": "user", "content": parts}], "max_tokens": 4})
    assert response.json()["choices"][0]["message"]["content"] == "click[Buy Now]"


def raw_post(server, content_length, body=b""):
    host, port = server.url.removeprefix("http://").removesuffix("/v1").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", content_length)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_oversized_and_unreadable_bodies_are_refused_without_reading_them():
    with serve(CountingPolicy(), max_body_bytes=1000) as server:
        status, payload = raw_post(server, str(10**12))  # announced, never sent: must not wait for it
        assert status == 413 and "limit of 1000" in payload["error"]["message"]
        status, payload = raw_post(server, "9" * 5000)
        assert status == 413
        status, payload = raw_post(server, "-5")
        assert status == 400 and "Content-Length" in payload["error"]["message"]
        assert post(server, {"messages": [{"role": "user", "content": "x" * 2000}]}).status_code == 413
        assert post(server, {"messages": HI}).status_code == 200


def test_health_reports_the_queue(server):
    health = httpx.get(server.url.removesuffix("/v1") + "/health").json()
    assert health == {"status": "ok", "queued": 0, "generating_s": 0.0}


def test_parse_chat_request_directly():
    request, params = parse_chat_request(
        {"messages": HI, "temperature": 0, "top_p": 1, "n": 1, "seed": 3, "stream": False}, max_tokens_limit=100
    )
    assert request.messages == HI and request.seed == 3
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.0, 1.0, 100)


def test_the_model_list_carries_the_agent_card_clients_run_the_model_with():
    from eef.agent.card import AgentCard, served_agent_card
    from eef.cli_options import agent_setup
    from eef.trajectory import Message

    card = AgentCard("shop", (Message("system", "Shop with care."),), {"seed": 1})
    with serve(CountingPolicy(), model_name="agent", card=card) as server:
        assert httpx.get(f"{server.url}/models", timeout=10).json()["data"][0]["eef_agent"]["env"] == "shop"
        assert served_agent_card(server.url, "agent") == card
        assert served_agent_card(server.url, "another") is None
        env, options, prompt = agent_setup(None, None, "agent", (None, None, None), print, server.url)
        assert (env.name, options, prompt) == ("shop", {"seed": 1}, card.prompt)
    with serve(CountingPolicy(), model_name="agent") as plain:
        assert "eef_agent" not in httpx.get(f"{plain.url}/models", timeout=10).json()["data"][0]
        assert served_agent_card(plain.url, "agent") is None
