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

from clarifai_magic.config import (
    MAGIC_CONTEXT,
    NO_PAT_MESSAGE,
    ConfigError,
    Secret,
    find_credentials,
    forget_pat,
    redact,
    save_pat,
)
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
    assert "%clarifai offline on" in NO_PAT_MESSAGE  # a way to try it without an account


def test_api_base_copied_with_the_openai_path_is_not_doubled() -> None:
    creds = find_credentials(
        {"CLARIFAI_PAT": "p", "CLARIFAI_API_BASE": "https://api.clarifai.com/v2/ext/openai/v1/"},
        Path("/nonexistent"),
    )
    assert creds.base_url == "https://api.clarifai.com/v2/ext/openai/v1"


@pytest.mark.parametrize(
    ("api_base", "expected"),
    [
        ("api.clarifai.com", "https://api.clarifai.com/v2/ext/openai/v1"),
        (" api.clarifai.com/ ", "https://api.clarifai.com/v2/ext/openai/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v2/ext/openai/v1"),
    ],
)
def test_api_base_without_a_scheme_means_https(api_base: str, expected: str) -> None:
    creds = find_credentials(
        {"CLARIFAI_PAT": "p", "CLARIFAI_API_BASE": api_base}, Path("/nonexistent")
    )
    assert creds.base_url == expected


def read_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


CLI_CONFIG = (
    "current_context: work\n"
    "contexts:\n"
    "  work:\n"
    "    env:\n"
    "      CLARIFAI_USER_ID: me\n"
    "      CLARIFAI_PAT: cli-pat-1234\n"
    "      CLARIFAI_API_BASE: https://work.example.test\n"
)


def test_a_saved_pat_keeps_the_cli_contexts_and_is_found_first(tmp_path: Path) -> None:
    path = write_config(tmp_path, CLI_CONFIG)
    before = read_yaml(path)
    saved = save_pat(Secret("saved-pat-77"), "https://api.clarifai.com", path)
    assert saved.context == MAGIC_CONTEXT and not saved.current
    data = read_yaml(path)
    assert data["current_context"] == "work"
    assert data["contexts"]["work"] == before["contexts"]["work"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    creds = find_credentials({}, path)
    assert creds.pat.reveal() == "saved-pat-77" and MAGIC_CONTEXT in creds.source
    # The saved PAT goes to the host it was saved for, never to the CLI context's host.
    assert creds.base_url == "https://api.clarifai.com/v2/ext/openai/v1"
    assert find_credentials({"CLARIFAI_PAT": "env-pat"}, path).pat.reveal() == "env-pat"

    save_pat(Secret("newer-pat-88"), "https://api.clarifai.com", path)
    assert find_credentials({}, path).pat.reveal() == "newer-pat-88"
    assert forget_pat(path) is True
    assert read_yaml(path) == before
    assert find_credentials({}, path).pat.reveal() == "cli-pat-1234"
    assert forget_pat(path) is False


def test_forgetting_a_current_saved_context_hands_current_back(tmp_path: Path) -> None:
    path = tmp_path / "config"
    assert save_pat(Secret("saved-pat-77"), "api.clarifai.com", path).current
    assert read_yaml(path)["contexts"][MAGIC_CONTEXT]["env"]["CLARIFAI_API_BASE"] == (
        "https://api.clarifai.com"
    )
    text = path.read_text().replace("contexts:\n", "contexts:\n  default:\n    env: {}\n", 1)
    path.write_text(text)
    assert forget_pat(path)
    assert read_yaml(path) == {"current_context": "default", "contexts": {"default": {"env": {}}}}


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("symlink", "symbolic link"),
        ("not yaml", "not a Clarifai CLI config"),
        ("a list", "not a Clarifai CLI config"),
    ],
)
def test_a_config_that_cannot_be_kept_is_left_alone(
    tmp_path: Path, setup: str, fragment: str
) -> None:
    path = tmp_path / "config"
    if setup == "symlink":
        target = write_config(tmp_path, CLI_CONFIG).rename(tmp_path / "dotfiles-config")
        path.symlink_to(target)
    else:
        path.write_text("current_context: [unclosed" if setup == "not yaml" else "- a\n- b\n")
    before = path.read_text()
    with pytest.raises(ConfigError, match=fragment) as failure:
        save_pat(Secret("never-shown-99"), "https://api.clarifai.com", path)
    assert "never-shown-99" not in str(failure.value)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


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
