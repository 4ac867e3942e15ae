/* The Scores view in the browser: draws the trend (uPlot, vendored) from the JSON block the server
   rendered, and keeps the panel live: an EventSource on /live/scores says "refresh", and the panel is
   fetched again from /scores/panel (the same checks as the page). No inline script, no eval. */
(function () {
  "use strict";
  var lang = document.documentElement.lang || "en";
  var chart = null;

  function numberFormat(digits, percent) {
    var style = { minimumFractionDigits: digits, maximumFractionDigits: digits };
    if (percent) style.style = "percent";
    var f = new Intl.NumberFormat(lang, style);
    return function (v) { return f.format(percent ? v / 100 : v); };
  }

  function drawTrend() {
    var holder = document.getElementById("trend-chart");
    var source = document.getElementById("trend-data");
    if (chart) {
      chart.destroy();
      chart = null;
    }
    if (!holder || !source || typeof window.uPlot === "undefined") return;
    var d = JSON.parse(source.textContent);
    holder.textContent = "";
    if (!d.x.length) return;
    var isPercent = d.metric !== "nps";
    var value = numberFormat(1, isPercent);
    var tick = numberFormat(0, isPercent);
    var when = new Intl.DateTimeFormat(lang, { day: "numeric", month: "short" });
    var whenLong = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
    var show = function (u, v) { return v == null ? "—" : value(v); };
    var opts = {
      width: Math.max(280, holder.clientWidth),
      height: 260,
      scales: { x: { time: true }, y: { range: d.range } },
      series: [
        { label: d.time_label, value: function (u, v) { return v == null ? "—" : whenLong.format(new Date(v * 1000)); } },
        { label: d.band_label + " ↓", stroke: "#7a9fd9", width: 1, points: { show: false }, value: show },
        { label: d.band_label + " ↑", stroke: "#7a9fd9", width: 1, points: { show: false }, value: show },
        { label: d.label, stroke: "#0b57d0", width: 2, value: show }
      ],
      bands: [{ series: [2, 1], fill: "rgba(11, 87, 208, 0.15)" }],
      axes: [
        { values: function (u, splits) { return splits.map(function (v) { return when.format(new Date(v * 1000)); }); } },
        { values: function (u, splits) { return splits.map(function (v) { return tick(v); }); } }
      ]
    };
    chart = new window.uPlot(opts, [d.x, d.lo, d.hi, d.y], holder);
  }

  function resize() {
    var holder = document.getElementById("trend-chart");
    if (chart && holder) chart.setSize({ width: Math.max(280, holder.clientWidth), height: 260 });
  }

  function live() {
    var status = document.getElementById("live-status");
    if (!status || !window.EventSource || !window.fetch) return;
    var broken = false;
    var source = new EventSource(status.dataset.liveUrl);

    function say(text) { status.textContent = text; }

    // The panel is fetched and put in place by hand, not by htmx: htmx drops <script> elements from
    // what it swaps in (allowScriptTags: false), and the trend's data travels in one (application/json).
    function refresh() {
      fetch(status.dataset.panelUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (answer) {
          if (answer.status === 401 && answer.headers.get("HX-Redirect")) {
            window.location.assign(answer.headers.get("HX-Redirect"));
            return null;
          }
          return answer.ok ? answer.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          document.getElementById("score-panel").innerHTML = html; // parsed, never run
          drawTrend();
          say(status.dataset.textUpdated.replace("{time}", new Date().toLocaleTimeString(lang)));
        })
        .catch(function () { say(status.dataset.textLost); });
    }

    source.addEventListener("open", function () {
      say(status.dataset.textLive);
      if (broken) {
        broken = false;
        refresh(); // changes may have happened while the stream was down
      }
    });
    source.addEventListener("scores", refresh);
    source.addEventListener("end", function () {
      source.close();
      say(status.dataset.textEnded);
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say(status.dataset.textEnded);
      } else {
        broken = true;
        say(status.dataset.textLost);
      }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function start() {
    drawTrend();
    live();
    window.addEventListener("resize", resize);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
