// The pressure page's only script: reload after a new cycle, sortable columns, a symbol filter. No build step.
(function () {
  "use strict";
  var body = document.body;
  var q = document.getElementById("q");
  var table = document.getElementById("ranking");

  // A new cycle: the page's ETag no longer matches (HEAD with If-None-Match answers 304 until then).
  if (body.dataset.live === "1" && body.dataset.etag) {
    var every = Math.max(3, Number(body.dataset.poll) || 30) * 1000;
    var check = function () {
      if (document.hidden || (q && q.value)) { return; }
      fetch(location.href, { method: "HEAD", cache: "no-store", headers: { "If-None-Match": body.dataset.etag } })
        .then(function (r) { if (r.status === 200) { location.reload(); } })
        .catch(function () {});
    };
    setInterval(check, every);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { check(); } });
  }

  if (!table) { return; }
  var tbody = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;

  function sortBy(col, dir) {
    var numeric = heads[col].dataset.type === "num";
    var rows = Array.prototype.slice.call(tbody.rows).filter(function (tr) { return tr.dataset.symbol; });
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }   // unknown values last
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (tr) { tbody.appendChild(tr); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    history.replaceState(null, "", "#sort=" + col + ":" + dir);
  }

  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var now = th.getAttribute("aria-sort");
      var first = th.dataset.type === "num" && col !== 0 ? "desc" : "asc";
      sortBy(col, now ? (now === "ascending" ? "desc" : "asc") : first);
    });
  });
  var m = /#sort=(\d+):(asc|desc)/.exec(location.hash);     // the sort survives the reload after a cycle
  if (m && heads[Number(m[1])]) { sortBy(Number(m[1]), m[2]); }

  if (q) {
    q.addEventListener("input", function () {
      var v = q.value.trim().toUpperCase().replace(/[\/_-]/g, "");
      Array.prototype.forEach.call(tbody.rows, function (tr) {
        if (tr.dataset.symbol) { tr.hidden = v !== "" && tr.dataset.symbol.indexOf(v) < 0; }
      });
    });
  }
})();
