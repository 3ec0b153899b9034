/* Drawing mask rectangles on the burned-in-text review page (templates/dicom/review.html), served at
 * /static/dicom_viewer/review.js. No inline script or style (CSP): positions are set through
 * element.style.
 *
 * The textarea (one "x y width height" line per rectangle, in image pixels) stays the source of truth
 * and the whole form without JavaScript. With it, a drag on the image (pointer events: mouse, pen or
 * finger) appends a line; every valid line is shown as a numbered box over the image and in a list
 * with a Remove button (which deletes that line); typing in or clearing the textarea redraws both.
 * Boxes are placed in percent of the image, so they follow the image when the page is resized.
 */
(function () {
  "use strict";

  // As views.RECT_LINE: four whole numbers separated by spaces, commas or semicolons.
  var LINE = /^\s*(-?\d{1,6})[\s,;]+(-?\d{1,6})[\s,;]+(\d{1,6})[\s,;]+(\d{1,6})\s*$/;
  var MIN_DRAG = 3; // screen pixels: a click (or a tap) is not a rectangle

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  function Review(stage) {
    this.stage = stage;
    this.img = stage.querySelector("img");
    this.form = stage.closest("main") || document;
    this.text = this.form.querySelector("#dicom-review-rects");
    this.panel = this.form.querySelector("#dicom-review-drawn");
    this.list = this.form.querySelector("#dicom-review-list");
    this.status = this.form.querySelector("#dicom-review-status");
    this.columns = parseInt(stage.getAttribute("data-columns"), 10);
    this.rows = parseInt(stage.getAttribute("data-rows"), 10);
    if (!this.img || !this.text || !(this.columns > 0) || !(this.rows > 0)) return;
    this.layer = document.createElement("div");
    stage.appendChild(this.layer);
    this.draft = null;
    this.drag = null;
    stage.classList.add("is-drawable");
    this.img.draggable = false;
    if (this.panel) this.panel.hidden = false;
    var self = this;
    stage.addEventListener("pointerdown", function (e) { self.down(e); });
    stage.addEventListener("pointermove", function (e) { self.move(e); });
    stage.addEventListener("pointerup", function (e) { self.up(e, true); });
    stage.addEventListener("pointercancel", function (e) { self.up(e, false); });
    stage.addEventListener("lostpointercapture", function (e) { self.up(e, false); });
    stage.addEventListener("dragstart", function (e) { e.preventDefault(); });
    this.text.addEventListener("input", function () { self.render(); });
    this.render();
    stage.setAttribute("data-ready", "true");
  }

  /* The valid lines of the textarea: [{line, x, y, w, h}]; the server reports the others. */
  Review.prototype.rects = function () {
    var out = [];
    var lines = this.text.value.split(/\r\n|\r|\n/);
    for (var i = 0; i < lines.length; i++) {
      var m = LINE.exec(lines[i]);
      if (!m) continue;
      var r = { line: i, x: +m[1], y: +m[2], w: +m[3], h: +m[4] };
      if (r.w > 0 && r.h > 0) out.push(r);
    }
    return out;
  };

  Review.prototype.place = function (box, x, y, w, h) {
    // clipped to the image, so a line that leaves it still shows where it is
    var x0 = clamp(x, 0, this.columns), y0 = clamp(y, 0, this.rows);
    var x1 = clamp(x + w, 0, this.columns), y1 = clamp(y + h, 0, this.rows);
    box.style.left = (100 * x0 / this.columns) + "%";
    box.style.top = (100 * y0 / this.rows) + "%";
    box.style.width = (100 * (x1 - x0) / this.columns) + "%";
    box.style.height = (100 * (y1 - y0) / this.rows) + "%";
  };

  Review.prototype.render = function () {
    var rects = this.rects();
    var self = this;
    this.layer.textContent = "";
    if (this.list) this.list.textContent = "";
    rects.forEach(function (r, i) {
      var box = document.createElement("div");
      box.className = "dicom-review-box";
      box.setAttribute("data-n", String(i + 1));
      self.place(box, r.x, r.y, r.w, r.h);
      self.layer.appendChild(box);
      if (!self.list) return;
      var li = document.createElement("li");
      li.className = "dicom-review-item";
      li.setAttribute("data-rect", [r.x, r.y, r.w, r.h].join(" "));
      var label = document.createElement("span");
      label.textContent = (i + 1) + ": x " + r.x + ", y " + r.y + ", " + r.w + " × " + r.h;
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove rectangle " + (i + 1));
      remove.addEventListener("click", function () { self.remove(r.line, i); });
      li.appendChild(label);
      li.appendChild(remove);
      self.list.appendChild(li);
    });
    if (this.draft) this.layer.appendChild(this.draft);
    this.stage.setAttribute("data-count", String(rects.length));
  };

  Review.prototype.say = function (message) {
    if (this.status) this.status.textContent = message;
  };

  Review.prototype.remove = function (lineIndex, position) {
    var lines = this.text.value.split(/\r\n|\r|\n/);
    lines.splice(lineIndex, 1);
    this.text.value = lines.join("\n");
    this.render();
    this.say("Rectangle " + (position + 1) + " removed.");
    // keep the keyboard where it was: the next Remove button, or the textarea
    var buttons = this.list ? this.list.querySelectorAll("button") : [];
    (buttons[Math.min(position, buttons.length - 1)] || this.text).focus();
  };

  Review.prototype.append = function (x, y, w, h) {
    var value = this.text.value;
    if (value && !/\n$/.test(value)) value += "\n";
    this.text.value = value + [x, y, w, h].join(" ") + "\n";
    this.render();
    this.say("Rectangle added: x " + x + ", y " + y + ", " + w + " × " + h + " pixels.");
  };

  /* A pointer position in image pixels (fractional, inside the image). */
  Review.prototype.at = function (e) {
    var box = this.img.getBoundingClientRect();
    return {
      x: clamp((e.clientX - box.left) * this.columns / box.width, 0, this.columns),
      y: clamp((e.clientY - box.top) * this.rows / box.height, 0, this.rows),
      sx: e.clientX, sy: e.clientY,
    };
  };

  /* The dragged area, widened to whole pixels: everything under the drag is masked. */
  Review.prototype.span = function (a, b) {
    var x0 = Math.floor(Math.min(a.x, b.x)), y0 = Math.floor(Math.min(a.y, b.y));
    var x1 = Math.ceil(Math.max(a.x, b.x)), y1 = Math.ceil(Math.max(a.y, b.y));
    return { x: x0, y: y0, w: Math.min(x1, this.columns) - x0, h: Math.min(y1, this.rows) - y0 };
  };

  Review.prototype.down = function (e) {
    if (this.drag || !e.isPrimary || (e.pointerType === "mouse" && e.button !== 0)) return;
    var box = this.img.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0)) return;
    e.preventDefault();
    try { this.stage.setPointerCapture(e.pointerId); } catch (err) { /* still drawn while inside */ }
    this.drag = { id: e.pointerId, from: this.at(e) };
    this.draft = document.createElement("div");
    this.draft.className = "dicom-review-box is-draft";
    this.place(this.draft, this.drag.from.x, this.drag.from.y, 0, 0);
    this.layer.appendChild(this.draft);
  };

  Review.prototype.move = function (e) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    e.preventDefault();
    var s = this.span(this.drag.from, this.at(e));
    this.place(this.draft, s.x, s.y, s.w, s.h);
  };

  Review.prototype.up = function (e, keep) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    var from = this.drag.from, to = this.at(e);
    this.drag = null;
    if (this.draft && this.draft.parentNode) this.draft.parentNode.removeChild(this.draft);
    this.draft = null;
    try { this.stage.releasePointerCapture(e.pointerId); } catch (err) { /* already released */ }
    if (!keep) return;
    if (Math.abs(to.sx - from.sx) < MIN_DRAG || Math.abs(to.sy - from.sy) < MIN_DRAG) return;
    var s = this.span(from, to);
    if (s.w > 0 && s.h > 0) this.append(s.x, s.y, s.w, s.h);
  };

  function boot() {
    var els = document.querySelectorAll("#dicom-review-stage:not([data-started])");
    for (var i = 0; i < els.length; i++) {
      els[i].setAttribute("data-started", "true");
      els[i].dicomReview = new Review(els[i]);
    }
  }

  if (!window.cpmsDicomReviewLoaded) {
    window.cpmsDicomReviewLoaded = true;
    // htmx's boosted navigation (and the re-shown form after a refused post) swaps the page in
    document.addEventListener("htmx:load", boot);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
