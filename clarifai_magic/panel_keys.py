"""The chat panel's few browser-side behaviours, without a frontend extension or a build step.

ipywidgets' Textarea has no key events and a widget callback cannot reach JupyterLab's API, so a
small script, shown once with the panel as an ``application/javascript`` output (JupyterLab runs
it because the user ran the cell), listens on the page:

* Enter in the panel's prompt box sends, Shift+Enter adds a line. The script appends
  :data:`SEND_MARK` to the box's value through the widget's own ``input`` path, so the kernel
  receives the complete text and the mark together, in order (a separate "send" message could
  overtake a value update still held back by ipywidgets' message throttle).
* "Copy" on a code block copies it; "Insert into a new cell" inserts it below the active cell when
  JupyterLab exposes its application object (``--LabApp.expose_app_in_browser``), and otherwise
  copies it and says to paste it. Nothing else can put a cell in the notebook from a widget.

Where scripts don't run (VS Code, nbclient), the Send button and Ctrl+C still work.
Code blocks are extracted here too: the copied text is the model's code as written.
"""

from __future__ import annotations

import html
import re

import ipywidgets as widgets

SEND_MARK = "\u2063"  # INVISIBLE SEPARATOR: never typed by people, stripped before sending

SCRIPT = r"""
(() => {
  if (window.__clarifaiChatKeys) return;
  window.__clarifaiChatKeys = true;
  const MARK = "\u2063";
  window.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.ctrlKey || e.altKey || e.metaKey) {
      return;
    }
    if (!(t instanceof HTMLTextAreaElement) || !t.closest(".clarifai-chat-prompt")) return;
    e.preventDefault();
    e.stopPropagation();
    t.value = t.value + MARK;
    t.dispatchEvent(new Event("input", { bubbles: true }));
  }, true);
  const say = (button, text) => {
    const old = button.textContent;
    button.textContent = text;
    setTimeout(() => { button.textContent = old; }, 2000);
  };
  const copy = (code) => {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(code);
    }
    const area = document.createElement("textarea");
    area.value = code;
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  };
  window.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest(".clarifai-copy, .clarifai-insert");
    if (!button) return;
    const row = button.closest(".clarifai-code-actions");
    const pre = row && row.querySelector("pre");
    if (!pre) return;
    const code = pre.textContent;
    const app = window.jupyterapp;
    const notebook = app && app.shell && app.shell.currentWidget;
    if (button.classList.contains("clarifai-insert") && notebook && notebook.content) {
      app.commands.execute("notebook:insert-cell-below").then(() => {
        notebook.content.activeCell.model.sharedModel.setSource(code);
        say(button, "Inserted");
      });
      return;
    }
    const insert = button.classList.contains("clarifai-insert");
    const done = insert ? "Copied: paste it in a cell" : "Copied";
    copy(code).then(() => say(button, done), () => say(button, "Copy failed"));
  }, true);
})();
"""

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)[^`]*$")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of Markdown ``text``: (language, code), in order."""
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    lang, lines = "", []
    for line in text.split("\n"):
        if fence is None:
            match = _FENCE.match(line)
            if match:
                fence, lang, lines = match.group(2), match.group(3), []
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append((lang, "\n".join(lines)))
            fence = None
        else:
            lines.append(line)
    if fence is not None and lines:  # an answer cut short: its open block is code all the same
        blocks.append((lang, "\n".join(lines)))
    return blocks


def code_actions(number: int, lang: str, code: str) -> widgets.HBox:
    """A row under an answer: which code block, Copy, Insert into a new cell.

    The code travels in a hidden ``<pre>``, HTML-escaped, for the page script to copy.
    """
    hidden = widgets.HTML(f'<pre hidden class="clarifai-code">{html.escape(code)}</pre>')
    what = f"{html.escape(lang)} code" if lang else "code"
    label = widgets.HTML(f"<small>{what} block {number}</small>")
    copy = widgets.Button(description="Copy", icon="copy", tooltip="Copy this code block")
    insert = widgets.Button(
        description="Insert into a new cell", icon="plus", tooltip="Put this code in a new cell"
    )
    copy.add_class("clarifai-copy")
    insert.add_class("clarifai-insert")
    for button in (copy, insert):
        button.layout = widgets.Layout(width="auto")
    row = widgets.HBox([label, copy, insert, hidden], layout=widgets.Layout(flex="0 0 auto"))
    row.add_class("clarifai-code-actions")
    return row
