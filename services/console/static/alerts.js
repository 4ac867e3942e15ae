/* The Alerts inbox in the browser: keyboard moves (j / ArrowDown next, k / ArrowUp previous, Home, End;
   Enter opens the focused alert, as any link) and a short poll that brings new alerts without a reload.
   The rows come from /alerts/rows (the same checks and the same page: its cursor is in the address);
   focus stays on the alert, or the page link, it was on.
   No inline script, no eval. */
(function () {
  "use strict";

  function links() { return Array.prototype.slice.call(document.querySelectorAll("#inbox a.alert-open")); }

  function idOf(el) {
    var row = el && el.closest ? el.closest("tr[data-alert-id]") : null;
    return row ? row.getAttribute("data-alert-id") : null;
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    var all = links();
    if (!all.length) return;
    var at = all.indexOf(document.activeElement);
    var next = null;
    if (event.key === "j" || event.key === "ArrowDown") next = at < 0 ? 0 : Math.min(at + 1, all.length - 1);
    else if (event.key === "k" || event.key === "ArrowUp") next = at < 0 ? 0 : Math.max(at - 1, 0);
    else if ((event.key === "Home" || event.key === "End") && at >= 0) next = event.key === "Home" ? 0 : all.length - 1;
    if (next === null) return;
    if ((event.key === "ArrowDown" || event.key === "ArrowUp") && at < 0 && !document.getElementById("inbox").contains(document.activeElement)) return;
    event.preventDefault();
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  });

  function poll() {
    var status = document.getElementById("inbox-live");
    var holder = document.getElementById("inbox");
    if (!status || !holder || !window.fetch) return;
    var seen = {};
    links().forEach(function (a) { seen[idOf(a)] = true; });
    var every = Math.max(1, parseFloat(status.dataset.pollS || "15")) * 1000;

    function refresh() {
      fetch(status.dataset.rowsUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (answer) {
          if (answer.status === 401 && answer.headers.get("HX-Redirect")) {
            window.location.assign(answer.headers.get("HX-Redirect"));
            return null;
          }
          if (!answer.ok) { status.textContent = status.dataset.textLost; return null; }
          return answer.text();
        })
        .then(function (html) {
          if (html === null || html === undefined) return;
          var focused = holder.contains(document.activeElement) ? idOf(document.activeElement) : null;
          var pager = holder.contains(document.activeElement) && document.activeElement.dataset
            ? document.activeElement.dataset.pager : null;
          holder.innerHTML = html; // parsed, never run (no script in it)
          if (pager) {
            var link = holder.querySelector('a[data-pager="' + pager + '"]');
            if (link) link.focus();
          }
          var fresh = 0;
          links().forEach(function (a) {
            var id = idOf(a);
            if (!seen[id]) {
              fresh += 1;
              seen[id] = true;
              var row = a.closest("tr");
              row.classList.add("is-new");
              var mark = document.createElement("span");
              mark.className = "new-mark";
              mark.textContent = " " + status.dataset.textNewRow;
              a.parentNode.insertBefore(mark, a.nextSibling);
            }
            if (focused && id === focused) a.focus();
          });
          if (fresh) status.textContent = status.dataset.textNew.replace("{count}", String(fresh));
        })
        .catch(function () { status.textContent = status.dataset.textLost; })
        .then(function () { window.setTimeout(refresh, every); });
    }
    window.setTimeout(refresh, every);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
