// The organisation switcher is a plain <details>; this only lets Escape close it, as menus do,
// returning focus to its button.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const open = document.querySelector("details.switcher[open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });
})();
