"""`%clarifai export`: every target written from a real conversation and run for real.

The conversation is built through the magic against the offline server; each exported program
then runs as its user would run it (``python``, ``node``, ``sh``) with the real ``openai``,
``litellm``, ``ai`` and ``@ai-sdk/openai-compatible`` packages, against the same server over
HTTP. What a user checks: the answer streams to stdout, the server got the conversation and (with
tools) the tool's result, and the PAT is nowhere in the file. Large images are written beside the
program and read back at run time (the server gets the exact data URL), and the Node targets pass
the real TypeScript compiler's ``--strict`` check saved as ``.ts``.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarifai_magic.testing import OfflineServer, text, tool_calls

from .conftest import TEST_PAT
from .test_magic import final_markdown, run

# TypeScript and Node's types: the Node exports must also type-check saved as .ts.
NPM_PACKAGES = ("openai", "ai", "@ai-sdk/openai-compatible", "typescript", "@types/node")
SUFFIX = {"openai-python": ".py", "litellm": ".py", "curl": ".sh"}
# Strings that end a literal in one language or another, or run code when they do.
HOSTILE = (
    'He said "stop" and \'go\' `now` ${process.exit(3)} $(echo pwned) \\n \\" """ \'\'\''
    " </script> \u2028 line\nnext \x00 é ✓"
)
QUESTION = "And in Rome?"
MODEL = "https://clarifai.com/openai/chat-completion/models/gpt-4o"


