// edgecodec comparison report: the before/after slider and one zoom per image shared by all its panels.
// The zoom state is the image point at the centre of every panel and a magnification relative to
// "fit", so panels of different sizes always show the same region of the image.
(function () {
  'use strict';
  var MAX_PIXEL_SCALE = 32; // screen px per image px at the deepest zoom

  function clampTo(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  function setup(sec) {
    var W = +sec.getAttribute('data-w'), H = +sec.getAttribute('data-h');
    var st = { z: 1, cx: W / 2, cy: H / 2 };
    var views = Array.prototype.slice.call(sec.querySelectorAll('.viewport'));
    var slider = sec.querySelector('.viewport.slider');
    var level = sec.querySelector('.zoom-level');
    var range = sec.querySelector('input.split');
    var layerB = slider.querySelector('.layer.b');
    var divider = slider.querySelector('.divider');
    var handle = slider.querySelector('.handle');
    Array.prototype.forEach.call(sec.querySelectorAll('img.zimg'), function (img) {
      img.style.width = W + 'px';
      img.style.height = H + 'px';
    });

    // fractional sizes (clientWidth rounds to whole pixels: a panel would be off by ~0.2% of the image)
    function size(v) { var r = v.getBoundingClientRect(); return { w: r.width, h: r.height }; }
    function scaleOf(v) { return (size(v).w / W) * st.z; }
    function maxZoom() { return Math.max(1, (MAX_PIXEL_SCALE * W) / Math.max(1, size(slider).w)); }

    function render() {
      st.z = clampTo(st.z, 1, maxZoom());
      var hw = W / (2 * st.z), hh = H / (2 * st.z);
      st.cx = clampTo(st.cx, hw, W - hw);
      st.cy = clampTo(st.cy, hh, H - hh);
      views.forEach(function (v) {
        var d = size(v), s = (d.w / W) * st.z;
        var t = 'translate(' + (d.w / 2 - st.cx * s) + 'px,' + (d.h / 2 - st.cy * s) + 'px) scale(' + s + ')';
        Array.prototype.forEach.call(v.querySelectorAll('img.zimg'), function (img) { img.style.transform = t; });
        v.classList.toggle('zoomed', st.z > 1.0001);
        v.classList.toggle('pixels', s >= 3);
      });
      var pct = Math.round(scaleOf(slider) * 100) + '%';
      level.textContent = st.z > 1.0001 ? pct : 'fit (' + pct + ')';
    }

    // zoom by ``factor`` keeping the image point under (px, py) of viewport ``v`` where it is
    function zoomAt(v, factor, px, py) {
      var d = size(v), s = scaleOf(v);
      var ix = st.cx + (px - d.w / 2) / s, iy = st.cy + (py - d.h / 2) / s;
      st.z = clampTo(st.z * factor, 1, maxZoom());
      var s2 = scaleOf(v);
      st.cx = ix - (px - d.w / 2) / s2;
      st.cy = iy - (py - d.h / 2) / s2;
      render();
    }
    function zoomCentre(factor) { var d = size(slider); zoomAt(slider, factor, d.w / 2, d.h / 2); }

    function setSplit(p) {
      p = clampTo(+p, 0, 100);
      layerB.style.clipPath = 'inset(0 0 0 ' + p + '%)';
      divider.style.left = p + '%';
      if (+range.value !== p) range.value = p;
    }
    function splitFromEvent(e) {
      var r = slider.getBoundingClientRect();
      setSplit(((e.clientX - r.left) / r.width) * 100);
    }

    range.addEventListener('input', function () { setSplit(range.value); });

    Array.prototype.forEach.call(sec.querySelectorAll('select.pick'), function (sel) {
      sel.addEventListener('change', function () {
        var side = sel.getAttribute('data-side');
        var opt = sel.options[sel.selectedIndex];
        var img = slider.querySelector('.layer.' + side + ' img');
        img.loading = 'eager';
        img.src = opt.getAttribute('data-src');
        slider.querySelector('.tag.' + side).textContent = opt.textContent;
      });
    });

    Array.prototype.forEach.call(sec.querySelectorAll('.zoom button'), function (b) {
      b.addEventListener('click', function () {
        var what = b.getAttribute('data-zoom');
        if (what === 'in') zoomCentre(2);
        else if (what === 'out') zoomCentre(0.5);
        else if (what === 'fit') { st.z = 1; render(); }
        else zoomCentre(W / size(slider).w / st.z); // 1:1
      });
    });

    views.forEach(function (v) {
      var pointers = {}; // id -> last client position
      var mode = null; // 'split', 'pan' or 'pinch'
      var pinchDist = 0;

      function local(e) {
        var r = v.getBoundingClientRect();
        return { x: e.clientX - r.left, y: e.clientY - r.top };
      }
      function ids() { return Object.keys(pointers); }

      v.addEventListener('pointerdown', function (e) {
        if (e.button !== undefined && e.button > 0) return;
        pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
        try { v.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic event has no capture */ }
        v.focus({ preventScroll: true }); // so the keys work after a click (preventDefault below keeps focus away)
        if (ids().length === 2) {
          var p = ids().map(function (k) { return pointers[k]; });
          mode = 'pinch';
          pinchDist = Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y) || 1;
        } else if (v === slider && (e.target === handle || st.z <= 1.0001)) {
          mode = 'split';
          splitFromEvent(e);
        } else {
          mode = 'pan';
        }
        e.preventDefault();
      });
      v.addEventListener('pointermove', function (e) {
        var last = pointers[e.pointerId];
        if (!last) return;
        var dx = e.clientX - last.x, dy = e.clientY - last.y;
        pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
        if (mode === 'split') {
          splitFromEvent(e);
        } else if (mode === 'pan') {
          var s = scaleOf(v);
          st.cx -= dx / s;
          st.cy -= dy / s;
          render();
        } else if (mode === 'pinch' && ids().length === 2) {
          var p = ids().map(function (k) { return pointers[k]; });
          var d = Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y) || 1;
          var r = v.getBoundingClientRect();
          zoomAt(v, d / pinchDist, (p[0].x + p[1].x) / 2 - r.left, (p[0].y + p[1].y) / 2 - r.top);
          pinchDist = d;
        }
      });
      function end(e) {
        delete pointers[e.pointerId];
        if (ids().length === 0) mode = null;
        else if (mode === 'pinch') mode = 'pan';
      }
      v.addEventListener('pointerup', end);
      v.addEventListener('pointercancel', end);
      v.addEventListener('dblclick', function (e) {
        var p = local(e);
        zoomAt(v, e.shiftKey ? 0.5 : 2, p.x, p.y);
        e.preventDefault();
      });
      v.addEventListener('wheel', function (e) {
        if (!(e.ctrlKey || e.metaKey)) return; // a plain wheel scrolls the page
        e.preventDefault();
        var p = local(e);
        zoomAt(v, Math.exp(-clampTo(e.deltaY, -100, 100) * 0.01), p.x, p.y);
      }, { passive: false });
      v.addEventListener('keydown', function (e) {
        var d = size(v), step = (0.15 * d.w) / scaleOf(v);
        var k = e.key;
        if (k === '+' || k === '=') zoomAt(v, 2, d.w / 2, d.h / 2);
        else if (k === '-' || k === '_') zoomAt(v, 0.5, d.w / 2, d.h / 2);
        else if (k === '0') { st.z = 1; render(); }
        else if (v === slider && st.z <= 1.0001 && (k === 'ArrowLeft' || k === 'ArrowRight')) setSplit(+range.value + (k === 'ArrowLeft' ? -2 : 2));
        else if (k === 'ArrowLeft') { st.cx -= step; render(); }
        else if (k === 'ArrowRight') { st.cx += step; render(); }
        else if (k === 'ArrowUp') { st.cy -= step; render(); }
        else if (k === 'ArrowDown') { st.cy += step; render(); }
        else return;
        e.preventDefault();
      });
    });

    render();
    if (window.ResizeObserver) new ResizeObserver(render).observe(slider);
    else window.addEventListener('resize', render);
  }

  Array.prototype.forEach.call(document.querySelectorAll('section.image'), setup);
})();
