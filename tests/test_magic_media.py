"""Images in and structured data out, through the magic and the offline server."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from clarifai_magic.testing import OfflineServer, http_error, text

from .kernel_util import Kernel
from .test_magic import final_markdown, run


def sent_parts(server: OfflineServer) -> list[dict[str, Any]]:
    return server.chat_requests[-1].json["messages"][-1]["content"]


def decode(part: dict[str, Any]) -> Image.Image:
    url = part["image_url"]["url"]
    header, data = url.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def png_bytes(size: tuple[int, int], color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_images_of_every_kind_become_content_parts(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(png_bytes((40, 30), "blue"))
    shell.user_ns.update(
        photo=Image.new("RGB", (64, 48), "green"),
        array=np.zeros((20, 10, 3), dtype=np.uint8),
        raw=png_bytes((8, 8)),
        remote="https://example.com/cat.jpg",
    )
    server.enqueue(text("Five images."))
    cell = (
        f"%%clarifai --image photo --image array --image raw --image {path} --image remote\n"
        "Describe these."
    )
    out = run(shell, cell)
    assert out.result.success, out.stderr
    parts = sent_parts(server)
    assert parts[0] == {"type": "text", "text": "Describe these."}
    assert [p["type"] for p in parts[1:]] == ["image_url"] * 5
    assert decode(parts[1]).size == (64, 48)
    assert decode(parts[2]).size == (10, 20)
    # Small files and bytes already in an accepted format go byte for byte.
    assert parts[3]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(
        png_bytes((8, 8))
    ).decode("ascii")
    assert decode(parts[4]).size == (40, 30)
    assert parts[5] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    # The conversation keeps the question with its images for the next turn.
    server.enqueue(text("Still five."))
    run(shell, "%%clarifai\nAnd now?")
    assert server.chat_requests[-1].json["messages"][0]["content"] == parts


def test_large_images_are_downscaled(shell: Any, server: OfflineServer) -> None:
    shell.user_ns["big"] = Image.new("RGB", (4000, 1000), "white")
    run(shell, "%config ClarifaiMagics.image_max_side = 800")
    server.enqueue(text("ok"))
    run(shell, "%%clarifai --image big\nWhat is it")
    assert decode(sent_parts(server)[1]).size == (800, 200)


def test_text_only_model_gets_a_warning_before_the_request(
    shell: Any, server: OfflineServer
) -> None:
    shell.user_ns["photo"] = Image.new("RGB", (8, 8))
    server.enqueue(text("I cannot see images."))
    out = run(shell, "%%clarifai -m xai/chat-completion/models/grok-3 --image photo\nLook")
    assert "text-only" in out.stderr
    assert len(server.chat_requests) == 1


def test_missing_image_file_is_a_clear_error(shell: Any, server: OfflineServer) -> None:
    out = run(shell, "%%clarifai --image /no/such/file.png\nLook")
    assert "/no/such/file.png" in out.stdout and "Traceback" not in out.stdout + out.stderr
    assert not server.chat_requests


class Invoice(BaseModel):
    customer: str
    total: float


@dataclass
class LineItem:
    name: str
    quantity: int


def test_schema_with_pydantic_model_sets_response_format_and_out(
    shell: Any, server: OfflineServer
) -> None:
    shell.user_ns["Invoice"] = Invoice
    server.enqueue(text('{"customer": "ACME", "total": 12.5}'))
    out = run(shell, "%%clarifai --schema Invoice --out inv\nExtract the invoice.")
    assert out.result.success, out.stderr
    response_format = server.chat_requests[-1].json["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Invoice"
    assert set(response_format["json_schema"]["schema"]["properties"]) == {"customer", "total"}
    assert shell.user_ns["inv"] == Invoice(customer="ACME", total=12.5)
    assert "```json" in final_markdown(out)


def test_schema_with_dataclass_and_validation_failure(shell: Any, server: OfflineServer) -> None:
    shell.user_ns["LineItem"] = LineItem
    shell.user_ns.pop("item", None)
    server.enqueue(text('{"name": "bolt", "quantity": 4}'))
    run(shell, "%%clarifai --schema LineItem --out item\nExtract")
    assert shell.user_ns["item"] == LineItem("bolt", 4)
    shell.user_ns.pop("item")
    server.enqueue(text('{"name": "bolt", "quantity": "many"}'))
    out = run(shell, "%%clarifai --schema LineItem --out item\nExtract")
    assert not out.result.success
    assert "quantity" in out.stdout and "did not validate" in out.stdout
    assert "item" not in shell.user_ns
    assert '"quantity": "many"' in final_markdown(out)  # the raw text stays in the cell


def test_schema_falls_back_to_instructions_when_response_format_is_rejected(
    shell: Any, server: OfflineServer
) -> None:
    shell.user_ns["Invoice"] = Invoice
    server.enqueue(
        http_error(400, message="response_format json_schema is not supported by this model"),
        text('Sure: ```json\n{"customer": "Bob", "total": 3}\n```'),
    )
    out = run(shell, "%%clarifai --schema Invoice --out inv\nExtract.")
    first, second = server.chat_requests
    assert "response_format" in first.json and "response_format" not in second.json
    assert any(m["role"] == "system" and "JSON" in m["content"] for m in second.json["messages"])
    assert shell.user_ns["inv"] == Invoice(customer="Bob", total=3)
    assert "rejected response_format" in final_markdown(out)


def test_undefined_schema_is_a_usage_error(shell: Any, server: OfflineServer) -> None:
    out = run(shell, "%%clarifai --schema Nope\nExtract")
    assert "Nope" in out.stdout + out.stderr and not server.chat_requests


def test_image_variable_defined_in_one_cell_is_sent_from_the_next(
    server: OfflineServer, kernel: Kernel
) -> None:
    kernel.run("%load_ext clarifai_magic")
    kernel.run("import numpy as np\nimg = np.full((30, 60, 3), 200, dtype=np.uint8)")
    server.enqueue(text("A grey rectangle."))
    run_ = kernel.run("%%clarifai --image img\nWhat is this?")
    assert run_.reply["content"]["status"] == "ok"
    parts = sent_parts(server)
    assert decode(parts[1]).size == (60, 30)
    assert "A grey rectangle." in run_.last_markdown


def test_an_oversized_image_file_is_refused_in_one_paragraph_before_any_request(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    path = tmp_path / "scan.png"
    with path.open("wb") as f:
        f.write(png_bytes((8, 8)))
        f.truncate(3 * 2**30)  # sparse: 3 GB long, no disk used
    out = run(shell, f"%%clarifai --image {path}\nLook")
    shown = out.stdout + out.stderr
    assert "scan.png" in shown and "3.2 GB" in shown and "50 MB limit" in shown
    assert "Traceback" not in shown and not server.chat_requests
