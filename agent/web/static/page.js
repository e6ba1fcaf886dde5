// Postflight deploy page: live updates over Server-Sent Events. Without JavaScript the
// page is a complete snapshot; with it, each `round` or `state` event re-renders the
// live part in place from the server (one renderer for both), with no reload.
(function () {
  "use strict";
  var root = document.getElementById("deploy");
  if (!root || !window.EventSource) return;
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  var finals = ["passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded"];
  var busy = false, again = false, done = false;
  var shown = "", pause = null, refetch = 1000, settle = 1000, settling = 0;
  function put(text) { if (status) status.textContent = text; }
  function say(text) { shown = text; put(text); }
  function fragmentUrl() {
    var sep = location.search ? "&" : "?";
    return location.pathname + location.search + sep + "fragment=1";
  }
  // A fetch of the live part the agent answered 503 (its store busy, or not answering;
  // `Postflight-Store` says which) or could not reach is fetched again, after its
  // Retry-After, doubling to 30 s: the last event's news (a window ended) is shown once
  // it goes through, where one refusal left the last snapshot until a reload.
  function failed(e) {
    if (e.status !== 503 && e.status !== undefined) {
      put("Could not refresh (HTTP " + e.status + "); showing the last snapshot.");
      return;
    }
    var wait = Math.max((e.after || 1) * 1000, refetch);
    refetch = Math.min(refetch * 2, 30000);
    var why = e.status === undefined ? "the agent does not answer"
      : e.store === "busy" ? "Postflight's store is busy (the database answers, but refused this read for now)"
      : "Postflight's store does not answer";
    put("Could not refresh: " + why + "; retrying in " + Math.round(wait / 1000) + " s, showing the last snapshot.");
    pause = setTimeout(function () { pause = null; refresh(); }, wait);
  }
  function refresh() {
    if (pause !== null) { clearTimeout(pause); pause = null; }  // news: fetch it now
    if (busy) { again = true; return; }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.ok) return r.text();
        var after = parseInt(r.headers.get("Retry-After"), 10);
        return Promise.reject({ status: r.status, store: r.headers.get("Postflight-Store"), after: after });
      })
      .then(function (html) { live.innerHTML = html; refetch = 1000; put(shown); unsettled(); },
            function (e) { failed(e instanceof Error ? {} : e); })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  // The stream ends with the window (and its rollback), but the alert that ending sends
  // (ROLLBACK FAILED, rollback delivered) may still be going out: the last fetch showed it
  // `sending` until a reload, so on-call read that the page never went out. Once ended,
  // the live part is fetched again while an alert is still being sent, waiting 1 s,
  // doubling to 30 s, for 5 minutes at most (the last wait cut to what is left of them).
  function unsettled() {
    if (!done || pause !== null || settling >= 300000) return;
    if (!live.querySelector('.alerts li[data-result="claimed"]')) return;
    var wait = Math.min(settle, 300000 - settling);
    settle = Math.min(settle * 2, 30000);
    settling += wait;
    pause = setTimeout(function () { pause = null; refresh(); }, wait);
  }
  var url = root.getAttribute("data-events");
  var source = null, wait = 1000;
  function changed(e) {
    var deploy = JSON.parse(e.data);
    var pending = deploy.rollback && deploy.rollback.state === "pending";
    // a window not started yet is `watching` flagged `scheduled`: the page says scheduled
    var shown = deploy.scheduled ? "scheduled" : deploy.state;
    if (root.getAttribute("data-state") !== shown) {
      root.setAttribute("data-state", shown);
      // the tab's title too: among other tabs it is what says the window ended
      document.title = root.getAttribute("data-title") + ": " + shown.replace("_", " ") + " · Postflight";
      say("State: " + shown.replace("_", " ") + ".");
    }
    refresh();
    if (finals.indexOf(deploy.state) >= 0 && !pending) {
      done = true;
      source.close();
      say("The window has ended: " + deploy.state.replace("_", " ") + ".");
    } else if (pending) {
      say(following());
    }
  }
  // What the open stream follows: a window that ended (failed) with its rollback still
  // being delivered gets no more rounds, where the page said it updates as each is stored.
  function following() {
    var state = root.getAttribute("data-state");
    if (finals.indexOf(state) < 0) return "Live: updates as each round is stored.";
    return "Live: the window has ended (" + state.replace("_", " ") + "); following its rollback until it is delivered or given up.";
  }
  // The browser reconnects by itself after a dropped connection (with the last event's
  // id, so nothing is missed), but not after an answer other than 200: a HEAD of the
  // stream then says why, and only an agent not ready yet (503, or no answer) is retried.
  function refused() {
    fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) {
          done = true;
          say("Live updates stopped: the link has expired or the session ended. Reload to sign in.");
        } else if (r.status === 404) {
          done = true;
          say("Live updates stopped: this deploy is no longer stored.");
        } else if (r.status === 204) {
          done = true;
          say("The window has ended.");
          refresh();
        } else {
          retry(r.headers.get("Postflight-Store"));
        }
      }, retry);
  }
  function retry(store) {
    say(store === "busy" ? "Live updates interrupted: Postflight's store is busy (the database answers, but refused this read for now); retrying…"
      : store === "unavailable" ? "Live updates interrupted: Postflight's store does not answer; retrying…"
      : "Live updates interrupted; retrying…");
    setTimeout(connect, wait);
    wait = Math.min(wait * 2, 30000);
  }
  function connect() {
    source = new EventSource(url, { withCredentials: true });
    source.addEventListener("open", function () {
      wait = 1000;
      if (!done) say(following());
    });
    source.addEventListener("round", function (e) {
      var data = JSON.parse(e.data);
      say("Round " + data.round + " stored.");
      refresh();
    });
    // `state`: the deploy's state changed; `rollback`: its rollback moved, same state;
    // `started`: a scheduled window started (still `watching`)
    source.addEventListener("state", changed);
    source.addEventListener("rollback", changed);
    source.addEventListener("started", changed);
    source.addEventListener("error", function () {
      if (done) return;
      if (source.readyState === EventSource.CLOSED) refused();
      else say("Live updates interrupted; retrying…");
    });
  }
  connect();
})();
