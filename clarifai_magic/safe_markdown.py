"""Untrusted text (model answers, reasoning, tool calls and results, server messages) as
Markdown that cannot inject markup or run script.

JupyterLab renders the Markdown of an output the user ran (or of a saved notebook whose
signature holds) without sanitising it, so raw HTML in model text would run. :func:`safe_markdown`
escapes what could open HTML outside code, turns images into links (nothing is fetched without a
click), and rewrites every code block with a fence longer than anything inside it; :func:`fenced`,
:func:`code_span` and :func:`quote_untrusted` wrap text in code or quotes the same way;
:func:`seal_point` says where a streaming answer may be cut into blocks drawn apart, and
:func:`soft_seal_point` where a long block may be cut with a seam; :func:`code_blocks` lists
its code blocks as the page shows them, and :func:`safe_markdown_within` fits it under a
display's size limit. Pure: no IPython here.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# The renderer (marked, in JupyterLab) has corner cases of its own, so nothing is left for it to
# decide: every code block is re-fenced here with a fence longer than anything inside, every
# fence-like line that is not one of ours is escaped, and outside code every `<` that could open a
# tag, comment or declaration becomes `&lt;`. Code (fenced blocks and one-line code spans) stays as
# written, since Markdown shows it as text.

# What may precede a block's first character on a line: indentation, `>` and list markers.
_CONTAINER = r"(?:[ \t]|>|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t]))*"
_OPENER = re.compile(r"( *)(`{3,}|~{3,})(.*)")
_TILDE_FENCE = re.compile(_CONTAINER + r"(?=~~~)")
_BRACKET_START = re.compile(_CONTAINER + r"(?=\[)")
_TABLE_DELIMITER = re.compile(_CONTAINER + r"[|:\- \t]*")
_SPECIAL = re.compile(r"\\[!-/:-@\[-`{-~]|`+|<(?=[A-Za-z/!?])|!(?=\[)")
_BACKTICKS = re.compile(r"`+")
# An autolink to the web or an address renders as a link and nothing else, so it is kept (with
# no backtick, backslash, $ or quote that could pair with code spans, escapes or math).
_AUTOLINK = re.compile(r"<(?:https?://|mailto:)[^\s<>`\\$\"']+>", re.IGNORECASE)
_UNESCAPED_CLOSE_BRACKET = re.compile(r"(?<!\\)(?:\\\\)*\]")
_LANG = re.compile(r"[A-Za-z0-9_+#.-]*")
# JupyterLab cuts math out before Markdown sees the text: a delimiter inside code could pair with
# one outside and carry a fence or backtick off with it. It guards `$` in code, not these.
_URL_START = re.compile(r"(?i)://|www\.|@")
_MATH_IN_CODE = re.compile(r"\\\\[()[\]]|\\(?:begin|end)\{")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _blank(line: str) -> bool:
    return not line.strip(" \t")


def _indent(line: str) -> int:
    """Columns of indentation, the smaller of the CommonMark count (tab stops of 4) and marked's
    (each leading tab is 4 spaces): a line counts as indented only if both renderers agree."""
    body = line.lstrip(" \t")
    tab_stops = len(line[: len(line) - len(body)].expandtabs(4))
    m = re.match(r"( *)(\t*)( *)", line)
    assert m is not None  # the pattern matches the empty string
    marked = len(m[1]) + 4 * len(m[2]) + len(m[3])
    return min(tab_stops, marked)


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


@dataclass
class _Fence:
    """A code block being read: where it opened and its lines, re-fenced when it ends."""

    indent: int
    char: str
    length: int
    lang: str
    lines: list[str] = field(default_factory=list)

    def closed_by(self, line: str) -> bool:
        body = line.lstrip(" \t")
        run = len(body) - len(body.lstrip(self.char))
        return run >= self.length and _blank(body[run:]) and _indent(line) <= self.indent + 3

    def emit(self) -> list[str]:
        fence = "`" * max(3, _longest_backticks("\n".join(self.lines)) + 1)
        pad = " " * self.indent
        return [f"{pad}{fence}{self.lang}", *self.lines, f"{pad}{fence}"]

    @property
    def has_math_delimiters(self) -> bool:
        """Could JupyterLab's math pairing reach into this block? (It stops at blank lines.)"""
        return any("$" in line or "\\" in line for line in self.lines)


