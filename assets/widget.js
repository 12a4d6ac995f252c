// <reader-reactions article="…" api="…" reactions="…" lang="…" labels="…">: the "What's your
// reaction?" row. No dependencies, no build step. Attributes, parts and CSS properties: README,
// "Widget".

const REACTIONS = { like: '👍', dislike: '👎', love: '❤️', funny: '😂', angry: '😠', sad: '😢', wow: '😮' };
// Per language, '|'-separated: the heading, the seven labels in REACTIONS order, then the
// messages in TEXT_KEYS order. The element's lang (or its page's) picks one; else English.
const TEXT_KEYS = ['heading', ...Object.keys(REACTIONS), 429, 503, 'save', 'load', 'closed'];
const TEXTS = {
  en: "What's your reaction?|Like|Dislike|Love|Funny|Angry|Sad|Wow|Lots of reactions right now. Please try again in a moment.|Reactions are resting for a moment. Please try again shortly.|Your reaction could not be saved. Please try again.|Reactions could not be loaded.|Reactions are closed for this article.",
  fr: "Quelle est votre réaction\u00a0?|J'aime|Je n'aime pas|J'adore|Drôle|En colère|Triste|Waouh|Beaucoup de réactions en ce moment. Réessayez bientôt.|Réactions en pause. Réessayez bientôt.|Votre réaction n'a pas pu être enregistrée. Réessayez.|Les réactions n'ont pas pu être chargées.|Les réactions sont fermées pour cet article.",
  de: 'Wie finden Sie das?|Gefällt mir|Gefällt mir nicht|Liebe|Lustig|Wütend|Traurig|Wow|Gerade viele Reaktionen. Bitte gleich erneut versuchen.|Reaktionen pausieren kurz. Bitte gleich erneut versuchen.|Ihre Reaktion wurde nicht gespeichert. Bitte erneut versuchen.|Die Reaktionen konnten nicht geladen werden.|Reaktionen zu diesem Artikel sind geschlossen.',
  es: '¿Cuál es tu reacción?|Me gusta|No me gusta|Me encanta|Me divierte|Me enfada|Me entristece|Me asombra|Muchas reacciones ahora. Inténtalo en un momento.|Reacciones en pausa. Inténtalo en breve.|No se pudo guardar tu reacción. Inténtalo de nuevo.|No se pudieron cargar las reacciones.|Las reacciones están cerradas para este artículo.',
  it: 'Qual è la tua reazione?|Mi piace|Non mi piace|Lo adoro|Divertente|Mi fa arrabbiare|Triste|Wow|Molte reazioni ora. Riprova tra poco.|Reazioni in pausa. Riprova a breve.|Non è stato possibile salvare la tua reazione. Riprova.|Non è stato possibile caricare le reazioni.|Le reazioni sono chiuse per questo articolo.',
  pt: 'Qual é a sua reação?|Gosto|Não gosto|Adoro|Engraçado|Irritante|Triste|Uau|Muitas reações agora. Tente daqui a pouco.|Reações em pausa. Tente em breve.|Não foi possível guardar a sua reação. Tente novamente.|Não foi possível carregar as reações.|As reações estão encerradas para este artigo.',
  nl: 'Wat is je reactie?|Leuk|Niet leuk|Geweldig|Grappig|Boos|Verdrietig|Wauw|Veel reacties nu. Probeer het zo opnieuw.|Reacties pauzeren even. Probeer het straks opnieuw.|Je reactie kon niet worden opgeslagen. Probeer het opnieuw.|De reacties konden niet worden geladen.|Reageren op dit artikel is gesloten.',
  pl: 'Jaka jest Twoja reakcja?|Lubię|Nie lubię|Kocham|Zabawne|Złości mnie|Smutne|Wow|Dużo reakcji. Spróbuj za chwilę.|Reakcje mają przerwę. Spróbuj za chwilę.|Nie udało się zapisać reakcji. Spróbuj ponownie.|Nie udało się wczytać reakcji.|Reakcje pod tym artykułem są zamknięte.',
};
const SCRIPT_ORIGIN = new URL(import.meta.url).origin;
const STORAGE_KEY = 'reader-reactions.visitor';
const BATCH_MAX = 100; // the API's limit for one batch read

// The texts for a language tag ('fr-CA' takes 'fr'), then the labels attribute's overrides:
// "key: text" pairs separated by ';', keys from TEXT_KEYS (e.g. "like: Agree; heading: Your take?").
function texts(lang, labels) {
  const list = (TEXTS[lang.toLowerCase().split('-')[0]] || TEXTS.en).split('|');
  const t = Object.fromEntries(TEXT_KEYS.map((k, i) => [k, list[i]]));
  for (const pair of (labels || '').split(';')) {
    const at = pair.indexOf(':');
    const key = pair.slice(0, at).trim();
    if (at > 0 && key in t) t[key] = pair.slice(at + 1).trim();
  }
  return t;
}

