// labbook site: sortable tables and the live lab. Pages work without it. A page's language is its
// address: the switch is a plain link, and no remembered choice ever sends a reader elsewhere.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("th").forEach(function (header, column) {
        header.addEventListener("click", function () {
          var numeric = header.getAttribute("data-type") === "number";
          var ascending = header.getAttribute("aria-sort") !== "ascending";
          table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
          header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
            var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
            return ascending ? order : -order;
          });
          rows.forEach(function (row) { body.appendChild(row); });
        });
      });
    });
  });
})();

// labbook site: the live lab. A run's own network (model.safetensors, checked against the run's
// manifest hash) runs here, in plain JavaScript: five layers, about 0.4 million multiply-adds a
// pass. The transforms are labbook's own (labbook/dissect/robustness.py): a rotation as torchvision
// rotates (bilinear, zero fill), then a shift by whole pixels with zero fill.
(function () {
  "use strict";
  var SIZE = 28, TESTS = 5000;
  // matplotlib's viridis in 64 steps, as the report's feature-map figures colour activations.
  var VIRIDIS = "44015446075a470d6047136548186a481d6f482374482878472d7b46327e453781443b844240864045883e49893d4e8a3a538b38588c365c8d34608d32648e31688e2f6c8e2d708e2c738e2a778e297b8e277f8e26828e24868e238a8d218e8d20928c1f968b1f9a8a1f9e891fa18721a58523a98326ad812ab07f2fb47c35b7793bbb7542be714ac16d52c5695ac86465cb5e6ece5877d15381d34d8bd64695d840a0da39aadc32b5de2bc0df25cae11fd5e21adfe318eae51af4e61efde725";

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ------------------------------------------------------------ the weights

  function readSafetensors(buffer) {
    var view = new DataView(buffer);
    var length = view.getUint32(0, true) + view.getUint32(4, true) * 4294967296;
    if (length > buffer.byteLength - 8) throw new Error("model.safetensors: its header is longer than the file");
    var header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
    var tensors = {};
    Object.keys(header).forEach(function (name) {
      if (name === "__metadata__") return;
      var entry = header[name];
      if (entry.dtype !== "F32") throw new Error(name + ": not float32");
      var start = 8 + length + entry.data_offsets[0], end = 8 + length + entry.data_offsets[1];
      var values = new Float32Array(buffer.slice(start, end));   // a copy: aligned whatever the header's length
      tensors[name] = {shape: entry.shape, values: values};
    });
    return tensors;
  }

  // The shapes come from the page: labbook works them out once (labbook/lab/shapes.py) for the
  // network this run's config declares.
  function checkShapes(tensors, expected) {
    Object.keys(expected).forEach(function (name) {
      var tensor = tensors[name];
      if (!tensor || tensor.shape.join(",") !== expected[name].join(",")) throw new Error(name + ": not the declared network");
      for (var i = 0; i < tensor.values.length; i++) {
        if (!isFinite(tensor.values[i])) throw new Error(name + ": not finite");
      }
    });
  }

  // ------------------------------------------------------------ the network, as labbook's ConvNet computes it

  function conv(input, channels, size, weight, bias, outputs, kernel) {   // padding kernel / 2, stride 1
    var out = new Float64Array(outputs * size * size), pad = Math.floor(kernel / 2);
    for (var o = 0; o < outputs; o++) {
      for (var y = 0; y < size; y++) for (var x = 0; x < size; x++) {
        var sum = bias[o];
        for (var c = 0; c < channels; c++) {
          var base = (o * channels + c) * kernel * kernel, plane = c * size * size;
          for (var ky = 0; ky < kernel; ky++) {
            var iy = y + ky - pad;
            if (iy < 0 || iy >= size) continue;
            for (var kx = 0; kx < kernel; kx++) {
              var ix = x + kx - pad;
              if (ix < 0 || ix >= size) continue;
              sum += weight[base + ky * kernel + kx] * input[plane + iy * size + ix];
            }
          }
        }
        out[(o * size + y) * size + x] = sum;
      }
    }
    return out;
  }

  function relu(values) {
    for (var i = 0; i < values.length; i++) if (values[i] < 0) values[i] = 0;
    return values;
  }

  function pool(input, channels, size) {   // 2 x 2 max pooling
    var half = size / 2, out = new Float64Array(channels * half * half);
    for (var c = 0; c < channels; c++) for (var y = 0; y < half; y++) for (var x = 0; x < half; x++) {
      var p = c * size * size + 2 * y * size + 2 * x;
      out[(c * half + y) * half + x] = Math.max(input[p], input[p + 1], input[p + size], input[p + size + 1]);
    }
    return out;
  }

  function linear(input, weight, bias, outputs) {
    var inputs = input.length, out = new Float64Array(outputs);
    for (var o = 0; o < outputs; o++) {
      var sum = bias[o], base = o * inputs;
      for (var i = 0; i < inputs; i++) sum += weight[base + i] * input[i];
      out[o] = sum;
    }
    return out;
  }

  function forward(net, image) {
    var t = net.tensors, c1 = net.depth[0], c2 = net.depth[1], kernel = net.kernel, classes = net.classes;
    var maps1 = relu(conv(image, 1, SIZE, t["conv1.weight"].values, t["conv1.bias"].values, c1, kernel));
    var pooled1 = pool(maps1, c1, SIZE);   // ReLU and max pooling commute: relu(pool(x)) = pool(relu(x))
    var maps2 = relu(conv(pooled1, c1, SIZE / 2, t["conv2.weight"].values, t["conv2.bias"].values, c2, kernel));
    var hidden = relu(linear(pool(maps2, c2, SIZE / 2), t["fc1.weight"].values, t["fc1.bias"].values, net.hidden));
    var logits = linear(hidden, t["fc2.weight"].values, t["fc2.bias"].values, classes);
    var top = Math.max.apply(null, logits), total = 0, probabilities = new Array(classes);
    for (var d = 0; d < classes; d++) total += Math.exp(logits[d] - top);
    for (d = 0; d < classes; d++) probabilities[d] = Math.exp(logits[d] - top) / total;
    return {probabilities: probabilities, maps1: maps1, maps2: maps2};
  }

  // ------------------------------------------------------------ the transforms

  function rotate(image, degrees) {   // torchvision's rotate: inverse map, bilinear, zero fill times the mask
    if (!degrees) return image;
    var angle = -degrees * Math.PI / 180, cos = Math.cos(angle), sin = Math.sin(angle);
    var out = new Float64Array(SIZE * SIZE), centre = (SIZE - 1) / 2;
    for (var i = 0; i < SIZE; i++) for (var j = 0; j < SIZE; j++) {
      var x = j - SIZE / 2 + 0.5, y = i - SIZE / 2 + 0.5;
      var sx = cos * x + sin * y + centre, sy = -sin * x + cos * y + centre;
      var x0 = Math.floor(sx), y0 = Math.floor(sy), value = 0, mask = 0;
      for (var dy = 0; dy < 2; dy++) for (var dx = 0; dx < 2; dx++) {
        var px = x0 + dx, py = y0 + dy;
        if (px < 0 || py < 0 || px >= SIZE || py >= SIZE) continue;
        var w = (dx ? sx - x0 : 1 - (sx - x0)) * (dy ? sy - y0 : 1 - (sy - y0));
        value += w * image[py * SIZE + px];
        mask += w;
      }
      out[i * SIZE + j] = value * mask;
    }
    return out;
  }

  function shift(image, dx, dy) {   // content moves dx right and dy down; uncovered pixels are zero
    if (!dx && !dy) return image;
    var out = new Float64Array(SIZE * SIZE);
    for (var y = 0; y < SIZE; y++) for (var x = 0; x < SIZE; x++) {
      var sy = y - dy, sx = x - dx;
      if (sx >= 0 && sy >= 0 && sx < SIZE && sy < SIZE) out[y * SIZE + x] = image[sy * SIZE + sx];
    }
    return out;
  }

  function testImage(tests, index) {
    var image = new Float64Array(SIZE * SIZE), offset = TESTS + index * SIZE * SIZE;
    for (var p = 0; p < SIZE * SIZE; p++) image[p] = tests[offset + p] / 255;
    return image;
  }

  // A drawing as MNIST's digits were made: the stroke scaled into a 20 x 20 box (aspect kept),
  // then placed in 28 x 28 with its centre of mass at the centre.
  function mnistForm(canvas) {
    var data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    var top = canvas.height, bottom = -1, left = canvas.width, right = -1;
    for (var y = 0; y < canvas.height; y++) for (var x = 0; x < canvas.width; x++) {
      if (data[(y * canvas.width + x) * 4 + 3] > 12) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
    var image = new Float64Array(SIZE * SIZE);
    if (bottom < 0) return image;
    var width = right - left + 1, height = bottom - top + 1, scale = 20 / Math.max(width, height);
    var w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
    var box = document.createElement("canvas");
    box.width = w;
    box.height = h;
    var context = box.getContext("2d");
    context.imageSmoothingQuality = "high";
    context.drawImage(canvas, left, top, width, height, 0, 0, w, h);
    var pixels = context.getImageData(0, 0, w, h).data, mass = 0, mx = 0, my = 0, small = new Float64Array(w * h);
    for (y = 0; y < h; y++) for (x = 0; x < w; x++) {
      var v = pixels[(y * w + x) * 4 + 3] / 255;
      small[y * w + x] = v;
      mass += v;
      mx += v * x;
      my += v * y;
    }
    var ox = Math.round(SIZE / 2 - 0.5 - mx / mass), oy = Math.round(SIZE / 2 - 0.5 - my / mass);
    for (y = 0; y < h; y++) for (x = 0; x < w; x++) {
      var tx = x + ox, ty = y + oy;
      if (tx >= 0 && ty >= 0 && tx < SIZE && ty < SIZE) image[ty * SIZE + tx] = small[y * w + x];
    }
    return image;
  }

  // ------------------------------------------------------------ drawing the answer

  function paint(canvas, values, offset, size, top) {
    var context = canvas.getContext("2d"), picture = context.createImageData(size, size);
    for (var p = 0; p < size * size; p++) {
      var level = top > 0 ? Math.min(63, Math.floor(63.999 * values[offset + p] / top)) : 0;
      var colour = VIRIDIS.substr(level * 6, 6);
      picture.data[p * 4] = parseInt(colour.substr(0, 2), 16);
      picture.data[p * 4 + 1] = parseInt(colour.substr(2, 2), 16);
      picture.data[p * 4 + 2] = parseInt(colour.substr(4, 2), 16);
      picture.data[p * 4 + 3] = 255;
    }
    context.putImageData(picture, 0, 0);
  }

  function grey(canvas, image) {
    var context = canvas.getContext("2d"), picture = context.createImageData(SIZE, SIZE);
    for (var p = 0; p < SIZE * SIZE; p++) {
      var v = Math.round(255 * Math.min(1, Math.max(0, image[p])));
      picture.data[p * 4] = picture.data[p * 4 + 1] = picture.data[p * 4 + 2] = v;
      picture.data[p * 4 + 3] = 255;
    }
    context.putImageData(picture, 0, 0);
  }

  function maxOf(values) {
    var top = 0;
    for (var i = 0; i < values.length; i++) if (values[i] > top) top = values[i];
    return top;
  }

  // ------------------------------------------------------------ 1. load and check the network

  function fetchBytes(url, what) {
    return fetch(url).then(function (response) {
      if (!response.ok) throw new Error(what + ": " + response.status);
      return response.arrayBuffer();
    });
  }

  // The run's network, once its bytes match the manifest's SHA-256 and its tensors the declared
  // shapes; and the 5,000 test images. A promise of {net, images}.
  function load(panel) {
    var shapes = JSON.parse(panel.getAttribute("data-shapes"));
    var weights = fetchBytes(panel.getAttribute("data-weights"), "weights").then(function (buffer) {
      if (!window.crypto || !window.crypto.subtle) throw new Error("no SubtleCrypto to check the weights");
      return window.crypto.subtle.digest("SHA-256", buffer).then(function (digest) {
        if (hex(digest) !== panel.getAttribute("data-sha256")) throw new Error("model.safetensors differs from the manifest");
        var tensors = readSafetensors(buffer);
        checkShapes(tensors, shapes);
        return {tensors: tensors, depth: [shapes["conv1.weight"][0], shapes["conv2.weight"][0]],
                hidden: shapes["fc1.weight"][0], kernel: shapes["conv1.weight"][2], classes: shapes["fc2.weight"][0]};
      });
    });
    var images = fetchBytes(panel.getAttribute("data-tests"), "test images").then(function (buffer) {
      return new Uint8Array(buffer);
    });
    return Promise.all([weights, images]).then(function (loaded) { return {net: loaded[0], images: loaded[1]}; });
  }

  // ------------------------------------------------------------ 2. render a state

  // The panel's elements, found once.
  function viewOf(panel) {
    return {panel: panel, status: panel.querySelector(".live-status"),
            pad: panel.querySelector("canvas.live-pad"), input: panel.querySelector("canvas.live-input"),
            bars: panel.querySelectorAll(".live-bars .bar"), values: panel.querySelectorAll(".live-bars .value"),
            prediction: panel.querySelector(".live-prediction"), label: panel.querySelector(".live-label"),
            outputs: panel.querySelectorAll("output[data-for]"),
            layers: [panel.querySelectorAll(".live-maps1 canvas"), panel.querySelectorAll(".live-maps2 canvas")],
            scales: panel.querySelectorAll(".live-scale-top")};
  }

  // The image a state asks for: a test image or the drawing, rotated, then shifted.
  function imageOf(state, loaded, pad) {
    var source = state.mode === "test" ? testImage(loaded.images, state.index) : mnistForm(pad);
    return shift(rotate(source, state.angle), state.dx, state.dy);
  }

  // Everything the panel shows follows from the state ({mode, index, dx, dy, angle}) and the drawing.
  function render(view, state, loaded) {
    view.outputs.forEach(function (out) { out.textContent = state[out.getAttribute("data-for")]; });
    var image = imageOf(state, loaded, view.pad), result = forward(loaded.net, image), best = 0;
    grey(view.input, image);
    result.probabilities.forEach(function (p, d) {
      view.bars[d].style.width = (100 * p).toFixed(1) + "%";
      // A softmax output is never exactly 1: one that rounds to 100.00% is shown as above 99.99%.
      view.values[d].textContent = p < 1 && (100 * p).toFixed(2) === "100.00" ? ">99.99%" : (100 * p).toFixed(2) + "%";
      if (p > result.probabilities[best]) best = d;
    });
    view.prediction.textContent = best;
    view.label.textContent = "";
    if (state.mode === "test") {
      var truth = loaded.images[state.index];
      view.label.textContent = view.panel.getAttribute(best === truth ? "data-say-right" : "data-say-wrong").replace("{label}", truth);
    }
    [result.maps1, result.maps2].forEach(function (maps, layer) {
      var size = layer ? SIZE / 2 : SIZE, top = maxOf(maps);
      view.layers[layer].forEach(function (canvas, channel) { paint(canvas, maps, channel * size * size, size, top); });
      if (view.scales[layer]) view.scales[layer].textContent = top.toFixed(2);
    });
  }

  // ------------------------------------------------------------ 3. wire the events to the state

  function wire(view, state, changed) {
    var panel = view.panel, pad = view.pad, context = pad.getContext("2d"), drawing = false;
    var controls = {dx: panel.querySelector("[name=dx]"), dy: panel.querySelector("[name=dy]"),
                    angle: panel.querySelector("[name=angle]"), index: panel.querySelector("[name=index]")};
    function setMode(mode) {
      state.mode = mode;
      panel.querySelector("[name=mode][value=" + mode + "]").checked = true;
    }
    function point(event) {
      var box = pad.getBoundingClientRect();
      return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
    }
    pad.addEventListener("pointerdown", function (event) {   // drawing with mouse, pen or finger
      setMode("draw");
      drawing = true;
      pad.setPointerCapture(event.pointerId);
      var p = point(event);
      context.beginPath();
      context.moveTo(p[0], p[1]);
    });
    pad.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      var p = point(event);
      context.lineWidth = pad.width / 12;
      context.lineCap = context.lineJoin = "round";
      context.strokeStyle = "#000";
      context.lineTo(p[0], p[1]);
      context.stroke();
      changed();
    });
    ["pointerup", "pointercancel"].forEach(function (name) {
      pad.addEventListener(name, function () { drawing = false; changed(); });
    });
    panel.querySelector(".live-clear").addEventListener("click", function () {
      context.clearRect(0, 0, pad.width, pad.height);
      changed();
    });
    panel.querySelectorAll("[name=mode]").forEach(function (radio) {
      radio.addEventListener("change", function () { state.mode = radio.value; changed(); });
    });
    Object.keys(controls).forEach(function (key) {
      controls[key].addEventListener("input", function () {
        var control = controls[key];   // a typed index past the range shows the nearest image
        state[key] = Math.max(Number(control.min), Math.min(Number(control.max), Math.round(Number(control.value) || 0)));
        if (key === "index") setMode("test");
        changed();
      });
    });
    // Arrow keys shift the digit while the panel has the focus (not while typing an index or on a slider).
    panel.addEventListener("keydown", function (event) {
      var moves = {ArrowLeft: ["dx", -1], ArrowRight: ["dx", 1], ArrowUp: ["dy", -1], ArrowDown: ["dy", 1]};
      if (!moves[event.key] || event.target.tagName === "INPUT") return;
      var key = moves[event.key][0], control = controls[key];
      state[key] = Math.max(Number(control.min), Math.min(Number(control.max), state[key] + moves[event.key][1]));
      control.value = state[key];
      event.preventDefault();
      changed();
    });
    return {index: Number(controls.index.value) || 0, dx: Number(controls.dx.value) || 0,
            dy: Number(controls.dy.value) || 0, angle: Number(controls.angle.value) || 0};
  }

  function start(panel) {
    var view = viewOf(panel), state = {mode: "test"}, loaded = null, pending = false;
    var say = function (key) { view.status.textContent = panel.getAttribute("data-say-" + key) || key; };
    // Strokes and slider moves come faster than frames: one pass per frame, with the latest state.
    Object.assign(state, wire(view, state, function () {
      if (!loaded || pending) return;
      pending = true;
      window.requestAnimationFrame(function () { pending = false; render(view, state, loaded); });
    }));
    // fetch() of the page's own files is refused on a page opened from disk (a notebook's panel carries its data).
    if (window.location.protocol === "file:" && !/^data:/.test(panel.getAttribute("data-weights"))) {
      say("disk");
      window.labbookLive = {ready: Promise.reject(new Error("opened from disk"))};
      window.labbookLive.ready.catch(function () {});
      return;
    }
    var ready = load(panel).then(function (result) {
      loaded = result;
      say("ready");
      panel.classList.add("live-ready");
      render(view, state, loaded);
    }, function (error) {
      say("failed");
      view.status.textContent += " (" + error.message + ")";
      throw error;
    });

    // For checking the page against PyTorch (tests/test_live_lab.py), and for the curious.
    window.labbookLive = {
      ready: ready,
      probabilities: function (index, dx, dy, degrees) {
        return forward(loaded.net, shift(rotate(testImage(loaded.images, index), degrees || 0), dx || 0, dy || 0)).probabilities;
      },
      // What the panel shows now: its 28 x 28 input and the ten probabilities.
      current: function () {
        var image = imageOf(state, loaded, view.pad);
        return {input: Array.from(image), probabilities: Array.from(forward(loaded.net, image).probabilities)};
      },
      passMilliseconds: function (repeats) {
        var image = testImage(loaded.images, 0), started = performance.now();
        for (var r = 0; r < repeats; r++) forward(loaded.net, image);
        return (performance.now() - started) / repeats;
      }
    };
  }

  // A site's page starts its panel once loaded; a notebook's output arrives after that, and starts at once.
  function startAll() {
    document.querySelectorAll("section.live-lab[data-weights]:not([data-started])").forEach(function (panel) {
      panel.setAttribute("data-started", "");
      start(panel);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
