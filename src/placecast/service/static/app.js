/* placecast dashboard: a static shell that calls the API with the user's bearer token.
   No data is embedded in the page, nothing is loaded from outside, and every value
   from the API is written with textContent (never as HTML). */
(function () {
  "use strict";

  var TOKEN_KEY = "placecast-token";
  var COLORS = ["#fde0c5", "#fdae6b", "#fd8d3c", "#d94801", "#7f2704"];
  // Colour classes: cells in the top 1 %, 1-5 %, 5-20 %, 20-50 % and the rest (by expected events).
  var TOP_SHARES = [0.01, 0.05, 0.20, 0.50];
  var SERIES = ["#0b57d0", "#d94801", "#188038", "#8e24aa"];
  var state = { map: null, layer: null, outline: null, alertLayer: null, clusterLayer: null,
                forecasts: [], token: null, role: null, basemap: null };

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function setStatus(text, isError) {
    var s = $("status");
    s.textContent = text;
    s.className = isError ? "status error" : "status";
  }

  function api(path, options) {
    options = options || {};
    var headers = { "Authorization": "Bearer " + state.token };
    if (options.body) { headers["Content-Type"] = "application/json"; }
    return fetch(path, {
      method: options.method || "GET", headers: headers,
      body: options.body ? JSON.stringify(options.body) : undefined,
      credentials: "omit", cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { signOut("Your token was not accepted."); throw new Error("401"); }
      var type = response.headers.get("content-type") || "";
      var parse = type.indexOf("json") >= 0 ? response.json() : response.text();
      return parse.then(function (data) {
        if (!response.ok) {
          var detail = data && data.detail ? data.detail : response.statusText;
          throw new Error(response.status + ": " + detail);
        }
        return data;
      });
    });
  }

  function fill(select, values, labels) {
    while (select.firstChild) { select.removeChild(select.firstChild); }
    values.forEach(function (value, i) {
      var option = el("option", labels ? labels[i] : value);
      option.value = value;
      select.appendChild(option);
    });
  }

  // ------------------------------------------------------------------ sign in / out
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    $("app").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  function signIn(token) {
    state.token = token;
    return api("/me").then(function (who) {
      state.role = who.role;
      $("who").textContent = who.name + " (" + who.role + ")";
      $("run").disabled = who.role === "viewer";
      $("run").title = who.role === "viewer" ? "Running forecasts needs an analyst token." : "";
      return api("/models");
    }).then(function (data) {
      sessionStorage.setItem(TOKEN_KEY, token);
      $("login").hidden = true;
      $("app").hidden = false;
      $("logout").hidden = false;
      fill($("model"), data.models);
      if (data.models.indexOf("kde") >= 0) { $("model").value = "kde"; }
      initMap();
      return loadDatasets();
    });
  }

  // ------------------------------------------------------------------ map
  function initMap() {
    if (state.map) { loadMapLayers(); return; }  // signed in again: the new token fetches tiles
    state.map = L.map("map", { preferCanvas: true, zoomSnap: 0.25, attributionControl: false })
      .setView([0, 0], 2);
    // Panes: basemap tiles (200) < cells (400) < outline and reference layers < flagged cells.
    ["context", "flagged"].forEach(function (name, i) {
      var pane = state.map.createPane(name);
      pane.style.zIndex = 430 + 20 * i;
      pane.style.pointerEvents = "none";  // tooltips and clicks reach the cells below
    });
    state.flaggedRenderer = L.canvas({ pane: "flagged", padding: 0.5 });
    state.contextRenderer = L.canvas({ pane: "context", padding: 0.5 });
    L.control.scale({ metric: true, imperial: true, maxWidth: 150 }).addTo(state.map);
    state.clusterLayer = L.layerGroup().addTo(state.map);
    state.alertLayer = L.layerGroup().addTo(state.map);
    drawLegend([]);
    loadMapLayers();
  }

  // The basemap (PMTiles, fetched in byte ranges with the same token) and reference layers.
  function loadMapLayers() {
    (state.contextLayers || []).forEach(function (layer) { state.map.removeLayer(layer); });
    state.contextLayers = [];
    state.basemap = null;
    return api("/map/layers").then(function (layers) {
      var names = layers.references.map(function (r) { return r.name; });
      var refs = placecastMap.references(state.map, layers.references, "context");
      Object.keys(refs).forEach(function (name) { state.contextLayers.push(refs[name]); });
      $("map").setAttribute("data-references", names.join(","));
      if (layers.basemap) {
        var source = new pmtiles.FetchSource(layers.basemap.url,
          new Headers({ "Authorization": "Bearer " + state.token }));
        state.basemap = placecastMap.basemap(state.map, new pmtiles.PMTiles(source), layers.basemap);
        state.contextLayers.push(state.basemap);
        $("map").setAttribute("data-basemap", layers.basemap.tile_type);
      } else {
        $("map").setAttribute("data-basemap", "");
      }
    }).catch(function (err) { setStatus("Map layers: " + err.message, true); });
  }

  function legendRow(legend, cls, text) {
    var row = el("div", null, "row");
    row.appendChild(el("span", null, "swatch " + cls));
    row.appendChild(document.createTextNode(text));
    legend.appendChild(row);
  }

  // Legend in expected events per cell over the forecast window, highest class first.
  function drawLegend(cuts) {
    var legend = $("legend");
    legend.textContent = "";
    legend.appendChild(el("div", "Expected events per cell in the window", "title"));
    if (cuts.length) {
      var text = placecastMap.labels(cuts);
      for (var c = cuts.length; c >= 0; c--) {
        var label = c === cuts.length ? "≥ " + text[c - 1] :
          c === 0 ? "< " + text[0] : text[c - 1] + " – " + text[c];
        legendRow(legend, "sw" + classColour(c, cuts.length), label);
      }
    } else {
      legendRow(legend, "sw0", "no forecast drawn");
    }
    legendRow(legend, "swf", "flagged (area budget)");
    legendRow(legend, "swo", "region (outer edge of the cells)");
    legendRow(legend, "swc", "cluster (scan)");
    legendRow(legend, "swa", "alert");
  }

  function classColour(c, nCuts) {
    return Math.round(c * (COLORS.length - 1) / Math.max(nCuts, 1));
  }

  function classOf(value, cuts) {
    var c = 0;
    while (c < cuts.length && value >= cuts[c]) { c++; }
    return c;
  }

  // The compact map (GET /forecasts/{id}/map) as a GeoJSON FeatureCollection: a grid is
  // rebuilt from its corner lattice and the (col, row) of each cell, other units come with
  // their geometries; the columns become each feature's properties.
  function decodeMap(payload) {
    var features = [], flagged = {}, i;
    payload.flagged.forEach(function (k) { flagged[k] = true; });
    var d = payload.display, stride = d ? d.nc + 1 : 0, nodes = d ? d.nodes : null;
    function node(k) { return [nodes[2 * k], nodes[2 * k + 1]]; }
    for (i = 0; i < payload.n_units; i++) {
      var geometry, id;
      if (d) {
        var c = payload.col[i], r = payload.row[i];
        var a = (r - d.r0) * stride + (c - d.c0);
        geometry = { type: "Polygon", coordinates: [[node(a), node(a + 1), node(a + 1 + stride),
                                                      node(a + stride), node(a)]] };
        id = payload.unit_id ? payload.unit_id[i] : "c" + c + "_r" + r;
      } else {
        geometry = payload.geometries[i];
        id = payload.unit_id[i];
      }
      features.push({ type: "Feature", geometry: geometry, properties: {
        unit_id: id, intensity: payload.intensity[i], rank: payload.rank[i],
        flagged: flagged[i] === true } });
    }
    return { type: "FeatureCollection", forecast: payload.forecast, features: features };
  }

  // The map body is cached by the browser and revalidated with its ETag (304: no body).
  function fetchMap(path) {
    return fetch(path, { headers: { "Authorization": "Bearer " + state.token },
                         credentials: "omit", cache: "no-cache" })
      .then(function (response) {
        if (response.status === 401) { signOut("Your token was not accepted."); throw new Error("401"); }
        return response.json().then(function (data) {
          if (!response.ok) { throw new Error(response.status + ": " + (data.detail || response.statusText)); }
          return data;
        });
      });
  }

  function showForecast(info) {
    var area = $("area").value.trim() || "1%";
    setStatus("Loading forecast #" + info.id + "\u2026");
    return fetchMap("/forecasts/" + info.id + "/map?area=" + encodeURIComponent(area))
      .then(function (payload) {
        var collection = decodeMap(payload);
        var n = collection.features.length;
        if (state.layer) { state.map.removeLayer(state.layer); }
        if (state.flagged) { state.map.removeLayer(state.flagged); }
        if (state.outline) { state.map.removeLayer(state.outline); }
        var cuts = placecastMap.breaks(collection.features.map(function (f) {
          return f.properties.intensity; }), TOP_SHARES);
        var opacity = state.basemap ? 0.6 : 0.75;
        state.layer = L.geoJSON(collection, {
          style: function (feature) {
            var c = classColour(classOf(feature.properties.intensity, cuts), cuts.length);
            return { stroke: false, fillColor: COLORS[c], fillOpacity: opacity };
          },
          onEachFeature: function (feature, layer) {
            var p = feature.properties;
            layer.bindTooltip("cell " + p.unit_id + ": " + placecastMap.label(p.intensity, 3) +
                              " expected events, rank " + p.rank + (p.flagged ? " (flagged)" : ""));
          }
        }).addTo(state.map);
        // Flagged cells are the decision: drawn last, thick, blue on a white halo.
        var flaggedOnly = { type: "FeatureCollection", features: collection.features.filter(
          function (f) { return f.properties.flagged; }) };
        state.flagged = L.layerGroup([
          L.geoJSON(flaggedOnly, { renderer: state.flaggedRenderer, interactive: false,
                                   style: { color: "#ffffff", weight: 6, fill: false } }),
          L.geoJSON(flaggedOnly, { renderer: state.flaggedRenderer, interactive: false,
                                   style: { color: "#0b3fd0", weight: 3, fill: false } })
        ]).addTo(state.map);
        state.outline = L.polyline(placecastMap.outline(collection), {
          renderer: state.contextRenderer, interactive: false, color: "#1d2b3a", weight: 2 })
          .addTo(state.map);
        drawLegend(cuts);
        $("map").setAttribute("data-legend-breaks", cuts.join(","));
        var bounds = state.layer.getBounds();
        if (bounds.isValid()) { state.map.fitBounds(bounds, { padding: [10, 10] }); }
        var meta = collection.forecast;
        if (info.cell_size) { $("cell").value = Math.round(info.cell_size) + "m"; }
        $("map").setAttribute("data-forecast-id", String(info.id));
        $("map").setAttribute("data-model", meta.model);
        $("map").setAttribute("data-n-flagged", String(meta.n_flagged));
        setStatus("Forecast #" + info.id + " \u2013 " + meta.model + ", " +
                  meta.window.start.slice(0, 10) + " to " + meta.window.end.slice(0, 10) +
                  ": " + n + " cells, " + meta.n_flagged + " flagged (" + meta.area + "), " +
                  meta.expected_total.toFixed(1) + " events expected.");
      });
  }

  function latestFor(dataset, model) {
    for (var i = 0; i < state.forecasts.length; i++) {
      var f = state.forecasts[i];
      if (f.dataset === dataset && f.model === model) { return f; }
    }
    return null;
  }

  function refreshForecast() {
    var dataset = $("dataset").value;
    var model = $("model").value;
    return api("/forecasts?dataset=" + encodeURIComponent(dataset)).then(function (data) {
      state.forecasts = data.forecasts;
      var info = latestFor(dataset, model);
      if (!info) {
        [state.layer, state.flagged, state.outline].forEach(function (layer) {
          if (layer) { state.map.removeLayer(layer); } });
        state.layer = state.flagged = state.outline = null;
        drawLegend([]);
        $("map").setAttribute("data-forecast-id", "");
        $("map").setAttribute("data-model", model);
        setStatus("No " + model + " forecast for " + dataset + " yet: press Run forecast.");
        return null;
      }
      return showForecast(info);
    }).catch(function (err) { setStatus(err.message, true); });
  }

  function runForecast() {
    var body = {
      dataset: $("dataset").value, model: $("model").value,
      cell_size: $("cell").value.trim(), horizon: $("horizon").value,
      area: $("area").value.trim()
    };
    if ($("category").value) { body.category = [$("category").value]; }
    $("run").disabled = true;
    setStatus("Running " + body.model + " on " + body.dataset + "\u2026");
    return api("/forecasts", { method: "POST", body: body })
      .then(function () { return refreshForecast(); })
      .catch(function (err) { setStatus(err.message, true); })
      .then(function () { $("run").disabled = state.role === "viewer"; });
  }

  // ------------------------------------------------------------------ datasets
  function loadDatasets() {
    return api("/datasets").then(function (data) {
      var names = data.datasets.map(function (d) { return d.name; });
      var labels = data.datasets.map(function (d) { return d.name + " (" + d.n_events + ")"; });
      fill($("dataset"), names, labels);
      if (!names.length) { setStatus("No dataset yet: an analyst uploads one (POST /datasets/NAME)."); return null; }
      return onDataset();
    }).catch(function (err) { setStatus(err.message, true); });
  }

  function onDataset() {
    var dataset = $("dataset").value;
    api("/datasets/" + encodeURIComponent(dataset) + "/categories").then(function (data) {
      var names = Object.keys(data.categories);
      fill($("category"), [""].concat(names), ["all"].concat(names.map(function (n) {
        return n + " (" + data.categories[n] + ")"; })));
    }).catch(function () { fill($("category"), [""], ["all"]); });
    loadAlerts();
    loadJobs();
    loadClusters(dataset);
    loadBacktest(dataset);
    return refreshForecast();
  }

  // ------------------------------------------------------------------ alerts
  function alertPoint(alert) {
    var g = alert.geometry;
    if (g && g.type === "Point" && g.coordinates) { return [g.coordinates[1], g.coordinates[0]]; }
    if (typeof alert.lat === "number" && typeof alert.lon === "number") { return [alert.lat, alert.lon]; }
    return null;
  }

  // ------------------------------------------------------------------ jobs
  // Background jobs with their progress (done/total), polled while any is unfinished.
  function loadJobs() {
    return api("/jobs").then(function (data) {
      var list = $("jobs");
      list.textContent = "";
      if (!data.jobs.length) { list.appendChild(el("li", "none", "muted")); return; }
      var unfinished = false;
      data.jobs.slice(0, 10).forEach(function (job) {
        var text = job.kind + " " + job.status;
        if (job.n_total) {
          text += ": " + job.n_done + "/" + job.n_total + " (" +
                  Math.round(100 * job.progress) + "%)";
        }
        var item = el("li", text, "job-" + job.status);
        item.setAttribute("data-job-id", job.id);
        list.appendChild(item);
        if (job.status === "queued" || job.status === "running") { unfinished = true; }
      });
      if (unfinished) { window.setTimeout(loadJobs, 2000); }
    }).catch(function (err) { setStatus(err.message, true); });
  }

  function loadAlerts() {
    return api("/alerts").then(function (data) {
      var list = $("alerts");
      list.textContent = "";
      state.alertLayer.clearLayers();
      if (!data.alerts.length) { list.appendChild(el("li", "none", "muted")); return; }
      data.alerts.slice(0, 50).forEach(function (alert) {
        var item = el("li", (alert.kind || "alert") + " \u2013 " + (alert.created || "").slice(0, 10) +
                      (alert.observed !== null && alert.observed !== undefined ? ", observed " + alert.observed : "") +
                      (alert.expected !== null && alert.expected !== undefined ? " vs " + Number(alert.expected).toFixed(1) : ""));
        if (alert.acknowledged) { item.className = "acked"; }
        else {
          var ack = el("button", "Acknowledge");
          ack.type = "button";
          ack.addEventListener("click", function () {
            api("/alerts/" + encodeURIComponent(alert.id) + "/acknowledge", { method: "POST" })
              .then(loadAlerts).catch(function (err) { setStatus(err.message, true); });
          });
          item.appendChild(ack);
        }
        list.appendChild(item);
        var at = alertPoint(alert);
        if (at) {
          L.circleMarker(at, { radius: 8, color: "#b00020", weight: 2, fillOpacity: 0.2 })
            .bindTooltip(alert.kind || "alert").addTo(state.alertLayer);
        } else if (alert.geometry && (alert.geometry.type === "Polygon" ||
                                      alert.geometry.type === "MultiPolygon")) {
          L.geoJSON(alert.geometry, { style: { color: "#b00020", weight: 2, fill: false } })
            .bindTooltip(alert.kind || "alert").addTo(state.alertLayer);
        }
      });
    }).catch(function (err) { setStatus(err.message, true); });
  }

  // ------------------------------------------------------------------ clusters
  function loadClusters(dataset) {
    return api("/scans").then(function (data) {
      state.clusterLayer.clearLayers();
      var done = data.scans.filter(function (job) {
        return job.status === "succeeded" && job.params.dataset === dataset && job.result;
      });
      if (!done.length) { $("map").setAttribute("data-n-clusters", "0"); return; }
      var clusters = done[0].result.clusters;
      L.geoJSON(clusters, {
        style: { color: "#6a1b9a", weight: 2, dashArray: "6 4", fillOpacity: 0.05 },
        onEachFeature: function (feature, layer) {
          var p = feature.properties;
          layer.bindTooltip("cluster #" + p.rank + ": " + p.observed + " events vs " +
                            Number(p.expected).toFixed(1) + " expected, p = " + p.p_value);
        }
      }).addTo(state.clusterLayer);
      $("map").setAttribute("data-n-clusters", String(clusters.features.length));
    }).catch(function (err) { setStatus(err.message, true); });
  }

  // ------------------------------------------------------------------ backtest chart
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function loadBacktest(dataset) {
    return api("/backtests").then(function (data) {
      var match = data.backtests.filter(function (b) { return b.meta && b.meta.dataset === dataset; });
      if (!match.length) { $("chart").textContent = "No backtest yet for " + dataset + "."; return null; }
      return api("/backtests/" + match[0].id).then(drawChart);
    }).catch(function (err) { $("chart").textContent = err.message; });
  }

  function drawChart(backtest) {
    var rows = backtest.rows.filter(function (r) { return r.pai !== null && isFinite(r.pai); });
    var box = $("chart");
    box.textContent = "";
    box.className = "";
    if (!rows.length) { box.textContent = "The backtest has no PAI values."; return; }
    var models = [], origins = [];
    rows.forEach(function (r) {
      if (models.indexOf(r.model) < 0) { models.push(r.model); }
      if (origins.indexOf(r.origin) < 0) { origins.push(r.origin); }
    });
    origins.sort();
    var W = 640, H = 220, left = 40, right = 110, top = 10, bottom = 30;
    var maxPai = Math.max.apply(null, rows.map(function (r) { return r.pai; })) || 1;
    var x = function (i) { return left + (origins.length > 1 ? i / (origins.length - 1) : 0.5) * (W - left - right); };
    var y = function (v) { return top + (1 - v / maxPai) * (H - top - bottom); };
    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "PAI by origin" });
    chart.appendChild(svg("line", { x1: left, y1: y(0), x2: W - right, y2: y(0), stroke: "#889" }));
    chart.appendChild(svg("line", { x1: left, y1: top, x2: left, y2: y(0), stroke: "#889" }));
    [0, maxPai / 2, maxPai].forEach(function (v) {
      chart.appendChild(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10 }, v.toFixed(1)));
    });
    [0, origins.length - 1].forEach(function (i) {
      chart.appendChild(svg("text", { x: x(i), y: H - 10, "text-anchor": "middle", "font-size": 10 },
                            String(origins[i]).slice(0, 10)));
    });
    models.forEach(function (model, m) {
      var color = SERIES[m % SERIES.length];
      var pts = rows.filter(function (r) { return r.model === model; })
        .map(function (r) { return x(origins.indexOf(r.origin)) + "," + y(r.pai); });
      chart.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
      chart.appendChild(svg("text", { x: W - right + 8, y: top + 14 + 14 * m, fill: color, "font-size": 12 }, model));
    });
    box.appendChild(chart);
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var token = $("token").value.trim();
      signIn(token).catch(function () { signOut("Your token was not accepted."); });
    });
    $("logout").addEventListener("click", function () { signOut(""); });
    $("dataset").addEventListener("change", onDataset);
    $("model").addEventListener("change", refreshForecast);
    $("area").addEventListener("change", refreshForecast);
    $("run").addEventListener("click", runForecast);
    var saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) { signIn(saved).catch(function () { signOut(""); }); } else { signOut(""); }
  });
})();
