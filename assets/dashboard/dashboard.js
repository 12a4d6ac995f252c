// The editors' dashboard: reads the stats endpoints of the service that serves it and draws
// them as numbers, SVG charts and tables. Plain JavaScript, no build step, nothing from another
// host. Every piece of data reaches the page through textContent or an attribute, never as HTML:
// article ids come from news sites and readers.

const REACTIONS = [
  ['like', '👍', 'Like'],
  ['dislike', '👎', 'Dislike'],
  ['love', '❤️', 'Love'],
  ['funny', '😂', 'Funny'],
  ['angry', '😠', 'Angry'],
  ['sad', '😢', 'Sad'],
  ['wow', '😮', 'Wow'],
];
const HOUR = 3600e3;
const DAY = 24 * HOUR;
const WINDOWS = {
  '1h': { length: HOUR, label: 'last hour' },
  '24h': { length: DAY, label: 'last 24 hours' },
  '7d': { length: 7 * DAY, label: 'last 7 days' },
  '30d': { length: 30 * DAY, label: 'last 30 days' },
};
const TRENDS = ['1h', '24h'];
const REFRESH_MS = 30e3;
const TOP_LIMIT = 10;
const STATS_TOKEN_KEY = 'reader-reactions.stats-token';
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const hourLabel = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC', hourCycle: 'h23' });
const dayLabel = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' });

// What the reader looks at; mirrored in the URL so that a view can be shared.
const view = readView();
const tokenNeeded = document.querySelector('meta[name="stats-token"]')?.content === 'required';
let adminToken = null; // asked for when the export is used, kept for this page only
let refreshTimer = null;
let generation = 0; // answers of an older refresh than the last one started are dropped
let lastTotals = null; // the data of the charts, to redraw them at a new width
let lastSeries = null;

function readView() {
  const params = new URLSearchParams(location.search);
  const pick = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
  return {
    window: pick(params.get('window'), Object.keys(WINDOWS), '24h'),
    reaction: pick(params.get('reaction'), REACTIONS.map((r) => r[0]), ''),
    trend: pick(params.get('trend'), TRENDS, '1h'),
    article: params.get('article') || null,
  };
}

function writeView() {
  const params = new URLSearchParams();
  params.set('window', view.window);
  if (view.reaction) params.set('reaction', view.reaction);
  params.set('trend', view.trend);
  if (view.article) params.set('article', view.article);
  history.replaceState(null, '', `${location.pathname}?${params}`);
}

// ---- tokens ----------------------------------------------------------------------------------

function storedStatsToken() {
  try {
    return sessionStorage.getItem(STATS_TOKEN_KEY);
  } catch {
    return memoryStatsToken; // storage blocked: keep it for this page
  }
}
let memoryStatsToken = null;
function storeStatsToken(token) {
  memoryStatsToken = token;
  try {
    if (token) sessionStorage.setItem(STATS_TOKEN_KEY, token);
    else sessionStorage.removeItem(STATS_TOKEN_KEY);
  } catch {
    // blocked storage: the token lives as long as the page
  }
}

