// labbook site: remembered language and sortable tables. Pages work without it.
(function () {
  var KEY = "labbook-lang";
  var lang = document.documentElement.getAttribute("data-lang");
  var switcher = document.querySelector("a.lang-switch");
  try {
    var wanted = window.localStorage.getItem(KEY);
    if (wanted && wanted !== lang && switcher) { window.location.replace(switcher.getAttribute("href")); return; }
    if (switcher) switcher.addEventListener("click", function () {
      window.localStorage.setItem(KEY, switcher.getAttribute("data-lang"));
    });
  } catch (error) { /* storage unavailable: the switch still works as a plain link */ }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("th").forEach(function (header, column) {
        header.addEventListener("click", function () {
          var numeric = header.getAttribute("data-type") === "number";
          var ascending = header.getAttribute("aria-sort") !== "ascending";
          table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
          header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
            var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
            return ascending ? order : -order;
          });
          rows.forEach(function (row) { body.appendChild(row); });
        });
      });
    });
  });
})();
