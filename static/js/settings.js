// The Settings page's two conveniences; without this script neither button is shown, as neither could do anything.
(function () {
  "use strict";

  // The key field is masked by CSS (.secret-input, see byom_form.html). "Show key" draws the key in clear so
  // whoever pasted it can check it before saving, and "Hide key" masks it again. Nothing is sent: the key stays in
  // the field until the form is submitted, and no page after it holds the key.
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

  // "Copy" beside a new API token, shown once: the clipboard, or where the browser refuses it, the token selected
  // for the keyboard's own copy. What happened is said in the button's status line.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    const source = document.getElementById(button.getAttribute("data-copy"));
    const status = document.getElementById(button.getAttribute("data-status"));
    if (!source || !status) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      const text = source.textContent.trim();
      const copied = navigator.clipboard ? navigator.clipboard.writeText(text) : Promise.reject();
      copied.then(
        function () {
          status.textContent = "Copied to the clipboard.";
        },
        function () {
          const range = document.createRange();
          range.selectNodeContents(source);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          status.textContent = "Your browser did not allow copying: the token is selected, press Ctrl+C (⌘C on a Mac).";
        }
      );
    });
  });
})();