def _need(tool: str, how: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is needed to run the exported programs: {how}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The npm packages the Node targets import, installed once into a temporary folder."""
    how = "install Node.js >= 18 and npm (apt-get install -y nodejs npm)."
    node = _need("node", how)
    npm = _need("npm", how)
    major = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    if int(major.stdout.strip().lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"Node.js >= 18 is needed, found {major.stdout.strip()}: {how}")
    prefix = tmp_path_factory.mktemp("npm")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *NPM_PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        pytest.fail(f"npm install {' '.join(NPM_PACKAGES)} failed:\n{done.stderr[-2000:]}")
    return prefix


@pytest.fixture(scope="session")
def litellm_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with litellm: this one if it has it, else a temporary venv it is installed into."""
    try:
        import litellm  # noqa: F401
    except ImportError:
        pass
    else:
        return sys.executable
    where = tmp_path_factory.mktemp("litellm-venv")
    venv.create(where, with_pip=True)
    python = str(where / "bin" / "python")
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", "litellm"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        pytest.fail(f"pip install litellm failed (needed for --to litellm):\n{done.stderr[-2000:]}")
    return python


@pytest.fixture
def runner(request: pytest.FixtureRequest, tmp_path: Path, env: Path) -> Iterator[Any]:
    """Run an exported file the way its cell says: python, node (with the npm packages), sh."""

    def run_program(
        target: str, path: Path, *args: str, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        run_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        cwd = cwd or tmp_path
        if target == "openai-python":
            command = [sys.executable]
        elif target == "litellm":
            command = [request.getfixturevalue("litellm_python")]
        elif target == "curl":
            _need("curl", "apt-get install -y curl")
            command = ["sh"]
        else:
            modules = request.getfixturevalue("node_modules")
            # ES modules resolve packages from the file's folder up: put the file (and the
            # images it reads from beside it) in a folder below them.
            folder = modules / "programs" / tmp_path.name
            folder.mkdir(parents=True, exist_ok=True)
            moved = folder / path.name
            shutil.copy(path, moved)
            images = path.with_name(path.stem + "_images")
            if images.is_dir():
                shutil.copytree(images, folder / images.name, dirs_exist_ok=True)
            path = moved
            command = ["node"]
        return subprocess.run(
            [*command, str(path), *args],
            capture_output=True,
            text=True,
            env=run_env,
            cwd=cwd,
            timeout=300,
        )

    yield run_program


def _cell(shell: Any, server: OfflineServer, cell: str, *replies: Any) -> None:
    server.enqueue(*replies)
    out = run(shell, cell)
    assert out.result.success, out.stderr


def _weather_conversation(shell: Any, server: OfflineServer) -> None:
    shell.run_cell(
        "def get_weather(city: str, unit: str = 'C') -> str:\n"
        "    '''The weather in a city.'''\n"
        "    return f'Sunny in {city}'\n"
    )
    shell.run_line_magic("clarifai", "tools add get_weather")
    _cell(
        shell,
        server,
        '%%clarifai -s "Answer briefly."\nWeather in Paris?',
        tool_calls([("call_1", "get_weather", '{"city": "Paris"}')]),
        text("It is sunny in Paris."),
    )


def _plain_conversation(shell: Any, server: OfflineServer) -> None:
    shell.user_ns["hostile"] = HOSTILE
    _cell(shell, server, "%%clarifai -s 'Be kind.'\nRepeat this: {hostile}", text(HOSTILE))


def _export(shell: Any, line: str) -> Any:
    out = run(shell, f"%clarifai export {line}")
    assert out.result.success, out.stderr
    return out


@pytest.mark.parametrize("target", ["openai-python", "openai-node", "vercel-ai", "litellm", "curl"])
def test_plain_conversation_runs_and_streams(
    target: str, shell: Any, server: OfflineServer, tmp_path: Path, runner: Any
) -> None:
    _plain_conversation(shell, server)
    history = server.chat_requests[-1].json["messages"] + [
        {"role": "assistant", "content": HOSTILE}
    ]
    path = tmp_path / f"app{SUFFIX.get(target, '.mjs')}"
    out = _export(shell, f"--to {target} -o {path}")
    assert f"Wrote {path}" in out.stdout and "CLARIFAI_PAT" in out.stdout
    code = path.read_text()
    assert TEST_PAT not in code
    assert "https://clarifai.com/openai/chat-completion/models/gpt-4o" in code

    server.clear()
    server.enqueue(text("Ciao from Rome, streamed.", chunk_size=3))
    args = () if target == "curl" else (QUESTION,)
    done = runner(target, path, *args)
    assert done.returncode == 0, done.stderr
    assert "Ciao from Rome, streamed." in done.stdout
    sent = server.chat_requests[-1]
    assert sent.headers["authorization"] == f"Bearer {TEST_PAT}"
    assert sent.json["stream"] is True
    assert sent.json["model"] == "https://clarifai.com/openai/chat-completion/models/gpt-4o"
    # Every hostile string arrived exactly as the notebook had it: none broke out of its literal.
    asked = QUESTION if args else "Please continue."
    expected = [*history, {"role": "user", "content": asked}]
    assert [(m["role"], m["content"]) for m in sent.json["messages"]] == [
        (m["role"], m["content"]) for m in expected
    ]


@pytest.mark.parametrize("target", ["openai-python", "openai-node", "vercel-ai", "litellm", "curl"])
def test_tool_conversation_runs_the_tool_loop(
    target: str, shell: Any, server: OfflineServer, tmp_path: Path, runner: Any
) -> None:
    _weather_conversation(shell, server)
    path = tmp_path / f"weather{SUFFIX.get(target, '.mjs')}"
    _export(shell, f"--to {target} -o {path}")
    code = path.read_text()
    assert TEST_PAT not in code and "get_weather" in code

    server.clear()
    if target == "curl":
        server.enqueue(tool_calls([("call_2", "get_weather", '{"city": "Rome"}')]))
        done = runner(target, path)
        assert done.returncode == 0, done.stderr
        assert "get_weather" in done.stdout and "Rome" in done.stdout
        sent = server.chat_requests[-1].json
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        # The notebook's tool round travels as history.
        assert {"role": "tool", "content": "Sunny in Paris"}.items() <= sent["messages"][3].items()
        return
    server.enqueue(
        tool_calls([("call_2", "get_weather", '{"city": "Rome"}')]),
        text("Rome: the stub answered."),
    )
    done = runner(target, path, QUESTION)
    assert done.returncode == 0, done.stderr
    assert "Rome: the stub answered." in done.stdout
    first, second = server.chat_requests[-2].json, server.chat_requests[-1].json
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["city"]
    messages = second["messages"]
    assert messages[0] == {"role": "system", "content": "Answer briefly."}
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"
    ]  # fmt: skip
    assert messages[3]["content"] == "Sunny in Paris"  # the notebook's tool result, as history
    assert messages[5]["content"] == QUESTION
    assert messages[6]["tool_calls"][0]["id"] == "call_2"
    # The stub's result went back to the model, answering the call it made.
    assert messages[7]["tool_call_id"] == "call_2"
    assert "get_weather is a stub" in messages[7]["content"]


def test_without_a_file_the_code_is_shown_in_a_fence(shell: Any, server: OfflineServer) -> None:
    _plain_conversation(shell, server)
    out = _export(shell, "--to openai-python -t 0.3 --max-tokens 200")
    markdown = final_markdown(out)
    body = markdown.split("\n", 2)[-1]
    fence = body.split("\n", 1)[0]
    assert fence.startswith("```") and fence.endswith("python")
    assert body.rstrip().endswith(fence.rstrip("python"))
    # The hostile text holds no run of backticks as long as the fence: it stays inside.
    inner = body[len(fence) : -len(fence.rstrip("python"))]
    assert fence.rstrip("python") not in inner
    assert "OPTIONS = {\n" in markdown and '"temperature": 0.3' in markdown
    assert '"max_tokens": 200' in markdown
    assert TEST_PAT not in markdown


def test_file_is_not_overwritten_without_force(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    _plain_conversation(shell, server)
    path = tmp_path / "app.mjs"
    path.write_text("mine")
    out = run(shell, f"%clarifai export --to openai-node -o {path}")
    assert "already exists" in out.stderr and "--force" in out.stderr
    assert "Traceback" not in out.stderr
    assert path.read_text() == "mine"
    _export(shell, f"--to openai-node -o {path} --force")
    assert 'import OpenAI from "openai";' in path.read_text()


def test_unknown_target_and_missing_chat_are_usage_errors(
    shell: Any, server: OfflineServer
) -> None:
    _plain_conversation(shell, server)
    out = run(shell, "%clarifai export --to rust")
    assert "invalid choice" in out.stderr and "vercel-ai" in out.stderr
    out = run(shell, "%clarifai export --to curl --chat nowhere")
    assert "no conversation 'nowhere'" in out.stderr
    assert not server.chat_requests[1:]  # nothing was sent (the first request built the chat)


def test_pat_in_the_conversation_is_masked(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    shell.user_ns["secret"] = TEST_PAT
    _cell(shell, server, "%%clarifai\nmy key is {secret}", text(f"echo: {TEST_PAT}"))
    for target in ("openai-python", "vercel-ai", "curl"):
        path = tmp_path / f"app-{target}"
        _export(shell, f"--to {target} -o {path} --ask 'is it {TEST_PAT}?'")
        code = path.read_text()
        assert TEST_PAT not in code and "my key is" in code
        assert json.dumps(TEST_PAT) not in code


def test_images_stay_data_urls_in_every_client_shape() -> None:
    from clarifai_magic.export import ExportRequest, export_program, literal
    from clarifai_magic.export_node import sdk_messages

    image = "data:image/png;base64,iVBORw0KGgo="
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "A dot."}]
    request = ExportRequest(
        model="https://clarifai.com/openai/chat-completion/models/gpt-4o", messages=messages
    )
    python = export_program(request, "openai-python").code
    assert ast.literal_eval(literal(messages, "python")) == messages
    assert json.dumps(image) in python
    assert sdk_messages(messages)[0]["content"][1] == {"type": "image", "image": image}
    assert json.dumps(image) in export_program(request, "vercel-ai").code


def test_a_python_export_can_go_into_the_next_cell(kernel: Any, server: OfflineServer) -> None:
    server.enqueue(text("Hello from the model."))
    kernel.run("%load_ext clarifai_magic")
    kernel.run("%%clarifai\nSay hello.")
    done = kernel.run("%clarifai export --to openai-python --cell")
    payloads = [p for p in done.reply["content"]["payload"] if p["source"] == "set_next_input"]
    assert len(payloads) == 1 and payloads[0]["replace"] is False
    code = payloads[0]["text"]
    compile(code, "app.py", "exec")
    assert "Say hello." in code and "CLARIFAI_PAT" in code and TEST_PAT not in code
    refused = kernel.run("%clarifai export --to openai-node --cell")
    assert "--cell puts a Python program" in refused.stderr + str(refused.error)


# --- Large images: files beside the program -----------------------------------------------------


def _noise_png(side: int) -> bytes:
    """A PNG of random pixels: it doesn't compress, so its size is known in advance."""
    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="PNG")
    return out.getvalue()


