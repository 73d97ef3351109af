// deerflow dashboard: refresh the [data-live] regions while the page says it is changing,
// and ask before destructive actions. No framework, no network access beyond this server.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function refresh() {
    if (!document.body.getAttribute("data-live-while")) { return; }
    if (document.hidden) { return setTimeout(refresh, PERIOD_MS); }
    fetch(location.href, { credentials: "same-origin", headers: { "X-Deerflow-Live": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var name = region.getAttribute("data-live");
          var next = fresh.querySelector('[data-live="' + name + '"]');
          if (next && next.innerHTML !== region.innerHTML) {
            var open = Array.prototype.map.call(region.querySelectorAll("details[open]"),
              function (d) { return d.id || d.textContent.slice(0, 40); });
            region.innerHTML = next.innerHTML;
            region.querySelectorAll("details").forEach(function (d) {
              if (open.indexOf(d.id || d.textContent.slice(0, 40)) >= 0) { d.open = true; }
            });
          }
        });
        document.body.setAttribute("data-live-while",
          fresh.body.getAttribute("data-live-while") || "");
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the server may be restarting: try again next period */ })
      .then(function () { setTimeout(refresh, PERIOD_MS); });
  }

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  setTimeout(refresh, PERIOD_MS);
})();
