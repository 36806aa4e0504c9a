/* placecast map context, shared by the dashboard and the offline report.
   placecastMap.basemap(map, archive, info): draw a PMTiles archive (a pmtiles.PMTiles) under
   everything else: vector tiles with protomaps-leaflet's light style, raster tiles as images.
   placecastMap.references(map, layers, pane): draw reference layers (GeoJSON, WGS 84) as thin
   outlines. placecastMap.outline(collection): the outer edge of a set of cells.
   placecastMap.breaks(values, shares) / placecastMap.label(v): legend classes in readable
   numbers. Nothing here loads from the network. */
(function () {
  "use strict";
  var REF_COLOURS = ["#37474f", "#5d4037", "#1b5e20", "#4a148c", "#004d40"];

  function basemap(map, archive, info) {
    var maxNative = Math.max(0, Math.min(info.max_zoom, 15));
    var layer;
    if (info.tile_type === "mvt") {
      layer = protomapsL.leafletLayer({ url: archive, flavor: "light", lang: "en",
                                        maxDataZoom: maxNative, attribution: "" });
    } else {
      layer = pmtiles.leafletRasterLayer(archive, { maxNativeZoom: info.max_zoom, maxZoom: 22,
                                                    attribution: "" });
    }
    layer.addTo(map);
    // Credit the archive's data as its metadata asks (as text: never as HTML).
    if (map.placecastCredit) { map.removeControl(map.placecastCredit); map.placecastCredit = null; }
    archive.getMetadata().then(function (meta) {
      if (!meta || typeof meta.attribution !== "string") { return; }
      // the metadata may hold HTML (links): keep its text only, escaped
      var text = new DOMParser().parseFromString(meta.attribution, "text/html").body.textContent;
      text = text.trim().replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      if (text) {
        map.placecastCredit = L.control.attribution({ prefix: false }).addAttribution(text);
        map.placecastCredit.addTo(map);
      }
    }).catch(function () { /* no metadata: nothing to credit */ });
    return layer;
  }

  function references(map, layers, pane) {
    var added = {};
    (layers || []).forEach(function (ref, i) {
      var colour = REF_COLOURS[i % REF_COLOURS.length];
      var layer = L.geoJSON(ref.geojson, {
        // not interactive: a layer above the cells must not take their clicks and tooltips
        pane: pane, interactive: false,
        style: { color: colour, weight: 1.6, opacity: 0.9, fill: false, dashArray: "5 3" },
        pointToLayer: function (f, at) {
          return L.circleMarker(at, { pane: pane, radius: 3, color: colour, weight: 1.5,
                                      interactive: false });
        }
      });
      layer.addTo(map);
      added[ref.name] = layer;
    });
    return added;
  }

  // Edges that belong to one cell only form the outer edge (and holes) of the cells' union.
  function outline(collection) {
    var count = {}, first = {};
    function key(a, b) { return a[0] + "," + a[1] + ";" + b[0] + "," + b[1]; }
    function ring(coords) {
      for (var i = 0; i + 1 < coords.length; i++) {
        var a = coords[i], b = coords[i + 1];
        var k = (a[0] < b[0] || (a[0] === b[0] && a[1] < b[1])) ? key(a, b) : key(b, a);
        count[k] = (count[k] || 0) + 1;
        if (!first[k]) { first[k] = [[a[1], a[0]], [b[1], b[0]]]; }
      }
    }
    collection.features.forEach(function (f) {
      var g = f.geometry;
      if (!g) { return; }
      var polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      polys.forEach(function (poly) { poly.forEach(ring); });
    });
    return Object.keys(count).filter(function (k) { return count[k] === 1; })
      .map(function (k) { return first[k]; });
  }

  // Values at the given top shares (e.g. 0.01 = the top 1 %), rising and distinct.
  function breaks(values, shares) {
    var sorted = values.filter(function (v) { return isFinite(v); }).sort(function (a, b) { return b - a; });
    var out = [];
    shares.slice().sort(function (a, b) { return b - a; }).forEach(function (share) {
      if (!sorted.length) { return; }
      var i = Math.min(Math.max(Math.ceil(share * sorted.length) - 1, 0), sorted.length - 1);
      var v = sorted[i];
      if (v > 0 && (!out.length || v > out[out.length - 1])) { out.push(v); }
    });
    return out;
  }

  // Two significant digits, more only when needed to tell neighbouring breaks apart.
  function labels(values) {
    for (var digits = 2; digits <= 6; digits++) {
      var text = values.map(function (v) { return label(v, digits); });
      var distinct = text.filter(function (t, i) { return text.indexOf(t) === i; });
      if (distinct.length === text.length) { return text; }
    }
    return values.map(function (v) { return String(v); });
  }

  function label(v, digits) {
    if (v === 0) { return "0"; }
    return Number(v.toPrecision(digits || 2)).toLocaleString("en-US", { maximumFractionDigits: 8 });
  }

  window.placecastMap = { basemap: basemap, references: references, outline: outline,
                          breaks: breaks, labels: labels, label: label };
})();
