// Signing out forgets what this tab's pages kept in its sessionStorage (AI Insights' unsent question: insights.js):
// on a shared computer, the next person at this tab must find nothing of it, whichever page's Sign out was pressed.
// Without JavaScript nothing was kept. Another tab's storage is its own: a page there forgets a question whose user
// is not the one signed in when it loads (insights.js), and the tab's closing forgets the rest.
(function () {
  "use strict";
  // form[data-sign-out]: the site's Sign out buttons; #logout-form: Django admin's "Log out" (templates/admin/base_site.html).
  document.querySelectorAll("form[data-sign-out], form#logout-form").forEach(function (form) {
    form.addEventListener("submit", function () {
      try {
        Object.keys(sessionStorage).forEach(function (key) {
          if (key.startsWith("opsion:")) sessionStorage.removeItem(key);
        });
      } catch (ignored) { /* storage disabled: nothing was kept */ }
    });
  });
})();
