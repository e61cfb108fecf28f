// Instant search over search.json. Pages work without this script: the search form then
// opens search.html, which lists everything.
(function () {
  "use strict";
  var form = document.querySelector("form.search");
  if (!form || !window.fetch) return;
  var input = form.querySelector("input[name=q]");
  var box = form.querySelector("[data-search-results]");
  var pageList = document.querySelector("[data-search-page]");
  var indexUrl = new URL(form.getAttribute("data-index"), document.baseURI);
  var entries = null;

  function load() {
    if (entries) return Promise.resolve(entries);
    return fetch(indexUrl).then(function (r) { return r.json(); }).then(function (data) {
      entries = data;
      return data;
    });
  }

  function matches(entry, words) {
    var text = (entry.name + " " + entry.kind + " " + entry.text).toLowerCase();
    return words.every(function (w) { return text.indexOf(w) !== -1; });
  }

  function words(q) {
    return q.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function filterPage(q) {
    var ws = words(q);
    pageList.querySelectorAll("li").forEach(function (li) {
      li.hidden = ws.length > 0 && !ws.every(function (w) { return li.textContent.toLowerCase().indexOf(w) !== -1; });
    });
  }

  function showResults(q) {
    var ws = words(q);
    box.textContent = "";
    if (!ws.length) return;
    load().then(function (all) {
      if (input.value !== q) return;
      var found = all.filter(function (e) { return matches(e, ws); }).slice(0, 20);
      if (!found.length) {
        var none = document.createElement("p");
        none.className = "none";
        none.textContent = "Nothing matches \u201c" + q + "\u201d.";
        box.appendChild(none);
        return;
      }
      var list = document.createElement("ul");
      found.forEach(function (e) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = new URL(e.url, indexUrl).href;
        a.textContent = e.name;
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = " \u00b7 " + e.kind;
        a.appendChild(kind);
        li.appendChild(a);
        list.appendChild(li);
      });
      box.appendChild(list);
    });
  }

  var initial = new URLSearchParams(location.search).get("q") || "";
  if (pageList) {
    input.value = initial;
    filterPage(initial);
    input.addEventListener("input", function () { filterPage(input.value); });
  } else {
    input.addEventListener("input", function () { showResults(input.value); });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { input.value = ""; box.textContent = ""; }
    });
  }
})();
