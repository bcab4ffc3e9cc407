// Progressive enhancement for the AI Insights page: stream the answer as Claude writes it.
// Without JavaScript the form is a plain POST that returns the whole answer.
(function () {
  "use strict";
  const form = document.getElementById("ask-form");
  if (!form || !window.fetch || !window.TextDecoder) return;

  const textarea = document.getElementById("query");
  const button = document.getElementById("ask-button");
  const status = document.getElementById("ask-status");
  const answer = document.getElementById("answer");
  const body = document.getElementById("answer-body");
  const errorBox = document.getElementById("answer-error");
  const notice = document.getElementById("answer-notice");
  const referenceBox = document.getElementById("answer-reference");
  const history = document.getElementById("history");
  let finished = true; // false while a stream is open and has sent neither `done` nor `error`
  let usageSaid = true; // false while a stream is open and has not sent its last event, `usage`
  let outcome = ""; // how the last question ended, said beside Ask once the answer card is no longer busy
  let sent = ""; // the question being asked, as the box held it: its draft is forgotten once it is being answered
  let leaving = false; // the page is being left (a reload): its stream is cut by that, not by a failure

  // At the limit the page disables Ask itself and says beside it when the next query frees up (#ask-limit, in the
  // refusal's words and time), and the meter says "Limit reached": one state, shown together or not at all, changed
  // only by limitReached and limitLifted, so the meter never says "Limit reached" beside an Ask that is enabled. Ask is
  // disabled while an answer streams too: it is enabled only when neither holds.
  const limitNotice = document.getElementById("ask-limit");
  const meter = document.getElementById("usage-meter");
  const meterSays = document.getElementById("usage-reset");
  const FREED = "A query has freed up: you can ask again.";
  const RAISED = "Your organisation's limit was raised: you can ask again.";
  const SIGNED_IN_AGAIN = "You are signed in again: you can ask.";
  const NOT_SENT_AT_LIMIT = "Not sent: your organisation's limit is reached. Ask is enabled again once a query frees up.";
  const PAST = "This question was not asked: the limit was reached at the time. A query has freed up since.";
  const PAST_RAISED = "This question was not asked: the limit was reached at the time. Your organisation's limit has been raised since.";
  let asking = false;
  let limited = false;
  let signedOut = false; // a usage read found the session ended: nothing can be asked until the user signs in again
  let limitTimer = 0;
  let countdown = 0;
  let meterShown = 0; // counts the meter's updates: a usage read answered after a newer one must not undo it
  let reading = 0; // usage reads on their way: Ask waits for what they say

  // The question box is described by the limit's sentence too while Ask waits: a screen reader landing in the box hears
  // why Ask is disabled, beside whatever else describes the box (the answer card's error, the status line). Not beside
  // a refusal at the limit that already describes it (the answer card's, as the page answering a plain post gives it):
  // that says the limit, and a screen reader would hear it twice, as the page itself never says it.
  function describeBox(id, said) {
    const ids = (textarea.getAttribute("aria-describedby") || "").split(/\s+/).filter(function (each) {
      return each && each !== id;
    });
    const saysLimit = ids.indexOf("answer-error") !== -1 && errorBox.querySelector("[data-limit-refusal]");
    if (said && !(id === "ask-limit" && saysLimit)) ids.push(id);
    if (ids.length) textarea.setAttribute("aria-describedby", ids.join(" "));
    else textarea.removeAttribute("aria-describedby");
  }

  function refreshAsk() {
    button.disabled = asking || limited || signedOut || reading > 0;
  }

  // `fill` puts the words in the notice; `seconds` is the refusal's Retry-After (setTimeout never fires early).
  function limitReached(fill, seconds) {
    fill(limitNotice);
    limitNotice.hidden = false;
    meterSays.hidden = false;
    meter.classList.add("meter--full");
    limited = true;
    button.setAttribute("aria-describedby", "ask-limit");
    describeBox("ask-limit", true);
    refreshAsk();
    clearTimeout(limitTimer);
    // A browser runs a longer timer at once (it overflows 2^31 ms, about 24 days): past that, a reload enables Ask.
    const wait = Math.max(1, seconds) * 1000;
    if (wait < 2 ** 31) limitTimer = setTimeout(limitPassed, wait);
    countDown(Date.now() + wait);
  }

  function limitLifted() {
    clearTimeout(limitTimer);
    clearInterval(countdown);
    limited = false;
    limitNotice.hidden = true;
    limitNotice.replaceChildren();
    meterSays.hidden = true;
    meter.classList.remove("meter--full");
    button.removeAttribute("aria-describedby");
    describeBox("ask-limit", false);
    refreshAsk();
  }

  // While Ask waits, the meter's "frees up in" and the time beside Ask count down as a clock would (rounded up, so
  // never early), rather than keep the time the page or the refusal gave. Text only: nothing is announced.
  function countDown(deadline) {
    clearInterval(countdown);
    const resetIn = document.getElementById("usage-reset-in");
    const retryIn = limitNotice.querySelector(".retry-in"); // the time in the server's sentence
    countdown = setInterval(function () {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left < 1) return clearInterval(countdown);
      resetIn.textContent = formatDuration(left);
      if (retryIn) retryIn.textContent = formatDuration(left);
    }, 1000);
  }

  // The wait is over, but the freed query may be gone already (a colleague asked it): Ask stays disabled, beside the
  // meter's "Limit reached", until the window has been read again.
  function limitPassed() {
    clearInterval(countdown);
    readUsage();
  }

  // The window as it stands now, read with this page's session (insights:usage), as a reload would show it: at the
  // limit, the refusal the next query would meet, in the page's own words and time, and Ask waits for that; otherwise
  // Ask is enabled beside a meter showing the queries left. Signed out meanwhile (the read's 401), Ask stays disabled
  // and the status line says the session ended, with a link to sign in again that keeps the question (sessionEnded).
  // Where the read fails otherwise, Ask is enabled and the meter stops saying "Limit reached" (its count waits for a
  // reload): pressing Ask lets the server answer, with its refusal if any. A read answered after a newer update of the
  // meter (a question's own answer) is dropped: it is older than what the meter shows.
  async function readUsage() {
    const shown = meterShown;
    let usage = null;
    let ended = false;
    reading += 1;
    meter.setAttribute("aria-busy", "true"); // being read: what it shows is about to change
    refreshAsk();
    try {
      const response = await fetch(meter.dataset.usageUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      if (response.ok) usage = await response.json();
      ended = response.status === 401;
    } catch (ignored) { /* as a failed read, below */ }
    reading -= 1;
    if (ended) {
      sessionEnded();
    } else {
      // Signed in again (in another tab) since a read found the session ended: the window is known again, and read as
      // any other (the meter, Ask, a refusal in the answer card); the status line says so unless Ask waits.
      const resumed = signedOut && usage !== null;
      if (resumed) {
        signedOut = false;
        button.removeAttribute("aria-describedby");
        status.textContent = usage.limitReached ? "" : SIGNED_IN_AGAIN;
      }
      if (resumed || meterShown === shown) {
        // Raised only when higher: a key removed meanwhile lowers it (the window drained below the lower limit since).
        const limitBefore = Number(document.getElementById("usage-limit").textContent);
        const raised = Boolean(usage) && Number(usage.limit) > limitBefore;
        if (usage) updateMeter(usage, usage.used, usage.keySource);
        if (usage && !usage.limitReached) refusalPast(raised);
        if (usage && usage.limitReached) {
          limitReached(function (el) { el.innerHTML = usage.limitReached; }, usage.resetSeconds);
        } else if (limited) {
          limitLifted();
          if (!asking) status.textContent = raised ? RAISED : FREED;
        }
      }
    }
    refreshAsk();
    // Only once the reads' answers are handled: the page's tests wait on it, rather than for a while after the answer.
    if (reading === 0) meter.removeAttribute("aria-busy");
  }

  // A refusal at the limit shown in the answer card (data-limit-refusal) is true only while the limit holds: once the
  // window has been read with room again, it says it was refused then, not "Rate limit reached", and is no alert
  // (the status line beside Ask announces that a query has freed up, or that the limit was raised: a key saved
  // meanwhile). A failed read tells nothing, and leaves it.
  function refusalPast(raised) {
    if (!errorBox.querySelector("[data-limit-refusal]")) return;
    const past = document.createElement("p");
    past.className = "muted";
    past.textContent = raised ? PAST_RAISED : PAST;
    errorBox.replaceChildren(past);
  }

  // The session ended (signed out in another tab, or expired): Ask cannot send anything, so it stays disabled, and the
  // meter no longer says "Limit reached" or counts down (the window can no longer be read). The status line says so,
  // with a link to sign in again, coming back here; the question is kept for this tab's next page, as when Ask itself
  // meets the sign-in page (keepDraft), and put back only for the same user.
  function sessionEnded() {
    // Said once: the status line is a live region, and each return to the tab reads the window again (backInView).
    if (signedOut) return;
    limitLifted();
    signedOut = true;
    const link = document.createElement("a");
    link.href = meter.dataset.signInUrl;
    link.textContent = "Sign in again";
    link.addEventListener("click", function () { keepDraft(false); });
    status.replaceChildren("Your session has ended. ", link, " to ask: your question is kept.");
    button.setAttribute("aria-describedby", "ask-status");
    refreshAsk();
  }

  if (!limitNotice.hidden) {
    limitReached(function () { /* rendered by the page */ }, Number(limitNotice.dataset.resetSeconds) || 1);
  }
  // A question refused at the limit by a plain post (Ask pressed before this script loaded): the page gives the wait in
  // the answer card's alert too, which stands still while the one beside Ask and the meter's count down. It is said
  // once, where it counts, as after a streamed refusal; without the script the alert's is the page's only wait.
  errorBox.querySelectorAll(".retry-wait").forEach(function (el) { el.remove(); });

  // Back on a page whose Ask waits (from another tab or window), the window is read again: a key saved meanwhile (the
  // meter's own hint followed in another tab, or an Owner or Admin elsewhere) raises the limit at once, where the
  // countdown would keep Ask waiting out the platform key's window, up to an hour, until a reload. So too after the
  // session ended: signed in again in another tab, Ask is enabled again here (its form's token is then stale, and
  // pressing it refreshes the page, keeping the question).
  function backInView() {
    if ((limited || signedOut) && !asking && reading === 0 && document.visibilityState === "visible") readUsage();
  }
  document.addEventListener("visibilitychange", backInView);
  window.addEventListener("focus", backInView);

  // The question in the box, unsent, survives a reload of this page in the same tab (F5 empties a form; Back and
  // Forward keep it), the reload or sign-in page that follows a question the page could not send (below), and a
  // session that ended meanwhile: it is kept in the tab's sessionStorage as it is typed, one per organisation (the
  // page's path), and put back when this page loads again with an empty box. It is kept until the question is
  // answered (a refused or failed one stays a draft), and forgotten by every Sign out button (sign_out.js):
  // sessionStorage is the tab's alone and gone when it closes. The form's `draft_by` is an opaque mark
  // of the page's user (orgs.drafts): a draft is put back only for that user, and whoever else signs in in that tab
  // (a shared computer) finds it deleted, never shown.
  const draftKey = "opsion:insights-draft:" + location.pathname;
  const draftBy = form.elements.draft_by ? form.elements.draft_by.value : "";
  const REFRESHED = "Your sign-in changed since this page was loaded, so it was refreshed. Your question is still here: press Ask again.";
  try {
    // The page a plain post led to (no script ran on the page that sent it): the box's whole text was sent, so what the
    // tab kept from before is that question, or an older wording of it (a box filled by Back, then rewritten), not an
    // unsent one. A question a suggestion button left unsent is back in the box, from the server.
    if (form.hasAttribute("data-asked-by-post")) sessionStorage.removeItem(draftKey);
    const saved = JSON.parse(sessionStorage.getItem(draftKey) || "null");
    if (saved && saved.text && saved.by && saved.by === draftBy && !textarea.value) {
      textarea.value = saved.text;
      if (saved.refreshed) status.textContent = REFRESHED;
    }
  } catch (ignored) { /* storage disabled or unreadable: nothing to restore */ }
  keepDraft(false); // what the box holds now, by this page's user (said REFRESHED once), or nothing
  // Another user's question kept for another organisation's page of this tab (their session ended without a sign-out,
  // and someone else signed in here) is deleted too, unseen: the tab's storage is readable by whoever sits at it.
  try {
    Object.keys(sessionStorage).forEach(function (key) {
      if (!key.startsWith("opsion:insights-draft:") || key === draftKey) return;
      let kept = null;
      try { kept = JSON.parse(sessionStorage.getItem(key) || "null"); } catch (ignored) { /* unreadable: deleted */ }
      if (!kept || !draftBy || kept.by !== draftBy) sessionStorage.removeItem(key);
    });
  } catch (ignored) { /* storage disabled: nothing was kept */ }

  function keepDraft(refreshed) {
    try {
      if (textarea.value.trim() && draftBy) {
        sessionStorage.setItem(draftKey, JSON.stringify({ text: textarea.value, refreshed: refreshed, by: draftBy }));
      } else {
        sessionStorage.removeItem(draftKey);
      }
    } catch (ignored) { /* best effort */ }
  }

  textarea.addEventListener("input", function () { keepDraft(false); });

  // Sent and being answered, or answered: no longer a draft, unless the box holds another one typed meanwhile.
  function draftAnswered(sent) {
    if (textarea.value === sent) {
      try { sessionStorage.removeItem(draftKey); } catch (ignored) { /* best effort */ }
    }
  }

  document.querySelectorAll("button.suggestion").forEach(function (el) {
    el.addEventListener("click", function (event) {
      event.preventDefault();
      textarea.focus();
      // Replaced as typing would replace it, so Undo (Ctrl+Z) brings back a question typed before the
      // click; setting `value` would drop it for good. Where the editing command is missing, set it.
      textarea.select();
      if (!document.execCommand || !document.execCommand("insertText", false, el.value)) textarea.value = el.value;
    });
  });

  function formatDuration(seconds) {
    if (seconds >= 3600) {
      const minutes = Math.ceil(seconds / 60), h = Math.floor(minutes / 60), m = minutes % 60; // never early
      return m ? h + " h " + m + " min" : h + " h";
    }
    if (seconds >= 60) return Math.ceil(seconds / 60) + " min";
    return seconds + " s";
  }

  const KEY_NAMES = { organisation: "your organisation's Anthropic key", platform: "Opsion's platform key" };

  // `keySource`, when the server said it: whose key answers now, which a key saved or removed since the page loaded
  // changes along with the limit.
  function updateMeter(rate, used, keySource) {
    if (!rate) return;
    if (KEY_NAMES[keySource]) document.getElementById("usage-key-name").textContent = KEY_NAMES[keySource];
    meterShown += 1;
    // The server's count when it sends one: above a lowered limit it exceeds limit - remaining.
    if (typeof used !== "number") used = rate.limit - rate.remaining;
    document.getElementById("usage-used").textContent = String(used);
    document.getElementById("usage-limit").textContent = String(rate.limit);
    const bar = document.getElementById("usage-bar");
    bar.max = rate.limit;
    bar.value = used;
    document.getElementById("usage-over").hidden = used <= rate.limit;
    // "Limit reached" is said with Ask's countdown only (limitReached): a count at the limit says it without them.
    document.getElementById("usage-reset-in").textContent = formatDuration(rate.resetSeconds);
    // "Your own key raises the limit" is about the platform key's limit, the one the page was loaded under:
    // a limit that changed since (a key saved in another tab) is not that one, and a reload would not say it.
    const ownKey = document.getElementById("usage-own-key");
    if (ownKey) ownKey.hidden = rate.limit !== Number(ownKey.dataset.limit);
    // "The 200-query cap is an abuse guard" is about the organisation's key's limit, the one the page was loaded under.
    const cap = document.getElementById("usage-cap");
    if (cap) cap.hidden = rate.limit !== Number(cap.dataset.limit);
  }

  // The failed request's ID (its X-Request-ID header), shown as the page shows it without JavaScript:
  // the reference to quote to support. None when no answer came back at all.
  function showError(message, code, requestId) {
    const p = document.createElement("p");
    p.className = "alert alert--error";
    p.setAttribute("role", "alert");
    // The message is text (the API's words); the Anthropic console's address in it becomes a link, as the page
    // makes it after a plain post (the console_links filter).
    message.split("console.anthropic.com").forEach(function (part, i) {
      if (i) {
        const link = document.createElement("a");
        link.href = "https://console.anthropic.com/";
        link.textContent = "console.anthropic.com";
        p.append(link);
      }
      p.append(part);
    });
    if (code === "rate_limited") p.setAttribute("data-limit-refusal", ""); // refusalPast, once a query frees up
    const hint = document.getElementById("key-invalid-hint");
    if (code === "claude_api_key_invalid" && hint) p.append(hint.content.cloneNode(true));
    // Refused at the platform key's limit, on a plan allowing the organisation's own key: say what raises it,
    // as the page does after a plain post (the meter shows the limit of the refusal by now).
    const ownKey = document.getElementById("own-key-hint");
    const limit = Number(document.getElementById("usage-limit").textContent);
    if (code === "rate_limited" && ownKey && limit === Number(ownKey.dataset.limit)) {
      if (!/[.!?]$/.test(message)) p.append(".");
      p.append(ownKey.content.cloneNode(true));
    }
    errorBox.replaceChildren(p);
    if (limited) describeBox("ask-limit", true); // a refusal at the limit now describing the box says it: not twice
    if (referenceBox && requestId) {
      const reference = document.createElement("p");
      reference.className = "reference";
      const id = document.createElement("code");
      id.textContent = requestId;
      reference.append("Reference: ", id);
      referenceBox.replaceChildren(reference);
    }
    outcome = message;
  }

  // The query just asked joins "Your recent queries", answered or failed, as it will on the next
  // page load: the server renders the entry with the page's own template (its text escaped, its
  // answer's Markdown sanitised by nh3), so it is safe to insert.
  function remember(itemHtml) {
    // An older page lists queries before some earlier one: a new query belongs on the newest page, which
    // "Back to your newest queries" leads to, not at the top of this one.
    if (!history || !itemHtml || history.hasAttribute("data-older-page")) return;
    // The page opened its newest entry because no answer was showing; now one is (as after a reload
    // of the answer's link), so that entry closes. Entries the reader opened stay open.
    history.querySelectorAll("details[data-auto-open]").forEach(function (entry) {
      entry.open = false;
      entry.removeAttribute("data-auto-open");
    });
    history.insertAdjacentHTML("afterbegin", itemHtml);
    // As a reload would show it: a page of entries, "Show older queries" starting after the last one left,
    // so an entry pushed off this page is the first of the next.
    const pageSize = Number(history.dataset.pageSize) || 10;
    let pushedOff = false;
    while (history.children.length > pageSize) {
      history.lastElementChild.remove();
      pushedOff = true;
    }
    const older = document.getElementById("history-older");
    if (pushedOff && older) {
      const next = new URL(older.href);
      next.searchParams.set("after", history.lastElementChild.dataset.queryId);
      older.href = next.href;
      older.hidden = false;
      older.parentElement.hidden = false; // the page began with no older queries, or none at all
    }
    history.hidden = false;
    const empty = document.getElementById("history-empty");
    if (empty) empty.remove();
  }

  function parseEvent(chunk) {
    let event = "message", data = "";
    chunk.split("\n").forEach(function (line) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    });
    return { event: event, data: data ? JSON.parse(data) : {} };
  }

  function handle(evt, requestId) {
    if (evt.event === "start") {
      updateMeter(evt.data.rateLimit, evt.data.used, evt.data.keySource);
      // Sent, counted and being answered (its history entry says so after a reload): no longer a draft, which a reload
      // would put back in the box as if unsent, for Ask to send, and bill, twice. A failure keeps it again (keepDraft).
      draftAnswered(sent);
    } else if (evt.event === "delta") {
      body.classList.add("streaming");
      body.append(document.createTextNode(evt.data.text));
    } else if (evt.event === "done") {
      finished = true;
      outcome = "Answer ready.";
      body.classList.remove("streaming");
      // Markdown rendered and sanitised on the server (nh3): safe to insert.
      body.innerHTML = evt.data.html;
      // An answer Claude did not finish (cut short at the length limit, declined) says so before it, in the
      // page's own words rendered on the server, and beside Ask: no reader may take it for a whole answer.
      if (notice && evt.data.notice) {
        notice.innerHTML = evt.data.notice;
        outcome = notice.textContent;
      }
      remember(evt.data.historyItem);
      draftAnswered(sent);
    } else if (evt.event === "error") {
      finished = true;
      body.classList.remove("streaming");
      // What arrived before the failure, rendered and sanitised on the server like a full answer, after the
      // server's notice saying it is only part: on its own it could pass for a whole answer.
      if (evt.data.html) body.innerHTML = evt.data.html;
      if (notice && evt.data.notice) notice.innerHTML = evt.data.notice;
      showError(evt.data.message, evt.data.code, requestId);
      remember(evt.data.historyItem);
      keepDraft(false);
    } else if (evt.event === "usage") {
      usageSaid = true;
      updateMeter(evt.data, evt.data.used, evt.data.keySource);
      // This answer took the last query the window allows: say so beside Ask, in the page's own words rendered on
      // the server (safe to insert), and wait as a reload of the page would.
      if (evt.data.limitReached) {
        limitReached(function (el) { el.innerHTML = evt.data.limitReached; }, evt.data.resetSeconds);
      }
    }
  }

  async function ask(event) {
    event.preventDefault();
    if (asking || limited || signedOut) return; // Ask is disabled: nothing else may send the form meanwhile
    if (!textarea.value.trim()) {
      // The box's `required` lets spaces through: say what the server would (insights.services.start).
      status.textContent = "Type a question first.";
      textarea.focus();
      return;
    }
    asking = true;
    sent = textarea.value;
    refreshAsk();
    // Screen readers announce the answer once, when it is complete, not every streamed piece.
    answer.setAttribute("aria-busy", "true");
    status.textContent = "Asking Claude…";
    outcome = "";
    answer.hidden = false;
    errorBox.replaceChildren();
    if (notice) notice.replaceChildren();
    if (referenceBox) referenceBox.replaceChildren();
    body.replaceChildren();
    const asked = answer.querySelector(".answer__question"); // on screen for a linked answer only
    if (asked) asked.remove();
    let requestId = ""; // known once the server answers
    // On paper the question box is left out (opsion.css), so the answer carries its question there.
    const question = document.createElement("p");
    const label = document.createElement("span");
    question.className = "answer__question print-only";
    label.className = "muted";
    label.textContent = "You asked:";
    question.append(label, " " + textarea.value.trim());
    errorBox.before(question);
    // Until an answer says how the window stands (the stream's `usage`, a refusal's RateLimit headers), the question
    // may have taken its last query: one whose connection failed before any answer came was counted all the same.
    usageSaid = false;
    try {
      const response = await fetch(form.dataset.streamUrl, {
        method: "POST",
        headers: { "Accept": "text/event-stream", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
      });
      usageSaid = true; // said below, by the stream's last event or the refusal's headers, or the page is left
      const type = response.headers.get("Content-Type") || "";
      requestId = response.headers.get("X-Request-ID") || "";
      if (response.status === 403 && !type.startsWith("application/json")) {
        // The form's CSRF token is stale (signed out and in again in another tab): posting it again
        // would fail the same way. A reload fetches a fresh one, or the sign-in page if the session
        // is gone, and the question comes back either way.
        keepDraft(true);
        location.reload();
        return;
      }
      if (!type.startsWith("text/event-stream") && !type.startsWith("application/json")) {
        // Neither an answer stream nor our JSON error (the session expired and we were sent to the
        // sign-in page): the plain form post lets the server answer properly.
        keepDraft(false);
        form.submit();
        return;
      }
      if (!response.ok || !response.body) {
        let message = "AI Insights is temporarily unavailable. Please try again shortly.";
        let code = "";
        let keySource = ""; // whose key's limit refused it, when the limit did: a key removed since the page loaded
        try {
          const payload = await response.json();
          message = payload.error.message;
          code = payload.error.code;
          // The limit was reached since the page loaded (by others, in another tab): Ask waits, as on a reload, saying
          // beside it when to retry in the sentence the server rendered (`limitReached`, safe HTML), whose time counts
          // down there and in the meter. The alert and the status line give the refusal without a time: a copy of it
          // would stand still beside the countdown ("3 min" beside "57 s"), and counting down inside them would have
          // screen readers announce every second. Anthropic's own limit already says so in its message.
          const said = payload.error.code === "rate_limited" && payload.limitReached;
          if (said) {
            limitReached(function (el) { el.innerHTML = said; }, parseInt(response.headers.get("Retry-After") || "0", 10));
            if (!/[.!?]$/.test(message)) message += ".";
            keySource = payload.keySource;
          }
        } catch (ignored) { /* keep the generic message */ }
        const limit = response.headers.get("RateLimit");
        const policy = response.headers.get("RateLimit-Policy");
        if (limit && policy) {
          const r = /r=(\d+)/.exec(limit), t = /t=(\d+)/.exec(limit), q = /q=(\d+)/.exec(policy);
          if (r && t && q) {
            const rate = { limit: +q[1], remaining: +r[1], resetSeconds: +t[1] };
            // The headers cannot say "over the limit" (a lowered limit): at 0 remaining, keep a
            // higher count the page already shows rather than claim exactly the limit.
            const shown = parseInt(document.getElementById("usage-used").textContent, 10);
            const used = rate.remaining === 0 && shown > rate.limit ? shown : rate.limit - rate.remaining;
            updateMeter(rate, used, keySource);
          }
        }
        showError(message, code, requestId);
        return;
      }
      finished = false;
      usageSaid = false;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let split;
        while ((split = buffer.indexOf("\n\n")) !== -1) {
          handle(parseEvent(buffer.slice(0, split)), requestId);
          buffer = buffer.slice(split + 2);
        }
      }
      if (!finished) {
        showError("The answer was interrupted before it finished. Please try again.", "", requestId);
        keepDraft(false); // failed: still unsent, as the box shows it
      }
    } catch (err) {
      showError("The connection was interrupted. Please try again.", "", requestId);
      if (!leaving) keepDraft(false); // a page left (a reload) cuts its own stream: the question is still being answered
    } finally {
      answer.removeAttribute("aria-busy");
      const hadFocus = document.activeElement === button || document.activeElement === document.body;
      // A stream cut off before its last event, `usage`, or a question whose connection failed before any answer, may
      // have taken the window's last query (the server counted it before answering): Ask waits for the window to be
      // read, beside "Limit reached" if so, rather than be enabled beside a meter that does not show it.
      if (!usageSaid) {
        usageSaid = true;
        readUsage();
      }
      asking = false;
      refreshAsk();
      // Disabling the focused button sent keyboard focus to the page's start: give it back (to the question box
      // while Ask waits for the limit).
      if (hadFocus) (button.disabled ? textarea : button).focus();
      // Said once the answer card is no longer busy: screen readers may not announce what changed inside a
      // busy region (the answer, its error), so the status line beside Ask says how it ended.
      status.textContent = outcome;
    }
  }

  form.addEventListener("submit", ask);
  window.addEventListener("pagehide", function () { leaving = true; });
  // Back from the back/forward cache, the page is in use again: a stream it opens now is cut by a failure, not by a
  // reload, and the question is kept for one.
  window.addEventListener("pageshow", function (event) { if (event.persisted) leaving = false; });

  // Ctrl+Enter (⌘+Enter on a Mac) in the question box asks, as in a mail or chat client; Enter alone still starts a
  // new line. requestSubmit runs the form's own checks (an empty box is said so) and the handler above.
  textarea.setAttribute("aria-keyshortcuts", "Control+Enter Meta+Enter");
  textarea.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.isComposing) return;
    event.preventDefault();
    if (!button.disabled) form.requestSubmit(button);
    // At the limit Ask is disabled, out of the keyboard's reach: its shortcut says why nothing was sent, in the live
    // status line, without the time (beside Ask, counting down, where a copy here would stand still).
    else if (limited && !asking && !signedOut) status.textContent = NOT_SENT_AT_LIMIT;
  });
})();