let pendingPrompt = null;
// Asks for a token in the dialog; resolves to it, or to null when cancelled (the export only).
function askToken(kind, refused) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = $('token-dialog');
  const input = $('token-input');
  const stats = kind === 'stats';
  $('token-title').textContent = stats ? 'Stats token' : 'Admin token';
  $('token-why').textContent = stats
    ? 'This server keeps its reaction statistics behind a token (STATS_TOKEN). Enter it once; the browser keeps it until you close this tab.'
    : 'The CSV export needs the admin token (ADMIN_TOKEN). It is kept for this page only.';
  $('token-error').hidden = !refused;
  $('token-error').textContent = refused ? 'That token was refused. Try again.' : '';
  $('token-cancel').hidden = stats; // nothing to show without the stats token
  input.value = '';
  pendingPrompt = new Promise((resolve) => {
    const form = $('token-form');
    const finish = (value) => {
      form.removeEventListener('submit', onSubmit);
      $('token-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onEscape);
      dialog.close();
      pendingPrompt = null;
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) finish(value);
    };
    const onCancel = () => finish(null);
    const onEscape = (event) => {
      event.preventDefault();
      if (!stats) finish(null);
    };
    form.addEventListener('submit', onSubmit);
    $('token-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onEscape);
    dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

// ---- reading the API -------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// A stats read, with the stats token when the server wants one. A 401 (a wrong token, or a
// server that gained one since the page loaded) asks for the token and tries again.
async function stats(path) {
  let refused = false;
  for (;;) {
    let token = storedStatsToken();
    if (!token && (tokenNeeded || refused)) {
      token = await askToken('stats', refused);
      storeStatsToken(token);
    }
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(path, { headers, cache: 'no-store' });
    if (response.status === 401) {
      response.body?.cancel();
      // Another read may have stored a better token meanwhile; only a refused one is dropped.
      if (storedStatsToken() === token) storeStatsToken(null);
      refused = true;
      continue;
    }
    if (!response.ok) throw new HttpError(response.status, await problem(response));
    return response.json();
  }
}

async function publicRead(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (!response.ok) throw new HttpError(response.status, await problem(response));
  return response.json();
}

const articleSegment = (id) => encodeURIComponent(id);

// ---- drawing ---------------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value;
    else if (name === 'className') node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Replaces a chart's drawing, keeping its <title> (the accessible name).
function clearChart(chart) {
  for (const child of [...chart.children]) if (child.tagName !== 'title') child.remove();
}

function reactionCell(key, emoji, label) {
  return el('th', { scope: 'row' }, el('span', { className: `swatch r-${key}`, 'aria-hidden': 'true' }),
    el('span', { className: 'emoji', 'aria-hidden': 'true', text: `${emoji} ` }), label);
}

// The chart's width on screen, in CSS pixels.
function chartWidth(chart) {
  return Math.max(240, Math.round(chart.getBoundingClientRect().width)) || 560;
}

// Round steps for an axis from 0 to max: 1, 2 or 5 times a power of ten.
function niceTicks(max, count = 4) {
  if (max <= 0) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let t = 0; t <= max + step * 0.999; t += step) ticks.push(Math.round(t));
  return ticks;
}

function drawTotals(data) {
  $('total-count').textContent = number.format(data.total);
  const body = $('totals-table').tBodies[0];
  body.replaceChildren(...REACTIONS.map(([key, emoji, label]) => {
    const count = data.counts[key];
    const share = data.total ? `${Math.round((100 * count) / data.total)}%` : '–';
    return el('tr', { 'data-reaction': key }, reactionCell(key, emoji, label),
      el('td', { className: 'num', text: number.format(count) }), el('td', { className: 'num', text: share }));
  }));

  lastTotals = data;
  const chart = $('totals-chart');
  clearChart(chart);
  // Drawn at the size shown, so that text stays legible on a phone; redrawn on resize.
  const width = chartWidth(chart), height = 230, left = 36, bottom = 40, top = 18;
  chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
  chart.setAttribute('height', height);
  const max = Math.max(...REACTIONS.map(([key]) => data.counts[key]));
  const ticks = niceTicks(max);
  const scale = (height - bottom - top) / ticks[ticks.length - 1];
  for (const tick of ticks) {
    const y = height - bottom - tick * scale;
    chart.append(svg('line', { class: 'grid', x1: left, x2: width, y1: y, y2: y }));
    chart.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, number.format(tick)));
  }
  const slot = (width - left) / REACTIONS.length;
  REACTIONS.forEach(([key, emoji, label], i) => {
    const count = data.counts[key];
    const x = left + i * slot + slot * 0.2;
    const middle = x + slot * 0.3;
    const barHeight = count * scale;
    const group = svg('g', { class: 'bar', 'data-reaction': key });
    group.append(svg('title', {}, `${label}: ${number.format(count)}`));
    group.append(svg('rect', { class: `r-${key}`, x, y: height - bottom - barHeight, width: slot * 0.6, height: barHeight, rx: 2 }));
    group.append(svg('text', { class: 'value', x: middle, y: height - bottom - barHeight - 5, 'text-anchor': 'middle' }, number.format(count)));
    group.append(svg('text', { class: 'emoji', x: middle, y: height - 22, 'text-anchor': 'middle' }, emoji));
    group.append(svg('text', { x: middle, y: height - 6, 'text-anchor': 'middle' }, label));
    chart.append(group);
  });
}