const CSS = `
:host{display:block;margin:var(--rr-margin,1.5rem 0);--rr-accent:#0b57d0}
:host([hidden]){display:none}
h2{font:inherit;font-weight:600;font-size:var(--rr-heading-size,1.05em);margin:0 0 .6em}
div{display:flex;flex-wrap:wrap;gap:var(--rr-gap,.4rem)}
button{font:inherit;color:inherit;cursor:pointer;display:inline-flex;align-items:center;gap:.35em;
min-height:2.5rem;padding:.3em .65em;border-radius:var(--rr-radius,999px);
border:1px solid var(--rr-border,color-mix(in srgb,currentColor 25%,transparent));
background:var(--rr-bg,color-mix(in srgb,currentColor 4%,transparent));transition:background-color .15s,transform .1s}
button:hover{background:var(--rr-bg-hover,color-mix(in srgb,currentColor 10%,transparent))}
button:active{transform:scale(.96)}
button:focus-visible{outline:3px solid var(--rr-focus,var(--rr-accent));outline-offset:2px}
button:disabled{cursor:default;opacity:.6}
[aria-pressed=true]{border-color:var(--rr-accent);box-shadow:inset 0 0 0 1px var(--rr-accent);
background:var(--rr-bg-pressed,color-mix(in srgb,var(--rr-accent) 14%,transparent))}
[aria-pressed=true] [part~=count]{font-weight:700}
[part~=emoji]{font:1.2em/1 'Apple Color Emoji','Segoe UI Emoji','Noto Color Emoji',sans-serif}
[aria-pressed=true] [part~=emoji]{animation:pop .3s ease-out}
@keyframes pop{50%{transform:scale(1.35)}}
[part~=count]{font-variant-numeric:tabular-nums;min-width:1ch;color:var(--rr-count,inherit)}
p{margin:.6em 0 0;font-size:.9em;color:var(--rr-muted,color-mix(in srgb,currentColor 65%,transparent))}
p:empty{margin:0}
@media (prefers-color-scheme:dark){:host{--rr-accent:#8ab4f8}}
@media (prefers-reduced-motion:reduce){*{transition:none!important;animation:none!important;transform:none!important}}
`;

// One constructed sheet for every element (no 'unsafe-inline' needed in the site's CSP);
// older browsers get a <style> element. An empty <p> stays: a live region must exist to speak.
let sheet = null;
try {
  sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
} catch {
  sheet = null;
}

// A random id in the site's own localStorage, sent as X-Visitor-Id: no third-party cookie is
// needed. If storage is blocked, the service's cookie or fingerprint identifies the reader.
function visitorId() {
  try {
    let id = localStorage.getItem(STORAGE_KEY);
    if (!/^[\w-]{8,128}$/.test(id || '')) {
      id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
      localStorage.setItem(STORAGE_KEY, id);
    }
    return id;
  } catch {
    return null;
  }
}

// Without an id we ask for the cookie path (credentials 'include'). A service that allows any
// origin refuses credentialed calls; after one refusal we stop asking.
let cookiesRefused = false;

async function call(base, path, init = {}) {
  const id = visitorId();
  const headers = { ...init.headers, ...(id && { 'X-Visitor-Id': id }) };
  const send = (credentials) => fetch(base + path, { ...init, headers, credentials });
  let res;
  if (id || cookiesRefused) res = await send('same-origin');
  else {
    try {
      res = await send('include');
    } catch {
      cookiesRefused = true;
      res = await send('same-origin');
    }
  }
  if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
  return res.json();
}

// Elements that connect in the same task are read together: one GET per API base and 100 ids.
const pending = new Map(); // base -> Set of elements
const live = new Set();

function enqueue(el) {
  if (!pending.size) queueMicrotask(flush);
  if (!pending.has(el.base)) pending.set(el.base, new Set());
  pending.get(el.base).add(el);
}

function flush() {
  for (const [base, els] of pending) {
    const ids = [...new Set([...els].map((el) => el.article))];
    for (let i = 0; i < ids.length; i += BATCH_MAX) {
      const chunk = ids.slice(i, i + BATCH_MAX);
      call(base, '/v1/reactions?' + chunk.map((id) => 'article_id=' + encodeURIComponent(id)).join('&')).then(
        (res) => res.articles.forEach((s) => publish(base, s, els)),
        (err) => els.forEach((el) => chunk.includes(el.article) && el.failed(err, 'load')),
      );
    }
  }
  pending.clear();
}

// A summary the service confirmed reaches every element showing that article.
function publish(base, summary, els = live) {
  for (const el of els) if (el.base === base && el.article === summary.article_id) el.confirm(summary);
}

