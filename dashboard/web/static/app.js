// pilake dashboard page: history from /api/series, live points from the
// /api/live event stream, drawn with uPlot. No framework, no build step.
(() => {
  'use strict';
  const $ = (s) => document.querySelector(s);
  const QS = [
    { id: 'temp', key: 'temp_c', label: 'Temperature', unit: '°C', color: '#e4572e', conv: (v) => v, digits: 2 },
    { id: 'hum', key: 'humidity_rh', label: 'Humidity', unit: '%RH', color: '#1d7fc4', conv: (v) => v, digits: 1 },
    { id: 'press', key: 'pressure_pa', label: 'Pressure', unit: 'hPa', color: '#7b4fc9', conv: (v) => v / 100, digits: 2 },
  ];
  const RANGES = { '1m': 60e3, '15m': 900e3, '1h': 3600e3, '24h': 86400e3 };
  const MAX_LAT = 500000;
  const MAX_POINTS = 4000; // per card and series, before a reload re-decimates

  // window.pilake is read by the browser tests and the latency benchmark.
  const pilake = (window.pilake = { lat: [], pub: [], at: [], updates: 0, messages: 0, loads: 0, resets: 0, status: '', ready: false, error: '' });
  const hasPlot = typeof window.uPlot !== 'undefined';

  const url = new URL(location.href);
  const state = {
    device: url.searchParams.get('device') || 'all',
    range: url.searchParams.get('range') || '15m',
    from: +url.searchParams.get('from') || 0,
    to: +url.searchParams.get('to') || 0,
    live: url.searchParams.get('live') !== '0',
    seq: 0,
    es: null,
    cards: new Map(), // device → card
    devices: [],
    gen: 0,
    drawQueued: false,
    feed: { live: 'connecting', source: '', detail: '' },
    historyError: '',
    streamError: false,
  };
  if (state.from && state.to) state.range = 'custom';
  if (state.range !== 'custom' && !RANGES[state.range]) state.range = '15m';

  // ---------- small helpers ----------
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  // Columns of a series: means, and the band (the least and greatest reading
  // behind each point: a spike stays visible however long the range).
  const KEYS = ['t', 'temp_c', 'humidity_rh', 'pressure_pa', 'temp_c_lo', 'temp_c_hi', 'humidity_rh_lo', 'humidity_rh_hi', 'pressure_pa_lo', 'pressure_pa_hi'];
  const emptyCols = () => Object.fromEntries(KEYS.map((k) => [k, []]));
  // A response's columns with the band filled in (its own values where a series has none).
  const withBand = (c) => {
    const out = emptyCols();
    if (!c || !Array.isArray(c.t)) return out;
    for (const k of KEYS) {
      const base = k.replace(/_(lo|hi)$/, '');
      out[k] = Array.isArray(c[k]) && c[k].length === c.t.length ? c[k] : (c[base] || []).slice();
    }
    return out;
  };
  const rangeMS = () => (state.range === 'custom' ? state.to - state.from : RANGES[state.range]);
  const windowNow = () => {
    if (state.range === 'custom') return [state.from, state.to];
    const now = Date.now();
    return [now - RANGES[state.range], now];
  };
  function ageText(ms) {
    if (ms < 0) ms = 0;
    const s = ms / 1000;
    if (s < 1) return 'just now';
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function syncURL() {
    const u = new URL(location.href);
    for (const k of ['device', 'range', 'from', 'to', 'live']) u.searchParams.delete(k);
    if (state.device !== 'all') u.searchParams.set('device', state.device);
    if (state.range === 'custom') {
      u.searchParams.set('from', state.from);
      u.searchParams.set('to', state.to);
    } else if (state.range !== '15m') u.searchParams.set('range', state.range);
    if (!state.live) u.searchParams.set('live', '0');
    history.replaceState(null, '', u);
  }

  // Insert or replace (same t) points of src into dst; both sorted by t.
  function upsert(dst, src) {
    if (!src || !Array.isArray(src.t)) return;
    for (let i = 0; i < src.t.length; i++) {
      const t = src.t[i];
      let n = dst.t.length;
      let at;
      if (n === 0 || t > dst.t[n - 1]) at = n;
      else {
        let lo = 0, hi = n;
        while (lo < hi) { const m = (lo + hi) >> 1; if (dst.t[m] < t) lo = m + 1; else hi = m; }
        at = lo;
      }
      const same = at < n && dst.t[at] === t;
      for (const k of KEYS) {
        const col = src[k] && src[k].length === src.t.length ? src[k] : src[k.replace(/_(lo|hi)$/, '')];
        if (same) dst[k][at] = col[i];
        else if (at === n) dst[k].push(col[i]);
        else dst[k].splice(at, 0, col[i]);
      }
    }
  }
  function trim(cols, fromMS) {
    let k = 0;
    while (k < cols.t.length && cols.t[k] < fromMS) k++;
    if (k > 0) for (const key of Object.keys(cols)) cols[key].splice(0, k);
  }

  // ---------- banners and status ----------
  function renderBanners() {
    const b = $('#banners');
    b.textContent = '';
    const add = (cls, html) => { const d = el('div', 'banner ' + cls); d.innerHTML = html; b.append(d); };
    if (!hasPlot) {
      add('warn', '<b>Chart library missing.</b> This dashboard was built without uPlot, so only current values are shown. ' +
        'Run <code>dashboard/web/build.sh</code> (npm ci, copies uPlot into <code>dashboard/web/vendor/</code>), then rebuild with <code>go build ./dashboard</code>.');
    }
    if (state.historyError) {
      add('bad', '<b>Source offline:</b> history could not be read — ' + escapeHTML(state.historyError) + '. Retrying…');
    }
    if (state.live && state.feed.live === 'offline') {
      add('bad', '<b>Source offline:</b> the live feed (' + escapeHTML(state.feed.source || 'upstream') + ') is not reachable' +
        (state.feed.detail ? ' — ' + escapeHTML(state.feed.detail) : '') + '. Live points resume when it is back.');
    } else if (state.live && state.streamError) {
      add('bad', '<b>Dashboard unreachable:</b> the live stream dropped; reconnecting (no points are lost if it is back within the buffer).');
    }
  }
  function escapeHTML(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }
  function renderStatus() {
    const p = $('#status');
    let cls, text;
    if (!state.live || state.range === 'custom') { cls = 'paused'; text = 'live off'; }
    else if (state.streamError) { cls = 'offline'; text = 'reconnecting'; }
    else if (state.feed.live === 'online') { cls = 'online'; text = 'live'; }
    else if (state.feed.live === 'offline') { cls = 'offline'; text = 'source offline'; }
    else { cls = 'connecting'; text = 'connecting…'; }
    p.className = 'pill ' + cls;
    p.textContent = text;
    p.title = state.feed.source || '';
    pilake.status = cls;
    renderBanners();
  }

  // ---------- cards and charts ----------
  const io = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      const c = e.target.__card;
      if (!c) continue;
      c.visible = e.isIntersecting;
      if (c.visible && c.dirty) queueDraw();
    }
  }, { rootMargin: '200px' }) : null;

  function chartWidth(card) {
    return Math.max(200, Math.floor(card.el.clientWidth - 28));
  }
  function makeCard(device) {
    const card = { device, silver: emptyCols(), gold: emptyCols(), lastCapture: 0, charts: {}, boxes: {}, visible: true, dirty: true };
    const root = el('section', 'card');
    root.dataset.device = device;
    root.__card = card;
    const h = el('h2');
    h.append(el('span', 'name', device));
    card.ageEl = el('span', 'age', 'no data yet');
    h.append(card.ageEl);
    root.append(h);
    const now = el('div', 'now');
    card.nowEls = {};
    for (const q of QS) {
      const d = el('div', q.id[0]);
      d.append(el('span', '', q.label));
      const b = el('b', '', '–');
      d.append(b, el('small', '', q.unit));
      card.nowEls[q.id] = b;
      now.append(d);
    }
    root.append(now);
    for (const q of QS) {
      const box = el('div', 'chart');
      box.dataset.q = q.id;
      card.boxes[q.id] = box;
      root.append(box);
    }
    card.el = root;
    if (io) { card.visible = false; io.observe(root); }
    return card;
  }
  // Enough decimals to tell neighbouring ticks apart (a quiet sensor spans hundredths).
  function tickDigits(vals) {
    const step = vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 1;
    return step > 0 ? Math.min(6, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9))) : 2;
  }
  function makeChart(card, q) {
    const box = card.boxes[q.id];
    box.textContent = '';
    const axis = { stroke: '#637083', grid: { stroke: '#eef1f5', width: 1 }, ticks: { stroke: '#e2e7ee', width: 1 }, font: '11px system-ui, sans-serif' };
    const opts = {
      title: `${q.label} (${q.unit})`,
      width: chartWidth(card),
      height: window.innerWidth < 560 ? 130 : 150,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: true } },
      axes: [axis, Object.assign({}, axis, { size: 66, values: (u, vals) => { const d = tickDigits(vals); return vals.map((v) => v.toFixed(d)); } })],
      series: [
        {},
        // Without gold (long ranges read from the rollup tiers) the mean line is the main one.
        // A null (no humidity from a BMP280, no pressure from the Azure simulator) is a gap;
        // the undefined that joining silver and gold leaves is spanned.
        { label: 'silver', stroke: () => (card.gold.t.length ? q.color + '80' : q.color), width: 1.25, spanGaps: false, points: { show: false } },
        { label: 'max', stroke: q.color + '30', width: 0.5, spanGaps: false, points: { show: false } },
        { label: 'min', stroke: q.color + '30', width: 0.5, spanGaps: false, points: { show: false } },
        { label: 'gold', stroke: q.color, width: 2.5, spanGaps: false, points: { show: false } },
      ],
      bands: [{ series: [2, 3], fill: q.color + '26' }],
    };
    return new window.uPlot(opts, [[], [], []], box);
  }
  function chartData(card, q) {
    const s = card.silver, g = card.gold;
    const xs = s.t.map((t) => t / 1000), gx = g.t.map((t) => t / 1000);
    const cv = (v) => (v == null ? null : q.conv(v)); // null: the device has no such value there
    return window.uPlot.join([[xs, s[q.key].map(cv), s[q.key + '_hi'].map(cv), s[q.key + '_lo'].map(cv)], [gx, g[q.key].map(cv)]]);
  }
  function drawCard(card) {
    card.dirty = false;
    const has = card.silver.t.length + card.gold.t.length > 0;
    card.el.classList.toggle('has-data', has);
    card.el.dataset.points = String(card.silver.t.length + card.gold.t.length);
    // current values: the newest silver window (provisional while live)
    const n = card.silver.t.length;
    for (const q of QS) {
      const v = n ? card.silver[q.key][n - 1] : null;
      card.nowEls[q.id].textContent = v == null ? '–' : q.conv(v).toFixed(q.digits);
    }
    updateAge(card);
    if (!hasPlot) return;
    const [from, to] = windowNow();
    for (const q of QS) {
      if (!has) {
        if (card.charts[q.id]) { card.charts[q.id].destroy(); delete card.charts[q.id]; }
        card.boxes[q.id].innerHTML = '';
        if (q.id === 'temp') card.boxes[q.id].append(el('div', 'nodata', 'No data in this range yet — waiting for the first windows.'));
        continue;
      }
      let u = card.charts[q.id];
      if (!u) u = card.charts[q.id] = makeChart(card, q);
      const data = chartData(card, q);
      // gaps drawn (null silver means: no such value there), for the browser tests
      card.el.dataset['gaps' + q.id] = String(data[1].filter((v) => v === null).length);
      u.setData(data, false);
      u.setScale('x', { min: from / 1000, max: to / 1000 });
    }
  }
  function updateAge(card) {
    const n = card.silver.t.length;
    let last = card.lastCapture;
    if (n) last = Math.max(last, card.silver.t[n - 1] + 1000);
    if (!last) { card.ageEl.textContent = 'no data yet'; card.ageEl.classList.remove('stale'); return; }
    const age = Date.now() - last;
    card.ageEl.textContent = 'last point ' + ageText(age);
    card.ageEl.classList.toggle('stale', age > 10000);
  }
  function queueDraw() {
    if (state.drawQueued) return;
    state.drawQueued = true;
    requestAnimationFrame(() => {
      state.drawQueued = false;
      for (const c of state.cards.values()) if (c.dirty && c.visible) drawCard(c);
    });
  }
  function ensureCard(device) {
    let c = state.cards.get(device);
    if (c) return c;
    c = makeCard(device);
    state.cards.set(device, c);
    const cards = $('#cards');
    // keep cards sorted by device id
    const after = [...cards.children].find((x) => x.dataset.device > device);
    cards.insertBefore(c.el, after || null);
    c.el.classList.toggle('single', state.device !== 'all');
    renderEmpty();
    return c;
  }
  function renderEmpty() {
    const e = $('#empty');
    if (state.cards.size > 0) { e.hidden = true; return; }
    e.hidden = false;
    e.innerHTML = state.historyError
      ? '<strong>Source offline</strong>The history source could not be read; retrying.'
      : '<strong>No data yet</strong>Waiting for the first readings from the collector — start an agent, or check the live status above.';
  }
  function resetCards() {
    for (const c of state.cards.values()) {
      if (io) io.unobserve(c.el);
      for (const u of Object.values(c.charts)) u.destroy();
    }
    state.cards.clear();
    $('#cards').textContent = '';
  }

  // ---------- devices ----------
  async function loadDevices() {
    try {
      const r = await fetch('api/devices', { cache: 'no-store' });
      if (!r.ok) throw new Error((await r.text()) || r.statusText);
      const j = await r.json();
      state.devices = (j.devices || []).map((d) => d.id);
      renderPicker();
    } catch (e) { /* the series load reports the source state */ }
  }
  function renderPicker() {
    const sel = $('#device');
    const want = ['all', ...state.devices];
    if (state.device !== 'all' && !want.includes(state.device)) want.push(state.device);
    const have = [...sel.options].map((o) => o.value);
    if (want.join('\n') !== have.join('\n')) {
      sel.textContent = '';
      for (const d of want) sel.append(new Option(d === 'all' ? 'All devices' : d, d));
    }
    sel.value = state.device;
  }

  // ---------- history + live ----------
  async function reload() {
    const gen = ++state.gen;
    closeStream();
    // About one point per pixel of a chart: what a card can draw, no more.
    const W = $('#cards').clientWidth || 900;
    const cols = state.device === 'all' ? Math.max(1, Math.floor((W + 14) / (440 + 14))) : 1; // the grid in app.css
    const width = Math.max(200, (W - 14 * (cols - 1)) / cols - 30);
    const p = new URLSearchParams({ device: state.device, points: String(Math.max(16, Math.min(4000, Math.round(width)))) });
    if (state.range === 'custom') { p.set('from', state.from); p.set('to', state.to); } else p.set('range', state.range);
    let j;
    try {
      const r = await fetch('api/series?' + p, { cache: 'no-store' });
      if (!r.ok) {
        let msg = r.statusText;
        try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
        throw new Error(msg);
      }
      j = await r.json();
    } catch (e) {
      if (gen !== state.gen) return;
      state.historyError = e.message || String(e);
      pilake.error = state.historyError;
      renderStatus();
      renderEmpty();
      setTimeout(() => { if (gen === state.gen) reload(); }, 5000);
      return;
    }
    if (gen !== state.gen) return;
    state.historyError = '';
    pilake.error = '';
    resetCards();
    const devs = state.device === 'all' ? new Set(state.devices) : new Set([state.device]);
    for (const s of j.series || []) devs.add(s.device);
    for (const d of [...devs].sort()) ensureCard(d);
    for (const s of j.series || []) {
      const c = ensureCard(s.device);
      c.silver = withBand(s.silver);
      c.gold = withBand(s.gold);
      c.dirty = true;
    }
    for (const c of state.cards.values()) c.dirty = true;
    state.seq = j.live_seq || 0;
    pilake.loads++;
    renderEmpty();
    renderStatus();
    queueDraw();
    if (state.live && state.range !== 'custom') openStream();
    pilake.ready = true;
  }

  function closeStream() {
    if (state.es) { state.es.close(); state.es = null; }
  }
  function openStream() {
    closeStream();
    const p = new URLSearchParams({ device: state.device, after: state.seq });
    const es = new EventSource('api/live?' + p);
    state.es = es;
    es.addEventListener('open', () => { state.streamError = false; renderStatus(); });
    es.addEventListener('error', () => { if (state.es === es) { state.streamError = true; renderStatus(); } });
    es.addEventListener('status', (ev) => {
      try { state.feed = JSON.parse(ev.data); } catch (_) { return; }
      state.streamError = false;
      renderStatus();
    });
    es.addEventListener('reset', () => { pilake.resets++; reload(); });
    es.addEventListener('live', (ev) => {
      const now = Date.now();
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      pilake.messages++;
      state.streamError = false;
      const from = windowNow()[0] - 5000;
      for (const u of m.updates || []) {
        if (pilake.lat.length < MAX_LAT) {
          pilake.lat.push(now - u.capture_ms); // pipeline to screen: newest capture → arrival here
          pilake.at.push(now);
          if (u.published_ms) pilake.pub.push(u.published_ms - u.capture_ms); // of which: until the collector published
        }
        pilake.updates++;
        if (state.device !== 'all' && u.device !== state.device) continue;
        const c = ensureCard(u.device);
        if (!state.devices.includes(u.device)) { state.devices.push(u.device); state.devices.sort(); renderPicker(); }
        if (u.silver) upsert(c.silver, u.silver);
        if (u.gold) upsert(c.gold, u.gold);
        trim(c.silver, from);
        trim(c.gold, from);
        if (u.capture_ms > c.lastCapture) c.lastCapture = u.capture_ms;
        c.dirty = true;
        // A long range fills with 1 s live points; past a bound, reload the
        // (server-decimated) history instead of growing without end.
        if (c.silver.t.length > MAX_POINTS && !state.reloading) {
          state.reloading = true;
          setTimeout(() => { state.reloading = false; reload(); }, 0);
        }
      }
      queueDraw();
    });
  }

  // ---------- controls ----------
  function renderRangeButtons() {
    for (const b of document.querySelectorAll('.ranges button')) b.classList.toggle('on', b.dataset.range === state.range);
    $('#custom').hidden = state.range !== 'custom';
    $('#live').checked = state.live && state.range !== 'custom';
    $('#live').disabled = state.range === 'custom';
  }
  const pad = (n) => String(n).padStart(2, '0');
  const toLocalInput = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };

  $('#device').addEventListener('change', (e) => { state.device = e.target.value; syncURL(); reload(); });
  for (const b of document.querySelectorAll('.ranges button')) {
    b.addEventListener('click', () => {
      if (b.dataset.range === 'custom') {
        const now = Date.now();
        $('#from').value = toLocalInput(state.from || now - 3600e3);
        $('#to').value = toLocalInput(state.to || now);
        $('#custom').hidden = false;
        return;
      }
      state.range = b.dataset.range;
      state.from = state.to = 0;
      renderRangeButtons();
      syncURL();
      reload();
    });
  }
  $('#custom').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new Date($('#from').value).getTime(), t = new Date($('#to').value).getTime();
    if (!(t > f)) { alert('"To" must be after "From".'); return; }
    state.range = 'custom'; state.from = f; state.to = t;
    renderRangeButtons();
    syncURL();
    reload();
  });
  $('#live').addEventListener('change', (e) => {
    state.live = e.target.checked;
    syncURL();
    if (state.live) reload(); else { closeStream(); renderStatus(); }
  });
  if ('ResizeObserver' in window) {
    let last = 0;
    new ResizeObserver(() => {
      const w = $('#cards').clientWidth;
      if (w === last) return;
      last = w;
      for (const c of state.cards.values()) for (const u of Object.values(c.charts)) u.setSize({ width: chartWidth(c), height: u.height });
    }).observe($('#cards'));
  }

  // Once a second: ages, and the live window slides.
  setInterval(() => {
    for (const c of state.cards.values()) {
      updateAge(c);
      if (state.live && state.range !== 'custom' && c.silver.t.length) c.dirty = true;
    }
    queueDraw();
    $('#footinfo').textContent = state.feed.source ? `source: ${state.feed.source}` : '';
  }, 1000);
  setInterval(loadDevices, 15000);

  renderRangeButtons();
  renderStatus();
  renderEmpty();
  loadDevices().then(reload);
})();
