"""Text the agent did not write (a version, a reason, a provider's or a webhook's answer)
reaches each channel as text, whatever apprise makes of it there: chat renders markdown
(Mattermost and Rocket.Chat, whose apprise plugins put the title at the top of the
markdown body), e-mail is HTML, a json:// sink is read by a machine. Real targets: an
aiosmtpd server, and local HTTP sinks taking apprise's json://, mmost:// and rocket://
posts."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from apprise.conversion import markdown_to_html

from agent.metrics import Metrics
from tests.alerting.test_notifier import alert, notifier
from tests.receivers import JsonSink, SmtpSink, text_of

CHAT_PATHS = ("/hooks/tok123", "/hooks/aaa/bbb")


def chat_urls(sink: JsonSink) -> list[tuple[str, list[str]]]:
    """A Mattermost and a Rocket.Chat channel, both posting to `sink`."""
    return [
        (f"mmost://127.0.0.1:{sink.port}/tok123", []),
        (f"rocket://aaa/bbb@127.0.0.1:{sink.port}/%23alerts", []),
    ]


def chat_posts(sink: JsonSink) -> dict[str, str]:
    """Each chat post's markdown text, by the path it was posted to."""
    return {n.path: str(n.payload["text"]) for n in sink.notifications}


def shown(markdown: str) -> tuple[str, str]:
    """(HTML, visible text) of a chat's markdown as a renderer makes it."""
    rendered = markdown_to_html(markdown)
    return rendered, html.unescape(re.sub(r"<[^>]+>", "", rendered))


MENTION = re.compile(r"(?<![\w@])@(channel|here|all|everyone)\b", re.IGNORECASE)
"""What Mattermost, Rocket.Chat, Slack (as text), Discord and Teams take for paging a
whole channel."""


