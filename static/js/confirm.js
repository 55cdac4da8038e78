// A form with data-confirm="question" is submitted only once the user confirms the question
// (in place of inline onsubmit handlers, which the Content-Security-Policy blocks).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) event.preventDefault();
});
