// Opens a run page where it matters: every unfolded log at its last lines,
// and the window on the run's first failed job.
"use strict";
(function () {
  document.querySelectorAll("pre.log[data-tail]").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
  var focus = document.querySelector("pre.log[data-focus]");
  if (focus && !location.hash) {
    var section = focus.closest("section.job");
    if (section) { section.scrollIntoView({block: "start"}); }
  }
})();
