// The console's only script of its own (no inline scripts: the pages' CSP allows 'self' only).
// Forms with data-confirm ask before they are sent (Complete, Expire).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
