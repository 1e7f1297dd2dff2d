"""Pure pieces: prompt interpolation, model naming, credentials lookup, the confirm question.

The confirm question is also checked once through a real kernel's stdin, as a user sees it.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clarifai_magic.config import NO_PAT_MESSAGE, Secret, find_credentials, redact
from clarifai_magic.confirm import MAX_SHOWN_CHARS, ButtonConfirm, _question
from clarifai_magic.models import (
    ModelNameError,
    capabilities,
    merge_model_list,
    model_id,
    resolve_model,
)
from clarifai_magic.prompt import extract_code, interpolate
from clarifai_magic.testing import OfflineServer, text, tool_calls

from .kernel_util import Kernel


class Frame:
    shape = (3, 4)
    _secret = "hidden"


NS = {
    "df_name": "sales",
    "df": Frame(),
    "In": ["", "x = 1", "x + 1"],
    "Out": {2: 2},
    "d": {"k": "v"},
    "n": 3.14159,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Explain {df_name}'s columns.", "Explain sales's columns."),
        ("shape {df.shape}", "shape (3, 4)"),
        ("cell {In[1]} gave {Out[2]}", "cell x = 1 gave 2"),
        ("key {d['k']} and {d[\"k\"]}", "key v and v"),
        ("pi is {n:.2f}", "pi is 3.14"),
        ("unknown {nope} stays", "unknown {nope} stays"),
        ("escaped {{df_name}} stays", "escaped {{df_name}} stays"),
        ('json {"a": 1} stays', 'json {"a": 1} stays'),
        ("code {df_name + 'x'} stays", "code {df_name + 'x'} stays"),
        ("private {df._secret} stays", "private {df._secret} stays"),
        ("dunder {df.__class__} stays", "dunder {df.__class__} stays"),
        ("missing index {In[99]} stays", "missing index {In[99]} stays"),
    ],
)
def test_interpolate(template: str, expected: str) -> None:
    assert interpolate(template, NS) == expected


def test_extract_code() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nDone") == "print(1)"
    assert extract_code("~~~py\nx = 1\n~~~") == "x = 1"
    assert extract_code("````md\n```inner```\n````") == "```inner```"
    assert extract_code("print(2)") == "print(2)"
    assert extract_code("```\nunclosed") == "unclosed"
    assert extract_code("Sure, here is how you do it.") is None


def test_a_raising_property_stays_literal() -> None:
    class Boom:
        @property
        def value(self) -> int:
            raise RuntimeError("no")

    assert interpolate("see {b.value}", {"b": Boom()}) == "see {b.value}"


@pytest.mark.parametrize(
    "name",
    [
        "https://clarifai.com/openai/chat-completion/models/gpt-4o",
        "openai/chat-completion/models/gpt-4o",
        "gpt-4o",
        "fast",
    ],
)
def test_model_names_resolve_to_the_full_url(name: str) -> None:
    url = resolve_model(name, {"fast": "openai/chat-completion/models/gpt-4o"})
    assert url == "https://clarifai.com/openai/chat-completion/models/gpt-4o"


def test_versioned_model_keeps_version_and_capabilities() -> None:
    url = resolve_model("qwen/qwenLM/models/Qwen3-14B/versions/abc123")
    assert url.endswith("/versions/abc123")
    assert capabilities(url).tools is True
    assert model_id(url) == "Qwen3-14B"


def test_unknown_model_message_says_what_to_do() -> None:
    with pytest.raises(ModelNameError, match="%clarifai models"):
        resolve_model("not a model")


def test_capability_table_matches_published_list() -> None:
    assert capabilities("xai/chat-completion/models/grok-3").image_input is False
    assert capabilities("qwen/qwen-VL/models/Qwen2_5-VL-7B-Instruct").tools is False
    assert capabilities("someone/app/models/unknown") is None


def test_model_list_merges_server_table_and_aliases() -> None:
    rows = merge_model_list(
        ["https://clarifai.com/me/app/models/custom", "openai/chat-completion/models/gpt-4o"],
        {"g": "gpt-4o"},
    )
    by_path = {r.path: r for r in rows}
    assert (
        by_path["me/app/models/custom"].listed
        and by_path["me/app/models/custom"].capabilities is None
    )
    assert by_path["openai/chat-completion/models/gpt-4o"].aliases == ("g",)
    assert not by_path["anthropic/completion/models/claude-sonnet-4"].listed


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config"
    path.write_text(body)
    return path


def test_pat_from_environment_first(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, "current_context: a\ncontexts:\n  a:\n    env:\n      CLARIFAI_PAT: from-file\n"
    )
    creds = find_credentials({"CLARIFAI_PAT": "from-env"}, cfg)
    assert creds.pat.reveal() == "from-env"
    assert creds.base_url == "https://api.clarifai.com/v2/ext/openai/v1"


def test_pat_and_host_from_cli_config_current_context(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        "current_context: work\ncontexts:\n  default:\n    env:\n      CLARIFAI_PAT: wrong\n"
        "  work:\n    env:\n      CLARIFAI_PAT: right\n      CLARIFAI_API_BASE: https://api.example.test\n",
    )
    creds = find_credentials({}, cfg)
    assert creds.pat.reveal() == "right"
    assert creds.base_url == "https://api.example.test/v2/ext/openai/v1"
    assert "config" in creds.source


def test_pat_short_key_and_envvar_indirection(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, "current_context: default\ncontexts:\n  default:\n    pat: short-key\n"
    )
    assert find_credentials({}, cfg).pat.reveal() == "short-key"
    cfg = write_config(
        tmp_path,
        "current_context: default\ncontexts:\n  default:\n    env:\n      CLARIFAI_PAT: ENVVAR\n",
    )
    assert find_credentials({}, cfg) is None


def test_login_pat_replaces_the_others_and_no_pat_is_none(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert find_credentials({}, missing) is None
    creds = find_credentials({"CLARIFAI_PAT": "stale-env"}, missing, login_pat=Secret("typed"))
    assert creds.source == "%clarifai login" and creds.pat.reveal() == "typed"
    assert "CLARIFAI_PAT" in NO_PAT_MESSAGE and "%clarifai login" in NO_PAT_MESSAGE


def test_api_base_copied_with_the_openai_path_is_not_doubled() -> None:
    creds = find_credentials(
        {"CLARIFAI_PAT": "p", "CLARIFAI_API_BASE": "https://api.clarifai.com/v2/ext/openai/v1/"},
        Path("/nonexistent"),
    )
    assert creds.base_url == "https://api.clarifai.com/v2/ext/openai/v1"


def test_secret_never_shows_itself() -> None:
    secret = Secret("pat-123456")
    creds = find_credentials({"CLARIFAI_PAT": "pat-123456"}, Path("/nonexistent"))
    for shown in (repr(secret), str(secret), f"{secret}", repr(creds)):
        assert "pat-123456" not in shown
    assert redact("token pat-123456 leaked", secret) == "token ******** leaked"


# --------------------------------------------------------------------- the confirm question

HIDDEN = ("Cc", "Cf", "Zl", "Zp")
# Looks like "report.txt" on screen while the real argument deletes the home directory.
HOSTILE = "~ -rf\u202e\u2066txt.troper\u2069\u200b\x1b[2K\u2028\x7f\u0085\U000e0041 done"


def visible_only(shown: str) -> bool:
    return not any(unicodedata.category(c) in HIDDEN for c in shown)


def test_the_question_shows_control_and_bidi_characters_as_escapes() -> None:
    question = _question(SimpleNamespace(name="rm"), {"path": HOSTILE, "force": True})
    assert visible_only(question)
    assert question == (
        'Run rm(path="~ -rf\\u202e\\u2066txt.troper\\u2069\\u200b\\u001b[2K\\u2028\\u007f'
        '\\u0085\\U000e0041 done", force=true)?'
    )
    # Text that merely looks like an escape stays distinguishable from a hidden character.
    assert _question(SimpleNamespace(name="rm"), {"p": "\\u202e"}) == 'Run rm(p="\\\\u202e")?'


def test_the_question_is_bounded_and_says_what_it_left_out() -> None:
    arguments = {"sql": "x" * 50_000, **{f"k{i}": i for i in range(30)}}
    question = _question(SimpleNamespace(name="run_sql"), arguments)
    assert f"({50_002 - MAX_SHOWN_CHARS:,} more characters not shown)" in question
    assert "(11 more arguments not shown)" in question
    assert len(question) < 2 * MAX_SHOWN_CHARS


def test_the_buttons_label_escapes_html_and_hidden_characters() -> None:
    placed: list[Any] = []
    approved = ButtonConfirm(timeout=0.1, place=placed.append)(
        SimpleNamespace(name="rm"), {"path": "<img src=x onerror=alert(1)>" + HOSTILE}
    )
    assert approved is False
    label = placed[0].children[0].value
    assert "<img" not in label and "&lt;img src=x onerror=alert(1)&gt;" in label
    assert visible_only(label) and "\\u202e" in label


def test_kernel_text_prompt_shows_the_hidden_characters_and_n_refuses(
    server: OfflineServer, kernel: Kernel
) -> None:
    kernel.run("%load_ext clarifai_magic\n%config ClarifaiMagics.confirm_with = 'input'")
    kernel.run(
        "from clarifai_magic import tool\n"
        "removed = []\n"
        "@tool(confirm=True)\n"
        "def rm(path: str) -> str:\n"
        "    removed.append(path)\n"
        "    return 'removed'\n"
    )
    server.enqueue(tool_calls([("c1", "rm", json.dumps({"path": HOSTILE}))]), text("Kept it."))
    msg_id = kernel.kc.execute("%%clarifai --tools rm\nTidy up.", allow_stdin=True)
    request = kernel.kc.get_stdin_msg(timeout=60)
    prompt = request["content"]["prompt"]
    kernel.kc.input("n")
    run = kernel.collect(msg_id)
    assert run.reply["content"]["status"] == "ok", run.error
    assert prompt.startswith('Run rm(path="~ -rf\\u202e\\u2066txt.troper\\u2069')
    assert prompt.endswith("[y/N] ") and visible_only(prompt)
    assert kernel.run("print(removed)").stdout == "[]\n"
    assert server.chat_requests[-1].json["messages"][-1]["content"] == (
        "The user declined to run rm."
    )
