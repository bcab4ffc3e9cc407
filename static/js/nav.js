// The organisation switcher is a plain <details>; this only lets it close as menus do: on Escape,
// returning focus to its button, and on a click anywhere else on the page (left open, it lies over
// the page's tabs on a phone).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const open = document.querySelector("details.switcher[open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });
  document.addEventListener("click", function (event) {
    const open = document.querySelector("details.switcher[open]");
    if (open && !open.contains(event.target)) open.open = false;
  });
})();
