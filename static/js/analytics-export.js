// Starts a background export, polls its progress and shows the download link when done.
(function () {
  "use strict";
  const button = document.getElementById("export-start");
  const box = document.getElementById("export-progress");
  if (!button || !box) return;
  const bar = box.querySelector("progress");
  const pct = box.querySelector(".pct");
  const link = box.querySelector(".download");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;

  function poll(url) {
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (job) {
      bar.value = job.progress_pct;
      pct.textContent = job.progress_pct + " %";
      if (job.state === "done") {
        link.href = job.download_url;
        link.hidden = false;
      } else if (job.state === "failed") {
        pct.textContent = "failed: " + job.error;
      } else {
        setTimeout(function () { poll(url); }, 1000);
      }
    });
  }

  button.addEventListener("click", function () {
    const body = new URLSearchParams(button.dataset.query);
    body.set("kind", "raw");
    box.hidden = false;
    button.disabled = true;
    fetch(button.dataset.url, {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRFToken": csrf },
    }).then(function (r) { return r.json(); }).then(function (job) { poll(job.status_url); });
  });
})();
