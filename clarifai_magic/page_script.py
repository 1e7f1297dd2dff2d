"""The page script: the few browser-side behaviours of the chat panel and of ``%%clarifai``
answers, without a frontend extension or a build step.

ipywidgets' Textarea has no key events, a widget callback cannot reach JupyterLab's API, and a
saved notebook should hold each answer as plain Markdown (no buttons, nothing to run on reopen).
So one small script runs in the live page (an ``application/javascript`` output, run because the
user ran the cell, then emptied by :func:`run_in_page` so the saved notebook holds no script) and
listens there:

* Enter in the panel's prompt box sends, Shift+Enter adds a line. The script appends
  :data:`SEND_MARK` to the box's value through the widget's own ``input`` path, so the kernel
  receives the complete text and the mark together, in order (a separate "send" message could
  overtake a value update still held back by ipywidgets' message throttle).
* "Insert into a new cell" on a panel code block puts it in a new cell right below the panel's
  cell (the panel's own script copies, and inserts by copying where this script is absent):
  through JupyterLab's application object when it is exposed
  (``--LabApp.expose_app_in_browser``), else through the page as a user would: the notebook
  toolbar's own "insert cell below" button, then a paste into the new cell's CodeMirror editor.
  If neither works it copies the code and says to paste it.
* Code blocks of ``%%clarifai`` answers in cell outputs (recognised by the footer's
  ``clarifai-footer`` class) get a small "Copy" button, added to the page only: the notebook
  model and the saved file keep the clean Markdown.

Where scripts don't run (VS Code, nbclient), the Send button and Ctrl+C still work. The copied or
inserted text is always an element's ``textContent``: the code as written, never interpreted.
"""

from __future__ import annotations

SEND_MARK = "\u2063"  # INVISIBLE SEPARATOR: never typed by people, stripped before sending

# Copying, and a button saying for two seconds how it went: shared by the page script and the
# panel's log (chat_log.js), which can each run without the other.
CLIPBOARD_JS = r"""
  const say = (button, text) => {
    // The first label is kept, so a second click while one message shows restores it too.
    if (!button.dataset.clarifaiLabel) button.dataset.clarifaiLabel = button.textContent;
    button.textContent = text;
    button.classList.add("clarifai-said");
    clearTimeout(button.clarifaiTimer);
    button.clarifaiTimer = setTimeout(() => {
      button.textContent = button.dataset.clarifaiLabel;
      button.classList.remove("clarifai-said");
    }, 2000);
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
"""

