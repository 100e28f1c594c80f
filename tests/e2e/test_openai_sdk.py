"""The official `openai` Python SDK against `sluice serve --demo`: it must just work."""
import openai
import pytest


@pytest.fixture(scope="module")
def client(demo):
    return openai.OpenAI(base_url=f"{demo.url}/v1", api_key=demo.demo_key, max_retries=0)


def test_sdk_completion(client):
    r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello"}], max_tokens=5)
    assert r.choices[0].message.content == "lorem ipsum dolor sit amet"
    assert r.model == "mock/demo"
    assert r.usage.completion_tokens == 5


def test_sdk_streamed_completion_with_usage(client):
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello"}], max_tokens=4,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " lorem ipsum dolor sit"
    assert chunks[-1].usage.completion_tokens == 4


def test_sdk_embeddings(client):
    r = client.embeddings.create(model="demo-embed", input=["a", "b"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8


def test_sdk_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert "mock/demo" in ids
    assert client.models.retrieve("mock/demo").id == "mock/demo"


def test_sdk_raises_typed_errors_with_our_request_id(demo, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_request" and e.value.param == "model"
    assert e.value.request_id == e.value.response.headers["x-request-id"]
    assert e.value.request_id.startswith("req_")

    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.request_id == e.value.response.headers["x-request-id"]

    bad = openai.OpenAI(base_url=f"{demo.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.code == "unauthorized"
    assert e.value.request_id == e.value.response.headers["x-request-id"]

    narrow = openai.OpenAI(base_url=f"{demo.url}/v1", api_key=demo.key(scopes=["chat:write"], models=["mock/embed"]), max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as e:
        narrow.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_allowed"
    assert e.value.body["details"]["allowed_models"] == ["mock/embed"]
    assert e.value.request_id == e.value.response.headers["x-request-id"]
