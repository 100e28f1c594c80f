"""The official `anthropic` Python SDK against `sluice serve --demo` (an OpenAI-format provider
behind `/v1/messages`): create, stream, a tool-use round trip, token counting and typed errors."""
import anthropic
import pytest

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


@pytest.fixture(scope="module")
def client(demo):
    return anthropic.Anthropic(base_url=demo.url, api_key=demo.demo_key, max_retries=0)


def test_messages_create(client):
    m = client.messages.create(model="demo", max_tokens=5, system="Be brief.",
                               messages=[{"role": "user", "content": "Hello"}])
    assert m.type == "message" and m.role == "assistant"
    assert m.model == "mock/demo"
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == "lorem ipsum dolor sit amet"
    assert m.stop_reason == "max_tokens"
    assert m.usage.output_tokens == 5 and m.usage.input_tokens > 0


def test_messages_stream(client):
    with client.messages.stream(model="demo", max_tokens=4,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() == "lorem ipsum dolor sit"
    assert final.content[0].text == text
    assert final.usage.output_tokens == 4
    assert final.stop_reason == "max_tokens"


def test_tool_use_round_trip(client):
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    m = client.messages.create(model="demo", max_tokens=64, tools=[WEATHER],
                               tool_choice={"type": "tool", "name": "get_weather"}, messages=ask)
    assert m.stop_reason == "tool_use"
    use = next(b for b in m.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"q": "mock"}
    follow = ask + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    done = client.messages.create(model="demo", max_tokens=5, tools=[WEATHER], messages=follow)
    assert done.stop_reason == "max_tokens"
    assert done.content[0].type == "text" and done.content[0].text


def test_streamed_tool_use(client):
    with client.messages.stream(model="demo", max_tokens=64, tools=[WEATHER],
                                tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"q": "mock"}
    assert final.stop_reason == "tool_use"


def test_count_tokens(client):
    r = client.messages.count_tokens(model="demo", messages=[{"role": "user", "content": "Hello there"}])
    assert r.input_tokens > 0


def test_errors_are_typed_with_our_request_id(demo, client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert e.value.request_id == e.value.response.headers["request-id"]
    assert e.value.request_id.startswith("req_")

    bad = anthropic.Anthropic(base_url=demo.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"

    narrow = anthropic.Anthropic(base_url=demo.url, api_key=demo.key(scopes=["models:read"]), max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        narrow.messages.create(model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
