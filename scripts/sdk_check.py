"""The official OpenAI and Anthropic Python SDKs against a running gateway (started by sdk-check.sh).

Also the `AzureOpenAI` client against the Azure-style routes, `user=` metering an end user, and the OpenAI SDK
against `flash` and `gemini-embedder`, served by gemini/ deployments (a fake Gemini API) on every tier, and
against `vertex-flash`, `vertex-claude` and `vertex-embedder` (vertex_ai/ on a fake Vertex AI). Arguments:
the gateway URL, a free key, a paid key, the master key. `assistant` is served by an OpenAI-compatible deployment
on the free tier and an anthropic/ one on the paid tier; `embedder` by an OpenAI one on every tier.
Exits non-zero, naming the check, on the first that fails."""

import json
import sys
import urllib.request

import anthropic
import openai

gateway, free_key, paid_key, master_key = sys.argv[1:5]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def check(name, condition, detail=""):
    if not condition:
        sys.exit(f"FAILED: {name} {detail}")
    print(f"ok: {name}")


paid = openai.OpenAI(api_key=paid_key, base_url=f"{gateway}/v1")
free = openai.OpenAI(api_key=free_key, base_url=f"{gateway}/v1")
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]

answer = paid.chat.completions.create(model="assistant", messages=messages, stop=["END"], max_tokens=64)
check("openai SDK chat on anthropic/", answer.choices[0].message.content == "Hello from claude", answer)
check("openai SDK usage on anthropic/", answer.usage.prompt_tokens == 9 and answer.usage.completion_tokens == 3)

