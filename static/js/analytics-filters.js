// Picking a preset clears custom dates; typing a date switches the preset to "custom".
(function () {
  "use strict";
  const preset = document.getElementById("f-preset");
  const start = document.getElementById("f-start");
  const end = document.getElementById("f-end");
  if (!preset || !start || !end) return;
  preset.addEventListener("change", function () {
    if (preset.value) { start.value = ""; end.value = ""; }
  });
  [start, end].forEach(function (input) {
    input.addEventListener("change", function () { if (input.value) preset.value = ""; });
  });
})();
