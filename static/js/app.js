// The only script the pages load besides htmx. No inline scripts anywhere: CSP is script-src 'self'.
(function () {
  "use strict";

  // No eval-based features (hx-on, js: values, event filters): CSP forbids them anyway.
  htmx.config.allowEval = false;
  // htmx would inject an inline <style> for indicators, which CSP style-src 'self' refuses; app.css has them.
  htmx.config.includeIndicatorStyles = false;
  // A history-cache miss reloads the whole page: never ask for it as a fragment request.
  htmx.config.historyRestoreAsHxRequest = false;
  // 422 is "the form again, with errors beside the fields": swap it like a success.
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "422", swap: true },
    { code: "[45]..", swap: false, error: true },
    { code: "...", swap: false },
  ];

  function flashRegion() {
    return document.getElementById("flash");
  }

  function showError(text) {
    var region = flashRegion();
    if (!region) return;
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    region.replaceChildren(p);
  }

  // The server's error pages retarget htmx errors to #flash (HX-Retarget): let those swap,
  // and let a boosted navigation that failed show the error page it received.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr.status >= 400 && (xhr.getResponseHeader("HX-Retarget") || evt.detail.boosted)) {
      evt.detail.shouldSwap = true;
    }
  });

  // Errors nobody retargeted (a proxy's 502, say) still get a visible message.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr.getResponseHeader("HX-Retarget")) return;
    showError("The request failed (" + xhr.status + "). Reload the page and try again.");
  });

  document.addEventListener("htmx:sendError", function () {
    showError("The server could not be reached. Check your connection and try again.");
  });
})();