// Focus survives a redraw: the button for the same article in the same list gets it back.
function keepingFocus(container, draw) {
  const focused = container.contains(document.activeElement) ? document.activeElement.dataset.article : undefined;
  draw();
  if (focused !== undefined) {
    const again = [...container.querySelectorAll('button.article')].find((b) => b.dataset.article === focused);
    again?.focus();
  }
}

function articleButton(id) {
  const button = el('button', { type: 'button', className: 'article', title: id, text: id });
  button.dataset.article = id;
  if (id === view.article) button.setAttribute('aria-current', 'true');
  button.addEventListener('click', () => selectArticle(id));
  return button;
}

function drawTop(data) {
  const list = $('top-list');
  keepingFocus(list, () => {
    list.replaceChildren(...data.articles.map((a) =>
      el('li', {}, articleButton(a.article_id), el('span', { className: 'count num', text: number.format(a.count) }))));
  });
  $('top-empty').hidden = data.articles.length > 0;
}

function drawTrending(data) {
  // `networks` is shown when the service reports it.
  const networks = data.articles.some((a) => 'networks' in a);
  const head = $('trending-table').tHead.rows[0];
  const hasColumn = head.cells.length === 5;
  if (networks && !hasColumn) head.append(el('th', { scope: 'col', className: 'num', text: 'Networks' }));
  if (!networks && hasColumn) head.cells[4].remove();
  const body = $('trending-table').tBodies[0];
  keepingFocus(body, () => {
    body.replaceChildren(...data.articles.map((a) => {
      const row = el('tr', {}, el('td', {}, articleButton(a.article_id)),
        el('td', { className: 'num', text: a.score.toFixed(2) }),
        el('td', { className: 'num', text: number.format(a.recent) }),
        el('td', { className: 'num', text: number.format(a.previous) }));
      if (networks) row.append(el('td', { className: 'num', text: a.networks == null ? '–' : number.format(a.networks) }));
      return row;
    }));
  });
  $('trending-empty').hidden = data.articles.length > 0;
}

function drawArticleCounts(summary) {
  $('article-total').textContent = number.format(REACTIONS.reduce((sum, [key]) => sum + summary.counts[key], 0));
  $('article-counts').replaceChildren(...REACTIONS.map(([key, emoji, label]) =>
    el('li', { 'data-reaction': key }, el('span', { className: 'emoji', 'aria-hidden': 'true', text: emoji }),
      `${label} `, el('strong', { text: number.format(summary.counts[key]) }))));
}

function bucketLabel(series, start) {
  const date = new Date(start);
  return series.bucket === 'hour' ? hourLabel.format(date) : dayLabel.format(date);
}

