/*
 * django-freshstatic's live page: open pages follow edits to static files.
 *
 * FreshStaticMiddleware adds this script to HTML pages in development. It
 * listens to the server's event stream (one stream for every tab of the
 * site, held by this same file running as a SharedWorker, or one per page
 * where a shared worker cannot run). After each change the page asks the
 * server which of its static URLs are no longer current, then:
 *
 * - swaps stylesheets in place, the new one loaded before the old one goes
 *   (no flash of unstyled content); a sheet @import-ed by another through
 *   its root, and background images and fonts through their stylesheet;
 * - swaps images: <img src/srcset>, <picture> <source srcset>, icons,
 *   <video poster>, url() in style attributes and <style> elements;
 * - reloads the page for a changed script, a changed template, or a server
 *   that restarted (a Python edit under runserver).
 *
 * Scroll position, focus and form input survive a swap: nothing else on the
 * page is touched. A page may handle a change itself: the cancelable
 * "freshstatic:change" event on document has the changed URLs in
 * event.detail.changed (old URL -> new URL).
 */
(function () {
  'use strict';

  const FIRST_RETRY_MS = 100;
  const MAX_RETRY_MS = 3000;

  // An event stream that reconnects after a failure, waiting longer each
  // time (up to MAX_RETRY_MS) until the server answers again.
  function follow(url, deliver) {
    let delay = FIRST_RETRY_MS;
    const open = () => {
      const source = new EventSource(url);
      source.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === 'hello') delay = FIRST_RETRY_MS;
        deliver(message);
      };
      source.onerror = () => {
        source.close();
        setTimeout(open, delay);
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      };
    };
    open();
  }

  if (typeof document === 'undefined') {
    // The shared worker: one stream, relayed to every tab that started it.
    const ports = new Set();
    let hello = null;
    let following = false;
    const relay = (message) => {
      if (message.type === 'hello') hello = message;
      for (const port of ports) port.postMessage(message);
    };
    self.addEventListener('connect', (connection) => {
      const port = connection.ports[0];
      port.onmessage = ({ data }) => {
        if (data.type === 'start') {
          ports.add(port);
          if (!following) {
            following = true;
            follow(data.events, relay);
          } else if (hello) {
            port.postMessage(hello);
          }
        } else if (data.type === 'stop') {
          ports.delete(port);
        }
      };
    });
    return;
  }

  const script = document.currentScript;
  const config = script.dataset;
  const eventsUrl = new URL(config.events, location.href).href;
  const urlsUrl = new URL(config.urls, location.href).href;
  const staticBase = new URL(config.static, location.href).href;
  const ownBase = new URL(config.events, location.href).href.replace(/events$/, '');
  const IMAGE_URL = /\.(avif|bmp|gif|ico|jpe?g|png|svg|webp)$/i;

  let server = null; // the process that answered this page's first stream
  let generation = config.generation || null; // the last one acted upon
  let named = true; // whether that generation's names were known
  let reloading = false;

  function reload() {
    if (reloading) return;
    reloading = true;
    location.reload();
  }

  function receive(message) {
    if (message.type === 'reload') {
      reload();
    } else if (message.type === 'hello') {
      if (server !== null && message.server !== server) {
        reload(); // another server process: its Python code may differ
        return;
      }
      server = message.server;
      // Whatever changed while this page had no stream is checked now.
      noticed(message.generation, null);
    } else if (message.type === 'change') {
      noticed(message.generation, message.names, message.urls);
    }
  }

  function noticed(next, names, urls) {
    if (next !== null && next === generation && (names === null || named)) return;
    generation = next;
    named = names !== null;
    // Asked after the swaps the event allows: the question never delays the
    // new stylesheets.
    const swapped = urls ? swapNamed(urls) : null;
    if (swapped) swapped.then(() => schedule(names));
    else schedule(names);
  }

  // The files whose new URLs came with the event: swapped at once. What
  // changed with them (an image, for a page that did not ask before) is
  // asked about next. A promise of the swaps, or null if none.
  function swapNamed(urls) {
    const uses = collect();
    const changed = {};
    for (const key of uses.keys()) {
      let name;
      try {
        name = decodeURIComponent(key.split('?')[0]);
      } catch (error) {
        continue;
      }
      const url = urls[name];
      if (url !== undefined && new URL(url, location.href).href !== staticBase + key) {
        changed[key] = url;
      }
    }
    return Object.keys(changed).length > 0 ? act(uses, changed) : null;
  }

  // One check at a time; changes that arrive meanwhile are merged into the
  // next one.
  let checking = null;
  let waiting = false;
  let waitingNames = null;

  function schedule(names) {
    if (!waiting) {
      waiting = true;
      waitingNames = names ? new Set(names) : null;
    } else if (waitingNames && names) {
      for (const name of names) waitingNames.add(name);
    } else {
      waitingNames = null;
    }
    if (!checking) checking = drain();
  }

  async function drain() {
    while (waiting) {
      const names = waitingNames;
      waiting = false;
      waitingNames = null;
      try {
        await check(names ? [...names] : null, generation);
      } catch (error) {
        // The server went away mid-check: its next hello checks again.
      }
    }
    checking = null;
  }

  async function check(names, asOf) {
    const uses = collect();
    if (uses.size === 0) return;
    const response = await fetch(urlsUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ urls: [...uses.keys()], names, generation: asOf }),
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (!response.ok) return;
    const { changed } = await response.json();
    if (Object.keys(changed).length > 0) await act(uses, changed);
  }

  // Tell the page (which may handle the change itself), then swap: a
  // promise of the swapped stylesheets' loads.
  function act(uses, changed) {
    const detail = { changed: {} };
    for (const key of Object.keys(changed)) {
      detail.changed[staticBase + key] = new URL(changed[key], location.href).href;
    }
    const event = new CustomEvent('freshstatic:change', { cancelable: true, detail });
    return document.dispatchEvent(event) ? apply(uses, changed) : Promise.resolve();
  }

  // -- what the page uses -------------------------------------------------

  // The key of a static URL: the URL relative to STATIC_URL, without its
  // fragment; null for any other URL.
  function keyOf(value) {
    if (!value) return null;
    let url;
    try {
      url = new URL(value, document.baseURI);
    } catch (error) {
      return null;
    }
    url.hash = '';
    const href = url.href;
    if (!href.startsWith(staticBase) || href.startsWith(ownBase)) return null;
    return href.slice(staticBase.length);
  }

  function add(uses, value, use) {
    const key = keyOf(value);
    if (key === null) return;
    if (!uses.has(key)) uses.set(key, []);
    uses.get(key).push(use);
  }

  // Sheets being replaced: their successors stand for them.
  const replaced = new WeakSet();

  function collect() {
    const uses = new Map();
    for (const link of document.querySelectorAll('link[href]')) {
      if (replaced.has(link)) continue;
      const rel = link.relList;
      if (rel.contains('stylesheet')) {
        add(uses, link.href, { kind: 'sheet', node: link });
      } else if (/(^|\s|-)icon(\s|$)/i.test(link.rel)) {
        add(uses, link.href, { kind: 'attribute', node: link, name: 'href' });
      } else if (rel.contains('modulepreload') || (rel.contains('preload') && link.as === 'script')) {
        add(uses, link.href, { kind: 'script' });
      }
    }
    for (const node of document.querySelectorAll('script[src]')) {
      add(uses, node.src, { kind: 'script' });
    }
    for (const node of document.querySelectorAll('img[src], input[type=image][src]')) {
      add(uses, node.getAttribute('src'), { kind: 'attribute', node, name: 'src' });
    }
    for (const node of document.querySelectorAll('video[poster]')) {
      add(uses, node.getAttribute('poster'), { kind: 'attribute', node, name: 'poster' });
    }
    for (const node of document.querySelectorAll('img[srcset], picture > source[srcset]')) {
      for (const candidate of candidates(node.getAttribute('srcset'))) {
        add(uses, candidate.url, { kind: 'srcset', node, url: candidate.url });
      }
    }
    for (const node of document.querySelectorAll('[style*="url("]')) {
      for (const url of cssUrls(node.getAttribute('style'))) {
        add(uses, url, { kind: 'text', node, url, attribute: 'style' });
      }
    }
    for (const node of document.querySelectorAll('style')) {
      for (const url of cssUrls(node.textContent)) {
        add(uses, url, { kind: 'text', node, url, attribute: null });
      }
    }
    for (const sheet of document.styleSheets) {
      if (sheet.ownerNode instanceof HTMLLinkElement && !replaced.has(sheet.ownerNode)) {
        imports(sheet, sheet.ownerNode, uses, 0);
      }
    }
    // Scripts loaded by scripts (module imports, dynamic loads): a change
    // to one reloads the page too.
    for (const entry of performance.getEntriesByType('resource')) {
      if (
        (entry.initiatorType === 'script' || entry.initiatorType === 'other') &&
        /\.m?js$/i.test(new URL(entry.name).pathname)
      ) {
        add(uses, entry.name, { kind: 'script' });
      }
    }
    return uses;
  }

  // Sheets @import-ed by a <link>ed one, swapped through that root.
  function imports(sheet, root, uses, depth) {
    let rules;
    try {
      rules = sheet.cssRules;
    } catch (error) {
      return; // another origin's
    }
    for (const rule of rules) {
      if (rule instanceof CSSImportRule && rule.styleSheet) {
        add(uses, rule.styleSheet.href || rule.href, { kind: 'import', node: root });
        if (depth < 32) imports(rule.styleSheet, root, uses, depth + 1);
      }
    }
  }

  // The candidates of a srcset attribute: [{url, descriptor}].
  function candidates(srcset) {
    const found = [];
    let at = 0;
    while (at < srcset.length) {
      while (at < srcset.length && /[\s,]/.test(srcset[at])) at++;
      if (at >= srcset.length) break;
      let start = at;
      while (at < srcset.length && !/\s/.test(srcset[at])) at++;
      let url = srcset.slice(start, at);
      let descriptor = '';
      if (/,$/.test(url)) {
        url = url.replace(/,+$/, '');
      } else {
        start = at;
        let depth = 0;
        while (at < srcset.length && (srcset[at] !== ',' || depth > 0)) {
          if (srcset[at] === '(') depth++;
          else if (srcset[at] === ')') depth--;
          at++;
        }
        descriptor = srcset.slice(start, at).trim();
      }
      found.push({ url, descriptor });
    }
    return found;
  }

  function cssUrls(text) {
    const urls = [];
    const pattern = /url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3/g;
    let match;
    while ((match = pattern.exec(text || '')) !== null) urls.push(match[2] || match[4]);
    return urls;
  }

  // -- swapping -----------------------------------------------------------

  function apply(uses, changed) {
    for (const key of Object.keys(changed)) {
      if (uses.get(key).some((use) => use.kind === 'script')) {
        reload();
        return Promise.resolve();
      }
    }
    // Root stylesheets to swap: to their new URL, or (null) to the same one
    // loaded afresh when only a sheet they import changed.
    const roots = new Map();
    for (const [key, relative] of Object.entries(changed)) {
      const url = new URL(relative, location.href).href;
      for (const use of uses.get(key)) {
        if (use.kind === 'sheet') {
          roots.set(use.node, url);
        } else if (use.kind === 'import') {
          if (!roots.has(use.node)) roots.set(use.node, null);
        } else if (use.kind === 'attribute') {
          swapAttribute(use.node, use.name, url);
        } else if (use.kind === 'srcset') {
          const srcset = candidates(use.node.getAttribute('srcset'))
            .map((candidate) => {
              const next = candidate.url === use.url ? url : candidate.url;
              return candidate.descriptor ? `${next} ${candidate.descriptor}` : next;
            })
            .join(', ');
          use.node.setAttribute('srcset', srcset);
        } else if (use.kind === 'text') {
          if (use.attribute) {
            const value = use.node.getAttribute(use.attribute);
            use.node.setAttribute(use.attribute, value.split(use.url).join(url));
          } else {
            use.node.textContent = use.node.textContent.split(use.url).join(url);
          }
        }
      }
    }
    const loads = [];
    for (const [link, url] of roots) loads.push(swapSheet(link, url || afresh(link.href)));
    return Promise.all(loads);
  }

  let fresh = 0;

  function afresh(href) {
    const url = new URL(href);
    url.searchParams.set('freshstatic-live', String(++fresh));
    return url.href;
  }

  function swapAttribute(node, name, url) {
    if (!(node instanceof HTMLImageElement) || !IMAGE_URL.test(new URL(url).pathname)) {
      node.setAttribute(name, url);
      return;
    }
    // Decoded first: the old picture stays until the new one can be shown.
    const probe = new Image();
    probe.src = url;
    const set = () => node.setAttribute(name, url);
    probe.decode().then(set, set);
  }

  // A promise settled once the new sheet is in place (or failed to load).
  function swapSheet(link, url) {
    replaced.add(link);
    const next = link.cloneNode(false);
    next.removeAttribute('integrity'); // the new bytes have another digest
    next.href = url;
    const settled = new Promise((resolve) => {
      next.addEventListener(
        'load',
        () => {
          link.remove();
          resolve();
        },
        { once: true },
      );
      next.addEventListener(
        'error',
        () => {
          next.remove();
          replaced.delete(link);
          resolve();
        },
        { once: true },
      );
    });
    link.after(next);
    return settled;
  }

  // -- connecting -----------------------------------------------------------

  function connect() {
    if (typeof SharedWorker === 'function' && config.worker !== 'no') {
      try {
        const worker = new SharedWorker(script.src, { name: 'freshstatic-live' });
        let fellBack = false;
        worker.addEventListener('error', () => {
          if (!fellBack) {
            fellBack = true;
            follow(eventsUrl, receive);
          }
        });
        worker.port.onmessage = ({ data }) => receive(data);
        const start = () => worker.port.postMessage({ type: 'start', events: eventsUrl });
        start();
        addEventListener('pagehide', () => worker.port.postMessage({ type: 'stop' }));
        addEventListener('pageshow', (event) => {
          if (event.persisted) start();
        });
        return;
      } catch (error) {
        // No shared worker here: a stream of this page's own.
      }
    }
    follow(eventsUrl, receive);
  }

  connect();
})();
