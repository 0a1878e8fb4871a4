"""eef serve through the official ``openai`` client, over the tiny checkpoint: what the client
sends (streams with usage, n, content parts) is served, and what the server refuses reaches the
client as the error class and code OpenAI's own API would give."""

import pytest

from eef.agent.hf_policy import HFPolicy
from eef.agent.serve import serve

openai = pytest.importorskip("openai")

KEY = "sk-eef-test"
PARTS = [{"type": "text", "text": "search for "}, {"type": "text", "text": "a blue scarf"}]
ASK = {"model": "tiny", "messages": [{"role": "user", "content": PARTS}], "max_tokens": 6}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with serve(
        HFPolicy.from_pretrained(tiny_model_dir, prefix_cache_entries=0), model_name="tiny", api_key=KEY
    ) as handle:
        yield handle


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60) as client:
        yield client


def test_the_model_list_names_the_served_model(client):
    assert [model.id for model in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"


def test_n_sampled_choices_differ_and_repeat_with_the_seed(client):
    reply = client.chat.completions.create(**ASK, n=2, seed=11, temperature=1.0)
    choices = [choice.message.content for choice in reply.choices]
    assert [choice.index for choice in reply.choices] == [0, 1]
    assert choices[0] != choices[1]
    again = client.chat.completions.create(**ASK, n=2, seed=11, temperature=1.0)
    assert [choice.message.content for choice in again.choices] == choices
    alone = client.chat.completions.create(**ASK, seed=11, temperature=1.0)
    assert alone.choices[0].message.content == choices[0]  # the first choice samples as a lone request does
    assert reply.usage.prompt_tokens == alone.usage.prompt_tokens  # the prompt is counted once for both choices
    assert reply.usage.completion_tokens >= alone.usage.completion_tokens


def test_a_stream_with_usage_says_what_the_reply_says(client):
    reply = client.chat.completions.create(**ASK, seed=11, temperature=1.0)
    stream = client.chat.completions.create(
        **ASK, seed=11, temperature=1.0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content and text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reply.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == reply.usage


def test_another_model_name_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(**{**ASK, "model": "gpt-4o"})
    assert refused.value.code == "model_not_found" and "'tiny'" in refused.value.message


def test_a_client_without_the_key_is_refused(server):
    with openai.OpenAI(base_url=server.url, api_key="sk-wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.chat.completions.create(**ASK)
        assert refused.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()


def test_a_prompt_over_the_context_is_refused_with_both_numbers(client):
    words = "search " * 5000  # 5,007 tokens with the template, on a 4,096-position model
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": words}], max_tokens=4)
    assert refused.value.code == "context_length_exceeded" and refused.value.param == "messages"
    assert "context is 4096 tokens" in refused.value.message and "5007 in the messages" in refused.value.message


def test_a_picture_is_refused_by_its_field_path(client):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/scarf.png"}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**{**ASK, "messages": [{"role": "user", "content": [*PARTS, image]}]})
    assert refused.value.param == "messages[0].content[2].type"


@pytest.mark.parametrize(
    "options, param",
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "buy", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
    ],
)
def test_fields_the_server_cannot_honour_are_refused_by_name(client, options, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**ASK, **options)
    assert refused.value.param == param and param in refused.value.message


def test_fields_at_their_neutral_values_are_served(client):
    reply = client.chat.completions.create(
        **ASK,
        seed=11,
        temperature=1.0,
        logprobs=False,
        response_format={"type": "text"},
        user="u1",
        extra_body={"metadata": {"run": "a"}},  # a keyword only newer clients take
    )
    assert (
        reply.choices[0].message.content
        == client.chat.completions.create(**ASK, seed=11, temperature=1.0).choices[0].message.content
    )