def _image_conversation(shell: Any, server: OfflineServer) -> tuple[list[dict[str, Any]], bytes]:
    """A cell sending a large and a small image; the messages the server got, and the large PNG."""
    big = _noise_png(320)  # about 300 kB: a data URL over the 256 kB limit
    shell.user_ns.update(big=big, small=_noise_png(8))
    _cell(shell, server, "%%clarifai --image big --image small\nWhat are these?", text("Noise."))
    sent = server.chat_requests[-1].json["messages"]
    return [*sent, {"role": "assistant", "content": "Noise."}], big


def _data_urls(messages: list[dict[str, Any]]) -> list[str]:
    return [
        part["image_url"]["url"]
        for m in messages
        if isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]


@pytest.mark.parametrize("target", ["openai-python", "openai-node", "vercel-ai", "litellm", "curl"])
def test_large_images_are_files_the_program_reads(
    target: str, shell: Any, server: OfflineServer, tmp_path: Path, runner: Any
) -> None:
    from clarifai_magic.export import (
        INLINE_IMAGE_MAX_CHARS,
        ExportRequest,
        export_program,
        write_program,
    )

    messages, big = _image_conversation(shell, server)
    big_url, small_url = _data_urls(messages)
    assert big_url == "data:image/png;base64," + base64.b64encode(big).decode()
    assert len(big_url) > INLINE_IMAGE_MAX_CHARS > len(small_url)
    request = ExportRequest(model=MODEL, messages=messages)
    path = tmp_path / "sub" / f"app{SUFFIX.get(target, '.mjs')}"
    path.parent.mkdir()
    program = export_program(request, target, output=str(path))
    written = write_program(str(path), program, force=False)

    image = path.parent / "app_images" / "1.png"
    assert written == [str(path), str(image)]
    assert image.read_bytes() == big
    code = path.read_text()
    assert base64.b64encode(big[:3000]).decode() not in code  # not inline, not even in part
    assert small_url in code  # a small image stays inline
    assert "app_images/1.png" in code and TEST_PAT not in code

    # Run from another folder: the program finds its images beside itself, not in the cwd.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server.clear()
    server.enqueue(text("Two squares of noise."))
    args = () if target == "curl" else (QUESTION,)
    done = runner(target, path, *args, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "Two squares of noise." in done.stdout
    sent = server.chat_requests[-1].json["messages"]
    # The server got the exact data URLs the notebook sent, the large one rebuilt from the file.
    assert _data_urls(sent) == [big_url, small_url]
    assert sent[0]["content"][0] == {"type": "text", "text": "What are these?"}


def test_image_files_are_not_overwritten_without_force(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    from clarifai_magic.export import ExportError, ExportRequest, export_program, write_program

    messages, big = _image_conversation(shell, server)
    path = tmp_path / "app.py"
    program = export_program(
        ExportRequest(model=MODEL, messages=messages), "openai-python", str(path)
    )
    image = tmp_path / "app_images" / "1.png"
    image.parent.mkdir()
    image.write_bytes(b"mine")
    with pytest.raises(ExportError, match="app_images/1.png already exists.*--force"):
        write_program(str(path), program, force=False)
    assert image.read_bytes() == b"mine" and not path.exists()  # nothing was written
    write_program(str(path), program, force=True)
    assert image.read_bytes() == big and "image_url(" in path.read_text()


def test_without_a_file_large_images_stay_inline(
    shell: Any, server: OfflineServer, tmp_path: Path, runner: Any
) -> None:
    from clarifai_magic.export import ExportRequest, export_program

    messages, big = _image_conversation(shell, server)
    request = ExportRequest(model=MODEL, messages=messages)
    program = export_program(request, "vercel-ai")
    assert not program.images and base64.b64encode(big).decode() in program.code
    assert "This export is large" in program.size_note() and "-o FILE" in program.size_note()
    assert "%clarifai export -o FILE writes them as files" in program.code
    # Inline, curl's body is far over what one command-line argument may hold (128 kB on
    # Linux): the script sends it on stdin.
    path = tmp_path / "inline.sh"
    path.write_text(export_program(request, "curl").code)
    server.clear()
    server.enqueue(text("Still noise."))
    done = runner("curl", path)
    assert done.returncode == 0, done.stderr
    assert "Still noise." in done.stdout
    assert _data_urls(server.chat_requests[-1].json["messages"]) == _data_urls(messages)


def test_the_magic_writes_images_and_says_so(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    _messages, big = _image_conversation(shell, server)
    shown = final_markdown(_export(shell, "--to openai-python"))
    assert shown.startswith("This export is large: it holds a large image inline as data URLs")
    assert "`-o FILE` writes large images as files" in shown
    path = tmp_path / "vision.py"
    out = _export(shell, f"--to openai-python -o {path}")
    image = tmp_path / "vision_images" / "1.png"
    assert f"Wrote {path} and the images it reads, {image} (openai-python)" in out.stdout
    assert image.read_bytes() == big
    refused = run(shell, f"%clarifai export --to openai-python -o {path}")
    assert "already exists" in refused.stderr and "--force" in refused.stderr


# --- The Node targets type-check as TypeScript --------------------------------------------------

TSC_OPTIONS = (
    "--noEmit",
    "--strict",
    "--target",
    "es2022",
    "--module",
    "nodenext",
    "--moduleResolution",
    "nodenext",
    "--skipLibCheck",
    # TypeScript 6+ no longer loads every @types package by itself; Node's globals come from here.
    "--types",
    "node",
)


@pytest.mark.parametrize("target", ["openai-node", "vercel-ai"])
@pytest.mark.parametrize("kind", ["plain", "tools", "images"])
def test_node_exports_type_check_as_typescript(
    target: str, kind: str, shell: Any, server: OfflineServer, tmp_path: Path, node_modules: Path
) -> None:
    from clarifai_magic.export import ExportRequest, export_program, write_program

    # A folder below the packages, an ES module package as a TypeScript app using them would be.
    folder = node_modules / "typescript-apps" / tmp_path.name
    folder.mkdir(parents=True)
    (folder / "package.json").write_text('{"type": "module"}')
    path = folder / "app.ts"
    if kind == "images":
        messages, _big = _image_conversation(shell, server)
        program = export_program(ExportRequest(model=MODEL, messages=messages), target, str(path))
        write_program(str(path), program, force=False)
        assert "imageURL(" in path.read_text()
    elif kind == "tools":
        _weather_conversation(shell, server)
        # Parameters of every JSON type, a default of each, an enum and an optional one.
        shell.run_cell(
            "from typing import Literal, Optional\n"
            "def search(query: str, tags: list[str] = [], limit: int = 5, exact: bool = False,\n"
            "           mode: Literal['a', 'b'] = 'a', near: Optional[str] = None,\n"
            "           options: dict = {}) -> str:\n"
            "    'Search the notes.'\n"
            "    return query\n"
        )
        _export(shell, f"--to {target} -o {path} --tools search")
        assert "get_weather" in path.read_text() and '"search"' in path.read_text()
    else:
        _plain_conversation(shell, server)
        _export(shell, f"--to {target} -o {path}")
    tsc = node_modules / "node_modules" / ".bin" / "tsc"
    done = subprocess.run(
        [str(tsc), *TSC_OPTIONS, path.name],
        capture_output=True,
        text=True,
        cwd=folder,  # @types are looked up from here up, as in the app's own folder
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
