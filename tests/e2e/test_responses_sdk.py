"""The official `openai` SDK's Responses API (`client.responses`) and the openai-agents SDK in its
default (Responses) mode against `sluice serve --demo`."""
import asyncio
import json

import openai
import pytest

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


@pytest.fixture(scope="module")
def client(demo):
    return openai.OpenAI(base_url=f"{demo.url}/v1", api_key=demo.demo_key, max_retries=0)


def test_responses_create(client):
    r = client.responses.create(model="demo", input="Hello", instructions="Be brief.", max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.model == "mock/demo"
    assert r.output_text == "lorem ipsum dolor sit amet"
    assert r.usage.output_tokens == 5 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert client.responses.retrieve(r.id).output_text == r.output_text


def test_responses_stream(client):
    events = list(client.responses.create(model="demo", input="Hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_item.done" in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.split()[:5] == ["lorem", "ipsum", "dolor", "sit", "amet"] and len(text.split()) == 12
    assert events[-1].response.usage.output_tokens == 12
    assert events[-1].response.output_text == text

    # Cut by the output budget: the stream ends with response.incomplete, as OpenAI's does.
    events = list(client.responses.create(model="demo", input="Hello", max_output_tokens=4, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_function_tool_continues_with_previous_response_id(client):
    first = client.responses.create(model="demo", input="Weather in Oslo?", tools=[WEATHER],
                                    tool_choice={"type": "function", "name": "get_weather"})
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"q": "mock"}
    second = client.responses.create(
        model="demo", previous_response_id=first.id, tools=[WEATHER], max_output_tokens=5,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.previous_response_id == first.id
    assert second.output_text
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_responses_errors_are_typed(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="no-such-model", input="x")
    assert e.value.code == "invalid_request" and e.value.param == "model"
    assert e.value.request_id == e.value.response.headers["x-request-id"]


def test_legacy_completions(client):
    r = client.completions.create(model="demo", prompt="Once upon a time", max_tokens=5)
    assert r.choices[0].text == "lorem ipsum dolor sit amet"
    assert r.usage.completion_tokens == 5


def test_the_agents_sdk_runs_an_agent_with_a_function_tool(demo):
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # it would send traces to OpenAI otherwise
    calls = []

    @agents.function_tool
    def get_weather(q: str) -> str:
        """The weather in a city."""
        calls.append(q)
        return "sunny"

    client = openai.AsyncOpenAI(base_url=f"{demo.url}/v1", api_key=demo.demo_key, max_retries=0)
    model = agents.OpenAIResponsesModel(model="demo", openai_client=client)
    agent = agents.Agent(name="weather", instructions="Use the tool.", model=model, tools=[get_weather],
                         model_settings=agents.ModelSettings(tool_choice="required", max_tokens=16))
    result = asyncio.run(agents.Runner.run(agent, "Weather in Oslo?"))
    assert calls == ["mock"], "the tool ran once with the model's arguments"
    assert result.final_output
