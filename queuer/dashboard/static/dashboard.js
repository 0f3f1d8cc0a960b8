// The dashboard's only script: confirms dangerous actions, and keeps the page's live parts
// (elements with data-live and an id) current from the server's event stream.
(function () {
  "use strict";
  const body = document.body;
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  const topics = body.dataset.topics;
  if (!topics || !window.EventSource) return;

  let busy = false;
  let again = false;
  let refreshes = 0;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(window.location.href, { headers: { "X-Queuer-Live": "1" }, credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        page.querySelectorAll("[data-live][id]").forEach(function (fresh) {
          const old = document.getElementById(fresh.id);
          if (old) old.replaceWith(document.importNode(fresh, true));
        });
        refreshes += 1;
        body.dataset.refreshes = String(refreshes);
      }
    } catch (error) {
      // the server is away for a moment: the next change tries again
    } finally {
      busy = false;
      if (again) { again = false; window.setTimeout(refresh, 150); }
    }
  }

  const source = new EventSource(body.dataset.events + "?topics=" + encodeURIComponent(topics));
  source.addEventListener("ready", function () {
    if (body.dataset.liveState === "lost") refresh();  // what changed while away
    body.dataset.liveState = "on";
  });
  source.addEventListener("change", refresh);
  source.addEventListener("error", function () { body.dataset.liveState = "lost"; });
})();
