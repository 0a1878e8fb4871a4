"""eef serve over real HTTP: what it serves (choices, streams, content parts, its one model name,
its API key) and what it refuses (400, 401, 404 or 413 in OpenAI's error shape) before the policy
sees it, while it keeps serving the next client."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from eef.agent.policy import Completion, Policy
from eef.agent.serve import (
    DEFAULT_MAX_N,
    DEFAULT_MAX_TOKENS_LIMIT,
    IGNORED_FIELDS,
    NEUTRAL_VALUES,
    parse_chat_request,
    serve,
    served_model_name,
)
from eef.cli import app
from eef.errors import EefError

HI = [{"role": "user", "content": "hi"}]


class CountingPolicy(Policy):
    """Answers with the last message and the request's seed; counts tokens as words; records
    every generate call's size and ``max_new_tokens``."""

    name = "counting"

    def __init__(self, context=None):
        self.calls = []
        self.messages = []
        self.context_length = context

    def encode_prompt(self, messages):
        if any(m["content"] == "unrenderable" for m in messages):
            raise ValueError("Conversation roles must alternate user/assistant")
        return [0] * sum(len(m["content"].split()) for m in messages)

    def generate(self, requests, params):
        self.calls.append((len(requests), params.max_new_tokens))
        self.messages.extend(r.messages for r in requests)
        return [Completion(f"{r.messages[-1]['content']}|{r.seed}", 3, 2, "length") for r in requests]


def post(server, body, headers=None):
    return httpx.post(f"{server.url}/chat/completions", json=body, headers=headers, timeout=10)


def texts(response):
    assert response.status_code == 200, response.text
    return [choice["message"]["content"] for choice in response.json()["choices"]]