function drawSeries(series) {
  lastSeries = series;
  const buckets = series.buckets;
  const chart = $('series-chart');
  clearChart(chart);
  const width = chartWidth(chart), height = 240, left = 36, bottom = 26, top = 10;
  chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
  chart.setAttribute('height', height);
  chart.dataset.buckets = String(buckets.length);
  const max = Math.max(0, ...buckets.map((b) => b.total));
  const ticks = niceTicks(max);
  const scale = (height - bottom - top) / ticks[ticks.length - 1];
  for (const tick of ticks) {
    const y = height - bottom - tick * scale;
    chart.append(svg('line', { class: 'grid', x1: left, x2: width, y1: y, y2: y }));
    chart.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, number.format(tick)));
  }
  const slot = (width - left) / Math.max(1, buckets.length);
  // A label every 60 pixels or more, whatever the number of buckets.
  const labelEvery = Math.max(1, Math.ceil(buckets.length / Math.max(1, Math.floor((width - left) / 60))));
  buckets.forEach((bucket, i) => {
    const x = left + i * slot;
    const label = bucketLabel(series, bucket.start);
    const group = svg('g', { class: 'bucket', 'data-start': bucket.start });
    group.append(svg('title', {}, `${label}: ${number.format(bucket.total)} reactions`));
    let y = height - bottom;
    for (const [key, , name] of REACTIONS) {
      const count = bucket.counts[key];
      if (!count) continue;
      const h = count * scale;
      y -= h;
      const rect = svg('rect', { class: `r-${key}`, x: x + slot * 0.12, y, width: slot * 0.76, height: h });
      rect.append(svg('title', {}, `${label}: ${name} ${number.format(count)}`));
      group.append(rect);
    }
    if (i % labelEvery === 0) {
      group.append(svg('text', { x: x + slot / 2, y: height - 8, 'text-anchor': 'middle' }, label));
    }
    chart.append(group);
  });
  chart.append(svg('line', { class: 'axis', x1: left, x2: width, y1: height - bottom, y2: height - bottom }));
  $('series-chart-title').textContent =
    `Stacked columns of ${buckets.length} ${series.bucket === 'hour' ? 'hourly' : 'daily'} buckets, ` +
    `at most ${number.format(max)} reactions in one; the table below has every number`;

  const table = $('series-table');
  table.tHead.replaceChildren(el('tr', {}, el('th', { scope: 'col', text: series.bucket === 'hour' ? 'Hour (UTC)' : 'Day (UTC)' }),
    ...REACTIONS.map(([, emoji, label]) => el('th', { scope: 'col', className: 'num', title: label, text: `${emoji} ${label}` })),
    el('th', { scope: 'col', className: 'num', text: 'All' })));
  table.tBodies[0].replaceChildren(...buckets.map((bucket) => el('tr', {},
    el('th', { scope: 'row', text: `${series.bucket === 'hour' ? dayLabel.format(new Date(bucket.start)) + ' ' : ''}${bucketLabel(series, bucket.start)}` }),
    ...REACTIONS.map(([key]) => el('td', { className: 'num', text: number.format(bucket.counts[key]) })),
    el('td', { className: 'num', text: number.format(bucket.total) }))));
}

// ---- what each window reads ------------------------------------------------------------------

function windowQuery(until) {
  const since = new Date(until.getTime() - WINDOWS[view.window].length);
  return `since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`;
}

// Hourly buckets over the last day for the short windows, daily ones for the long windows.
function seriesQuery(until) {
  const iso = (date) => encodeURIComponent(date.toISOString());
  if (view.window === '1h' || view.window === '24h') {
    return { query: `bucket=hour&until=${iso(until)}`, heading: 'Reactions per hour, last 24 hours (UTC)' };
  }
  const days = view.window === '7d' ? 7 : 30;
  const today = Date.UTC(until.getUTCFullYear(), until.getUTCMonth(), until.getUTCDate());
  const since = new Date(today - (days - 1) * DAY);
  return { query: `bucket=day&since=${iso(since)}&until=${iso(until)}`, heading: `Reactions per day, last ${days} days (UTC)` };
}

async function loadArticle(until, current) {
  const id = view.article;
  const section = $('article');
  if (!id) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  $('article-id').textContent = id;
  const { query, heading } = seriesQuery(until);
  const [series, summary] = await Promise.all([
    stats(`/v1/articles/${articleSegment(id)}/timeseries?${query}`),
    publicRead(`/v1/articles/${articleSegment(id)}/reactions`),
  ]);
  if (current !== generation || id !== view.article) return;
  $('series-heading').textContent = heading;
  drawSeries(series);
  drawArticleCounts(summary);
}

