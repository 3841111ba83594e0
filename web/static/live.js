// Follows the log of each running job with server-sent events; a stream's
// "end" event (the job finished) fills in the job's row and closes it.
"use strict";
(function () {
  var open = 0;
  function set(id, text) { var e = document.getElementById(id); if (e) { e.textContent = text; } return e; }
  // settle polls the run's record until the run is over, then shows its
  // status; when a job the page does not show starts, it reloads.
  function settle(tries) {
    var badge = document.getElementById("run-status");
    if (!badge || tries > 120) { return; }
    fetch("/api/runs/" + encodeURIComponent(badge.dataset.run)).then(function (r) { return r.json(); }).then(function (rec) {
      // A job the page does not show has started: show it (and its log).
      if ((rec.jobs || []).length > document.querySelectorAll("section.job").length) { location.reload(); return; }
      if (rec.status === "running" || !rec.status) { setTimeout(function () { settle(tries + 1); }, 1000); return; }
      badge.textContent = rec.status;
      badge.className = "badge st-" + rec.status;
      set("live-all", "The run finished: " + rec.status + ". Reload for its final record.");
    }).catch(function () { setTimeout(function () { settle(tries + 1); }, 1000); });
  }
  document.querySelectorAll("pre[data-stream]").forEach(function (pre) {
    var i = pre.dataset.index;
    var es = new EventSource(pre.dataset.stream + "?offset=" + encodeURIComponent(pre.dataset.offset));
    open++;
    es.onopen = function () { set("live-" + i, "following the log live…"); };
    // Whole lines are shown as they come; a line a program wrote to
    // stderr ("[…:stderr] …") is marked as on the server-rendered page.
    var partial = "";
    function show(text) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      var lines = (partial + text).split("\n");
      partial = lines.pop();
      lines.forEach(function (line) {
        var node = document.createTextNode(line + "\n");
        if (/^\[[^\]]{0,62}:stderr\]/.test(line)) {
          var span = document.createElement("span");
          span.className = "stderr";
          span.appendChild(node);
          node = span;
        }
        pre.appendChild(node);
      });
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    }
    pre.scrollTop = pre.scrollHeight; // opened mid-run: follow the tail
    es.onmessage = function (ev) { show(JSON.parse(ev.data).text); };
    es.addEventListener("end", function (ev) {
      es.close();
      if (partial) { pre.appendChild(document.createTextNode(partial)); partial = ""; }
      var d = JSON.parse(ev.data), exit = d.exit_code === null ? "" : String(d.exit_code);
      set("live-" + i, "finished: " + d.status + (exit ? " (exit " + exit + ")" : "") + (d.message ? ": " + d.message : ""));
      pre.dataset.ended = d.status;
      ["badge-", "sbadge-"].forEach(function (p) { // the job's row and its log's heading
        var badge = set(p + i, d.status);
        if (badge) { badge.className = "badge st-" + d.status; }
      });
      set("exit-" + i, exit);
      set("message-" + i, d.message || "");
      if (d.duration) { set("duration-" + i, d.duration); set("sduration-" + i, d.duration); }
      if (--open === 0) { set("live-all", "Every job shown has finished; waiting for the run's record…"); settle(0); }
    });
    es.onerror = function () { if (es.readyState !== EventSource.CLOSED) { set("live-" + i, "connection lost; reconnecting…"); } };
  });
})();