def _opener(line: str, after_blank: bool) -> _Fence | None:
    """The fence ``line`` opens, if every renderer would read it as one (or as indented code)."""
    m = _OPENER.fullmatch(line)
    if m is None:
        return None
    indent, run, info = len(m[1]), m[2], m[3]
    # Indented 4+ it opens a fence only in a list item; after a blank line it is then either that
    # or indented code, and both keep the lines below as code. After text it may be plain text.
    if indent > 3 and not after_blank:
        return None
    if run[0] == "`" and "`" in info:
        return None  # not a fence: inline code
    lang = _LANG.match(info.strip())
    return _Fence(indent, run[0], len(run), lang.group() if lang else "")


def _table_lines(lines: list[str]) -> set[int]:
    """Lines of blocks that may be tables: there a `|` splits cells even inside a code span."""
    found: set[int] = set()
    start = 0
    for index, line in enumerate([*lines, ""]):
        if _blank(line):
            block = range(start, index)
            if any(_table_delimiter(lines[i]) for i in block):
                found.update(block)
            start = index + 1
    return found


def _table_delimiter(line: str) -> bool:
    return (
        _TABLE_DELIMITER.fullmatch(line) is not None
        and "-" in line
        and ("|" in line or ":" in line)
    )


def _code_span_kept(line: str, start: int, end: int, closer: int, table: bool, seen: str) -> bool:
    """Whether the code span ``line[start:closer + n]`` may stay as written: only where every
    renderer reads it as code. Else it is escaped as text (it shows its backticks).

    ``seen``: which of ``$`` and ``~`` came earlier in the paragraph.
    """
    content, before = line[end:closer], line[:start]
    if table and "|" in content:
        return False  # GFM splits table cells even inside code spans
    if before.endswith("\\"):
        return False  # JupyterLab's guard of `$` in code misses a span after a backslash
    # Math is cut out before Markdown is read (JupyterLab, nbconvert), and marked reads ~~del~~
    # and bare URLs before code spans: a delimiter in the span pairing with one before it, or a
    # URL running into it, would carry the opening backticks off.
    if _MATH_IN_CODE.search(content):
        return False
    for mark in "$~":
        if mark in content and (mark in seen or mark in before):
            return False
    word = before.rsplit(None, 1)[-1] if before and not before[-1].isspace() else ""
    return not _URL_START.search(word)


def escape_inline(line: str, *, table: bool = False, seen: str = "") -> str:
    """One line outside code blocks: code spans kept, raw HTML, images and stray backticks
    escaped. ``seen``: which of ``$`` and ``~`` came earlier in the paragraph."""
    starts: dict[int, list[int]] = {}
    for run in _BACKTICKS.finditer(line):
        starts.setdefault(run.end() - run.start(), []).append(run.start())
    out: list[str] = []
    pos = 0
    while True:
        m = _SPECIAL.search(line, pos)
        if m is None:
            out.append(line[pos:])
            return "".join(out)
        out.append(line[pos : m.start()])
        token = m.group()
        pos = m.end()
        if token[0] == "\\":
            out.append(token)
        elif token[0] == "`":
            n = len(token)
            candidates = starts.get(n, [])
            i = bisect.bisect_left(candidates, pos)
            closer = candidates[i] if i < len(candidates) else None
            if closer is not None and _code_span_kept(line, m.start(), pos, closer, table, seen):
                out.append(line[m.start() : closer + n])
                pos = closer + n
            else:
                # A backtick that closes nothing here must not pair with one elsewhere.
                out.append("\\`" * n)
        elif token == "<":
            link = _AUTOLINK.match(line, m.start())
            if link is not None:
                out.append(link.group())
                pos = link.end()
            else:
                out.append("&lt;")
        else:  # "!" before "[": an image would make the browser fetch its URL; a link does not
            out.append("\\!")


