/* The pathology slide viewer (templates/pathology/viewer.html and embed.html), served at
 * /static/pathology_viewer/viewer.js. OpenSeadragon (vendor/, BSD-3-Clause) draws the Deep Zoom
 * pyramid; this file adds what it lacks: a scale bar from the slide's microns per pixel, an SVG
 * overlay of the annotations kept in level-0 image pixels, the drawing tools, the list beside the
 * viewer, and the "cite this view" link.
 *
 * Configuration comes from data- attributes (the CSP forbids inline scripts): data-config (JSON:
 * slide size, mppX/mppY, dzi, annotationsUrl, listUrl, viewUrl, view {x, y, zoom, rotation},
 * focus, focusBounds, mayAnnotate, mode "full" | "embed") and data-annotations (JSON list).
 *
 * A cited view is x, y (the centre, level-0 pixels), zoom (OpenSeadragon's image zoom: screen pixels
 * per level-0 pixel, 1 = full resolution) and rotation (degrees clockwise).
 */
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var KIND_LABELS = { point: "Point", rect: "Rectangle", polygon: "Polygon", freehand: "Freehand", text: "Text" };
  var MAX_FREEHAND = 5000;

  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function svgEl(name, attrs) {
    var el = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function niceLength(raw) {
    // the largest 1, 2 or 5 times a power of ten not above raw
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / p;
    return (n >= 5 ? 5 : n >= 2 ? 2 : 1) * p;
  }

  function formatMicrons(um) {
    if (um >= 1000) return +(um / 1000).toPrecision(3) + " mm";
    return +um.toPrecision(3) + " µm";
  }

  function Viewer(el) {
    this.el = el;
    this.cfg = JSON.parse(el.getAttribute("data-config") || "{}");
    this.annotations = JSON.parse(el.getAttribute("data-annotations") || "[]");
    this.page = el.closest(".pv-layout") || document;
    this.tool = "pan";
    this.drawing = null;
    this.citedAnnotation = this.cfg.focus || null;
    this.status = document.getElementById("pv-status");
    this.start();
  }

  function preemptInjectedStyle() {
    // OpenSeadragon adds a <style> element (a touch-screen focus rule) unless one marked
    // data-openseadragon-mobile-css exists; the CSP refuses inline styles, so it would only log a
    // violation. A marker outside the HTML namespace is no stylesheet but satisfies its check; the
    // rule itself is in viewer.css.
    if (document.querySelector("style[data-openseadragon-mobile-css]")) return;
    var marker = document.createElementNS("urn:x-cpms:marker", "style");
    marker.setAttribute("data-openseadragon-mobile-css", "viewer.css");
    document.head.appendChild(marker);
  }

  Viewer.prototype.start = function () {
    var self = this;
    var cfg = this.cfg;
    var OSD = window.OpenSeadragon;
    preemptInjectedStyle();
    this.osd = OSD({
      element: this.el,
      prefixUrl: "/static/pathology_viewer/vendor/images/",
      tileSources: cfg.dzi,
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "TOP_RIGHT",
      showRotationControl: true,
      showFullPageControl: true,
      maxZoomPixelRatio: 2,
      visibilityRatio: 0.5,
      animationTime: 0.6,
      gestureSettingsMouse: { clickToZoom: false },
      crossOriginPolicy: false
    });
    this.el.osd = this.osd;
    window.cpmsPathologyViewer = this.osd; // for the browser test and the console
    window.cpmsPathologyViewerState = this;

    this.scale = document.createElement("div");
    this.scale.className = "pv-scalebar";
    this.scaleBar = document.createElement("div");
    this.scaleBar.className = "pv-scalebar-bar";
    this.scaleText = document.createElement("span");
    this.scaleText.className = "pv-scalebar-text";
    this.scale.appendChild(this.scaleBar);
    this.scale.appendChild(this.scaleText);
    this.osd.addControl(this.scale, { anchor: OSD.ControlAnchor.BOTTOM_LEFT });

    this.svg = svgEl("svg", { "class": "pv-overlay", "aria-hidden": "true" });
    this.layer = svgEl("g", { "class": "pv-layer" });
    this.preview = svgEl("g", { "class": "pv-preview" });
    this.svg.appendChild(this.layer);
    this.svg.appendChild(this.preview);
    this.osd.canvas.appendChild(this.svg);

    var redraw = function () { self.place(); };
    ["animation", "update-viewport", "resize", "rotate", "open"].forEach(function (name) {
      self.osd.addHandler(name, redraw);
    });
    this.osd.addHandler("open", function () {
      self.annotations.forEach(function (a) { self.draw(a); });
      self.restore();
      self.place();
      self.updateLink();
      self.el.setAttribute("data-ready", "open");
    });
    this.osd.addHandler("open-failed", function () {
      self.say("The slide could not be opened.");
    });
    this.osd.addHandler("animation-finish", function () { self.updateLink(); });
    // The overlay follows rotation, not mirroring: the flip key is switched off.
    this.osd.addHandler("canvas-key", function (e) {
      if (e.originalEvent && e.originalEvent.code === "KeyF") e.preventDefaultAction = true;
    });
    ["canvas-drag", "canvas-scroll", "canvas-key", "canvas-pinch"].forEach(function (name) {
      self.osd.addHandler(name, function () { self.citedAnnotation = null; });
    });
    this.bindTools();
  };

  // --- view, scale bar, overlay placement ---------------------------------------------------------

  Viewer.prototype.restore = function () {
    var vp = this.osd.viewport;
    var v = this.cfg.view;
    if (v) {
      vp.setRotation(v.rotation || 0, true);
      vp.zoomTo(vp.imageToViewportZoom(v.zoom), null, true);
      vp.panTo(vp.imageToViewportCoordinates(v.x, v.y), true);
    } else if (this.cfg.focusBounds) {
      this.fit(this.cfg.focusBounds, true);
      this.highlight(this.cfg.focus);
    }
  };

  Viewer.prototype.fit = function (b, immediately) {
    // a point gets a box of 400 level-0 pixels around it; shapes a margin of a fifth
    var w = Math.max(b[2], 400), h = Math.max(b[3], 400);
    var x = b[0] + b[2] / 2 - w * 0.6, y = b[1] + b[3] / 2 - h * 0.6;
    var vp = this.osd.viewport;
    vp.fitBounds(vp.imageToViewportRectangle(x, y, w * 1.2, h * 1.2), immediately);
  };

  Viewer.prototype.imageZoom = function () {
    var vp = this.osd.viewport;
    return vp.viewportToImageZoom(vp.getZoom(true));
  };

  Viewer.prototype.place = function () {
    if (!this.osd.world.getItemCount()) return;
    var vp = this.osd.viewport;
    var s = this.imageZoom();
    var o = vp.imageToViewerElementCoordinates(new window.OpenSeadragon.Point(0, 0));
    var r = vp.getRotation(true);
    var t = "translate(" + o.x + "," + o.y + ") rotate(" + r + ") scale(" + s + ")";
    this.layer.setAttribute("transform", t);
    this.preview.setAttribute("transform", t);
    this.s = s;
    // markers and text keep their size on screen
    var marks = this.svg.querySelectorAll("[data-screen-r]");
    for (var i = 0; i < marks.length; i++) marks[i].setAttribute("r", marks[i].getAttribute("data-screen-r") / s);
    var texts = this.svg.querySelectorAll("text[data-screen-size]");
    for (var j = 0; j < texts.length; j++) {
      texts[j].setAttribute("font-size", texts[j].getAttribute("data-screen-size") / s);
      texts[j].setAttribute("dx", 9 / s);
      texts[j].setAttribute("dy", -9 / s);
    }
    this.updateScale(s);
  };

  Viewer.prototype.updateScale = function (imageZoom) {
    var mpp = this.cfg.mppX;
    var target = 120; // screen pixels the bar should roughly take
    if (mpp && mpp > 0) {
      var umPerPx = mpp / imageZoom;
      var um = niceLength(umPerPx * target);
      this.scaleBar.style.width = Math.round(um / umPerPx) + "px";
      this.scaleText.textContent = formatMicrons(um);
    } else {
      var px = niceLength(target / imageZoom);
      this.scaleBar.style.width = Math.round(px * imageZoom) + "px";
      this.scaleText.textContent = +px.toPrecision(3) + " px (no calibration)";
    }
    this.scale.setAttribute("data-zoom", imageZoom.toPrecision(4));
  };

  // --- the cite link ------------------------------------------------------------------------------

  Viewer.prototype.currentPath = function () {
    if (this.citedAnnotation) return this.cfg.viewUrl + "?annotation=" + this.citedAnnotation;
    var vp = this.osd.viewport;
    var c = vp.viewportToImageCoordinates(vp.getCenter(true));
    var x = Math.min(Math.max(Math.round(c.x), 0), this.cfg.width);
    var y = Math.min(Math.max(Math.round(c.y), 0), this.cfg.height);
    var z = Math.min(this.imageZoom(), 64);
    var rot = ((Math.round(vp.getRotation()) % 360) + 360) % 360;
    var q = "?x=" + x + "&y=" + y + "&zoom=" + (+z.toPrecision(4));
    if (rot) q += "&rotation=" + rot;
    return this.cfg.viewUrl + q;
  };

  Viewer.prototype.updateLink = function () {
    if (this.cfg.mode !== "full" || !this.cfg.viewUrl) return;
    var path = this.currentPath();
    var input = document.querySelector("[data-cite-link]");
    if (input) input.value = window.location.origin + path;
    var body = document.querySelector("[data-cite-body]");
    if (body) body.value = path;
    this.el.setAttribute("data-cite-path", path);
  };

  // --- annotations: drawing them ------------------------------------------------------------------

  Viewer.prototype.shapeOf = function (a) {
    var pts = a.geometry.points;
    var g = svgEl("g", { "class": "pv-annotation-shape pv-kind-" + a.kind, "data-annotation-id": a.id });
    var title = svgEl("title");
    title.textContent = (KIND_LABELS[a.kind] || a.kind) + (a.measurement ? " · " + a.measurement.label : "") +
      (a.text ? " · " + a.text : "");
    g.appendChild(title);
    var path = pts.map(function (p) { return p[0] + "," + p[1]; }).join(" ");
    if (a.kind === "rect") {
      g.appendChild(svgEl("rect", { x: pts[0][0], y: pts[0][1], width: pts[1][0] - pts[0][0], height: pts[1][1] - pts[0][1], "class": "pv-shape" }));
    } else if (a.kind === "polygon" || (a.kind === "freehand" && a.geometry.closed)) {
      g.appendChild(svgEl("polygon", { points: path, "class": "pv-shape" }));
    } else if (a.kind === "freehand") {
      g.appendChild(svgEl("polyline", { points: path, "class": "pv-shape pv-open" }));
    } else {
      g.appendChild(svgEl("circle", { cx: pts[0][0], cy: pts[0][1], r: 1, "data-screen-r": 6, "class": "pv-marker" }));
    }
    if (a.text || a.kind === "text") {
      var t = svgEl("text", { x: pts[0][0], y: pts[0][1], "data-screen-size": 14, "class": "pv-label" });
      t.textContent = a.text;
      g.appendChild(t);
    }
    return g;
  };

  Viewer.prototype.draw = function (a) {
    this.layer.appendChild(this.shapeOf(a));
  };

  Viewer.prototype.highlight = function (id) {
    var all = this.layer.querySelectorAll(".pv-annotation-shape");
    for (var i = 0; i < all.length; i++) {
      all[i].classList.toggle("pv-focus", String(all[i].getAttribute("data-annotation-id")) === String(id));
    }
  };

  Viewer.prototype.find = function (id) {
    for (var i = 0; i < this.annotations.length; i++) if (String(this.annotations[i].id) === String(id)) return this.annotations[i];
    return null;
  };

  Viewer.prototype.say = function (text) {
    if (this.status) this.status.textContent = text;
  };

  // --- annotations: tools -------------------------------------------------------------------------

  Viewer.prototype.bindTools = function () {
    var self = this;
    var root = this.page;
    if (this.cfg.mode !== "full") return;
    root.addEventListener("click", function (e) {
      var btn = e.target.closest("[data-tool], [data-action]");
      if (!btn || !root.contains(btn)) return;
      var tool = btn.getAttribute("data-tool");
      if (tool) return self.setTool(tool);
      self.act(btn.getAttribute("data-action"), btn, e);
    });
    var panel = document.querySelector("[data-cite-panel]");
    if (panel) panel.addEventListener("change", function () {
      document.getElementById("pv-cite-form").setAttribute("action", "/panels/" + panel.value + "/messages");
    });
    var form = document.getElementById("pv-cite-form");
    if (form) form.addEventListener("submit", function () {
      var text = (document.querySelector("[data-cite-text]").value || "").trim();
      var body = form.querySelector("[data-cite-body]");
      var path = self.currentPath();
      body.value = (text ? text + "\n" : "") + body.getAttribute("data-title") + ": " + path;
    });
    var s = this.svg;
    s.addEventListener("pointerdown", function (e) { self.down(e); });
    s.addEventListener("pointermove", function (e) { self.move(e); });
    s.addEventListener("pointerup", function (e) { self.up(e); });
    s.addEventListener("dblclick", function (e) { e.preventDefault(); self.finishPolygon(); });
    document.addEventListener("keydown", function (e) {
      if (!self.el.isConnected || self.tool === "pan") return;
      if (e.key === "Escape") { self.cancel(); self.say("Drawing cancelled."); }
      if (e.key === "Enter" && self.drawing && self.drawing.kind === "polygon") { e.preventDefault(); self.finishPolygon(); }
    });
  };

  Viewer.prototype.setTool = function (tool) {
    this.cancel();
    this.tool = tool;
    var buttons = this.page.querySelectorAll("[data-tool]");
    for (var i = 0; i < buttons.length; i++) buttons[i].setAttribute("aria-pressed", buttons[i].getAttribute("data-tool") === tool ? "true" : "false");
    var drawing = tool !== "pan";
    this.svg.classList.toggle("pv-drawing", drawing);
    this.osd.setMouseNavEnabled(!drawing);
    this.el.setAttribute("data-tool", tool);
    var hints = {
      pan: "Drag to move, scroll to zoom.",
      point: "Click on the slide to place a point.",
      text: "Write the text in the Note field, then click where it belongs.",
      rect: "Drag a rectangle.",
      polygon: "Click each corner; double-click, Enter or a click on the first corner finishes; Esc cancels.",
      freehand: "Hold the button down and draw; ending near the start closes the outline."
    };
    this.say(hints[tool] || "");
  };

  Viewer.prototype.toImage = function (e) {
    var r = this.osd.element.getBoundingClientRect();
    var p = this.osd.viewport.viewerElementToImageCoordinates(new window.OpenSeadragon.Point(e.clientX - r.left, e.clientY - r.top));
    return [Math.min(Math.max(p.x, 0), this.cfg.width), Math.min(Math.max(p.y, 0), this.cfg.height)];
  };

  Viewer.prototype.near = function (a, b, screenPx) {
    return Math.hypot(a[0] - b[0], a[1] - b[1]) * this.s <= screenPx;
  };

  Viewer.prototype.down = function (e) {
    if (this.tool === "pan" || e.button !== 0) return;
    e.preventDefault();
    var p = this.toImage(e);
    if (this.tool === "point" || this.tool === "text") {
      if (this.tool === "text" && !this.note()) {
        this.say("Write the text in the Note field first.");
        var n = document.getElementById("pv-note");
        if (n) n.focus();
        return;
      }
      return this.save(this.tool, { points: [p] });
    }
    if (this.tool === "polygon") {
      if (!this.drawing) this.drawing = { kind: "polygon", points: [] };
      var pts = this.drawing.points;
      if (pts.length >= 3 && this.near(p, pts[0], 8)) return this.finishPolygon();
      if (!pts.length || !this.near(p, pts[pts.length - 1], 2)) pts.push(p);
      return this.showPreview(pts.concat([p]), false);
    }
    this.svg.setPointerCapture(e.pointerId);
    this.drawing = { kind: this.tool, points: [p, p] };
    if (this.tool === "freehand") this.drawing.points = [p];
  };

  Viewer.prototype.move = function (e) {
    var d = this.drawing;
    if (!d) return;
    var p = this.toImage(e);
    if (d.kind === "rect") {
      d.points[1] = p;
      var a = d.points[0];
      this.showPreview([a, [p[0], a[1]], p, [a[0], p[1]]], true);
    } else if (d.kind === "freehand") {
      if (!this.near(p, d.points[d.points.length - 1], 3)) d.points.push(p);
      this.showPreview(d.points, false);
    } else if (d.kind === "polygon") {
      this.showPreview(d.points.concat([p]), false);
    }
  };

  Viewer.prototype.up = function (e) {
    var d = this.drawing;
    if (!d || d.kind === "polygon") return;
    this.drawing = null;
    this.clearPreview();
    if (d.kind === "rect") {
      var a = d.points[0], b = this.toImage(e);
      if (this.near([a[0], 0], [b[0], 0], 3) || this.near([0, a[1]], [0, b[1]], 3)) return this.say("Drag to draw a rectangle.");
      return this.save("rect", { points: [a, b] });
    }
    if (d.kind === "freehand") {
      var pts = d.points;
      if (pts.length < 2) return this.say("Hold the button down while drawing.");
      while (pts.length > MAX_FREEHAND) pts = pts.filter(function (_, i) { return i % 2 === 0; });
      var closed = pts.length >= 3 && this.near(pts[0], pts[pts.length - 1], 12);
      return this.save("freehand", { points: pts, closed: closed });
    }
  };

  Viewer.prototype.finishPolygon = function () {
    var d = this.drawing;
    if (!d || d.kind !== "polygon") return;
    if (d.points.length < 3) return this.say("A polygon needs at least three corners.");
    this.drawing = null;
    this.clearPreview();
    this.save("polygon", { points: d.points });
  };

  Viewer.prototype.cancel = function () {
    this.drawing = null;
    this.clearPreview();
  };

  Viewer.prototype.showPreview = function (pts, closed) {
    this.clearPreview();
    var attrs = { points: pts.map(function (p) { return p[0] + "," + p[1]; }).join(" "), "class": "pv-shape pv-drawing-shape" };
    this.preview.appendChild(svgEl(closed ? "polygon" : "polyline", attrs));
  };

  Viewer.prototype.clearPreview = function () {
    while (this.preview.firstChild) this.preview.removeChild(this.preview.firstChild);
  };

  Viewer.prototype.note = function () {
    var n = document.getElementById("pv-note");
    return n ? n.value.trim() : "";
  };

  Viewer.prototype.save = function (kind, geometry) {
    var self = this;
    var round = function (p) { return [Math.round(p[0] * 100) / 100, Math.round(p[1] * 100) / 100]; };
    geometry.points = geometry.points.map(round);
    this.say("Saving…");
    return fetch(this.cfg.annotationsUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "x-csrftoken": csrfToken() },
      body: JSON.stringify({ kind: kind, geometry: geometry, text: this.note() })
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (res) {
      if (!res.ok) return self.say("Not saved: " + (res.body.detail || "the server refused it."));
      var a = res.body;
      self.annotations.push(a);
      self.draw(a);
      self.place();
      var n = document.getElementById("pv-note");
      if (n) n.value = "";
      self.say("Saved: " + KIND_LABELS[a.kind] + (a.measurement ? " · " + a.measurement.label : "") + ".");
      self.reloadList();
    }).catch(function () { self.say("Not saved: the server could not be reached."); });
  };

  Viewer.prototype.reloadList = function () {
    var box = document.getElementById("pv-annotation-list");
    if (!box) return;
    fetch(box.getAttribute("data-list-url"), { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) box.innerHTML = html; });
  };

  Viewer.prototype.remove = function (id) {
    var self = this;
    fetch(this.cfg.annotationsUrl + "/" + encodeURIComponent(id), {
      method: "DELETE", credentials: "same-origin", headers: { "Accept": "application/json", "x-csrftoken": csrfToken() }
    }).then(function (r) {
      if (r.status !== 204) return r.json().then(function (b) { self.say("Not deleted: " + (b.detail || r.status)); });
      self.annotations = self.annotations.filter(function (a) { return String(a.id) !== String(id); });
      var g = self.layer.querySelector('[data-annotation-id="' + String(Number(id)) + '"]');
      if (g) g.parentNode.removeChild(g);
      self.say("Annotation deleted.");
      self.reloadList();
    });
  };

  // --- buttons ------------------------------------------------------------------------------------

  Viewer.prototype.act = function (action, btn, e) {
    var vp = this.osd.viewport;
    var id = btn.getAttribute("data-id");
    switch (action) {
      case "rotate-left": this.citedAnnotation = null; vp.setRotation(vp.getRotation() - 90); break;
      case "rotate-right": this.citedAnnotation = null; vp.setRotation(vp.getRotation() + 90); break;
      case "home": this.citedAnnotation = null; vp.goHome(); break;
      case "full-resolution": this.citedAnnotation = null; vp.zoomTo(vp.imageToViewportZoom(1)); break;
      case "fullscreen": this.osd.setFullScreen(!this.osd.isFullPage()); break;
      case "copy-link": this.copyLink(); break;
      case "show-annotation": {
        e.preventDefault();
        var a = this.find(id);
        if (a) {
          this.fit(bounds(a.geometry), false);
          this.highlight(a.id);
        }
        break;
      }
      case "cite-annotation": {
        var b = this.find(id);
        if (!b) break;
        this.fit(bounds(b.geometry), false);
        this.highlight(b.id);
        this.citedAnnotation = b.id;
        this.updateLink();
        this.say("The link now reopens annotation " + b.id + ": copy it or cite it in the discussion.");
        var input = document.querySelector("[data-cite-link]");
        if (input) input.focus();
        break;
      }
      case "delete-annotation":
        if (window.confirm("Delete this annotation?")) this.remove(id);
        break;
    }
  };

  Viewer.prototype.copyLink = function () {
    var self = this;
    var input = document.querySelector("[data-cite-link]");
    if (!input) return;
    var done = function () { self.say("Link copied."); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { input.select(); });
    } else {
      input.select();
      try { document.execCommand("copy"); done(); } catch (err) { self.say("Select the link and copy it."); }
    }
  };

  function bounds(geometry) {
    var xs = geometry.points.map(function (p) { return p[0]; });
    var ys = geometry.points.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), y0 = Math.min.apply(null, ys);
    return [x0, y0, Math.max.apply(null, xs) - x0, Math.max.apply(null, ys) - y0];
  }

  // --- start-up -----------------------------------------------------------------------------------

  function boot() {
    if (!window.OpenSeadragon) return;
    var els = document.querySelectorAll("[data-pathology-viewer]:not([data-started])");
    for (var i = 0; i < els.length; i++) {
      els[i].setAttribute("data-started", "true");
      new Viewer(els[i]);
    }
  }

  function whenReady() {
    // With htmx's boosted navigation both scripts are inserted at once and may run in any order.
    if (window.OpenSeadragon) return boot();
    var tries = 0;
    var timer = window.setInterval(function () {
      if (window.OpenSeadragon || ++tries > 200) {
        window.clearInterval(timer);
        boot();
      }
    }, 50);
  }

  if (!window.cpmsPathologyViewerLoaded) {
    window.cpmsPathologyViewerLoaded = true;
    document.addEventListener("htmx:load", whenReady);
    document.addEventListener("htmx:beforeCleanupElement", function (e) {
      var el = e.target;
      if (el && el.osd) { el.osd.destroy(); el.osd = null; }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", whenReady);
  else whenReady();
})();
