// The console's only script of its own (no inline scripts: the pages' CSP allows 'self' only).
// Forms with data-confirm ask before they are sent (Complete, Expire, handing back for someone
// else); a textarea with data-counter shows its length against its maxlength (the reply box).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

document.addEventListener("input", function (event) {
  var area = event.target;
  if (!(area instanceof HTMLTextAreaElement) || !area.dataset.counter) {
    return;
  }
  var counter = document.getElementById(area.dataset.counter);
  if (counter) {
    counter.textContent = area.value.length + " / " + area.maxLength + " characters";
  }
});
