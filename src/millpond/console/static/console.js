// millpond console: the few behaviours htmx does not cover. No inline script anywhere:
// the Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="element-id"> copies that element's text.
  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent;
    var done = function () { button.textContent = "Copied"; button.setAttribute("data-copied", text); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, done);
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } catch (err) { /* shown as copied anyway */ }
      area.remove(); done();
    }
  });

  // Buttons that need a second thought: <button data-confirm="question">.
  document.addEventListener("click", function (e) {
    var button = e.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) e.preventDefault();
  });

  // The Debugger's live tail: server-rendered (escaped) entries over server-sent events.
  var MAX_ENTRIES = 300;
  function debuggerTail(feed) {
    var base = feed.getAttribute("data-stream");
    var status = document.getElementById("dbg-status");
    var pause = document.getElementById("dbg-pause");
    var resume = document.getElementById("dbg-resume");
    var position = null, source = null, skipped = 0;
    function url() {
      if (!position) return base;
      return base.replace(/after=\d+/, "after=" + position.seq)
                 .replace(/rejections_after=\d+/, "rejections_after=" + position.rejections_after);
    }
    function open() {
      source = new EventSource(url());
      source.addEventListener("open", function () { status.textContent = "live"; });
      source.addEventListener("events", function (m) {
        feed.insertAdjacentHTML("afterbegin", m.data);
        while (feed.children.length > MAX_ENTRIES) feed.lastElementChild.remove();
      });
      source.addEventListener("position", function (m) {
        position = JSON.parse(m.data);
        if (position.skipped) {
          skipped += position.skipped;
          status.textContent = "live; skipped " + skipped.toLocaleString() +
            " events to keep up with the tail";
        }
      });
      source.addEventListener("error", function () { status.textContent = "reconnecting…"; });
    }
    pause.addEventListener("click", function () {
      if (source) source.close();
      source = null;
      status.textContent = "paused";
      pause.disabled = true; resume.disabled = false; resume.focus();
    });
    resume.addEventListener("click", function () {
      open();
      pause.disabled = false; resume.disabled = true; pause.focus();
    });
    open();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var feed = document.getElementById("dbg-feed");
    if (feed) debuggerTail(feed);
  });
})();
