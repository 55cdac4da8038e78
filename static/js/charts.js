// Draws every [data-chart] element from the figure specs the page embeds as JSON.
(function () {
  "use strict";
  function draw() {
    const source = document.getElementById("chart-specs");
    if (!source || !window.Plotly) return;
    const specs = JSON.parse(source.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      const spec = specs[el.dataset.chart];
      if (!spec) return;
      window.Plotly.newPlot(el, spec.data, spec.layout, { responsive: true, displaylogo: false })
        .then(function () { el.dataset.rendered = "true"; });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
