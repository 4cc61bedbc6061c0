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

  // Evidence uploads (templates/evidence/upload.html, data-upload-form): a file over the limit is
  // refused before anything is sent; while sending, a <progress> bar follows htmx:xhr:progress and
  // a percentage in steps of ten is announced to screen readers (aria-live).
  function uploadForm(elt) {
    return elt && elt.closest ? elt.closest("[data-upload-form]") : null;
  }

  function fieldError(input, text) {
    var field = input.closest(".field");
    if (!field) return;
    var error = field.querySelector(".field-error");
    if (!error) {
      error = document.createElement("p");
      error.className = "field-error";
      error.id = input.id + "-error";
      field.appendChild(error);
    }
    error.textContent = text;
    field.classList.add("field-invalid");
    input.setAttribute("aria-invalid", "true");
    var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (described.indexOf(error.id) < 0) described.push(error.id);
    input.setAttribute("aria-describedby", described.join(" "));
    input.focus();
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var form = uploadForm(evt.target);
    if (!form) return;
    var input = form.querySelector("input[type='file'][data-max-bytes]");
    var file = input && input.files && input.files[0];
    if (file && file.size > Number(input.getAttribute("data-max-bytes"))) {
      evt.preventDefault();
      fieldError(input, "The file is larger than the limit of " + input.getAttribute("data-max-size") +
        "; choose a smaller file.");
      return;
    }
    var box = form.querySelector("[data-upload-progress]");
    if (!box) return;
    var bar = box.querySelector("progress");
    var text = box.querySelector("[data-upload-progress-text]");
    bar.value = 0;
    text.textContent = "Upload started";
    text.removeAttribute("data-step");
    box.hidden = false;
  });

  document.addEventListener("htmx:xhr:progress", function (evt) {
    var form = uploadForm(evt.target);
    var box = form && form.querySelector("[data-upload-progress]");
    if (!box || !evt.detail.lengthComputable || !evt.detail.total) return;
    var bar = box.querySelector("progress");
    var text = box.querySelector("[data-upload-progress-text]");
    var percent = Math.min(100, Math.floor((evt.detail.loaded * 100) / evt.detail.total));
    // The response's own download progress fires this event too: never move backwards.
    if (percent < bar.value) return;
    bar.value = percent;
    bar.textContent = percent + "%";
    var step = String(Math.floor(percent / 10) * 10);
    if (text.getAttribute("data-step") !== step) {
      text.setAttribute("data-step", step);
      text.textContent = step === "100" ? "Sent; the server is checking the file…" : step + "% uploaded";
    }
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = uploadForm(evt.target);
    var box = form && form.querySelector("[data-upload-progress]");
    if (box && !evt.detail.successful) box.hidden = true;
  });
})();