stream = paid.chat.completions.create(
    model="assistant", messages=messages, stream=True, stream_options={"include_usage": True}
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("openai SDK stream on anthropic/", text == "Hello from claude", text)
check("openai SDK stream usage on anthropic/", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3)

question = {"role": "user", "content": "What is the weather in Paris?"}
answer = paid.chat.completions.create(model="assistant", messages=[question], tools=[WEATHER])
call = answer.choices[0].message.tool_calls[0]
check("openai SDK tool call on anthropic/", json.loads(call.function.arguments) == {"city": "Paris"}, call)
followup = [
    question,
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
]
answer = paid.chat.completions.create(model="assistant", messages=followup, tools=[WEATHER])
check("openai SDK tool result on anthropic/", answer.choices[0].message.content == "Hello from claude")

arguments = ""
for chunk in paid.chat.completions.create(
    model="assistant", messages=[question], tools=[WEATHER], tool_choice="required", stream=True
):
    for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
        arguments += delta.function.arguments or ""
check("openai SDK streamed tool call on anthropic/", json.loads(arguments) == {"city": "Paris"}, arguments)

embeddings = free.embeddings.create(model="embedder", input=["one", "two"])
check("openai SDK embeddings", len(embeddings.data) == 2 and embeddings.usage.prompt_tokens == 10, embeddings)

try:
    paid.embeddings.create(model="assistant", input="x")
    check("embeddings on anthropic/ is refused", False)
except openai.BadRequestError as error:
    check("embeddings on anthropic/ is a 400 naming the provider", "anthropic" in str(error), error)

for key, expected in [(paid_key, "Hello from claude"), (free_key, "Hello from vllm")]:
    client = anthropic.Anthropic(api_key=key, base_url=gateway)
    message = client.messages.create(
        model="assistant", max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Hello"}]
    )
    check(f"anthropic SDK messages ({expected})", message.content[0].text == expected, message)
    with client.messages.stream(
        model="assistant", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(f"anthropic SDK stream ({expected})", text == expected and final.usage.output_tokens == 3, text)



def check_media(client):
    """Images, moderations, transcription (a multipart upload, `model` before `file` as the SDK sends it) and
    speech (audio streamed back) through the official OpenAI SDK."""
    images = client.images.generate(model="dall-e-3", prompt="a lighthouse", n=2)
    check("openai SDK images", len(images.data) == 2 and images.data[0].url, images)
    moderation = client.moderations.create(model="omni-moderation-latest", input=["hello", "world"])
    check("openai SDK moderations", len(moderation.results) == 2 and not moderation.results[0].flagged, moderation)
    audio = bytes(range(256)) * 1024
    transcript = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.mp3", audio, "audio/mpeg"), response_format="verbose_json"
    )
    check("openai SDK transcription", transcript.text and abs(transcript.duration - len(audio) / 16000) < 1e-6, transcript)
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Hello there") as speech:
        received = b"".join(speech.iter_bytes())
    check("openai SDK speech streams audio", len(received) == 8 * 8192, len(received))


check_media(free)

# The Azure OpenAI client: the model in the path (/openai/deployments/{model}/...), the key in `api-key`.
azure = openai.AzureOpenAI(api_key=free_key, azure_endpoint=gateway, api_version="2024-10-21")
answer = azure.chat.completions.create(model="assistant", messages=messages)
check("AzureOpenAI SDK chat", answer.choices[0].message.content == "Hello from vllm", answer)
chunks = list(azure.chat.completions.create(model="assistant", messages=messages, stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("AzureOpenAI SDK stream", text == "Hello from vllm", text)
embeddings = azure.embeddings.create(model="embedder", input=["one", "two"])
check("AzureOpenAI SDK embeddings", len(embeddings.data) == 2, embeddings)
try:
    openai.AzureOpenAI(api_key="sk-wrong", azure_endpoint=gateway, api_version="2024-10-21").chat.completions.create(
        model="assistant", messages=messages
    )
    check("AzureOpenAI SDK with a wrong key is refused", False)
except openai.AuthenticationError as error:
    check("AzureOpenAI SDK with a wrong key is a 401", error.status_code == 401, error)



def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{gateway}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {master_key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


# `user=` names an end user: their spend adds up across keys, and their budget refuses them on any key. The
# fake upstream answers 9 prompt and 3 completion tokens: 0.015 USD an answer at the `metered` prices.
answer_cost = 9 * 0.001 + 3 * 0.002
admin("POST", "/end_user/new", {"user_id": "sdk-customer", "max_budget": answer_cost * 1.5})
other = openai.OpenAI(api_key=paid_key, base_url=f"{gateway}/v1")
for client in (free, other):
    client.chat.completions.create(model="metered", messages=messages, user="sdk-customer")
spend = admin("GET", "/end_user/info?end_user_id=sdk-customer")["spend"]
check("openai SDK user= meters the end user across keys", abs(spend - 2 * answer_cost) < 1e-9, spend)
try:
    free.chat.completions.create(model="metered", messages=messages, user="sdk-customer")
    check("openai SDK user= over the end user's budget is refused", False)
except openai.RateLimitError as error:
    check("openai SDK user= over the end user's budget is a 429", "End User=sdk-customer" in str(error), error)

# gemini/: the OpenAI SDK unchanged against Gemini's API (translated by the gateway), on every tier.
answer = free.chat.completions.create(model="flash", messages=messages, max_tokens=64, stop=["END"])
check("openai SDK chat on gemini/", answer.choices[0].message.content == "Hello from gemini", answer)
check("openai SDK usage on gemini/", answer.usage.prompt_tokens == 9 and answer.usage.completion_tokens == 3)
chunks = list(
    free.chat.completions.create(model="flash", messages=messages, stream=True, stream_options={"include_usage": True})
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("openai SDK stream on gemini/", text == "Hello from gemini", text)
check("openai SDK stream usage on gemini/", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3)
answer = free.chat.completions.create(model="flash", messages=[question], tools=[WEATHER])
call = answer.choices[0].message.tool_calls[0]
check("openai SDK tool call on gemini/", json.loads(call.function.arguments) == {"city": "Paris"}, call)
followup = [
    question,
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
]
answer = free.chat.completions.create(model="flash", messages=followup, tools=[WEATHER])
content = answer.choices[0].message.content
check("openai SDK tool result on gemini/", content.startswith("Hello from gemini: get_weather said"), content)
arguments = ""
for chunk in free.chat.completions.create(
    model="flash", messages=[question], tools=[WEATHER], tool_choice="required", stream=True
):
    for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
        arguments += delta.function.arguments or ""
check("openai SDK streamed tool call on gemini/", json.loads(arguments) == {"city": "Paris"}, arguments)
embeddings = free.embeddings.create(model="gemini-embedder", input=["one", "two"])
check("openai SDK embeddings on gemini/", len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 8)

# vertex_ai/: the OpenAI SDK unchanged against Gemini and Claude on Vertex AI (a service account's token).
for model in ("vertex-flash", "vertex-claude"):
    answer = free.chat.completions.create(model=model, messages=messages, max_tokens=64)
    check(f"openai SDK chat on {model}", answer.choices[0].message.content == "Hello from vertex", answer)
    chunks = list(
        free.chat.completions.create(
            model=model, messages=messages, max_tokens=64, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(f"openai SDK stream on {model}", text == "Hello from vertex", text)
    check(f"openai SDK stream usage on {model}", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0)
    answer = free.chat.completions.create(model=model, messages=[question], tools=[WEATHER], max_tokens=64)
    call = answer.choices[0].message.tool_calls[0]
    check(f"openai SDK tool call on {model}", json.loads(call.function.arguments) == {"city": "Paris"}, call)
    followup = [
        question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
    ]
    answer = free.chat.completions.create(model=model, messages=followup, tools=[WEATHER], max_tokens=64)
    check(f"openai SDK tool result on {model}", answer.choices[0].message.content == "Hello from vertex", answer)
    arguments = ""
    for chunk in free.chat.completions.create(
        model=model, messages=[question], tools=[WEATHER], max_tokens=64, stream=True
    ):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            arguments += delta.function.arguments or ""
    check(f"openai SDK streamed tool call on {model}", json.loads(arguments) == {"city": "Paris"}, arguments)
embeddings = free.embeddings.create(model="vertex-embedder", input=["one", "two"])
check("openai SDK embeddings on vertex_ai/", len(embeddings.data) == 2 and embeddings.usage.prompt_tokens == 2)
# bedrock/: the OpenAI SDK unchanged against Bedrock's Converse API (translated and SigV4-signed by the gateway).
answer = free.chat.completions.create(model="bedrock-claude", messages=messages, max_tokens=64, stop=["END"])
check("openai SDK chat on bedrock/", answer.choices[0].message.content == "Hello from bedrock", answer)
check("openai SDK usage on bedrock/", answer.usage.prompt_tokens == 9 and answer.usage.completion_tokens == 3)
chunks = list(
    free.chat.completions.create(
        model="bedrock-claude", messages=messages, stream=True, stream_options={"include_usage": True}
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("openai SDK stream on bedrock/", text == "Hello from bedrock", text)
check("openai SDK stream usage on bedrock/", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3)
answer = free.chat.completions.create(model="bedrock-claude", messages=[question], tools=[WEATHER])
call = answer.choices[0].message.tool_calls[0]
check("openai SDK tool call on bedrock/", json.loads(call.function.arguments) == {"city": "Paris"}, call)
followup = [
    question,
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
]
answer = free.chat.completions.create(model="bedrock-claude", messages=followup, tools=[WEATHER])
content = answer.choices[0].message.content
check("openai SDK tool result on bedrock/", content == f"Hello from bedrock: {call.id} said 18C, sunny", content)
arguments = ""
for chunk in free.chat.completions.create(
    model="bedrock-claude", messages=[question], tools=[WEATHER], tool_choice="required", stream=True
):
    for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
        arguments += delta.function.arguments or ""
check("openai SDK streamed tool call on bedrock/", json.loads(arguments) == {"city": "Paris"}, arguments)
embeddings = free.embeddings.create(model="bedrock-embedder", input=["one", "two"])
check("openai SDK embeddings on bedrock/", len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 8)

print("sdk check passed")