async def test_a_versions_markup_is_text_in_a_chat_title_and_as_written_in_json_and_mail(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """Seen: the body escaped the version, but the title, which Mattermost and Rocket.Chat
    show as the first line of the markdown post, did not: `[notes](http://…)` was a link
    with words of the sender's choosing, `*hot*` italic, `\\` gone."""
    chat = JsonSink()
    await chat.start()
    try:
        version = r"v2 [notes](http://evil.example/x) *hot* <b>x</b> C:\dir"
        notify = notifier([(json_sink.url(), []), (smtp_sink.url(), []), *chat_urls(chat)], metrics)

        outcome = await notify.send(alert(version=version), [])

        assert outcome.result == "sent", outcome.describe()
        title = f"[postflight] production {version}: rollback requested (probe-errors)"
        [note] = json_sink.notifications
        assert note.title == title  # a machine reads it: as registered
        [mail] = smtp_sink.messages
        assert mail["Subject"] == title  # a header: text already
        posts = chat_posts(chat)
        assert set(posts) == set(CHAT_PATHS)
        for path, text in posts.items():
            first = text.splitlines()[0].removeprefix("# ")
            rendered, visible = shown(first)
            assert "<a " not in rendered and "<em>" not in rendered, (path, rendered)
            assert "<b>" not in rendered, (path, rendered)
            assert visible == title, (path, first)
    finally:
        await chat.stop()


async def test_a_character_reference_in_a_version_reads_as_registered_in_mail_and_chat(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """A version or a reason holding `&amp;` (a character reference, as a pipeline that
    HTML-escaped it once sends) read `&` in the e-mail's text and HTML and in chat:
    markdown decodes references outside code spans. It is text: shown as registered, its
    `&` escaped once for HTML, never unescaped; a bare `&` (`R&D`) stays as it is."""
    chat = JsonSink()
    await chat.start()
    try:
        version = "v2 &amp; R&D &#38; &lt;b&gt;"
        reason: Any = "answer: Tom &amp; Jerry"
        notify = notifier([(json_sink.url(), []), (smtp_sink.url(), []), *chat_urls(chat)], metrics)

        outcome = await notify.send(alert(version=version, reason=reason), [])

        assert outcome.result == "sent", outcome.describe()
        title = f"[postflight] production {version}: rollback requested (probe-errors)"
        [note] = json_sink.notifications
        assert note.title == title
        [mail] = smtp_sink.messages
        assert mail["Subject"] == title
        text = text_of(mail)
        assert f"→ {version}" in text, text
        assert reason in text, text
        mail_html = mail.get_body(preferencelist=("html",))
        assert mail_html is not None
        page = str(mail_html.get_content())
        assert f"→ {html.escape(version, quote=False)}" in page, page
        assert html.escape(reason, quote=False) in page, page
        for path, post in chat_posts(chat).items():
            _, visible = shown(post)
            assert f"production {version}: rollback" in visible, (path, visible)
            assert f"→ {version}" in visible, (path, visible)
            assert reason in visible, (path, visible)
    finally:
        await chat.stop()


async def test_a_mention_in_text_from_elsewhere_pages_no_channel_and_reads_as_written(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """A version `@channel` (or a webhook's refusal naming `@here`) paged everyone in a
    Mattermost or Rocket.Chat channel, from the title and the body: each is broken with a
    zero-width space there, invisible; the json:// title keeps it as registered."""
    chat = JsonSink()
    await chat.start()
    try:
        notify = notifier([(json_sink.url(), []), (smtp_sink.url(), []), *chat_urls(chat)], metrics)
        refusal: Any = "webhook answered 403: ask @here or @ALL, cc @everyone"

        outcome = await notify.send(
            alert(
                event="rollback_failed",
                version="@channel",
                previous_version="@all",
                commit="@here",
                reason=refusal,
                rules=[{"name": "probe-errors", "detail": "answer: @channel"}],
            ),
            [],
        )

        assert outcome.result == "sent", outcome.describe()
        [note] = json_sink.notifications
        assert note.title == "[postflight] production @channel: ROLLBACK FAILED, act now"
        posts = chat_posts(chat)
        assert set(posts) == set(CHAT_PATHS)
        for path, text in posts.items():
            assert not MENTION.search(text), (path, MENTION.findall(text), text)
            _, visible = shown(text)
            visible = visible.replace("\u200b", "")
            assert "production @channel: ROLLBACK FAILED" in visible, (path, visible)
            assert refusal in visible and "@all → @channel" in visible, (path, visible)
            assert "commit @here" in visible, (path, visible)
        [mail] = smtp_sink.messages
        assert "@all → @channel" in text_of(mail).replace("\u200b", "")
    finally:
        await chat.stop()


async def test_discords_message_content_takes_the_title_as_text_and_its_embed_as_written(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apprise's Discord plugin posts `title\\r\\nbody` as its message's markdown content
    (its title length is not 0): the version's `[notes](http://…)` was a masked link there
    and `@everyone` pinged the server. With `format=markdown` it sends an embed, whose title
    is text and stays as written. The real plugin, its webhook address moved to a local
    sink (apprise keeps it in the class's `notify_url`)."""
    from apprise.plugins.discord import NotifyDiscord

    sink = JsonSink()
    await sink.start()
    monkeypatch.setattr(NotifyDiscord, "notify_url", f"http://127.0.0.1:{sink.port}/api/webhooks")
    try:
        hook = "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
        notify = notifier([(hook, []), (f"{hook}?format=markdown", [])], metrics)
        version = "v2 [notes](http://evil.example/x) @everyone"

        outcome = await notify.send(alert(version=version), [])

        assert outcome.result == "sent", outcome.describe()
        title = f"[postflight] production {version}: rollback requested (probe-errors)"
        notes = [n.payload for n in sink.notifications]
        [content] = [str(note["content"]) for note in notes if "content" in note]
        first = content.splitlines()[0]
        rendered, visible = shown(first)
        assert "<a " not in rendered and not MENTION.search(content), content
        assert visible.replace("\u200b", "") == title, first
        [embed] = [note["embeds"][0] for note in notes if "embeds" in note]
        assert embed["title"] == title
    finally:
        await sink.stop()


async def test_text_that_opens_no_markup_reaches_json_and_mail_without_backslashes(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """Seen by a new user at a json:// sink: "latency_p95 \\<= 42ms" and
    "api_tokens\\[0\\]". apprise hands a json:// sink the markdown body as it is (its
    formats pass through: no renderer drops the escapes), so only what would open markup
    (`<b`, `](`) is escaped: `<=` and `[0]` open none and read as written there, in the
    e-mail's text and HTML, and in chat."""
    chat = JsonSink()
    await chat.start()
    try:
        reason: Any = "smoke: latency_p95 <= 42ms failed; api_tokens[0] expired"
        detail = "p95 < 50ms wanted; see [runbook](http://evil.example/x) <b>now</b>"
        notify = notifier([(json_sink.url(), []), (smtp_sink.url(), []), *chat_urls(chat)], metrics)

        outcome = await notify.send(alert(reason=reason, detail=detail), [])

        assert outcome.result == "sent", outcome.describe()
        [note] = json_sink.notifications
        assert reason in note.message, note.message
        assert "p95 < 50ms wanted" in note.message, note.message
        [mail] = smtp_sink.messages
        text = text_of(mail)
        assert reason in text and detail in " ".join(text.split()), text
        for path, post in chat_posts(chat).items():
            rendered, visible = shown(post)
            assert reason in visible and detail in visible, (path, visible)
            assert "<a " not in rendered and "<b>" not in rendered, (path, rendered)
    finally:
        await chat.stop()
