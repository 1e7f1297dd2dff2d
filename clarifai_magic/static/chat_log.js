// The chat panel's message log (an anywidget view). The kernel sends operations as custom
// messages, each numbered ("seq"): a message added, a frame of a streaming answer (sealed blocks
// appended for good, the open tail replaced), an answer replaced whole, code-block actions.
// Only new text travels; nothing is synced as widget state. A view that starts (a page opened
// or reloaded, a second view) says "hello" and gets a "replay" of the whole log addressed to it,
// then applies the operations numbered after it.
//
// Every Markdown text was made inert by the kernel (safe_markdown), as for a cell's output, and
// is rendered here by marked, the renderer JupyterLab uses. The code for Copy and Insert is not
// sent again: it is read from the answer's rendered code blocks (as textContent), those outside
// the <details> of its thinking and tool calls, which the answer's own text cannot open.

const render = (markdown) => marked.parse(markdown, { gfm: true, async: false });

// Links from model text may only go to the web or to an address: a javascript: (or data:, or any
// other) link loses its target, since nothing here does what JupyterLab does for a cell's links.
// Those that stay open in a new tab, with no access back to this page.
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const defuse = (node) => {
  for (const link of node.querySelectorAll("a[href]")) {
    let url = null;
    try {
      url = new URL(link.getAttribute("href"), document.baseURI);
    } catch (error) {
      url = null;
    }
    if (!url || !SAFE_PROTOCOLS.has(url.protocol)) {
      link.removeAttribute("href");
      continue;
    }
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
};

// Code blocks coloured as JupyterLab colours code (chat_log.css maps highlight.js's classes to its
// editor theme), for the languages shipped; others, and blocks with no language, stay plain.
// highlight.js reads the block's text and escapes what it writes back.
const highlight = (node) => {
  for (const code of node.querySelectorAll("pre > code")) {
    const lang = [...code.classList].find((c) => c.startsWith("language-"));
    if (lang && hljs.getLanguage(lang.slice(9))) hljs.highlightElement(code);
  }
};

// The one way Markdown enters the page: rendered, links defused, code coloured.
const fill = (node, markdown) => {
  node.innerHTML = render(markdown);
  defuse(node);
  highlight(node);
};

function view({ model, el }) {
  el.classList.add("clarifai-chat-log");
  const entries = new Map();
  const nonce = Math.random().toString(36).slice(2);
  let ready = false;
  let seen = -1;
  let queued = [];

  // Each piece is a rendered Markdown block of its own, as in a cell's output, so JupyterLab's
  // styles for rendered Markdown (written for its direct children) apply.
  const rendered = (markdown) => {
    const part = document.createElement("div");
    part.className = "jp-RenderedHTMLCommon jp-RenderedMarkdown";
    fill(part, markdown);
    return part;
  };

  const atBottom = () => el.scrollHeight - el.scrollTop - el.clientHeight < 40;

  const apply = (op) => {
    const follow = atBottom();
    const entry = entries.get(op.id);
    switch (op.op) {
      case "reset":
        el.replaceChildren();
        entries.clear();
        break;
      case "add": {
        const node = document.createElement("div");
        node.className = `clarifai-chat-message clarifai-chat-${op.kind}`;
        const body = document.createElement("div");
        body.className = "clarifai-chat-body";
        const sealed = document.createElement("div");
        const tail = rendered(op.md);
        body.append(sealed, tail);
        node.append(body);
        el.append(node);
        entries.set(op.id, { node, sealed, tail });
        break;
      }
      case "frame":
        if (!entry) break;
        if (op.sealed !== undefined) entry.sealed.append(rendered(op.sealed));
        if (op.tail !== undefined) fill(entry.tail, op.tail);
        break;
      case "whole":
        if (!entry) break;
        entry.sealed.replaceChildren();
        fill(entry.tail, op.md);
        if (op.kind) entry.node.className = `clarifai-chat-message clarifai-chat-${op.kind}`;
        break;
      case "code":
        if (entry) entry.node.append(codeActions(entry.node));
        break;
    }
    if (follow) el.scrollTop = el.scrollHeight;
  };

  const onMessage = (msg) => {
    if (msg.op === "replay") {
      if (msg.to !== nonce) return;
      el.replaceChildren();
      entries.clear();
      msg.ops.forEach(apply);
      seen = msg.seq;
      ready = true;
      for (const op of queued) if (op.seq > seen) apply(op);
      queued = [];
      return;
    }
    if (!ready) {
      queued.push(msg);
      return;
    }
    if (msg.seq <= seen) return;
    seen = msg.seq;
    apply(msg);
  };

  model.on("msg:custom", onMessage);
  model.send({ op: "hello", nonce });
  return () => model.off("msg:custom", onMessage);
}

// The (language, code) of the answer's code blocks in ``node``, as rendered.
function codeBlocks(node) {
  const blocks = [];
  for (const code of node.querySelectorAll("pre > code")) {
    if (code.closest("details")) continue;
    const lang = [...code.classList].find((c) => c.startsWith("language-"));
    // A rendered code block ends with the fence's newline, which is not part of the code.
    blocks.push([lang ? lang.slice(9) : "", code.textContent.replace(/\n$/, "")]);
  }
  return blocks;
}

// One row per code block: which block, Copy, Insert into a new cell (say and copy: CLIPBOARD_JS in
// page_script.py, put before this module). Copy is handled here, so it
// works wherever the widget does (VS Code too); Insert by the page script in JupyterLab (see
// page_script.py), which runs first, and where it is absent by copying.
function codeActions(node) {
  const box = document.createElement("div");
  codeBlocks(node).forEach(([lang, code], index) => {
    const row = document.createElement("div");
    row.className = "clarifai-code-actions";
    const what = document.createElement("small");
    what.textContent = `${lang ? `${lang} code` : "code"} block ${index + 1} `;
    const button = (cls, label, title) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `jupyter-button widget-button ${cls}`;
      b.textContent = label;
      b.title = title;
      return b;
    };
    const pre = document.createElement("pre");
    pre.hidden = true;
    pre.className = "clarifai-code";
    pre.textContent = code;
    const copyButton = button("clarifai-copy", "Copy", "Copy this code block");
    const insert = button("clarifai-insert", "Insert into a new cell", "Put this code in a new cell");
    const copied = (b, text) => copy(code).then(() => say(b, text), () => say(b, "Copy failed"));
    copyButton.addEventListener("click", () => copied(copyButton, "Copied"));
    insert.addEventListener("click", () => {
      if (!window.__clarifaiPageScript) copied(insert, "Copied: paste it in a cell");
    });
    row.append(what, copyButton, " ", insert, pre);
    box.append(row);
  });
  return box;
}

export default { render: view };
