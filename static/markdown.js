// A small, safe Markdown renderer: Markdown text in, DOM nodes out.
//
// Every node is made with createElement and every piece of text goes in through
// textContent (Text nodes), so nothing in the source is ever parsed as HTML: a <script> or
// <img onerror> in a report shows as the literal text it is. Links keep only absolute
// http/https URLs; images are shown as their alt text (nothing is fetched).
//
// Supported: ATX headings, paragraphs, block quotes, bullet and numbered lists (nested by
// indentation), pipe tables, fenced and indented code, horizontal rules; inline code,
// **strong**, *emphasis* / _emphasis_, [links](https://…), <https://autolinks> and
// backslash escapes.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const BULLET = /^( {0,12})([-*+])[ \t]+(.*)$/;
const ORDERED = /^( {0,12})(\d{1,9})[.)][ \t]+(.*)$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const TABLE_DELIMITER = /^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const ESCAPABLE = "\\`*_{}[]()#+-.!|<>~\"'";
const MAX_DEPTH = 8; // nesting of quotes and lists; deeper text is kept as paragraphs

/** A safe href: the URL itself when it is absolute http(s), else null. */
export function safeHref(raw) {
  const text = String(raw ?? "").trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function elem(tag, ...children) {
  const node = document.createElement(tag);
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

// -- inline ------------------------------------------------------------------------------

/** Find the index of the `]` closing the `[` at `open`, allowing nested brackets. */
function closingBracket(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i += 1) {
    const c = text[i];
    if (c === "\\") i += 1;
    else if (c === "[") depth += 1;
    else if (c === "]") {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** `(url "title")` at `start`: {url, end} or null. */
function linkTarget(text, start) {
  if (text[start] !== "(") return null;
  let depth = 0;
  for (let i = start; i < text.length; i += 1) {
    const c = text[i];
    if (c === "\\") i += 1;
    else if (c === "(") depth += 1;
    else if (c === ")") {
      depth -= 1;
      if (depth === 0) {
        const inner = text.slice(start + 1, i).trim();
        const url = inner.replace(/\s+("[^"]*"|'[^']*')$/, "").replace(/^<(.*)>$/, "$1");
        return { url, end: i + 1 };
      }
    }
  }
  return null;
}

function link(label, href, depth) {
  const safe = safeHref(href);
  if (!safe) {
    // not an http(s) link: the words stay, the target is dropped
    const span = elem("span");
    span.append(...inline(label, depth + 1));
    return span;
  }
  const a = elem("a");
  a.href = safe;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.append(...inline(label, depth + 1));
  return a;
}

/** Inline Markdown to a list of nodes. */
export function inline(text, depth = 0) {
  const out = [];
  let plain = "";
  const flush = () => {
    if (plain) out.push(document.createTextNode(plain));
    plain = "";
  };
  if (depth > MAX_DEPTH) return [document.createTextNode(text)];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      const run = /^`+/.exec(text.slice(i))[0];
      const close = text.indexOf(run, i + run.length);
      if (close > 0) {
        flush();
        let code = text.slice(i + run.length, close).replace(/\n/g, " ");
        if (/^ .* $/.test(code)) code = code.slice(1, -1);
        out.push(elem("code", code));
        i = close + run.length;
        continue;
      }
      plain += run;
      i += run.length;
      continue;
    }
    if (c === "<") {
      const auto = /^<(https?:\/\/[^\s<>]+)>/i.exec(text.slice(i));
      if (auto) {
        flush();
        out.push(link(auto[1], auto[1], depth));
        i += auto[0].length;
        continue;
      }
    }
    if (c === "!" && text[i + 1] === "[") {
      const close = closingBracket(text, i + 1);
      const target = close > 0 ? linkTarget(text, close + 1) : null;
      if (target) {
        // an image is never loaded: its alt text stands in
        flush();
        out.push(elem("span", text.slice(i + 2, close)));
        i = target.end;
        continue;
      }
    }
    if (c === "[") {
      const close = closingBracket(text, i);
      const target = close > 0 ? linkTarget(text, close + 1) : null;
      if (target) {
        flush();
        out.push(link(text.slice(i + 1, close), target.url, depth));
        i = target.end;
        continue;
      }
    }
    if (c === "*" || c === "_") {
      const strong = text.startsWith(c + c, i);
      const marker = strong ? c + c : c;
      const after = text[i + marker.length];
      const before = i > 0 ? text[i - 1] : " ";
      // `_` inside a word (snake_case names) is not emphasis
      const opens = after && !/\s/.test(after) && !(c === "_" && /\w/.test(before));
      if (opens) {
        let close = text.indexOf(marker, i + marker.length);
        while (close > 0) {
          const ok =
            !/\s/.test(text[close - 1]) &&
            text[close - 1] !== "\\" &&
            !(c === "_" && /\w/.test(text[close + marker.length] || "")) &&
            (strong || text[close + 1] !== c);
          if (ok) break;
          close = text.indexOf(marker, close + 1);
        }
        if (close > 0) {
          flush();
          const node = elem(strong ? "strong" : "em");
          node.append(...inline(text.slice(i + marker.length, close), depth + 1));
          out.push(node);
          i = close + marker.length;
          continue;
        }
      }
      plain += marker;
      i += marker.length;
      continue;
    }
    if (c === "\n") {
      const hard = plain.endsWith("  ");
      plain = plain.replace(/ +$/, "");
      if (hard) {
        flush();
        out.push(elem("br"));
      } else {
        plain += "\n";
      }
      i += 1;
      continue;
    }
    plain += c;
    i += 1;
  }
  flush();
  return out;
}

// -- blocks ------------------------------------------------------------------------------

/** Split a table row into its cells, honouring `\|`. */
function tableCells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let current = "";
  for (let i = 0; i < row.length; i += 1) {
    if (row[i] === "\\" && row[i + 1] === "|") {
      current += "\\|"; // unescaped by inline()
      i += 1;
    } else if (row[i] === "|") {
      cells.push(current.trim());
      current = "";
    } else {
      current += row[i];
    }
  }
  cells.push(current.trim());
  return cells;
}

function alignments(delimiter) {
  return tableCells(delimiter).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    if (left && right) return "center";
    if (right) return "right";
    return left ? "left" : null;
  });
}

function renderTable(lines, depth) {
  const head = tableCells(lines[0]);
  const align = alignments(lines[1]);
  const cell = (tag, text, index) => {
    const node = elem(tag);
    if (tag === "th") node.scope = "col";
    if (align[index]) node.style.textAlign = align[index];
    node.append(...inline(text, depth + 1));
    return node;
  };
  const thead = elem("thead", elem("tr", ...head.map((text, i) => cell("th", text, i))));
  const rows = lines.slice(2).map((line) => {
    const cells = tableCells(line);
    return elem("tr", ...head.map((_, i) => cell("td", cells[i] ?? "", i)));
  });
  const table = elem("table", thead, elem("tbody", ...rows));
  table.className = "md-table";
  const wrap = elem("div", table);
  wrap.className = "md-table-wrap";
  return wrap;
}

function isBlank(line) {
  return /^\s*$/.test(line);
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    BULLET.test(line) ||
    ORDERED.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_DELIMITER.test(next) && next.includes("-"))
  );
}

/** Parse lines into block nodes appended to `parent`. */
function blocks(lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end)
      const code = elem("code", body.join("\n"));
      if (/^[\w+-]{1,32}$/.test(fence[2])) code.dataset.language = fence[2];
      parent.append(elem("pre", code));
      continue;
    }
    if (/^( {4}|\t)/.test(line)) {
      const body = [];
      while (i < lines.length && (/^( {4}|\t)/.test(lines[i]) || isBlank(lines[i]))) {
        body.push(lines[i].replace(/^( {4}|\t)/, ""));
        i += 1;
      }
      while (body.length && isBlank(body[body.length - 1])) body.pop();
      parent.append(elem("pre", elem("code", body.join("\n"))));
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const node = elem(`h${heading[1].length}`);
      node.append(...inline(heading[2] || "", depth));
      parent.append(node);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(elem("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line) && depth < MAX_DEPTH) {
      const body = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        body.push(quoted ? quoted[1] : lines[i]);
        i += 1;
      }
      const quote = elem("blockquote");
      blocks(body, quote, depth + 1);
      parent.append(quote);
      continue;
    }
    const item = BULLET.exec(line) || ORDERED.exec(line);
    if (item && depth < MAX_DEPTH) {
      i = list(lines, i, parent, depth);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_DELIMITER.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows = [line, lines[i + 1]];
      i += 2;
      while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
        rows.push(lines[i]);
        i += 1;
      }
      parent.append(renderTable(rows, depth));
      continue;
    }
    // leading spaces go; trailing ones stay until inline() (two of them are a line break)
    const para = [line.trimStart()];
    i += 1;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i], lines[i + 1])) {
      para.push(lines[i].trimStart());
      i += 1;
    }
    const p = elem("p");
    p.append(...inline(para.join("\n").trimEnd(), depth));
    parent.append(p);
  }
}

/** A list starting at lines[start]; returns the index after it. */
function list(lines, start, parent, depth) {
  const first = BULLET.exec(lines[start]) || ORDERED.exec(lines[start]);
  const ordered = !BULLET.test(lines[start]);
  const indent = first[1].length;
  const node = elem(ordered ? "ol" : "ul");
  if (ordered && first[2] !== "1") node.start = Number.parseInt(first[2], 10);
  let i = start;
  while (i < lines.length) {
    const match = (ordered ? ORDERED : BULLET).exec(lines[i]);
    if (!match || match[1].length !== indent) break;
    const body = [match[3]];
    const contentIndent = indent + 2;
    i += 1;
    while (i < lines.length) {
      const next = lines[i];
      if (isBlank(next)) {
        // a blank line ends the item unless the item goes on, indented
        const following = lines[i + 1];
        if (following !== undefined && /^\s+/.exec(following)?.[0].length >= contentIndent) {
          body.push("");
          i += 1;
          continue;
        }
        break;
      }
      const lead = /^\s*/.exec(next)[0].length;
      const sibling = (BULLET.exec(next) || ORDERED.exec(next))?.[1].length === indent;
      if (sibling || (lead <= indent && startsBlock(next, lines[i + 1]))) break;
      body.push(lead >= contentIndent ? next.slice(contentIndent) : next.trimStart());
      i += 1;
    }
    const li = elem("li");
    const nested = body.slice(1).some((l) => BULLET.test(l) || ORDERED.test(l) || isBlank(l));
    if (!nested) {
      li.append(...inline(body.map((l) => l.trim()).join("\n"), depth + 1));
    } else {
      // the first line is the item's text; the rest are its own blocks (e.g. a nested list)
      const rest = body.slice(1);
      const split = rest.findIndex((l) => BULLET.test(l) || ORDERED.test(l) || isBlank(l));
      const lead = [body[0], ...rest.slice(0, split)].map((l) => l.trim()).join("\n");
      li.append(...inline(lead, depth + 1));
      blocks(rest.slice(split), li, depth + 1);
    }
    node.append(li);
    while (i < lines.length && isBlank(lines[i])) {
      const following = lines[i + 1];
      const again = following !== undefined && (ordered ? ORDERED : BULLET).exec(following);
      if (again && again[1].length === indent) i += 1;
      else break;
    }
  }
  parent.append(node);
  return i;
}

/** Markdown text → a DocumentFragment of safe nodes. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text ?? "")
    .replace(/\r\n?/g, "\n")
    .replace(/\u0000/g, "\uFFFD")
    .split("\n");
  blocks(lines, fragment, 0);
  return fragment;
}