def assert_refused(response, status, *words, param=None, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    for word in words:
        assert word in error["message"]


@pytest.fixture
def server():
    policy = CountingPolicy(context=64)
    with serve(policy, max_tokens_limit=16) as handle:
        handle.policy = policy
        yield handle


def test_max_tokens_above_the_limit_is_refused_and_others_are_served(server):
    response = post(server, {"messages": HI, "max_tokens": 3_000_000})
    assert_refused(response, 400, "'max_tokens' is 3000000", "limit of 16", param="max_tokens")
    assert_refused(
        post(server, {"messages": HI, "max_completion_tokens": 17}), 400, "limit of 16", param="max_completion_tokens"
    )
    assert server.policy.calls == []  # refused before the policy saw it
    assert texts(post(server, {"messages": HI, "max_tokens": 5, "seed": 1})) == ["hi|1"]
    assert server.policy.calls == [(1, 5)]


def test_the_limits_default_to_the_context_else_a_constant_and_can_be_set():
    with serve(CountingPolicy()) as plain:
        assert_refused(
            post(plain, {"messages": HI, "max_tokens": DEFAULT_MAX_TOKENS_LIMIT + 1}),
            400,
            f"limit of {DEFAULT_MAX_TOKENS_LIMIT}",
            param="max_tokens",
        )
        assert post(plain, {"messages": HI, "max_tokens": DEFAULT_MAX_TOKENS_LIMIT}).status_code == 200
        assert_refused(
            post(plain, {"messages": HI, "n": DEFAULT_MAX_N + 1}), 400, f"limit of {DEFAULT_MAX_N}", param="n"
        )
    with serve(CountingPolicy(context=64), max_tokens_limit=8, max_n=2) as capped:
        assert_refused(post(capped, {"messages": HI, "max_tokens": 9}), 400, "limit of 8", param="max_tokens")
        assert post(capped, {"messages": HI}).status_code == 200  # the default 256 would be over: cut to 8
        assert_refused(post(capped, {"messages": HI, "n": 3}), 400, "limit of 2", param="n")
    for bad, message in [
        ({"max_tokens_limit": 0}, "max_tokens_limit must be an integer >= 1"),
        ({"max_n": 0}, "max_n must be an integer >= 1"),
        ({"api_key": " "}, "API key must not be empty"),
    ]:
        with pytest.raises(EefError, match=message):
            serve(CountingPolicy(), **bad)


def test_a_prompt_that_overflows_the_context_names_both_numbers(server):
    long = [{"role": "user", "content": "word " * 60}]
    response = post(server, {"messages": long, "max_tokens": 5, "stream": True})  # refused before any event
    assert_refused(
        response, 400, "context is 64 tokens", "needs 65", "60 in the messages", "5 for the completion",
        param="messages", code="context_length_exceeded",
    )  # fmt: skip
    assert post(server, {"messages": long, "max_tokens": 4}).status_code == 200
    bad = [{"role": "user", "content": "unrenderable"}]
    assert_refused(post(server, {"messages": bad}), 400, "cannot be rendered", "must alternate", param="messages")


def concurrently(*sends):
    threads = [threading.Thread(target=send) for send in sends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_refused_request_does_not_fail_its_batch():
    policy = CountingPolicy(context=64)
    with serve(policy, batch_window_s=0.3) as server:
        results = {}

        def send(name, messages):
            return lambda: results.__setitem__(name, post(server, {"messages": messages, "max_tokens": 8}))

        concurrently(send("long", [{"role": "user", "content": "w " * 60}]), send("short", HI))
    assert results["long"].status_code == 400 and results["short"].status_code == 200
    assert policy.calls == [(1, 8)]


def test_n_choices_are_sampled_apart_and_repeat_with_the_seed(server):
    response = post(server, {"messages": HI, "n": 3, "seed": 5, "max_tokens": 4})
    choices = response.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    seeds = [text.split("|")[1] for text in texts(response)]
    assert seeds[0] == "5" and len(set(seeds)) == 3  # the first choice samples as a lone request does
    assert texts(post(server, {"messages": HI, "n": 3, "seed": 5, "max_tokens": 4})) == texts(response)
    assert texts(post(server, {"messages": HI, "n": 3, "seed": 6, "max_tokens": 4})) != texts(response)
    unseeded = texts(post(server, {"messages": HI, "n": 3, "max_tokens": 4}))
    assert len(set(unseeded)) == 3
    assert server.policy.calls == [(3, 4)] * 4  # the choices of a request share one generate call
    # the prompt is read once for every choice; each choice generated its own tokens
    assert response.json()["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


def test_the_choices_of_concurrent_requests_share_a_batch():
    policy = CountingPolicy()
    with serve(policy, batch_window_s=0.3) as server:
        concurrently(
            lambda: post(server, {"messages": HI, "n": 3, "max_tokens": 8}),
            lambda: post(server, {"messages": HI, "max_tokens": 8}),
        )
    assert policy.calls == [(4, 8)]


def events(response):
    """The JSON events of a server-sent event stream and whether it ended with [DONE]."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    payloads = [line.removeprefix("data: ") for line in lines]
    return [json.loads(p) for p in payloads[:-1]], payloads[-1] == "[DONE]"


def test_a_stream_carries_role_text_finish_and_usage_then_done(server):
    chunks, done = events(
        post(server, {"messages": HI, "seed": 2, "stream": True, "stream_options": {"include_usage": True}})
    )
    assert done
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "hi|2"}, None), ({}, "length")]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_a_stream_of_n_choices_without_usage(server):
    chunks, done = events(post(server, {"messages": HI, "n": 2, "seed": 2, "stream": True}))
    assert done and all("usage" not in c for c in chunks)
    by_choice = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        by_choice.setdefault(choice["index"], []).append(choice["delta"].get("content", ""))
    assert sorted(by_choice) == [0, 1]
    assert "".join(by_choice[0]) == "hi|2" and "".join(by_choice[1]) not in ("", "hi|2")
    # stream_options ask nothing of a reply that is not streamed
    assert texts(post(server, {"messages": HI, "seed": 2, "stream_options": {"include_usage": True}})) == ["hi|2"]


def test_content_parts_are_joined_and_other_parts_are_refused_by_path(server):
    parts = [{"type": "text", "text": "click"}, {"type": "text", "text": "[Buy Now]"}]
    messages = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": parts}]
    assert texts(post(server, {"messages": messages, "seed": 0})) == ["click[Buy Now]|0"]
    assert server.policy.messages[-1][0] == {"role": "system", "content": "be brief"}  # OpenAI's newer name for it
    image = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "x"}}]
    response = post(server, {"messages": [HI[0], {"role": "user", "content": image}]})
    assert_refused(response, 400, "'image_url'", "only 'text' parts", param="messages[1].content[1].type")
    for content, param in [
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        (["plain"], "messages[0].content[0]"),
        (5, "messages[0].content"),
        (None, "messages[0].content"),
    ]:
        assert_refused(post(server, {"messages": [{"role": "user", "content": content}]}), 400, param=param)
    assert server.policy.calls == [(1, 16)]  # only the first request reached the policy


def test_message_fields_that_cannot_be_rendered_are_refused(server):
    call = [{"id": "c1", "type": "function", "function": {"name": "buy", "arguments": "{}"}}]
    echoed = {"role": "assistant", "content": "ok", "tool_calls": None, "refusal": None, "name": "bot"}
    assert post(server, {"messages": [echoed, *HI]}).status_code == 200  # what clients echo back is empty
    with_call = {"role": "assistant", "content": "", "tool_calls": call}
    assert_refused(post(server, {"messages": [with_call, *HI]}), 400, "tool_calls", param="messages[0].tool_calls")
    assert_refused(
        post(server, {"messages": [{"role": "tool", "content": "x"}]}), 400, "'tool'", param="messages[0].role"
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("logprobs", True),
        ("top_logprobs", 3),
        ("tools", [{"type": "function", "function": {"name": "buy"}}]),
        ("tool_choice", "auto"),
        ("functions", [{"name": "buy"}]),
        ("function_call", "auto"),
        ("response_format", {"type": "json_object"}),
        ("logit_bias", {"50256": -100}),
        ("frequency_penalty", 0.5),
        ("presence_penalty", -1),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("reasoning_effort", "high"),
        ("web_search_options", {}),
    ],
)
def test_fields_that_would_change_the_answer_are_refused_by_name(server, field, value):
    response = post(server, {"messages": HI, field: value})
    assert_refused(response, 400, repr(field), "not supported", param=field, code="unsupported_parameter")
    assert server.policy.calls == []


def test_unknown_fields_are_refused_and_harmless_ones_served(server):
    assert_refused(post(server, {"messages": HI, "top_k": 5}), 400, "'top_k'", param="top_k", code="unknown_parameter")
    neutral = {field: values[-1] for field, values in NEUTRAL_VALUES.items()}  # each field at a value asking nothing
    harmless = dict.fromkeys(IGNORED_FIELDS, None) | {"user": "u1", "metadata": {"run": "a"}, "store": False}
    assert texts(post(server, {"messages": HI, "seed": 1, **neutral, **harmless})) == ["hi|1"]


@pytest.mark.parametrize(
    "extra, words, param",
    [
        ({"temperature": -0.5}, ["temperature", ">= 0"], "temperature"),
        ({"temperature": "hot"}, ["temperature", "finite number"], "temperature"),
        ({"top_p": 0}, ["top_p", "(0, 1]"], "top_p"),
        ({"top_p": 1.5}, ["top_p", "(0, 1]"], "top_p"),
        ({"n": 0}, ["'n' must be from 1"], "n"),
        ({"n": True}, ["'n' must be an integer"], "n"),
        ({"n": 1.5}, ["'n' must be an integer"], "n"),
        ({"max_tokens": 0}, ["max_tokens", ">= 1"], "max_tokens"),
        ({"max_tokens": -3}, ["max_tokens", ">= 1"], "max_tokens"),
        ({"max_tokens": 1.5}, ["max_tokens", "integer"], "max_tokens"),
        ({"seed": "x"}, ["seed", "integer"], "seed"),
        ({"stream": "yes"}, ["stream"], "stream"),
        ({"stream": 1}, ["stream"], "stream"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, ["include_usage"], "stream_options"),
        ({"stream_options": []}, ["include_usage"], "stream_options"),
        ({"stop": [1]}, ["stop"], "stop"),
        ({"model": 5}, ["'model' must be a string"], "model"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, ["messages[0].role", "robot"], "messages[0].role"),
        ({"messages": [{"content": "hi"}]}, ["messages[0]", "role"], "messages[0]"),
        ({"messages": "hi"}, ["messages"], "messages"),
        ({"messages": []}, ["messages"], "messages"),
    ],
)
def test_out_of_range_and_malformed_fields_get_400(server, extra, words, param):
    assert_refused(post(server, {"messages": HI, **extra}), 400, *words, param=param)
    assert server.policy.calls == []


@pytest.mark.parametrize(
    "raw, word",
    [
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "top_p"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_non_finite_numbers_and_absurd_nesting_get_400(server, raw, word):
    response = httpx.post(f"{server.url}/chat/completions", content=raw, timeout=10)
    assert response.status_code == 400 and word in response.json()["error"]["message"]


def test_only_the_served_model_name_is_listed_and_answered():
    with serve(CountingPolicy(), model_name="shop-agent") as server:
        listed = httpx.get(f"{server.url}/models", timeout=10).json()
        assert [entry["id"] for entry in listed["data"]] == ["shop-agent"]
        assert httpx.get(f"{server.url}/models/shop-agent", timeout=10).json()["id"] == "shop-agent"
        assert texts(post(server, {"model": "shop-agent", "messages": HI, "seed": 0})) == ["hi|0"]
        response = post(server, {"model": "gpt-4o", "messages": HI})
        assert_refused(response, 404, "'gpt-4o' does not exist", "'shop-agent'", param="model", code="model_not_found")
        response = httpx.get(f"{server.url}/models/gpt-4o", timeout=10)
        assert_refused(response, 404, "'gpt-4o'", param="model", code="model_not_found")


def test_an_api_key_guards_every_endpoint_but_health():
    with serve(CountingPolicy(), model_name="m", api_key="sk-local") as server:
        for headers, problem in [(None, "no API key"), ({"Authorization": "Bearer sk-wrong"}, "not this server's")]:
            response = post(server, {"messages": HI}, headers)
            assert_refused(response, 401, problem, code="invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"
            assert httpx.get(f"{server.url}/models", headers=headers, timeout=10).status_code == 401
        good = {"Authorization": "Bearer sk-local"}
        assert post(server, {"messages": HI}, good).status_code == 200
        assert httpx.get(f"{server.url}/models", headers=good, timeout=10).status_code == 200
        assert httpx.get(server.url.removesuffix("/v1") + "/health", timeout=10).status_code == 200


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
    request = parse_chat_request(
        {"messages": HI, "temperature": 0, "top_p": 1, "n": 2, "seed": 3, "stream": False},
        model="m",
        max_tokens_limit=100,
    )
    assert request.messages == HI and request.seeds[0] == 3 and len(request.seeds) == 2
    assert [r.seed for r in request.generation_requests()] == list(request.seeds)
    assert (request.params.temperature, request.params.top_p, request.params.max_new_tokens) == (0.0, 1.0, 100)
    assert (request.stream, request.include_usage) == (False, False)


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
    with serve(CountingPolicy(), model_name="agent", card=card, api_key="sk-local") as guarded:
        assert served_agent_card(guarded.url, "agent") is None  # the listing refuses a client without the key
        assert served_agent_card(guarded.url, "agent", api_key="sk-local") == card
        env, options, prompt = agent_setup(None, None, "agent", (None, None, None), print, guarded.url, "sk-local")
        assert (env.name, options, prompt) == ("shop", {"seed": 1}, card.prompt)


def test_a_checkpoint_is_served_under_its_directory_name_never_its_path(tmp_path, monkeypatch):
    checkpoint = tmp_path / "iter-3"
    checkpoint.mkdir()
    assert served_model_name(checkpoint) == "iter-3"
    monkeypatch.chdir(checkpoint)
    assert served_model_name(".") == "iter-3"
    assert served_model_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub id, not a path


def test_serve_help_names_its_options_and_never_shows_the_key():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"EEF_API_KEY": "sk-secret-in-env", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--served-model-name", "--api-key", "EEF_API_KEY", "--dtype", "--device", "--max-n"):
        assert option in result.output
    assert "sk-secret-in-env" not in result.output


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_loads_as_told_and_serves_by_name_behind_its_key(tiny_model_dir):
    port = free_port()
    command = [sys.executable, "-m", "eef.cli", "serve", str(tiny_model_dir), "--port", str(port)]
    command += ["--device", "cpu", "--dtype", "bfloat16", "--max-n", "2"]
    env = {**os.environ, "EEF_API_KEY": "sk-from-env"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        banner = next((line for line in process.stderr if "serving " in line), "")  # once the server listens
        assert f"as {Path(tiny_model_dir).name!r} on cpu in bfloat16, API key required at" in banner
        url, key = f"http://127.0.0.1:{port}/v1", {"Authorization": "Bearer sk-from-env"}
        assert httpx.get(f"{url}/models", timeout=10).status_code == 401
        listed = httpx.get(f"{url}/models", headers=key, timeout=10).json()["data"]
        assert [entry["id"] for entry in listed] == [Path(tiny_model_dir).name]
        assert str(tiny_model_dir) not in json.dumps(listed)
        body = {"messages": HI, "max_tokens": 2, "n": 3}
        response = httpx.post(f"{url}/chat/completions", json=body, headers=key, timeout=60)
        assert_refused(response, 400, "limit of 2", param="n")
    finally:
        process.terminate()
        process.wait(timeout=60)
        process.stderr.close()


def test_an_unknown_dtype_is_refused_before_serving(tiny_model_dir):
    result = CliRunner().invoke(app, ["serve", str(tiny_model_dir), "--dtype", "float64", "--port", "0"])
    assert result.exit_code != 0 and "unknown dtype 'float64'" in str(result.exception)
