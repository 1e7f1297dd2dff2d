"""The stream accumulator on chunk sequences shaped like real providers' streams."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from clarifai_magic.stream import StreamAccumulator


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    body.update(extra)
    return ChatCompletionChunk.model_validate(body)


def usage_chunk(prompt: int, completion: int) -> Any:
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


def feed_all(chunks: list[Any]) -> StreamAccumulator:
    acc = StreamAccumulator()
    for c in chunks:
        acc.feed(c)
    acc.finish()
    return acc


def test_openai_text_stream_with_trailing_usage_chunk() -> None:
    acc = feed_all(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, finish="stop"),
            usage_chunk(12, 3),
        ]
    )
    assert acc.text == "Hello"
    assert acc.finish_reason == "stop"
    assert (acc.usage.prompt_tokens, acc.usage.completion_tokens) == (12, 3)


def test_empty_first_chunk_and_null_choices_are_harmless() -> None:
    empty = ChatCompletionChunk.model_construct(
        id="x", choices=None, created=0, model="m", object="chat.completion.chunk"
    )
    acc = feed_all([empty, chunk({"content": "ok"}, finish="stop")])
    assert acc.text == "ok"
    assert acc.error is None


def test_usage_on_finish_chunk_deepseek_style() -> None:
    acc = feed_all(
        [
            chunk({"content": "a"}, usage=None),
            chunk(
                {"content": "b"},
                finish="stop",
                usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            ),
        ]
    )
    assert acc.text == "ab"
    assert (acc.usage.prompt_tokens, acc.usage.completion_tokens) == (5, 2)


def test_no_usage_at_all() -> None:
    acc = feed_all([chunk({"content": "a"}, finish="stop")])
    assert acc.usage is None


def test_openai_parallel_tool_calls_interleaved_by_index() -> None:
    def call(index: int, args: str, head: tuple[str, str] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if head:
            entry.update(id=head[0], type="function")
            entry["function"]["name"] = head[1]
        return {"tool_calls": [entry]}

    acc = feed_all(
        [
            chunk({"role": "assistant", "content": None}),
            chunk(call(0, "", ("call_a", "get_weather"))),
            chunk(call(1, "", ("call_b", "lookup_price"))),
            chunk(call(0, '{"loca')),
            chunk(call(1, '{"item": "cro')),
            chunk(call(0, 'tion": "Paris"}')),
            chunk(call(1, 'issant"}')),
            chunk({}, finish="tool_calls"),
        ]
    )
    calls = acc.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "get_weather", '{"location": "Paris"}'),
        ("call_b", "lookup_price", '{"item": "croissant"}'),
    ]
    assert acc.finish_reason == "tool_calls"


def test_claude_style_text_then_tool_call_at_index_one() -> None:
    acc = feed_all(
        [
            chunk({"content": "Let me check the weather."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "toolu_01",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"location":'}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' "Paris"}'}}]}),
            chunk({}, finish="tool_calls"),
        ]
    )
    assert acc.text == "Let me check the weather."
    assert [(c.index, c.id, c.name, c.arguments) for c in acc.tool_calls] == [
        (1, "toolu_01", "get_weather", '{"location": "Paris"}')
    ]


def test_tool_call_whole_in_one_chunk() -> None:
    acc = feed_all(
        [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x": 1}'},
                        }
                    ]
                },
                finish="tool_calls",
            ),
        ]
    )
    assert [(c.id, c.name, c.arguments) for c in acc.tool_calls] == [("call_1", "f", '{"x": 1}')]


def test_reasoning_content_is_kept_apart_from_the_answer() -> None:
    acc = feed_all(
        [
            chunk({"reasoning_content": "Think "}),
            chunk({"reasoning_content": "hard."}),
            chunk({"content": "Answer."}, finish="stop"),
        ]
    )
    assert acc.reasoning == "Think hard."
    assert acc.text == "Answer."


def test_think_tags_split_across_chunks_go_to_reasoning() -> None:
    pieces = ["<thi", "nk>step one", " step two</th", "ink>The answer", " is 4."]
    acc = feed_all([chunk({"content": p}) for p in pieces] + [chunk({}, finish="stop")])
    assert acc.reasoning == "step one step two"
    assert acc.text == "The answer is 4."


def test_a_lone_angle_bracket_is_not_swallowed() -> None:
    acc = feed_all([chunk({"content": "a <"}), chunk({"content": "b"}), chunk({"content": " <t"})])
    assert acc.text == "a <b <t"


def test_clarifai_runner_error_chunk_has_no_choices() -> None:
    error = ChatCompletionChunk.model_construct(
        choices=None,
        code=21317,
        description="Model prediction failed",
        details="CUDA out of memory",
    )
    acc = StreamAccumulator()
    acc.feed(chunk({"content": "partial"}))
    acc.feed(error)
    assert acc.text == "partial"
    assert "Model prediction failed" in acc.error and "CUDA out of memory" in acc.error


def test_plain_dict_chunks_work_too() -> None:
    acc = StreamAccumulator()
    acc.feed({"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}], "usage": None})
    acc.finish()
    assert acc.text == "hi"


def test_non_streamed_completion_with_tool_calls() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "Checking.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "g", "arguments": '{"a": 1}'},
                            },
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )
    acc = StreamAccumulator()
    acc.feed_completion(completion)
    acc.finish()
    assert acc.text == "Checking."
    assert [(c.id, c.name, c.arguments) for c in acc.tool_calls] == [
        ("call_1", "f", "{}"),
        ("call_2", "g", '{"a": 1}'),
    ]
    assert acc.usage.completion_tokens == 4