def safe_markdown(text: str) -> str:
    """Untrusted ``text`` as Markdown that renders as written but cannot inject markup.

    Outside code, ``<`` that could open a tag, comment or declaration becomes ``&lt;``, images
    become links, and link reference definitions (which marked lets span lines) are defused.
    Every code block gets a fence longer than any backtick run inside it and blank lines around
    it; one still open at the end (mid-stream) is closed. Inline code spans stay as written.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tables = _table_lines(lines)
    out: list[str] = []
    brackets: list[tuple[int, int]] = []  # (line in out, column) of a "[" that starts a block
    fence: _Fence | None = None
    blank_due = False
    seen = ""  # which of `$` and `~` came earlier in this paragraph

    def put(line: str) -> None:
        nonlocal blank_due
        if blank_due and not _blank(line):
            out.append("")
        blank_due = False
        out.append(line)

    def close() -> None:
        nonlocal fence, blank_due
        assert fence is not None
        lines = fence.emit()
        if fence.has_math_delimiters:
            # Math delimiters never pair across a blank line: fence the block off with two.
            if out and not _blank(out[-1]):
                out.append("")
            blank_due = True
        else:
            blank_due = False
        out.extend(lines)
        fence = None

    for index, line in enumerate(lines):
        if fence is not None:
            if fence.closed_by(line):
                close()
                continue
            if _blank(line) or _indent(line) >= fence.indent:
                fence.lines.append(line)
                continue
            # Less indented than its fence: in a list item that line would end the block, so
            # end it here too, explicitly.
            close()
        opener = _opener(line, not out or blank_due or _blank(out[-1]))
        if opener is not None:
            blank_due, seen = False, ""
            fence = opener
            continue
        tilde = _TILDE_FENCE.match(line)
        if tilde is not None:
            line = line[: tilde.end()] + "\\" + line[tilde.end() :]
        escaped = escape_inline(line, table=index in tables, seen=seen)
        # What a paragraph has seen, for the next line (a paragraph ends at a blank line).
        seen = "" if _blank(line) else "".join(c for c in "$~" if c in seen or c in line)
        put(escaped)
        start = _BRACKET_START.match(escaped)
        if start is not None:
            brackets.append((len(out) - 1, start.end()))
    if fence is not None:
        close()
    return _defuse_link_definitions(out, brackets)


# A line that would continue a list (a marker of its own, or indentation) after a blank line.
_LIST_MARKER = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
# How much of a line must have arrived before it is known not to start with a list marker.
_KNOWN_START = 12


def _lines(text: str, start: int) -> Iterator[tuple[int, str, bool, _Fence | None, str, bool]]:
    """Each line of ``text[start:]`` with what is known before it, as :func:`safe_markdown`
    tracks it: (offset, line, whether its end has come, the code block it is in, the line that
    opened that block, whether the line before was blank). ``start`` must start a block."""
    fence: _Fence | None = None
    fence_line = ""
    after_blank = True  # what safe_markdown's ``not out or blank_due or _blank(out[-1])`` says
    prev_blank = True
    pos = start
    # safe_markdown reads a lone "\r" as a line break too: go no further than the first (or one
    # at the end, which may be the start of "\r\n"). A line's "\r\n" ends it as "\n" does.
    stop = text.find("\r", start)
    while stop != -1 and text.startswith("\n", stop + 1):
        stop = text.find("\r", stop + 2)
    end = len(text) if stop == -1 else stop
    while pos < end:
        nl = text.find("\n", pos, end)
        line = text[pos:end] if nl == -1 else text[pos:nl].removesuffix("\r")
        yield pos, line, nl != -1, fence, fence_line, prev_blank
        if nl == -1:
            return
        pos = nl + 1
        if fence is not None:
            if fence.closed_by(line):
                after_blank, prev_blank, fence = fence.has_math_delimiters, False, None
                continue
            if _blank(line) or _indent(line) >= fence.indent:
                fence.lines.append(line)  # for has_math_delimiters, as safe_markdown keeps them
                continue
            after_blank, fence = fence.has_math_delimiters, None
        opener = _opener(line, after_blank)
        if opener is not None:
            fence, fence_line = opener, line
        else:
            after_blank = _blank(line)
        prev_blank = _blank(line)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """The code blocks of Markdown ``text`` as :func:`safe_markdown` reads them (so as the page
    shows them): (language, code), in order, one still open at the end included."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    fences: list[_Fence] = []
    for _, line, complete, fence, _, _ in _lines(text, 0):
        if fence is None:
            continue
        if not fences or fences[-1] is not fence:
            fences.append(fence)
        if not complete and not fence.closed_by(line):  # the last line, its end not come
            fence.lines.append(line)
    return [
        (fence.lang, "\n".join(_dedent(line, fence.indent) for line in fence.lines))
        for fence in fences
    ]


