// Draws each <div data-chart="kind" data-source="id"> with uPlot (vendored, pinned) from the
// JSON the page holds in <script id="id">: requests and errors per hour with rollout markers,
// latency percentiles, tokens, and the latency histogram. htmx swaps draw theirs too.
(function () {
  "use strict";

  function markersPlugin(markers) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#c62828";
          ctx.lineWidth = 2 * devicePixelRatio;
          markers.forEach(function (marker) {
            var x = u.valToPos(marker.time, "x", true);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          ctx.restore();
        },
      },
    };
  }

  function timeChart(data, series, values, width) {
    return [
      {
        width: width,
        height: 180,
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), data.timezone); },
        series: [{}].concat(series),
        axes: [{}, { size: 60 }],
        plugins: [markersPlugin(data.markers)],
      },
      [data.hours.time].concat(values),
    ];
  }

  var kinds = {
    requests: function (data, width) {
      return timeChart(data, [
        { label: "requests", stroke: "#2f5fd0", fill: "rgba(47,95,208,0.15)" },
        { label: "errors", stroke: "#c62828" },
      ], [data.hours.requests, data.hours.errors], width);
    },
    latency: function (data, width) {
      return timeChart(data, [
        { label: "p50 ms", stroke: "#1f9d55", spanGaps: false },
        { label: "p95 ms", stroke: "#d97706", spanGaps: false },
      ], [data.hours.p50, data.hours.p95], width);
    },
    tokens: function (data, width) {
      return timeChart(data, [
        { label: "tokens", stroke: "#7c3aed", fill: "rgba(124,58,237,0.12)" },
      ], [data.hours.tokens], width);
    },
    histogram: function (data, width) {
      return [
        {
          width: width,
          height: 180,
          scales: { x: { time: false, distr: 3 } },
          series: [
            { label: "up to ms" },
            { label: "requests", stroke: "#2f5fd0", fill: "rgba(47,95,208,0.35)",
              paths: uPlot.paths.bars({ size: [0.9, 40] }) },
          ],
          axes: [{ label: "latency (ms, log scale)" }, { size: 60 }],
        },
        [data.histogram.ms, data.histogram.requests],
      ];
    },
  };

  function draw(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("[data-chart]:not([data-drawn])").forEach(function (element) {
      var data = JSON.parse(document.getElementById(element.dataset.source).textContent);
      var made = kinds[element.dataset.chart](data, Math.max(element.clientWidth, 320));
      element.dataset.drawn = "true";
      new uPlot(made[0], made[1], element);
    });
  }

  // htmx keeps a snapshot of the page for the back button and puts it back as HTML: a drawn
  // chart's inline styles would then be refused by the Content-Security-Policy. Snapshots
  // keep the data, not the drawing, and charts are drawn again when one is restored.
  function undraw() {
    document.querySelectorAll("[data-chart][data-drawn]").forEach(function (element) {
      element.replaceChildren();
      delete element.dataset.drawn;
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
  document.addEventListener("htmx:beforeHistorySave", undraw);
  document.addEventListener("htmx:historyRestore", function () { draw(document); });
})();
