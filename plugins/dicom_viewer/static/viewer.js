/* The DICOM series viewer (templates/dicom/viewer.html), served at /static/dicom_viewer/viewer.js.
 *
 * One <canvas>: the server renders each frame (window, invert) to PNG, or JPEG while the window is being
 * dragged (fewer bytes, the frame keeps up with the mouse); this script places it with zoom, pan, a
 * rotation by quarter turns and flips, and draws the annotations over it in screen space, so lines and
 * labels keep their width and stay upright whatever the transform. Measurements are computed on the
 * server (annotations.py) and only displayed here.
 *
 * Configuration comes from data- attributes (the CSP forbids inline scripts): data-config (JSON: series,
 * instances [{id, number, frames, rows, columns, spacing, window}], urls, presets, view, focus,
 * mayAnnotate) and data-annotations (JSON list, each with instance and frame).
 *
 * The state of a view, as the cite link carries it: instance, frame (from 1), wc/ww (absent: the file's
 * window), invert, zoom (screen CSS pixels per image pixel; absent: fit to the viewport), x/y (the image
 * point at the viewport's centre), rot (degrees clockwise, quarter turns) and flip (h, v or hv: applied
 * to the image before the rotation).
 */
(function () {
  "use strict";
  var KIND_LABELS = { arrow: "Arrow", text: "Text", length: "Length", angle: "Angle", ellipse: "Ellipse ROI" };
  var MIN_ZOOM = 0.05, MAX_ZOOM = 32;
  var CACHE_MAX = 400;
  var COLOURS = { shape: "#facc15", focus: "#f43f5e", drawing: "#38bdf8" };

  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  function fmt(v) {
    // zoom in links and labels: 4 significant figures
    return String(+(+v).toPrecision(4));
  }

  function fmtWindow(v) {
    // window values: exact to 1/1000 (PET and MR windows may be small fractions)
    return String(Math.round(v * 1000) / 1000);
  }

  function Viewer(el) {
    this.el = el;
    this.canvas = el.querySelector("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.cfg = JSON.parse(el.getAttribute("data-config") || "{}");
    this.annotations = JSON.parse(el.getAttribute("data-annotations") || "[]");
    this.page = el.closest(".dv-layout") || document;
    this.status = document.getElementById("dv-status");
    this.stack = [];
    var self = this;
    (this.cfg.instances || []).forEach(function (inst) {
      for (var f = 1; f <= Math.max(1, inst.frames || 1); f++) self.stack.push({ inst: inst, frame: f });
    });
    this.images = new Map(); // url -> {img, ready, failed}
    this.pointers = new Map(); // pointerId -> {x, y}
    this.tool = "pan";
    this.drawing = null;
    this.gesture = null;
    this.focus = this.cfg.focus || null;
    this.citedAnnotation = this.cfg.focus || null;
    this.cine = null;
    this.shown = null; // the last image drawn (kept on screen while the next one loads)
    this.applyView(this.cfg.view || {});
    this.resize(); // the viewport's size first: fitting and the read-out depend on it
    this.bind();
    window.cpmsDicomViewer = this; // for the browser test and the console
  }

  // --- state ------------------------------------------------------------------------------------

  Viewer.prototype.applyView = function (v) {
    var idx = 0;
    for (var i = 0; i < this.stack.length; i++) {
      if (this.stack[i].inst.id === v.instance && this.stack[i].frame === (v.frame || 1)) { idx = i; break; }
    }
    this.index = idx;
    this.wc = v.wc != null ? v.wc : null;
    this.ww = v.ww != null ? v.ww : null;
    this.invert = !!v.invert;
    this.rot = ((v.rot || 0) % 360 + 360) % 360;
    this.flipH = !!v.flipH;
    this.flipV = !!v.flipV;
    this.zoom = v.zoom || null; // null: fit
    var inst = this.current().inst;
    this.cx = v.x != null ? v.x : inst.columns / 2;
    this.cy = v.y != null ? v.y : inst.rows / 2;
  };

  Viewer.prototype.current = function () {
    return this.stack[this.index] || { inst: { id: 0, rows: 1, columns: 1, frames: 1 }, frame: 1 };
  };

  Viewer.prototype.effectiveZoom = function () {
    if (this.zoom) return this.zoom;
    var inst = this.current().inst;
    var turned = this.rot % 180 !== 0;
    var w = turned ? inst.rows : inst.columns, h = turned ? inst.columns : inst.rows;
    return Math.max(MIN_ZOOM, Math.min(this.W / w, this.H / h));
  };

  // image -> screen: screen = C + z · R(F(p − c)); F flips, R rotates clockwise (y points down)
  Viewer.prototype.linear = function (v, z) {
    var x = this.flipH ? -v[0] : v[0], y = this.flipV ? -v[1] : v[1];
    var a = this.rot * Math.PI / 180, c = Math.round(Math.cos(a)), s = Math.round(Math.sin(a));
    return [z * (x * c - y * s), z * (x * s + y * c)];
  };

  Viewer.prototype.unlinear = function (v, z) {
    var a = -this.rot * Math.PI / 180, c = Math.round(Math.cos(a)), s = Math.round(Math.sin(a));
    var x = (v[0] * c - v[1] * s) / z, y = (v[0] * s + v[1] * c) / z;
    return [this.flipH ? -x : x, this.flipV ? -y : y];
  };

  Viewer.prototype.toScreen = function (p) {
    var d = this.linear([p[0] - this.cx, p[1] - this.cy], this.effectiveZoom());
    return [this.W / 2 + d[0], this.H / 2 + d[1]];
  };

  Viewer.prototype.toImage = function (s) {
    var d = this.unlinear([s[0] - this.W / 2, s[1] - this.H / 2], this.effectiveZoom());
    return [this.cx + d[0], this.cy + d[1]];
  };

  Viewer.prototype.clampToImage = function (p) {
    var inst = this.current().inst;
    return [clamp(p[0], 0, inst.columns), clamp(p[1], 0, inst.rows)];
  };

  Viewer.prototype.zoomAt = function (factor, s) {
    var z0 = this.effectiveZoom();
    var z = clamp(z0 * factor, MIN_ZOOM, MAX_ZOOM);
    s = s || [this.W / 2, this.H / 2];
    var p = this.toImage(s);
    this.zoom = z;
    var d = this.unlinear([s[0] - this.W / 2, s[1] - this.H / 2], z);
    this.cx = p[0] - d[0];
    this.cy = p[1] - d[1];
    this.changed();
  };

  Viewer.prototype.panBy = function (dx, dy) {
    if (!this.zoom) this.zoom = this.effectiveZoom();
    var d = this.unlinear([dx, dy], this.zoom);
    this.cx -= d[0];
    this.cy -= d[1];
    this.changed();
  };

  Viewer.prototype.fit = function () {
    var inst = this.current().inst;
    this.zoom = null;
    this.cx = inst.columns / 2;
    this.cy = inst.rows / 2;
    this.changed();
  };

  Viewer.prototype.rotate = function (deg) {
    this.rot = ((this.rot + deg) % 360 + 360) % 360;
    this.changed();
  };

  Viewer.prototype.reset = function () {
    this.stopCine();
    this.wc = this.ww = null;
    this.invert = false;
    this.rot = 0;
    this.flipH = this.flipV = false;
    this.focus = this.citedAnnotation = null;
    this.fit();
    this.say("View reset.");
  };

  Viewer.prototype.setWindow = function (wc, ww) {
    this.wc = wc;
    this.ww = ww == null ? null : Math.max(1, ww);
    this.changed();
  };

  Viewer.prototype.startWindow = function () {
    // the numbers a drag starts from when the file's own window is shown
    if (this.wc != null) return [this.wc, this.ww];
    var w = this.current().inst.window || this.cfg.defaultWindow || [40, 400];
    return [w[0], w[1]];
  };

  Viewer.prototype.go = function (i) {
    if (!this.stack.length) return;
    var n = this.stack.length;
    var next = ((i % n) + n) % n;
    if (next === this.index) return;
    var before = this.current().inst;
    this.index = next;
    var inst = this.current().inst;
    if (inst.columns !== before.columns || inst.rows !== before.rows) {
      // another image size: keep the relative centre
      this.cx = this.cx / before.columns * inst.columns;
      this.cy = this.cy / before.rows * inst.rows;
    }
    if (this.tags && this.tags.open && inst.id !== before.id) this.loadTags();
    this.changed();
  };

  Viewer.prototype.step = function (d) {
    if (!this.stack.length) return;
    this.go(clamp(this.index + d, 0, this.stack.length - 1));
  };

  // --- rendered frames ----------------------------------------------------------------------------

  Viewer.prototype.frameUrl = function (pos, fast) {
    var q = [];
    if (this.wc != null) q.push("wc=" + fmtWindow(this.wc), "ww=" + fmtWindow(this.ww));
    if (this.invert) q.push("invert=1");
    q.push("format=" + (fast ? "jpeg" : "png"));
    // the rendered-frame route numbers frames from 0; the viewer (and its links) from 1, as DICOM does
    return this.cfg.renderedUrl.replace("{instance}", pos.inst.id).replace("{frame}", pos.frame - 1) + "?" + q.join("&");
  };

  Viewer.prototype.load = function (url, onready) {
    var self = this;
    var hit = this.images.get(url);
    if (hit) {
      this.images.delete(url); // most recently used last
      this.images.set(url, hit);
      if (onready && !hit.ready && !hit.failed) hit.waiting.push(onready);
      return hit;
    }
    var img = new Image();
    var entry = { img: img, ready: false, failed: false, waiting: onready ? [onready] : [] };
    this.images.set(url, entry);
    img.decoding = "async";
    img.onload = function () {
      entry.ready = true;
      entry.waiting.forEach(function (f) { f(entry); });
      entry.waiting = [];
    };
    img.onerror = function () {
      entry.failed = true;
      entry.waiting.forEach(function (f) { f(entry); });
      entry.waiting = [];
    };
    img.src = url;
    while (this.images.size > CACHE_MAX) this.images.delete(this.images.keys().next().value);
    return entry;
  };

  Viewer.prototype.prefetch = function (around, count) {
    for (var d = 1; d <= count; d++) {
      [around + d, around - d].forEach(function (i) {
        if (i >= 0 && i < this.stack.length) this.load(this.frameUrl(this.stack[i], false));
      }, this);
    }
  };

  Viewer.prototype.request = function () {
    // While the window is dragged, one frame request is in flight; the latest wish is asked for next.
    var self = this;
    var fast = !!(this.gesture && this.gesture.kind === "window");
    var url = this.frameUrl(this.current(), fast);
    var entry = this.images.get(url);
    if (entry && entry.ready) { this.shown = { entry: entry, pos: this.current() }; return; }
    if (entry && entry.failed) { this.say("This frame could not be rendered."); return; }
    var done = function (e) {
      if (self.inflight === url) self.inflight = null;
      if (self.wanted) { self.wanted = false; }
      if (e.ready && !self.el.hasAttribute("data-ready")) {
        self.el.setAttribute("data-ready", "open");
        self.updateReadout();
      }
      self.draw();
      if (!fast && e.ready && !self.cine) self.prefetch(self.index, 8);
    };
    if (entry) {
      // loading already (a prefetch): be told when it arrives, once
      if (!entry.watched) { entry.watched = true; entry.waiting.push(done); }
      return;
    }
    if (fast && this.inflight && this.inflight !== url) { this.wanted = true; return; }
    if (fast) this.inflight = url;
    this.load(url, done).watched = true;
  };

  // --- drawing ------------------------------------------------------------------------------------

  Viewer.prototype.resize = function () {
    var r = this.el.getBoundingClientRect();
    var dpr = window.devicePixelRatio || 1;
    this.W = Math.max(1, r.width);
    this.H = Math.max(1, r.height);
    this.dpr = dpr;
    this.canvas.width = Math.round(this.W * dpr);
    this.canvas.height = Math.round(this.H * dpr);
    this.draw();
  };

  Viewer.prototype.changed = function () {
    var self = this;
    this.draw();
    if (this.linkTimer) return;
    this.linkTimer = window.setTimeout(function () { self.linkTimer = null; self.updateLink(); self.updateReadout(); }, 120);
  };

  Viewer.prototype.draw = function () {
    var self = this;
    if (this.frameScheduled) return;
    this.frameScheduled = true;
    window.requestAnimationFrame(function () { self.frameScheduled = false; self.paint(); });
  };

  Viewer.prototype.paint = function () {
    var ctx = this.ctx, dpr = this.dpr;
    this.request();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    var shown = this.shown;
    if (shown) {
      // the frame shown may be the previous one while the next loads: place it by its own size
      var inst = shown.pos.inst, z = this.effectiveZoom();
      var o = this.toScreen([0, 0]);
      var ex = this.linear([1, 0], z), ey = this.linear([0, 1], z);
      var sx = inst.columns / (shown.entry.img.naturalWidth || inst.columns);
      var sy = inst.rows / (shown.entry.img.naturalHeight || inst.rows);
      ctx.setTransform(dpr * ex[0] * sx, dpr * ex[1] * sx, dpr * ey[0] * sy, dpr * ey[1] * sy, dpr * o[0], dpr * o[1]);
      ctx.imageSmoothingEnabled = z < 1; // magnified pixels stay square (exact values), reductions smooth
      ctx.drawImage(shown.entry.img, 0, 0);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var pos = this.current();
    var self = this;
    this.annotations.forEach(function (a) {
      if (a.instance === pos.inst.id && a.frame === pos.frame) self.paintAnnotation(a, a.id === self.focus ? COLOURS.focus : COLOURS.shape);
    });
    if (this.drawing) this.paintDrawing();
    this.paintOverlayText();
  };

  Viewer.prototype.stroke = function (colour, width) {
    var ctx = this.ctx;
    ctx.lineJoin = ctx.lineCap = "round";
    ctx.strokeStyle = "rgba(0,0,0,.75)";
    ctx.lineWidth = (width || 2) + 2;
    ctx.stroke();
    ctx.strokeStyle = colour;
    ctx.lineWidth = width || 2;
    ctx.stroke();
  };

  Viewer.prototype.label = function (text, s, colour) {
    if (!text) return;
    var ctx = this.ctx;
    ctx.font = "13px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(0,0,0,.85)";
    ctx.strokeText(text, s[0] + 6, s[1] - 4);
    ctx.fillStyle = colour;
    ctx.fillText(text, s[0] + 6, s[1] - 4);
  };

  Viewer.prototype.path = function (points) {
    var ctx = this.ctx;
    ctx.beginPath();
    points.forEach(function (p, i) { if (i) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]); });
  };

  Viewer.prototype.arrowHead = function (tail, head, colour) {
    var ang = Math.atan2(head[1] - tail[1], head[0] - tail[0]), len = 12, ctx = this.ctx;
    ctx.beginPath();
    ctx.moveTo(head[0] - len * Math.cos(ang - 0.45), head[1] - len * Math.sin(ang - 0.45));
    ctx.lineTo(head[0], head[1]);
    ctx.lineTo(head[0] - len * Math.cos(ang + 0.45), head[1] - len * Math.sin(ang + 0.45));
    this.stroke(colour);
  };

  Viewer.prototype.ellipsePath = function (p0, p1) {
    // drawn in image space (so rotations and flips apply), stroked in screen space (constant width)
    var ctx = this.ctx, dpr = this.dpr, z = this.effectiveZoom();
    var o = this.toScreen([0, 0]), ex = this.linear([1, 0], z), ey = this.linear([0, 1], z);
    ctx.save();
    ctx.setTransform(dpr * ex[0], dpr * ex[1], dpr * ey[0], dpr * ey[1], dpr * o[0], dpr * o[1]);
    ctx.beginPath();
    ctx.ellipse((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2, Math.abs(p1[0] - p0[0]) / 2 || 0.01, Math.abs(p1[1] - p0[1]) / 2 || 0.01, 0, 0, 2 * Math.PI);
    ctx.restore();
  };

  Viewer.prototype.paintShape = function (kind, pts, colour, labelText) {
    var self = this;
    var s = pts.map(function (p) { return self.toScreen(p); });
    if (kind === "arrow") {
      this.path(s); this.stroke(colour); this.arrowHead(s[0], s[1], colour);
      this.label(labelText, s[0], colour);
    } else if (kind === "length") {
      this.path(s); this.stroke(colour);
      s.forEach(function (q) { self.ctx.beginPath(); self.ctx.arc(q[0], q[1], 3, 0, 2 * Math.PI); self.stroke(colour, 1.5); });
      this.label(labelText, [(s[0][0] + s[1][0]) / 2, (s[0][1] + s[1][1]) / 2], colour);
    } else if (kind === "angle") {
      this.path(s); this.stroke(colour);
      this.label(labelText, s[1], colour);
    } else if (kind === "ellipse") {
      this.ellipsePath(pts[0], pts[1]); this.stroke(colour);
      var top = s.reduce(function (a, b) { return a[1] < b[1] ? a : b; });
      this.label(labelText, [Math.min(s[0][0], s[1][0]), top[1]], colour);
    } else {
      this.ctx.beginPath(); this.ctx.arc(s[0][0], s[0][1], 4, 0, 2 * Math.PI); this.stroke(colour);
      this.label(labelText, s[0], colour);
    }
  };

  Viewer.prototype.paintAnnotation = function (a, colour) {
    var text = a.measurement && a.measurement.label ? a.measurement.label : "";
    if (a.text) text = text ? text + " · " + a.text : a.text;
    this.paintShape(a.kind, a.geometry.points, colour, text);
  };

  Viewer.prototype.paintDrawing = function () {
    var d = this.drawing;
    var pts = d.points.concat(d.hover ? [d.hover] : []);
    if (d.kind === "angle" && pts.length < 3) {
      var self = this;
      this.path(pts.map(function (p) { return self.toScreen(p); }));
      this.stroke(COLOURS.drawing);
      return;
    }
    this.paintShape(d.kind, pts, COLOURS.drawing, "");
  };

  Viewer.prototype.paintOverlayText = function () {
    // the corner read-out a radiologist expects: slice, window, zoom
    var ctx = this.ctx, pos = this.current();
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#e2e8f0";
    var lines = ["Image " + (this.index + 1) + " / " + this.stack.length + (pos.inst.frames > 1 ? " (frame " + pos.frame + ")" : ""),
      this.wc != null ? "W " + fmtWindow(this.ww) + " L " + fmtWindow(this.wc) : "Window from the file",
      "Zoom " + fmt(this.effectiveZoom() * 100) + " %" + (this.rot ? " · " + this.rot + "°" : "") +
        (this.flipH ? " · flip H" : "") + (this.flipV ? " · flip V" : "") + (this.invert ? " · inverted" : "")];
    lines.forEach(function (t, i) { ctx.fillText(t, 8, 8 + 16 * i); });
  };

  // --- the address of this view -------------------------------------------------------------------

  Viewer.prototype.currentPath = function () {
    if (this.citedAnnotation) return this.cfg.viewUrl + "?annotation=" + this.citedAnnotation;
    var pos = this.current();
    var q = ["instance=" + pos.inst.id];
    if (pos.inst.frames > 1) q.push("frame=" + pos.frame);
    if (this.wc != null) q.push("wc=" + fmtWindow(this.wc), "ww=" + fmtWindow(this.ww));
    if (this.zoom) q.push("zoom=" + fmt(this.zoom), "x=" + Math.round(this.cx * 10) / 10, "y=" + Math.round(this.cy * 10) / 10);
    if (this.rot) q.push("rot=" + this.rot);
    var flip = (this.flipH ? "h" : "") + (this.flipV ? "v" : "");
    if (flip) q.push("flip=" + flip);
    if (this.invert) q.push("invert=1");
    return this.cfg.viewUrl + "?" + q.join("&");
  };

  Viewer.prototype.updateLink = function () {
    var path = this.currentPath();
    var input = document.querySelector("[data-cite-link]");
    if (input) input.value = window.location.origin + path;
    this.el.setAttribute("data-cite-path", path);
  };

  Viewer.prototype.updateReadout = function () {
    var slider = document.getElementById("dv-slider");
    if (slider) slider.value = String(this.index + 1);
    var pos = document.getElementById("dv-position");
    if (pos) pos.textContent = (this.index + 1) + " / " + this.stack.length;
    var presets = this.page.querySelectorAll("[data-preset]");
    for (var i = 0; i < presets.length; i++) {
      var b = presets[i];
      b.setAttribute("aria-pressed", String(this.wc != null && +b.getAttribute("data-wc") === this.wc && +b.getAttribute("data-ww") === this.ww));
    }
    var toggles = { invert: this.invert, "flip-h": this.flipH, "flip-v": this.flipV, cine: !!this.cine };
    Object.keys(toggles).forEach(function (k) {
      var b = this.page.querySelector('[data-action="' + k + '"]');
      if (b) b.setAttribute("aria-pressed", String(toggles[k]));
    }, this);
    this.el.setAttribute("data-view", JSON.stringify({
      instance: this.current().inst.id, frame: this.current().frame, index: this.index, wc: this.wc, ww: this.ww,
      zoom: this.effectiveZoom(), fitted: !this.zoom, x: this.cx, y: this.cy, rot: this.rot,
      flipH: this.flipH, flipV: this.flipV, invert: this.invert
    }));
  };

  Viewer.prototype.say = function (text) {
    if (this.status) this.status.textContent = text;
  };

  // --- input --------------------------------------------------------------------------------------

  Viewer.prototype.bind = function () {
    var self = this;
    var c = this.canvas;
    if (window.ResizeObserver) new window.ResizeObserver(function () { self.resize(); }).observe(this.el);
    else window.addEventListener("resize", function () { self.resize(); });
    c.addEventListener("pointerdown", function (e) { self.down(e); });
    c.addEventListener("pointermove", function (e) { self.move(e); });
    c.addEventListener("pointerup", function (e) { self.up(e); });
    c.addEventListener("pointercancel", function (e) { self.pointers.delete(e.pointerId); self.gesture = null; });
    c.addEventListener("contextmenu", function (e) { e.preventDefault(); }); // the right button windows
    c.addEventListener("dblclick", function (e) { if (self.tool === "pan" || self.tool === "zoom") { e.preventDefault(); self.fit(); } });
    c.addEventListener("wheel", function (e) { self.wheel(e); }, { passive: false });
    this.page.addEventListener("click", function (e) {
      var btn = e.target.closest("[data-tool], [data-action], [data-preset]");
      if (!btn || !self.page.contains(btn)) return;
      if (btn.hasAttribute("data-tool")) return self.setTool(btn.getAttribute("data-tool"));
      if (btn.hasAttribute("data-preset")) {
        self.citedAnnotation = null;
        self.setWindow(+btn.getAttribute("data-wc"), +btn.getAttribute("data-ww"));
        return self.say(btn.textContent.trim() + " window: W " + btn.getAttribute("data-ww") + " L " + btn.getAttribute("data-wc") + ".");
      }
      self.act(btn.getAttribute("data-action"), btn, e);
    });
    var slider = document.getElementById("dv-slider");
    if (slider) slider.addEventListener("input", function () { self.citedAnnotation = null; self.go(+slider.value - 1); });
    var fps = document.getElementById("dv-fps");
    if (fps) fps.addEventListener("change", function () { if (self.cine) { self.stopCine(); self.startCine(); } });
    document.addEventListener("keydown", function (e) { self.key(e); });
    var panel = document.querySelector("[data-cite-panel]");
    if (panel) panel.addEventListener("change", function () {
      document.getElementById("dv-cite-form").setAttribute("action", "/panels/" + panel.value + "/messages");
    });
    var form = document.getElementById("dv-cite-form");
    if (form) form.addEventListener("submit", function () {
      var text = (document.querySelector("[data-cite-text]").value || "").trim();
      var body = form.querySelector("[data-cite-body]");
      body.value = (text ? text + "\n" : "") + body.getAttribute("data-title") + ": " + self.currentPath();
    });
    this.tags = document.getElementById("dv-tags");
    if (this.tags) {
      this.tags.addEventListener("toggle", function () { if (self.tags.open) self.loadTags(); });
      var filter = document.getElementById("dv-tag-filter");
      if (filter) filter.addEventListener("input", function () { self.filterTags(filter.value); });
    }
    this.updateLink();
    this.updateReadout();
  };

  Viewer.prototype.point = function (e) {
    var r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  Viewer.prototype.down = function (e) {
    var s = this.point(e);
    this.canvas.focus({ preventScroll: true });
    try { this.canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
    this.pointers.set(e.pointerId, s);
    if (this.pointers.size === 2) {
      // two fingers: pinch to zoom and move together to pan, whatever the tool
      this.drawing = null;
      var pts = Array.from(this.pointers.values());
      this.gesture = { kind: "pinch", dist: Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]),
        mid: [(pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2] };
      return;
    }
    if (this.pointers.size > 2) return;
    e.preventDefault();
    var tool = e.button === 2 ? "window" : e.button === 1 ? "pan" : this.tool;
    if (e.button !== 0 && e.button !== 1 && e.button !== 2) return;
    if (KIND_LABELS[tool]) return this.drawDown(tool, s);
    this.citedAnnotation = null;
    this.gesture = { kind: tool, last: s, start: s, window: tool === "window" ? this.startWindow() : null };
  };

  Viewer.prototype.move = function (e) {
    var s = this.point(e);
    if (this.pointers.has(e.pointerId)) this.pointers.set(e.pointerId, s);
    var g = this.gesture;
    if (g && g.kind === "pinch" && this.pointers.size === 2) {
      var pts = Array.from(this.pointers.values());
      var dist = Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]);
      var mid = [(pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2];
      this.citedAnnotation = null;
      this.panBy(mid[0] - g.mid[0], mid[1] - g.mid[1]);
      if (g.dist > 0 && dist > 0) this.zoomAt(dist / g.dist, mid);
      g.dist = dist;
      g.mid = mid;
      return;
    }
    if (this.drawing) {
      if (this.drawing.dragging || this.drawing.kind === "angle") {
        this.drawing.hover = this.clampToImage(this.toImage(s));
        this.draw();
      }
      return;
    }
    if (!g || !this.pointers.has(e.pointerId)) return;
    var dx = s[0] - g.last[0], dy = s[1] - g.last[1];
    g.last = s;
    if (g.kind === "pan") this.panBy(dx, dy);
    else if (g.kind === "zoom") this.zoomAt(Math.exp(-dy / 150), g.start);
    else if (g.kind === "window") {
      // right/left widens/narrows the window, down/up raises/lowers the level, scaled to the width
      var total = [s[0] - g.start[0], s[1] - g.start[1]];
      var k = Math.max(g.window[1], 10) / 250;
      this.setWindow(Math.round(g.window[0] + total[1] * k), Math.max(1, Math.round(g.window[1] + total[0] * k)));
    }
  };

  Viewer.prototype.up = function (e) {
    var s = this.point(e);
    this.pointers.delete(e.pointerId);
    var g = this.gesture;
    if (g && g.kind === "pinch") {
      if (this.pointers.size === 0) this.gesture = null;
      return;
    }
    this.gesture = null;
    if (g && g.kind === "window") {
      this.say("Window: W " + fmtWindow(this.ww) + " L " + fmtWindow(this.wc) + ".");
      this.changed(); // now in PNG again
    }
    if (this.drawing && this.drawing.dragging) this.drawUp(s);
  };

  Viewer.prototype.wheel = function (e) {
    e.preventDefault();
    this.citedAnnotation = null;
    if (e.ctrlKey || e.metaKey) {
      // ctrl + wheel, and a touchpad's pinch (which browsers send as ctrl + wheel), zoom at the pointer
      this.zoomAt(Math.exp(-e.deltaY / 200), this.point(e));
      return;
    }
    this.wheelRest = (this.wheelRest || 0) + e.deltaY;
    var unit = e.deltaMode === 1 ? 1 : 60; // lines or pixels
    var steps = Math.trunc(this.wheelRest / unit);
    if (steps) {
      this.wheelRest -= steps * unit;
      this.step(steps);
    }
  };

  Viewer.prototype.key = function (e) {
    if (!this.el.isConnected || e.altKey || e.ctrlKey || e.metaKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var k = e.key, handled = true, presets = this.cfg.presets || [];
    if (k === "ArrowDown" || k === "ArrowRight" || k === "PageDown" || k === "j") this.step(e.shiftKey || k === "PageDown" ? 10 : 1);
    else if (k === "ArrowUp" || k === "ArrowLeft" || k === "PageUp" || k === "k") this.step(e.shiftKey || k === "PageUp" ? -10 : -1);
    else if (k === "Home") this.go(0);
    else if (k === "End") this.go(this.stack.length - 1);
    else if (k === "+" || k === "=") this.zoomAt(1.25);
    else if (k === "-" || k === "_") this.zoomAt(0.8);
    else if (k === "f") this.fit();
    else if (k === "r") this.rotate(90);
    else if (k === "R") this.rotate(-90);
    else if (k === "h") { this.flipH = !this.flipH; this.changed(); }
    else if (k === "v") { this.flipV = !this.flipV; this.changed(); }
    else if (k === "i") { this.invert = !this.invert; this.changed(); }
    else if (k === " ") this.toggleCine();
    else if (k === "x") this.reset();
    else if (k === "d") this.setWindow(null, null);
    else if (/^[1-9]$/.test(k) && presets[+k - 1]) this.setWindow(presets[+k - 1][1], presets[+k - 1][2]);
    else if (k === "Escape") { if (this.drawing) { this.drawing = null; this.draw(); this.say("Drawing cancelled."); } }
    else if (k === "p") this.setTool("pan");
    else if (k === "z") this.setTool("zoom");
    else if (k === "w") this.setTool("window");
    else if (this.cfg.mayAnnotate && { l: 1, a: 1, e: 1, t: 1, o: 1 }[k]) this.setTool({ l: "length", a: "angle", e: "ellipse", t: "text", o: "arrow" }[k]);
    else handled = false;
    if (handled) {
      e.preventDefault();
      if (k !== "Escape") this.citedAnnotation = null;
    }
  };

  Viewer.prototype.setTool = function (tool) {
    this.drawing = null;
    this.tool = tool;
    var buttons = this.page.querySelectorAll("[data-tool]");
    for (var i = 0; i < buttons.length; i++) buttons[i].setAttribute("aria-pressed", String(buttons[i].getAttribute("data-tool") === tool));
    this.el.setAttribute("data-tool", tool);
    var hints = {
      pan: "Drag to move; the wheel scrolls through the series, Ctrl + wheel zooms.",
      zoom: "Drag up to zoom in, down to zoom out.",
      window: "Drag right/left for a wider/narrower window, down/up for a higher/lower level.",
      arrow: "Drag from the tail to the tip of the arrow.",
      text: "Write the text in the Note field, then click where it belongs.",
      length: "Drag from one end to the other.",
      angle: "Click the first end, the vertex, then the second end.",
      ellipse: "Drag the ellipse's bounding box."
    };
    this.say(hints[tool] || "");
    this.draw();
  };

  // --- annotations: drawing them ------------------------------------------------------------------

  Viewer.prototype.drawDown = function (kind, s) {
    var p = this.clampToImage(this.toImage(s));
    if (kind === "text") {
      if (!this.note()) {
        this.say("Write the text in the Note field first.");
        var n = document.getElementById("dv-note");
        if (n) n.focus();
        return;
      }
      return this.save("text", [p]);
    }
    if (kind === "angle") {
      if (!this.drawing) this.drawing = { kind: "angle", points: [] };
      this.drawing.points.push(p);
      if (this.drawing.points.length === 3) {
        var pts = this.drawing.points;
        this.drawing = null;
        this.draw();
        return this.save("angle", pts);
      }
      this.draw();
      return;
    }
    this.drawing = { kind: kind, points: [p], hover: p, dragging: true, start: s };
  };

  Viewer.prototype.drawUp = function (s) {
    var d = this.drawing;
    this.drawing = null;
    this.draw();
    if (Math.hypot(s[0] - d.start[0], s[1] - d.start[1]) < 4) return this.say("Drag to draw.");
    this.save(d.kind, [d.points[0], this.clampToImage(this.toImage(s))]);
  };

  Viewer.prototype.note = function () {
    var n = document.getElementById("dv-note");
    return n ? n.value.trim() : "";
  };

  Viewer.prototype.save = function (kind, points) {
    var self = this;
    var pos = this.current();
    var round = function (p) { return [Math.round(p[0] * 100) / 100, Math.round(p[1] * 100) / 100]; };
    this.say("Saving…");
    return fetch(this.cfg.annotationsUrl.replace("{instance}", pos.inst.id), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "x-csrftoken": csrfToken() },
      body: JSON.stringify({ kind: kind, frame: pos.frame, geometry: { points: points.map(round) }, text: this.note() })
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (res) {
      if (!res.ok) return self.say("Not saved: " + (res.body.detail || "the server refused it."));
      var a = res.body;
      self.annotations.push(a);
      self.draw();
      var n = document.getElementById("dv-note");
      if (n) n.value = "";
      self.say("Saved: " + KIND_LABELS[a.kind] + (a.measurement && a.measurement.label ? " · " + a.measurement.label : "") + ".");
      self.reloadList();
    }).catch(function () { self.say("Not saved: the server could not be reached."); });
  };

  Viewer.prototype.reloadList = function () {
    var box = document.getElementById("dv-annotation-list");
    if (!box) return;
    fetch(box.getAttribute("data-list-url"), { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) box.innerHTML = html; });
  };

  Viewer.prototype.find = function (id) {
    for (var i = 0; i < this.annotations.length; i++) if (String(this.annotations[i].id) === String(id)) return this.annotations[i];
    return null;
  };

  Viewer.prototype.show = function (a) {
    for (var i = 0; i < this.stack.length; i++) {
      if (this.stack[i].inst.id === a.instance && this.stack[i].frame === a.frame) { this.go(i); break; }
    }
    this.focus = a.id;
    this.draw();
  };

  Viewer.prototype.remove = function (id) {
    var self = this, a = this.find(id);
    if (!a) return;
    fetch(this.cfg.annotationsUrl.replace("{instance}", a.instance) + "/" + encodeURIComponent(id), {
      method: "DELETE", credentials: "same-origin", headers: { "Accept": "application/json", "x-csrftoken": csrfToken() }
    }).then(function (r) {
      if (r.status !== 204) return r.json().then(function (b) { self.say("Not deleted: " + (b.detail || r.status)); });
      self.annotations = self.annotations.filter(function (x) { return String(x.id) !== String(id); });
      self.draw();
      self.say("Annotation deleted.");
      self.reloadList();
    });
  };

  // --- cine ---------------------------------------------------------------------------------------

  Viewer.prototype.toggleCine = function () { if (this.cine) this.stopCine(); else this.startCine(); };

  Viewer.prototype.startCine = function () {
    var self = this;
    if (this.stack.length < 2) return this.say("Cine needs more than one image.");
    var fpsInput = document.getElementById("dv-fps");
    var fps = clamp(+(fpsInput && fpsInput.value) || 10, 1, 60);
    this.prefetch(this.index, Math.min(this.stack.length, 200));
    this.cine = window.setInterval(function () {
      // advance only once the next frame is here, so slow networks slow the loop instead of skipping
      var next = (self.index + 1) % self.stack.length;
      var entry = self.load(self.frameUrl(self.stack[next], false));
      if (entry.ready || entry.failed) self.go(next);
    }, 1000 / fps);
    this.say("Cine: " + fps + " images per second (space stops).");
    this.updateReadout();
  };

  Viewer.prototype.stopCine = function () {
    if (!this.cine) return;
    window.clearInterval(this.cine);
    this.cine = null;
    this.say("Cine stopped.");
    this.updateReadout();
  };

  // --- tag browser --------------------------------------------------------------------------------

  Viewer.prototype.loadTags = function () {
    var self = this, inst = this.current().inst;
    var body = document.getElementById("dv-tag-rows");
    if (!body || this.tagsFor === inst.id) return;
    this.tagsFor = inst.id;
    body.textContent = "";
    fetch(this.cfg.tagsUrl.replace("{instance}", inst.id), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        if (self.tagsFor !== inst.id) return;
        var rows = [];
        var add = function (els, depth) {
          els.forEach(function (el) {
            var tr = document.createElement("tr");
            tr.className = "dv-tag dv-depth-" + Math.min(depth, 4);
            [el.tag, el.name || el.keyword, el.vr, el.value].forEach(function (v, i) {
              var td = document.createElement("td");
              td.textContent = v == null ? "" : String(v);
              if (i === 0) td.className = "dv-mono";
              tr.appendChild(td);
            });
            tr.setAttribute("data-search", [el.tag, el.keyword, el.name, el.value].join(" ").toLowerCase());
            rows.push(tr);
            (el.items || []).forEach(function (item) { add(item, depth + 1); });
          });
        };
        add(data.elements || [], 0);
        rows.forEach(function (tr) { body.appendChild(tr); });
        var filter = document.getElementById("dv-tag-filter");
        if (filter && filter.value) self.filterTags(filter.value);
      })
      .catch(function () { self.tagsFor = null; self.say("The tags could not be loaded."); });
  };

  Viewer.prototype.filterTags = function (text) {
    var q = text.trim().toLowerCase();
    var rows = document.querySelectorAll("#dv-tag-rows tr");
    for (var i = 0; i < rows.length; i++) rows[i].hidden = !!q && rows[i].getAttribute("data-search").indexOf(q) < 0;
  };

  // --- buttons ------------------------------------------------------------------------------------

  Viewer.prototype.act = function (action, btn, e) {
    var id = btn.getAttribute("data-id");
    if (action !== "copy-link" && action !== "cite-annotation") this.citedAnnotation = null;
    switch (action) {
      case "rotate-left": this.rotate(-90); break;
      case "rotate-right": this.rotate(90); break;
      case "flip-h": this.flipH = !this.flipH; this.changed(); break;
      case "flip-v": this.flipV = !this.flipV; this.changed(); break;
      case "invert": this.invert = !this.invert; this.changed(); break;
      case "zoom-in": this.zoomAt(1.25); break;
      case "zoom-out": this.zoomAt(0.8); break;
      case "fit": this.fit(); break;
      case "one-to-one": this.zoomAt(1 / this.effectiveZoom()); break;
      case "default-window": this.setWindow(null, null); break;
      case "reset": this.reset(); break;
      case "cine": this.toggleCine(); break;
      case "prev": this.step(-1); break;
      case "next": this.step(1); break;
      case "copy-link": this.copyLink(); break;
      case "show-annotation": {
        e.preventDefault();
        var a = this.find(id);
        if (a) this.show(a);
        break;
      }
      case "cite-annotation": {
        var b = this.find(id);
        if (!b) break;
        this.show(b);
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

  // --- start-up -----------------------------------------------------------------------------------

  function boot() {
    var els = document.querySelectorAll("[data-dicom-viewer]:not([data-started])");
    for (var i = 0; i < els.length; i++) {
      els[i].setAttribute("data-started", "true");
      els[i].dicomViewer = new Viewer(els[i]);
    }
  }

  if (!window.cpmsDicomViewerLoaded) {
    window.cpmsDicomViewerLoaded = true;
    // htmx's boosted navigation swaps the page in without a new load event
    document.addEventListener("htmx:load", boot);
    document.addEventListener("htmx:beforeCleanupElement", function (e) {
      var el = e.target;
      if (el && el.dicomViewer) { el.dicomViewer.stopCine(); el.dicomViewer = null; }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
