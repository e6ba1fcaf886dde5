"""Contract §4 as a deploy's sender could bend it: the version a pipeline registers and the
words a rollback webhook refuses with reach the ROLLBACK FAILED alert as text, in chat
(Mattermost, markdown, its title the post's first line), in e-mail and in a json:// sink
(the title as registered): no link, mention or terminal escape of theirs."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import AgentFactory, RefusingReceiver, failing_production
from tests.receivers import JsonSink, SmtpSink, alert_titled, text_of

pytestmark = pytest.mark.e2e

VERSION = "v2 [release notes](http://evil.example/notes) @here"
REFUSAL = "\x1b[2J\x1b]0;pwned\x07denied \u202eevil: ask @channel, [retry](http://evil.example/r)"
MENTION = re.compile(r"(?<![\w@])@(channel|here|all|everyone)\b", re.IGNORECASE)
LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")


@pytest.mark.timeout(60)
async def test_a_senders_version_and_a_webhooks_refusal_reach_every_channel_as_text(
    start_agent: AgentFactory, json_sink: JsonSink, smtp_sink: SmtpSink
) -> None:
    chat = JsonSink()
    receiver = RefusingReceiver(403, lambda _: REFUSAL)
    await chat.start()
    await receiver.start()
    try:
        agent = await start_agent(
            failing_production(f"{receiver.url}/hook"),
            "alerting:\n  channels:\n"
            f"    - url: {json_sink.url()}\n"
            f"    - url: {smtp_sink.url()}\n"
            f"    - url: mmost://127.0.0.1:{chat.port}/tok123\n",
        )
        deploy = await agent.register("production", VERSION)
        final = await agent.settled(deploy["id"])
        note = await alert_titled(json_sink, "ROLLBACK FAILED")
        await smtp_sink.wait_for(len(json_sink.notifications))
        await chat.wait_for(len(json_sink.notifications))
    finally:
        await receiver.stop()
        await chat.stop()

    assert final["rollback"]["state"] == "failed", final
    assert note.title == f"[postflight] production {VERSION}: ROLLBACK FAILED, act now"
    posts = [str(n.payload["text"]) for n in chat.notifications]
    [post] = [text for text in posts if "ROLLBACK FAILED" in text]
    [mail] = [m for m in smtp_sink.messages if "ROLLBACK FAILED" in str(m["Subject"])]
    assert mail["Subject"] == note.title
    for where, text in (("json", note.message), ("chat", post), ("mail", text_of(mail))):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, (where, text)
        assert "denied" in text and "evil" in text, (where, text)  # still quoted
    assert not MENTION.search(post), post
    assert not LINK.search(post), post
    assert "release notes" in post.splitlines()[0], post
