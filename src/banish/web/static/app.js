// banish dashboard: plain JavaScript, no framework, no CDN. Every value from the server is
// put in the page with textContent; only the report's SVG charts (drawn and escaped by the
// server, banish/insight/html.py) are inserted as markup.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let page = 0;
  let pages = 1;

  async function api(path, options) {
    const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
    if (opts.method === "POST") {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = csrf;
    }
    const response = await fetch(path, opts);
    if (response.status === 401) { window.location = "/login"; throw new Error("signed out"); }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function when(epoch) {
    if (epoch === null || epoch === undefined) return "never";
    return new Date(epoch * 1000).toLocaleString();
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  async function loadActive() {
    const data = await api("/api/active?page=" + page);
    pages = data.pages;
    $("active-total").textContent = data.total.toLocaleString() + " in force";
    $("page").textContent = "page " + (data.page + 1) + " of " + Math.max(1, data.pages);
    const body = $("active").querySelector("tbody");
    body.replaceChildren();
    for (const r of data.rows) {
      const tr = document.createElement("tr");
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = r.address;
      a.addEventListener("click", (e) => { e.preventDefault(); search(r.address); });
      cell(tr, "").appendChild(a);
      cell(tr, r.jail);
      cell(tr, when(r.banned_at));
      cell(tr, r.bantime < 0 ? "never" : when(r.banned_at + r.bantime));
      cell(tr, r.origin || "local");
      body.appendChild(tr);
    }
  }

  async function loadReport() {
    const data = await api("/api/report?since=" + encodeURIComponent($("period").value));
    const totals = $("totals");
    totals.replaceChildren();
    for (const [label, value] of [["bans", data.totals.bans], ["failures", data.totals.failures],
      ["addresses", data.totals.addresses], ["countries", data.totals.countries],
      ["repeat offenders", data.totals.repeat_offenders]]) {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = Number(value).toLocaleString();
      div.appendChild(b);
      div.appendChild(document.createTextNode(label));
      totals.appendChild(div);
    }
    const charts = $("charts");
    charts.replaceChildren();
    for (const [name, svg] of Object.entries(data.charts)) {
      const fig = document.createElement("figure");
      const cap = document.createElement("figcaption");
      cap.textContent = name.replace("_", " ");
      fig.appendChild(cap);
      const holder = document.createElement("div");
      holder.innerHTML = svg;  // server-drawn, escaped SVG
      fig.appendChild(holder);
      charts.appendChild(fig);
    }
  }

  async function search(address) {
    const box = $("result");
    box.hidden = false;
    box.replaceChildren();
    let data;
    try {
      data = await api("/api/search?address=" + encodeURIComponent(address));
    } catch (e) {
      box.textContent = e.message;
      return;
    }
    const h = document.createElement("h2");
    h.id = "result-address";
    h.textContent = data.address;
    box.appendChild(h);
    const o = data.origin;
    const p = document.createElement("p");
    p.id = "result-origin";
    p.textContent = o ? [o.country || "-", o.asn ? "AS" + o.asn : "", o.as_org, o.scope,
      o.hostname || ""].filter(Boolean).join(" · ") : "origin not looked up yet";
    box.appendChild(p);
    const active = document.createElement("ul");
    active.id = "result-active";
    for (const b of data.active) {
      const li = document.createElement("li");
      li.textContent = "banned in " + b.jail + " until " +
        (b.bantime < 0 ? "forever" : when(b.banned_at + b.bantime)) + " ";
      const button = document.createElement("button");
      button.className = "unban";
      button.dataset.jail = b.jail;
      button.textContent = "Unban";
      button.addEventListener("click", () => unban(data.address, b.jail));
      li.appendChild(button);
      active.appendChild(li);
    }
    if (!data.active.length) {
      const li = document.createElement("li");
      li.textContent = "not banned now";
      active.appendChild(li);
    }
    box.appendChild(active);
    const table = document.createElement("table");
    table.id = "result-history";
    const head = document.createElement("tr");
    for (const t of ["jail", "banned", "failures", "node", "matched lines"]) {
      const th = document.createElement("th");
      th.textContent = t;
      head.appendChild(th);
    }
    table.appendChild(head);
    for (const r of data.history) {
      const tr = document.createElement("tr");
      cell(tr, r.jail);
      cell(tr, when(r.banned_at));
      cell(tr, String(r.failures));
      cell(tr, r.origin || "local");
      const pre = document.createElement("pre");
      pre.textContent = r.matches;
      cell(tr, "").appendChild(pre);
      table.appendChild(tr);
    }
    box.appendChild(table);
  }

  async function unban(address, jail) {
    try {
      await api("/api/unban", {method: "POST", body: JSON.stringify({address, jail})});
    } catch (e) {
      $("ban-message").textContent = "unban failed: " + e.message;
    }
    await search(address);
    await loadActive();
  }

  $("ban-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const address = $("ban-address").value.trim();
    const jail = $("ban-jail").value.trim();
    try {
      const r = await api("/api/ban", {method: "POST", body: JSON.stringify({address, jail})});
      $("ban-message").textContent = "banned " + r.banned + ", already " + r.already;
    } catch (err) {
      $("ban-message").textContent = "ban failed: " + err.message;
    }
    await loadActive();
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("search").value.trim());
  });
  $("prev").addEventListener("click", () => { if (page > 0) { page--; loadActive(); } });
  $("next").addEventListener("click", () => { if (page + 1 < pages) { page++; loadActive(); } });
  $("period").addEventListener("change", loadReport);

  let refresh = null;
  let refreshReport = null;
  const events = new EventSource("/events");
  events.onopen = () => { $("live-state").textContent = "live"; };
  events.onerror = () => { $("live-state").textContent = "reconnecting…"; };
  events.addEventListener("ban", (e) => {
    const b = JSON.parse(e.data);
    const li = document.createElement("li");
    li.className = "live-ban";
    li.textContent = new Date(b.banned_at * 1000).toLocaleTimeString() + "  " + b.jail +
      "  " + b.address + (b.origin ? "  (from " + b.origin + ")" : "");
    $("live").prepend(li);
    while ($("live").children.length > 200) $("live").lastChild.remove();
    if (refresh === null) {
      refresh = setTimeout(() => { refresh = null; loadActive(); }, 500);
    }
    if (refreshReport === null) {  // the charts follow too, at most every few seconds
      refreshReport = setTimeout(() => { refreshReport = null; loadReport(); }, 3000);
    }
  });

  loadActive();
  loadReport();
})();
