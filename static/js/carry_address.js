// The address typed on the sign-in page goes along to "Forgot your password?", and back (typed once, not twice).
// It travels in the link's fragment (#email=…), which the browser never sends: no server, proxy or access log sees
// it in an URL. The page it opens fills its empty box from it and takes it out of the address bar and history.
// Without JavaScript the links are plain links and the box is typed again.
(function () {
  "use strict";
  var PREFIX = "#email=";

  // a[data-carry-address="<input id>"]: the link takes that box's address along when followed.
  document.querySelectorAll("a[data-carry-address]").forEach(function (link) {
    var box = document.getElementById(link.dataset.carryAddress);
    if (!box) return;
    var plain = link.getAttribute("href").split("#")[0];
    function update() {
      // Only what the browser takes for an e-mail address: anything else (a key or token pasted from the wrong
      // clipboard, which the server refuses to send back in the box) stays out of an URL, where history keeps it.
      var address = box.validity.valid ? box.value.trim() : "";
      link.setAttribute("href", address ? plain + PREFIX + encodeURIComponent(address) : plain);
    }
    // Set before the click is followed, whichever way it comes (mouse, Enter, middle-click to a new tab).
    ["pointerdown", "focus", "click"].forEach(function (kind) { link.addEventListener(kind, update); });
  });

  // input[data-receives-address]: filled from the fragment when the server left it empty.
  var box = document.querySelector("input[data-receives-address]");
  if (!box || !location.hash.startsWith(PREFIX)) return;
  var address = "";
  try {
    address = decodeURIComponent(location.hash.slice(PREFIX.length)).trim();
  } catch (ignored) { /* mangled when copied: nothing to fill */ }
  history.replaceState(history.state, "", location.pathname + location.search);
  if (!address || box.value) return;
  box.value = address;
  // The address is there: the next thing to type is what follows it (the sign-in page's password).
  var next = box.dataset.receivesAddress && document.getElementById(box.dataset.receivesAddress);
  // (Autofocus may not have happened yet when this runs: the attribute says where it would go.)
  if (next && (box.autofocus || document.activeElement === box)) next.focus();
})();
