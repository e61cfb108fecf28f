// Instant search over the search index. search.json names its shards (search/<bb>.json, URLs
// relative to search.json); each shard is a list of entries {name, kind, text, url} whose URLs
// are relative to the shard. The script loads the entry, then every shard at once, and merges
// them. Pages work without it: the search form then opens search.html, which says that
// searching needs script and links to the sections of the store.
(function () {
  "use strict";
  var form = document.querySelector("form.search");
  if (!form || !window.fetch) return;
  var input = form.querySelector("input[name=q]");
  var box = form.querySelector("[data-search-results]");
  var pageList = document.querySelector("[data-search-page]");
  var pageStatus = document.querySelector("[data-search-status]");
  var indexUrl = new URL(form.getAttribute("data-index"), document.baseURI);
  var PAGE_LIMIT = 200;
  var loading = null;

  function getJson(url) {
    return fetch(url).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + url);
      return r.json();
    });
  }

  // Entries with their links made absolute (each is relative to the file that holds it).
  function resolved(entries, base) {
    return entries.map(function (e) {
      return { name: e.name, kind: e.kind, text: e.text || "", href: new URL(e.url, base).href };
    });
  }

  function compare(a, b) {
    var x = a.name.toLowerCase(), y = b.name.toLowerCase();
    if (x !== y) return x < y ? -1 : 1;
    return a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
  }

  function load() {
    if (loading) return loading;
    loading = getJson(indexUrl).then(function (index) {
      if (Array.isArray(index)) return resolved(index, indexUrl); // an unsharded index (schema 1)
      return Promise.all(index.shards.map(function (shard) {
        var url = new URL(shard.url, indexUrl);
        return getJson(url).then(function (entries) { return resolved(entries, url); });
      })).then(function (lists) {
        var all = [].concat.apply([], lists);
        all.sort(compare);
        return all;
      });
    });
    loading.catch(function () { loading = null; }); // a later keystroke tries again
    return loading;
  }

  function matches(entry, words) {
    var text = (entry.name + " " + entry.kind + " " + entry.text).toLowerCase();
    return words.every(function (w) { return text.indexOf(w) !== -1; });
  }

  function words(q) {
    return q.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function find(q, limit) {
    var ws = words(q);
    return load().then(function (all) {
      var found = all.filter(function (e) { return matches(e, ws); });
      return { total: found.length, shown: found.slice(0, limit) };
    });
  }

  function failed() {
    var p = document.createElement("p");
    p.className = "none";
    p.textContent = "The search index could not be loaded; try again in a moment.";
    return p;
  }

  // The drop-down under the search box of every page but search.html.
  function showResults(q) {
    box.textContent = "";
    if (!words(q).length) return;
    find(q, 20).then(function (result) {
      if (input.value !== q) return;
      if (!result.total) {
        var none = document.createElement("p");
        none.className = "none";
        none.textContent = "Nothing matches \u201c" + q + "\u201d.";
        box.appendChild(none);
        return;
      }
      var list = document.createElement("ul");
      result.shown.forEach(function (e) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = e.href;
        a.textContent = e.name;
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = " \u00b7 " + e.kind;
        a.appendChild(kind);
        li.appendChild(a);
        list.appendChild(li);
      });
      box.appendChild(list);
    }, function () {
      if (input.value === q) box.appendChild(failed());
    });
  }

  // search.html: every match (up to PAGE_LIMIT) as the page's result list.
  function say(text) {
    pageStatus.textContent = text;
    pageStatus.hidden = !text;
  }

  function showPage(q) {
    if (!words(q).length) {
      pageList.textContent = "";
      say("Type what you are looking for in the search box.");
      return;
    }
    find(q, PAGE_LIMIT).then(function (result) {
      if (input.value !== q) return;
      pageList.textContent = "";
      if (!result.total) {
        say("Nothing matches \u201c" + q + "\u201d.");
        return;
      }
      var count = result.total === 1 ? "1 match" : result.total + " matches";
      if (result.total > result.shown.length) {
        count += "; the first " + result.shown.length + " are shown, type more to narrow them";
      }
      say(count + " for \u201c" + q + "\u201d.");
      result.shown.forEach(function (e) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = e.href;
        a.textContent = e.name;
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = e.kind;
        li.appendChild(a);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(kind);
        if (e.text) {
          var text = document.createElement("span");
          text.className = "card-text";
          text.textContent = e.text;
          li.appendChild(document.createTextNode(" "));
          li.appendChild(text);
        }
        pageList.appendChild(li);
      });
    }, function () {
      if (input.value !== q) return;
      pageList.textContent = "";
      say("The search index could not be loaded; try again in a moment.");
    });
  }

  if (pageList && pageStatus) {
    input.value = new URLSearchParams(location.search).get("q") || "";
    showPage(input.value);
    input.addEventListener("input", function () {
      try { // keeps ?q= in step, for reloads and shared links (not allowed on every file: page)
        var url = new URL(location.href);
        if (input.value) url.searchParams.set("q", input.value); else url.searchParams.delete("q");
        history.replaceState(null, "", url);
      } catch (e) { /* the results are shown all the same */ }
      showPage(input.value);
    });
  } else {
    input.addEventListener("input", function () { showResults(input.value); });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { input.value = ""; box.textContent = ""; }
    });
  }
})();