def _dedent(line: str, indent: int) -> str:
    """``line`` less up to ``indent`` spaces: what a fence indented that far leaves of it."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def seal_point(text: str, start: int = 0) -> int:
    """The furthest offset at or after ``start`` where ``text`` may be cut in two blocks that
    :func:`safe_markdown` escapes and a renderer draws alone as they are drawn together.

    ``start`` must itself be such a cut (0 is). A cut is the start of a line after a blank line,
    outside code blocks (tracked exactly as :func:`safe_markdown` tracks them), that begins at the
    margin with no list marker (so it continues no list item or indented code). Returns ``start``
    when there is none. Only ``text[start:]`` is read, so a streaming view pays for its tail only.
    """
    best = start
    for pos, line, complete, fence, _, prev_blank in _lines(text, start):
        known = complete or len(line) >= _KNOWN_START
        if (
            fence is None
            and prev_blank
            and pos > start
            and known
            and line[:1] not in ("", " ", "\t")
            and _LIST_MARKER.match(line) is None
        ):
            best = pos
    return best


_SETEXT_UNDERLINE = re.compile(r"[=-]+[ \t]*")
# A word starting a piece cut from the middle of a line: a letter, so it can't open a block.
_WORD_AFTER_SPACE = re.compile(r" (?=[^\W\d_])")
# Before the cut, a letter or digit: a list marker or a run of "-" / "=" alone would underline
# the paragraph above as a heading.
_WORD_CHAR = re.compile(r"[^\W_]")
# A backtick that is not escaped (after an even number of backslashes).
_UNESCAPED_BACKTICK = re.compile(r"(?<!\\)(?:\\\\)*`")


def soft_seal_point(text: str, start: int = 0, reopen: str = "") -> tuple[int, str]:
    """For a long block with no :func:`seal_point`: the furthest place after ``start`` where
    ``text`` may be cut so that both parts still render as what they are, give or take a seam
    (a paragraph or list drawn as two, a code block or table as two), which a view's final frame,
    drawn whole, removes.

    Returns ``(cut, again)``: ``again`` is what reopens the block the cut falls in (the line that
    opened its code block, or its table's header and delimiter rows; '' elsewhere), to go before
    what follows the cut so that it is still code or table; ``reopen`` is that text from the cut
    at ``start``. A cut is at a line start; indented lines and setext underlines are never cut
    before, nor a block's closing fence. A block of one long line (or lines that can't be cut
    before) is cut between two words of its last line, outside code spans. Returns
    ``(start, "")`` when there is no cut.
    """
    virtual = reopen + text[start:]
    best, again = 0, ""
    prev: str | None = None
    table = ""  # the header and delimiter rows of the table the line is in
    last: tuple[int, str, _Fence | None, str] | None = None
    for pos, line, complete, fence, fence_line, _ in _lines(virtual, 0):
        last = (pos, line, fence, fence_line)
        if not complete:  # what the line starts with may still change
            break
        if pos > len(reopen) and prev is not None:
            if fence is not None:
                if fence.indent == 0 and not fence.closed_by(line):
                    best, again = pos, fence_line + "\n"
            elif table:
                if not _blank(line) and not _table_delimiter(prev):  # a row stays with its head
                    best, again = pos, table
            elif (
                line[:1] not in ("", " ", "\t")
                and not _blank(prev)
                and "|" not in line
                and "|" not in prev
                and not _SETEXT_UNDERLINE.fullmatch(line)
            ):
                best, again = pos, ""
        if fence is None:
            if _blank(line):
                table = ""
            elif prev is not None and not table and "|" in prev and _table_delimiter(line):
                table = f"{prev}\n{line}\n"
        prev = line
    if not best and last is not None and not table:
        best, again = _between_words(*last, least=len(reopen))
    if not best:
        return start, ""
    return start + best - len(reopen), again


def _between_words(
    pos: int, line: str, fence: _Fence | None, fence_line: str, least: int
) -> tuple[int, str]:
    """The last place in ``line`` (at ``pos``) between two words, outside code spans, and what
    reopens its block there; (0, "") when there is none past ``least``. Never in a fence line."""
    if fence is not None and (fence.indent or fence.closed_by(line)):
        return 0, ""
    if fence is None and _opener(line, True) is not None:
        return 0, ""
    for space in reversed([m.start() for m in _WORD_AFTER_SPACE.finditer(line)]):
        if pos + space + 1 <= least or not _WORD_CHAR.search(line, 0, space):
            break
        if fence is not None:
            return pos + space + 1, fence_line + "\n"
        # A cut in a code span would show its backticks.
        if len(_UNESCAPED_BACKTICK.findall(line, 0, space)) % 2 == 0:
            return pos + space + 1, ""
    return 0, ""


def _defuse_link_definitions(lines: list[str], brackets: list[tuple[int, int]]) -> str:
    """Escape each block-starting ``[`` whose label could end in ``]:``.

    marked reads ``[label]: url "title"`` with a label and title that may run over many lines,
    blank ones and code fences included, so a definition could swallow a fence and leave code
    to be read as HTML. A ``[`` is left alone only if its first unescaped ``]`` is here and not
    followed by ``:`` (an escaped ``\\[`` shows as ``[``, so nothing visible changes).
    """
    text = "\n".join(lines)
    if not brackets:
        return text
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    closes = [m.end() - 1 for m in _UNESCAPED_CLOSE_BRACKET.finditer(text)]
    cuts = []
    for line_index, column in brackets:
        pos = offsets[line_index] + column
        i = bisect.bisect_right(closes, pos)
        if i == len(closes) or text.startswith("]:", closes[i]):
            cuts.append(pos)
    if not cuts:
        return text
    pieces, last = [], 0
    for pos in cuts:
        pieces.append(text[last:pos])
        pieces.append("\\")
        last = pos
    pieces.append(text[last:])
    return "".join(pieces)


def one_line(text: str) -> str:
    """``text`` with every line break a space, for places that must stay on one line."""
    return _LINE_BREAKS.sub(" ", text)


def code_span(text: str) -> str:
    """``text`` as one inline code span, whatever backticks it holds."""
    text = one_line(text)
    ticks = "`" * (_longest_backticks(text) + 1)
    # Markdown strips one space from each end when both have one; pad where that or a backtick
    # at an end would change what is shown.
    edge = text[:1] + text[-1:]
    pad = " " if not text or "`" in edge or (edge == "  " and text.strip(" ")) else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fenced(text: str, lang: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside ``text``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def quoted(text: str) -> str:
    """Markdown as a block quote, every line of it (so a fence inside stays inside)."""
    return "\n".join(">" + (" " + line if line else "") for line in text.split("\n"))


def quote_untrusted(label: str, text: str) -> str:
    """``label`` (ours, Markdown) then untrusted ``text``, escaped, as one block quote."""
    # Tabs out: inside a quote the columns shift, and fence indentation must mean the same.
    return quoted(safe_markdown(label + text.expandtabs(4)))


# -- fitting a display under its size limit -------------------------------------------------------
class TextBudget:
    """How many characters of untrusted text a display may still take (``None``: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.clipped = False

    @property
    def spent(self) -> bool:
        return self.left == 0

    def take(self, text: str) -> str:
        """``text``, or its head up to what is left (cut at a line break where one is near)."""
        if self.left is None or len(text) <= self.left:
            if self.left is not None:
                self.left -= len(text)
            return text
        cut = text.rfind("\n", 0, self.left)
        if cut < self.left // 2:
            cut = self.left
        self.left, self.clipped = 0, True
        return text[:cut]


def too_long_notice(size: int) -> str:
    return (
        f"> ℹ️ This answer is too long to show in full here ({size:,} characters; the limit is "
        "`%config ClarifaiMagics.max_display_chars`). The whole answer is kept in the "
        "conversation (`%clarifai history`) and in `--out`."
    )


def fit_markdown(
    build: Callable[[TextBudget, str | None], str], size: int, max_chars: int | None
) -> str:
    """Markdown from ``build`` whole if it fits in ``max_chars``, else its head and the notice.

    ``build(budget, notice)`` takes untrusted text through ``budget`` and puts ``notice`` (when
    given) after it. Escaping can lengthen text, so the budget shrinks until the result fits.
    """
    budget = TextBudget(max_chars)
    markdown = build(budget, None)
    if max_chars is None or (not budget.clipped and len(markdown) <= max_chars):
        return markdown
    notice = too_long_notice(size)
    limit = max(0, max_chars - len(notice))
    for _ in range(8):
        markdown = build(TextBudget(limit), notice)
        if len(markdown) <= max_chars or limit == 0:
            break
        limit = max(0, min(limit - 1, limit * max_chars // len(markdown) - 256))
    return markdown


def safe_markdown_within(text: str, max_chars: int | None) -> str:
    """:func:`safe_markdown` of ``text``, clipped with a notice past ``max_chars``."""

    def build(budget: TextBudget, notice: str | None) -> str:
        shown = safe_markdown(budget.take(text))
        return f"{shown}\n\n{notice}" if notice else shown

    return fit_markdown(build, len(text), max_chars)


def clip_plain(text: str, max_chars: int) -> str:
    """A ``text/plain`` copy within ``max_chars``."""
    if len(text) <= max_chars:
        return text
    note = (
        f"\n\n[… {len(text):,} characters in all: too long to show here "
        "(%config ClarifaiMagics.max_display_chars); the whole answer is kept in the conversation]"
    )
    return text[: max(0, max_chars - len(note))] + note
