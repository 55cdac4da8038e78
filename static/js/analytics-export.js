// Starts a background export, polls its progress and shows the download link when done, or the
// error in place of the progress bar when it fails.
(function () {
  "use strict";
  const button = document.getElementById("export-start");
  const box = document.getElementById("export-progress");
  if (!button || !box) return;
  const bar = box.querySelector("progress");
  const pct = box.querySelector(".pct");
  const link = box.querySelector(".download");
  const error = box.querySelector(".error");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;

  function failed(message) {
    bar.hidden = true;
    pct.hidden = true;
    error.textContent = "Export failed: " + message;
    error.hidden = false;
    button.disabled = false;
  }

  // The JSON body of a response, or an error naming its status when it has none.
  function json(response) {
    return response.json().catch(function () {
      throw new Error("the server answered " + response.status + " " + response.statusText);
    }).then(function (body) {
      if (!response.ok) throw new Error(body.error || "the server answered " + response.status);
      return body;
    });
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin" }).then(json).then(function (job) {
      bar.value = job.progress_pct;
      pct.textContent = job.progress_pct + " %";
      if (job.state === "done") {
        link.href = job.download_url;
        link.hidden = false;
      } else if (job.state === "failed") {
        failed(job.error || "unknown error");
      } else {
        setTimeout(function () { poll(url); }, 1000);
      }
    }).catch(function (e) { failed(e.message); });
  }

  button.addEventListener("click", function () {
    const body = new URLSearchParams(button.dataset.query);
    body.set("kind", "raw");
    box.hidden = false;
    bar.hidden = false;
    bar.value = 0;
    pct.hidden = false;
    pct.textContent = "0 %";
    link.hidden = true;
    error.hidden = true;
    button.disabled = true;
    fetch(button.dataset.url, {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRFToken": csrf },
    }).then(json).then(function (job) { poll(job.status_url); })
      .catch(function (e) { failed(e.message); });
  });
})();
