// highmark dashboard: while a page shows a live run, refresh its content every few seconds.
"use strict";
(function () {
  const INTERVAL_MS = 2000;

  async function refresh() {
    if (document.body.dataset.live !== "1" || document.hidden) {
      return schedule();
    }
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      if (response.ok && !response.redirected) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("main");
        if (fresh) {
          document.getElementById("main").replaceChildren(...fresh.childNodes);
          document.body.dataset.live = page.body.dataset.live || "0";
          const footer = page.querySelector("footer");
          if (footer) document.querySelector("footer").replaceWith(footer);
        }
      }
    } catch (error) {
      // The server is restarting or the network is away: try again later.
    }
    schedule();
  }

  function schedule() {
    if (document.body.dataset.live === "1") {
      window.setTimeout(refresh, INTERVAL_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", schedule);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && document.body.dataset.live === "1") refresh();
  });
})();
