"""An e-mail's plain-text part keeps inline code inline.

apprise writes an e-mail's text part from its HTML (`apprise.conversion.html_to_text`),
and its converter takes `<code>` for a block, as `<pre>` is: every code span of an
alert (a rule's name, the deploy id, the commit) got a line of its own, and a rule's
line read "-" / "probe-errors" / "(checks, error_rate): observed …" to on-call in a
text-only mail client. apprise's own HTML-to-Markdown converter keeps `code` inline;
`inline_code_in_text` has the text conversion do the same. A code block is in a `<pre>`,
which stays a block.
"""

from __future__ import annotations

from typing import Any


def inline_code_in_text() -> None:
    """Have apprise's HTML-to-text conversion keep `<code>` inline (idempotent; nothing
    done if apprise's converter is not the one this was written against)."""
    from apprise.common import NotifyFormat
    from apprise.conversion import format as conversion
    from apprise.conversion.html import HTMLConverter

    key = (NotifyFormat.HTML, NotifyFormat.TEXT)
    if conversion.CONVERTERS.get(key) is not conversion.html_to_text:
        return  # already ours, or apprise changed: its own conversion stays
    if "code" not in HTMLConverter.BLOCK_TAGS:
        return

    blocks = tuple(tag for tag in HTMLConverter.BLOCK_TAGS if tag != "code")
    inline_code: Any = type("InlineCodeConverter", (HTMLConverter,), {"BLOCK_TAGS": blocks})

    def html_to_text(content: str) -> str:
        parser = inline_code()
        parser.feed(content)
        parser.close()
        return str(parser.converted)

    conversion.CONVERTERS[key] = html_to_text