class ReaderReactions extends HTMLElement {
  static observedAttributes = ['article', 'api', 'reactions', 'lang', 'labels', 'live'];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    if (sheet) root.adoptedStyleSheets = [sheet];
    else root.innerHTML = `<style>${CSS}</style>`;
  }

  connectedCallback() {
    this.on = true;
    live.add(this);
    this.article = this.getAttribute('article') || '';
    this.base = (this.getAttribute('api') || SCRIPT_ORIGIN).replace(/\/+$/, '');
    this.saved = this.shown = null;
    // The element's lang, else the nearest enclosing one (the page's <html lang>), else English.
    this.lang_ = this.closest('[lang]')?.lang || 'en';
    this.t = texts(this.lang_, this.getAttribute('labels'));
    const listed = (this.getAttribute('reactions') || '').split(/[\s,]+/).filter((k) => k in REACTIONS);
    this.keys = listed.length ? [...new Set(listed)] : Object.keys(REACTIONS);
    this.render(this.keys);
    if (this.article) enqueue(this);
    else console.warn('<reader-reactions> needs an article attribute');
    this.listen();
  }

  disconnectedCallback() {
    this.on = false;
    live.delete(this);
    this.unlisten();
  }

  // `live`: pushed counts, keeping the reader's own reaction; EventSource reconnects by itself.
  listen() {
    this.unlisten();
    if (!this.hasAttribute('live') || !this.article) return;
    this.source = new EventSource(`${this.base}/v1/articles/${encodeURIComponent(this.article)}/events`);
    this.source.addEventListener('counts', (e) => {
      const s = JSON.parse(e.data);
      this.confirm({ ...s, viewer_reaction: (this.saved || s).viewer_reaction });
    });
  }

  unlisten() {
    this.source?.close();
  }

  attributeChangedCallback(name, old, value) {
    if (this.on && old !== value) this.connectedCallback();
  }

  // The row with a button for each of `keys`: those asked for, then those the article offers.
  render(keys) {
    this.rendered = keys.join();
    const section = document.createElement('section');
    section.setAttribute('part', 'container');
    section.innerHTML =
      '<h2 part="heading" id="h"></h2><div part="buttons" role="group" aria-labelledby="h">' +
      keys
        .map(
          (k) =>
            `<button type="button" part="button" data-reaction="${k}" aria-pressed="false" disabled>` +
            `<span part="emoji" aria-hidden="true">${REACTIONS[k]}</span><span part="label"></span>` +
            '<span part="count"></span></button>',
        )
        .join('') +
      '</div><p part="message" role="status"></p>';
    // Texts as text, never as markup: a site's labels attribute may hold anything.
    section.querySelector('h2').textContent = this.t.heading;
    for (const label of section.querySelectorAll('[part=label]')) label.textContent = this.t[label.parentNode.dataset.reaction];
    section.addEventListener('click', (e) => {
      const button = e.target.closest('button');
      if (button) this.choose(button.dataset.reaction);
    });
    this.shadowRoot.querySelector('section')?.remove();
    this.shadowRoot.append(section);
    this.buttons = section.querySelectorAll('button');
    this.message = section.querySelector('p');
  }

  show(s) {
    this.shown = s;
    if (!s) return;
    // Only the reactions the article offers; a closed article shows its counts, not buttons to press.
    const offered = this.keys.filter((k) => !s.reactions || s.reactions.includes(k));
    if (offered.join() !== this.rendered) this.render(offered);
    if (s.closed) this.message.textContent = this.t.closed;
    let format;
    try {
      format = new Intl.NumberFormat(this.lang_, { notation: 'compact' });
    } catch {
      format = new Intl.NumberFormat(undefined, { notation: 'compact' });
    }
    for (const b of this.buttons) {
      const key = b.dataset.reaction;
      const pressed = s.viewer_reaction === key;
      b.disabled = !!s.closed;
      b.setAttribute('aria-pressed', pressed);
      b.setAttribute('part', pressed ? 'button pressed' : 'button');
      b.lastChild.textContent = format.format(s.counts[key] ?? 0);
    }
  }

  confirm(s) {
    this.saved = s;
    if (!this.busy) {
      this.message.textContent = '';
      this.show(s);
    }
  }

  failed(err, what) {
    // Closed meanwhile (409): show the last counts as closed.
    if (err.status === 409 && this.saved) this.show({ ...this.saved, closed: true });
    else this.message.textContent = this.t[err.status] || this.t[what];
  }

  // Optimistic: the row changes at once. Only the latest choice is sent, one request at a time
  // so they reach the service in order; then the service's answer is shown, or after an error
  // the last confirmed state.
  choose(key) {
    const s = this.shown;
    if (!s || s.closed) return;
    const was = s.viewer_reaction;
    const want = was === key ? null : key;
    const counts = { ...s.counts };
    if (was) counts[was] -= 1;
    if (want) counts[want] += 1;
    this.show({ ...s, counts, total: s.total - !!was + !!want, viewer_reaction: want });
    this.want = want;
    if (!this.busy) this.sync();
  }

  async sync() {
    this.busy = true;
    while (this.want !== undefined) {
      const want = this.want;
      this.want = undefined;
      const write = want
        ? { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ reaction: want }) }
        : { method: 'DELETE' };
      try {
        const s = await call(this.base, `/v1/articles/${encodeURIComponent(this.article)}/reaction`, write);
        this.saved = s;
        if (this.want === undefined) {
          this.busy = false;
          publish(this.base, s);
        }
      } catch (err) {
        if (this.want === undefined) {
          this.show(this.saved);
          this.failed(err, 'save');
        }
      }
    }
    this.busy = false;
  }
}

if (!customElements.get('reader-reactions')) customElements.define('reader-reactions', ReaderReactions);
