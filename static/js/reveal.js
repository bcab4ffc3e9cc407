// The key field is masked by CSS (.secret-input, see byom_form.html). Its "Show key" button, shown only where this
// script runs, draws the key in clear so whoever pasted it can check it before saving, and "Hide key" masks it
// again. Nothing is sent: the key stays in the field until the form is submitted, and no page after it holds the key.
(function () {
  "use strict";
  document.querySelectorAll("button[data-reveal]").forEach(function (button) {
    const field = document.getElementById(button.getAttribute("aria-controls"));
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      const masked = field.classList.toggle("secret-input");
      button.textContent = masked ? "Show key" : "Hide key";
      field.focus();
    });
  });
})();
