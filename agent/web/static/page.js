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
  function say(text) { if (status) status.textContent = text; }
  function fragmentUrl() {
    var sep = location.search ? "&" : "?";
    return location.pathname + location.search + sep + "fragment=1";
  }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { live.innerHTML = html; })
      .catch(function (e) { say("Could not refresh (" + e + "); showing the last snapshot."); })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var source = new EventSource(root.getAttribute("data-events"), { withCredentials: true });
  source.addEventListener("open", function () { if (!done) say("Live: updates as each round is stored."); });
  source.addEventListener("round", function (e) {
    var data = JSON.parse(e.data);
    say("Round " + data.round + " stored.");
    refresh();
  });
  function changed(e) {
    var deploy = JSON.parse(e.data);
    var pending = deploy.rollback && deploy.rollback.state === "pending";
    if (root.getAttribute("data-state") !== deploy.state) {
      root.setAttribute("data-state", deploy.state);
      say("State: " + deploy.state.replace("_", " ") + ".");
    }
    refresh();
    if (finals.indexOf(deploy.state) >= 0 && !pending) {
      done = true;
      source.close();
      say("The window has ended: " + deploy.state.replace("_", " ") + ".");
    }
  }
  // `state`: the deploy's state changed; `rollback`: its rollback moved, same state
  source.addEventListener("state", changed);
  source.addEventListener("rollback", changed);
  source.addEventListener("error", function () {
    if (!done) say("Live updates interrupted; retrying…");
  });
})();
