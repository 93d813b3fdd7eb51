// Small behaviours for the portal: copy buttons and a message when an htmx request fails.
(function () {
  "use strict";

  function flash(level, text) {
    var stack = document.getElementById("flash");
    if (!stack) return;
    var item = document.createElement("div");
    item.className = "flash flash-" + level;
    item.setAttribute("role", "alert");
    item.textContent = text;
    stack.replaceChildren(item);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
      button.textContent = "Press Ctrl+C";
    }
  });

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  var reasons = {
    403: "Your role does not allow that.",
    404: "That item no longer exists. Reload the page to see the current state.",
  };
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    flash("error", reasons[status] || "Something went wrong (" + status + "). Please try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    flash("error", "The server could not be reached. Check your connection and try again.");
  });
})();