async function refresh() {
  const current = ++generation;
  const until = new Date();
  for (const label of document.querySelectorAll('.window-label')) label.textContent = WINDOWS[view.window].label;
  const reaction = view.reaction ? `&reaction=${view.reaction}` : '';
  try {
    const [totals, top, trending] = await Promise.all([
      stats(`/v1/stats/totals?${windowQuery(until)}`),
      stats(`/v1/stats/top?${windowQuery(until)}&limit=${TOP_LIMIT}${reaction}`),
      stats(`/v1/stats/trending?window=${view.trend}&limit=${TOP_LIMIT}&until=${encodeURIComponent(until.toISOString())}`),
    ]);
    if (current !== generation) return;
    drawTotals(totals);
    drawTop(top);
    drawTrending(trending);
    await loadArticle(until, current);
    if (current !== generation) return;
    $('error').hidden = true;
    $('updated').textContent = `Updated ${clock.format(until)} · refreshes every 30 s`;
    document.body.dataset.loaded = String(current);
  } catch (error) {
    if (current !== generation) return;
    $('error').textContent = `Could not load the statistics: ${error.message}`;
    $('error').hidden = false;
  }
}

function scheduleRefresh() {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

function selectArticle(id) {
  view.article = id;
  writeView();
  for (const button of document.querySelectorAll('button.article')) {
    if (button.dataset.article === id) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
  const until = new Date();
  const current = generation;
  loadArticle(until, current).then(() => $('article').scrollIntoView({ block: 'nearest' })).catch((error) => {
    $('error').textContent = `Could not load the article: ${error.message}`;
    $('error').hidden = false;
  });
}

// ---- the export ------------------------------------------------------------------------------

async function downloadCsv() {
  const query = windowQuery(new Date());
  let refused = false;
  for (;;) {
    if (!adminToken || refused) adminToken = await askToken('admin', refused);
    if (!adminToken) return;
    const response = await fetch(`/v1/stats/export.csv?${query}`, {
      headers: { Authorization: `Bearer ${adminToken}` },
      cache: 'no-store',
    });
    if (response.status === 401) {
      response.body?.cancel();
      refused = true;
      continue;
    }
    if (!response.ok) {
      $('error').textContent = response.status === 404
        ? 'The CSV export is off: the server has no ADMIN_TOKEN.'
        : `The export failed: ${await problem(response)}`;
      $('error').hidden = false;
      return;
    }
    const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') || '')?.[1] || 'reactions.csv';
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10e3);
    return;
  }
}

// ---- start -----------------------------------------------------------------------------------

function start() {
  const reaction = $('reaction');
  for (const [key, emoji, label] of REACTIONS) reaction.append(el('option', { value: key, text: `${emoji} ${label}` }));
  $('series-legend').replaceChildren(...REACTIONS.map(([key, , label]) =>
    el('li', {}, el('span', { className: `swatch r-${key}` }), label)));
  $('window').value = view.window;
  reaction.value = view.reaction;
  $('trend').value = view.trend;
  writeView();

  const onChange = (id, field) => $(id).addEventListener('change', (event) => {
    view[field] = event.target.value;
    writeView();
    refresh();
    scheduleRefresh();
  });
  onChange('window', 'window');
  onChange('reaction', 'reaction');
  onChange('trend', 'trend');
  $('article-close').addEventListener('click', () => {
    const id = view.article;
    view.article = null;
    writeView();
    $('article').hidden = true;
    for (const button of document.querySelectorAll('button.article[aria-current]')) button.removeAttribute('aria-current');
    // Back to where the reader came from.
    [...document.querySelectorAll('button.article')].find((b) => b.dataset.article === id)?.focus();
  });
  $('export').addEventListener('click', () => downloadCsv().catch((error) => {
    $('error').textContent = `The export failed: ${error.message}`;
    $('error').hidden = false;
  }));
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (lastTotals) drawTotals(lastTotals);
      if (lastSeries && !$('article').hidden) drawSeries(lastSeries);
    }, 150);
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  refresh();
  scheduleRefresh();
}

start();
