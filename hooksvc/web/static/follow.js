// Follows a running deployment's log on its page: long-polls log.json from the page's cursor,
// appends new lines as text (never as HTML), and updates the state fields until the end.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.dataset.final === "true") { return; }
  var url = log.dataset.url;
  var cursor = log.dataset.cursor;
  var status = document.getElementById("follow-status");
  var RETRY_MS = 3000;
  var retryMs = RETRY_MS;

  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }
  function setText(id, text) { var el = document.getElementById(id); if (el) { el.textContent = text || "\u2014"; } }
  function utc(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, " UTC") : ""; }

  function show(data) {
    if (data.lines.length) {
      var follow = atBottom(log) && atBottom(document.scrollingElement || document.documentElement);
      log.appendChild(document.createTextNode(data.lines.join("\n") + "\n"));
      if (follow) { log.scrollTop = log.scrollHeight; window.scrollTo(0, document.body.scrollHeight); }
    }
    var badge = document.getElementById("state");
    badge.textContent = data.state;
    badge.className = "badge state-" + data.state;
    var d = data.deployment;
    setText("started-at", utc(d.started_at));
    setText("finished-at", utc(d.finished_at));
    setText("previous-sha", d.previous_sha);
    setText("duration", data.duration);
    setText("error", d.error);
    document.title = "#" + d.id + " " + d.app + " " + data.state + " \u2014 hooksvc";
    // The cancel button goes once the deployment ended, or once someone asked (their name replaces it).
    var cancel = document.getElementById("cancel-form");
    if (cancel && (data.final || d.cancel_requested_by)) {
      if (!data.final) {
        var asked = document.createElement("span");
        asked.className = "muted";
        asked.id = "cancel-requested";
        asked.textContent = "cancel requested by " + d.cancel_requested_by;
        cancel.parentNode.insertBefore(asked, cancel);
      }
      cancel.remove();
    }
    if (data.final) { var note = document.getElementById("cancel-requested"); if (note) { note.remove(); } }
  }

  function poll() {
    var query = "?wait=1&after=" + encodeURIComponent(cursor);
    fetch(url + query, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); throw new Error("logged out"); }
        if (resp.status === 429 || resp.status === 503) {
          // The server follows only so many logs at once: wait as long as it asks, then go on.
          var seconds = parseInt(resp.headers.get("Retry-After"), 10);
          retryMs = seconds > 0 ? seconds * 1000 : RETRY_MS;
        }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (data) {
        cursor = data.cursor;
        show(data);
        if (data.final) {
          log.dataset.final = "true";
          status.textContent = "finished";
          return;
        }
        status.textContent = "following\u2026";
        poll();
      })
      .catch(function (err) {
        if (String(err.message) === "logged out") { return; }
        status.textContent = "reconnecting\u2026";
        setTimeout(poll, retryMs);
        retryMs = RETRY_MS;
      });
  }
  poll();
})();
