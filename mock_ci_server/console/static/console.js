// The console's only script: "select all" for the lines table and live polling of the
// request log. Plain DOM APIs; the pages work without it (forms submit, pages reload).
(function () {
  "use strict";
  var all = document.getElementById("check-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("#lines input[name=ids]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }
  var table = document.getElementById("requests");
  if (!table) { return; }
  var body = table.querySelector("tbody");
  var pause = document.getElementById("pause");
  var state = document.getElementById("live-state");
  function poll() {
    if (pause && pause.checked) {
      if (state) { state.textContent = "paused"; state.className = "live paused"; }
      return;
    }
    if (state) { state.textContent = "live"; state.className = "live"; }
    var url = new URL(table.dataset.rowsUrl, window.location.href);
    url.searchParams.set("after_id", table.dataset.lastId || "0");
    fetch(url.toString(), { cache: "no-store" }).then(function (response) {
      var last = response.headers.get("X-Last-Id");
      return response.text().then(function (html) {
        if (!html.trim() || !last || last === "0") { return; }
        var holder = document.createElement("tbody");
        holder.innerHTML = html;
        var rows = Array.prototype.slice.call(holder.children);
        rows.reverse().forEach(function (row) {
          row.classList.add("new");
          body.insertBefore(row, body.firstChild);
        });
        table.dataset.lastId = last;
        var none = document.getElementById("no-requests");
        if (none) { none.remove(); }
        while (body.children.length > 500) { body.removeChild(body.lastChild); }
      });
    }).catch(function () {
      if (state) { state.textContent = "offline"; state.className = "live paused"; }
    });
  }
  window.setInterval(poll, 2000);
})();