SCRIPT = (
    r"""
(() => {
  if (window.__clarifaiPageScript) return;
  window.__clarifaiPageScript = true;
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

"""
    + CLIPBOARD_JS
    + r"""  const until = (test, ms) => new Promise((resolve) => {
    const end = Date.now() + ms;
    const poll = () => {
      const value = test();
      if (value || Date.now() > end) resolve(value || null);
      else setTimeout(poll, 20);
    };
    poll();
  });
  const press = (node, types) => {
    for (const type of types) {
      node.dispatchEvent(new MouseEvent(type, { bubbles: true, cancelable: true, button: 0 }));
    }
  };

  // JupyterLab's application object, when the server exposes it: its own commands and model.
  const insertWithApp = async (cell, code) => {
    const app = window.jupyterapp;
    const panel = app && app.shell && app.shell.currentWidget;
    const notebook = panel && panel.content;
    if (!notebook || !notebook.widgets || !panel.node.contains(cell)) return false;
    const index = notebook.widgets.findIndex((w) => w.node === cell);
    if (index < 0) return false;
    notebook.activeCellIndex = index;
    await app.commands.execute("notebook:insert-cell-below");
    if (notebook.activeCellIndex !== index + 1) return false;
    notebook.activeCell.model.sharedModel.setSource(code);
    return true;
  };

  // Without it, the page as a user drives it: make the panel's cell active (a mousedown on its
  // prompt, as a click there does), press the notebook toolbar's "insert cell below" (it acts on
  // mousedown or on click, by its settings: one of the two), then paste into the new cell's
  // CodeMirror 6 editor, which takes a paste event's text/plain as typed-in text, verbatim.
  // "inserted", "added" (a new cell, but the paste did not take) or "none".
  const insertWithPage = async (cell, code) => {
    const notebook = cell.closest(".jp-Notebook");
    const panel = cell.closest(".jp-NotebookPanel");
    const tool = panel && panel.querySelector(
      '.jp-NotebookPanel-toolbar [data-command="notebook:insert-cell-below"]');
    if (!notebook || !tool) return "none";
    if (!cell.classList.contains("jp-mod-active")) {
      press(cell.querySelector(".jp-InputPrompt") || cell, ["mousedown", "mouseup"]);
      if (!await until(() => cell.classList.contains("jp-mod-active"), 1000)) return "none";
    }
    const before = new Set(notebook.querySelectorAll(".jp-Cell"));
    press(tool, ["mousedown", "mouseup", "click"]);
    const added = await until(() => {
      const active = notebook.querySelector(".jp-Cell.jp-mod-active");
      const fresh = active && active !== cell && !before.has(active);
      return fresh && active.previousElementSibling === cell && active;
    }, 3000);
    const editor = added && await until(() => added.querySelector(".cm-content"), 3000);
    if (!editor) return added ? "added" : "none";
    const data = new DataTransfer();
    data.setData("text/plain", code);
    // Not bubbling: CodeMirror listens on this element; nothing above sees a paste.
    const paste = new ClipboardEvent("paste", { clipboardData: data, cancelable: true });
    editor.dispatchEvent(paste);
    const took = paste.defaultPrevented || await until(() => editor.textContent !== "", 500);
    editor.focus();
    return took ? "inserted" : "added";
  };

  const insert = async (button, code) => {
    const cell = button.closest(".jp-Cell");
    let how = "none";
    try {
      if (cell && await insertWithApp(cell, code)) how = "inserted";
      else if (cell) how = await insertWithPage(cell, code);
    } catch (error) {
      console.warn("clarifai-magic: insert into a new cell failed", error);
    }
    if (how === "inserted") return say(button, "Inserted below");
    const done = how === "added" ? "New cell added: paste the code" : "Copied: paste it in a cell";
    copy(code).then(() => say(button, done), () => say(button, "Copy failed"));
  };

  window.addEventListener("click", (e) => {
    const target = e.target instanceof Element ? e.target : null;
    const block = target && target.closest(".clarifai-block-copy");
    if (block) {
      const pre = block.parentElement.querySelector("pre");
      // A rendered code block ends with the fence's newline, which is not part of the code.
      const code = pre ? pre.textContent.replace(/\n$/, "") : "";
      copy(code).then(() => say(block, "Copied"), () => say(block, "Copy failed"));
      return;
    }
    // The panel's Copy is the panel's own (chat_log.js); Insert needs JupyterLab's page.
    const button = target && target.closest(".clarifai-insert");
    const row = button && button.closest(".clarifai-code-actions");
    const pre = row && row.querySelector("pre");
    if (pre) insert(button, pre.textContent);
  }, true);

  // Copy buttons on the code blocks of %%clarifai answers in cell outputs, in the page only.
  const style = document.createElement("style");
  style.textContent = `
    .clarifai-code-block { position: relative; }
    .clarifai-block-copy {
      position: absolute; top: 4px; right: 4px; padding: 1px 8px; cursor: pointer;
      font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size0, 11px);
      color: var(--jp-ui-font-color1); background: var(--jp-layout-color1);
      border: var(--jp-border-width, 1px) solid var(--jp-border-color1);
      border-radius: var(--jp-border-radius, 2px); opacity: 0; transition: opacity 0.1s;
    }
    .clarifai-block-copy:hover { background: var(--jp-layout-color2); }
    .clarifai-code-block:hover > .clarifai-block-copy, .clarifai-block-copy:focus-visible,
    .clarifai-block-copy.clarifai-said { opacity: 1; }
    @media (hover: none) { .clarifai-block-copy { opacity: 1; } }
  `;
  document.head.appendChild(style);
  const FOOTER = "sub.clarifai-footer";
  const decorate = (answer) => {
    if (!answer.closest(".jp-OutputArea") || answer.closest(".clarifai-chat")) return;
    for (const pre of answer.querySelectorAll("pre")) {
      if (pre.parentElement.classList.contains("clarifai-code-block")) continue;
      const box = document.createElement("div");
      box.className = "clarifai-code-block";
      pre.before(box);
      box.appendChild(pre);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "clarifai-block-copy";
      button.textContent = "Copy";
      button.title = "Copy this code";
      box.appendChild(button);
    }
  };
  const look = (node) => {
    const answer = node.closest(".jp-RenderedMarkdown");
    if (answer) {
      if (answer.querySelector(FOOTER)) decorate(answer);
      return;
    }
    for (const footer of node.querySelectorAll(FOOTER)) {
      const found = footer.closest(".jp-RenderedMarkdown");
      if (found) decorate(found);
    }
  };
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE) look(node);
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
  look(document.body);
})();
"""
)


def run_in_page() -> None:
    """Run :data:`SCRIPT` in the live page, leaving no script in the saved notebook.

    The script runs when its output is drawn; the output is emptied right after, so a reopened
    notebook neither holds code nor asks whether to run it.
    """
    from IPython.display import Javascript, display

    handle = display(Javascript(SCRIPT), display_id=True)
    if handle is not None:
        handle.update({}, raw=True)
