// payrecon ops console: a little plain JS, no build step. Everything works without it except the
// conveniences below (filters submit on change, pages waiting on a worker reload themselves).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A filter applies as soon as it is chosen.
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
  // Buttons that change money ask once more.
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
  // A page showing work a worker has not finished (a check, a running run) looks again shortly.
  const every = Number(document.body.dataset.refresh || 0);
  if (every > 0) {
    window.setTimeout(() => window.location.reload(), every * 1000);
  }
});
