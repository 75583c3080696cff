// node lint_gallery.js FILE...: checks the gallery's CSS (.css) and HTML fragments (.html) as
// their syntax requires, reporting FILE:LINE: problem. Browsers accept broken CSS and HTML
// silently, dropping a rule or misnesting the page, so nothing else would notice.
"use strict";
const fs = require("fs");
const path = require("path");

function lineAt(text, index) {
  return text.slice(0, index).split("\n").length;
}

// Rules of `selector { property: value; ... }`, as gallery.css writes them: no at-rules, no nesting.
function lintCss(text, report) {
  let i = 0, depth = 0, start = 0;
  while (i < text.length) {
    const c = text[i];
    if (text.startsWith("/*", i)) {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) return report(lineAt(text, i), "comment never closed");
      i = end + 2;
      continue;
    }
    if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1);
      if (end < 0) return report(lineAt(text, i), "string never closed");
      i = end + 1;
      continue;
    }
    if (c === "{") {
      if (depth > 0) return report(lineAt(text, i), "'{' inside a rule (nesting is not used here)");
      const selector = text.slice(start, i).replace(/\/\*[\s\S]*?\*\//g, "").trim();
      if (!selector) report(lineAt(text, i), "rule without a selector");
      else if (selector.startsWith("@")) report(lineAt(text, i), "at-rule: not used here, extend this lint");
      else if (/[;}]/.test(selector)) report(lineAt(text, i), "stray ';' or '}' before '" + selector + "'");
      depth = 1;
      start = i + 1;
    } else if (c === "}") {
      if (depth === 0) return report(lineAt(text, i), "'}' without '{'");
      lintDeclarations(text, start, i, report);
      depth = 0;
      start = i + 1;
    }
    ++i;
  }
  if (depth > 0) report(lineAt(text, start), "rule never closed with '}'");
  else if (text.slice(start).replace(/\/\*[\s\S]*?\*\//g, "").trim()) {
    report(lineAt(text, start), "text after the last rule");
  }
}

function lintDeclarations(text, begin, end, report) {
  let at = begin;
  for (const declaration of text.slice(begin, end).split(";")) {
    const line = lineAt(text, at + declaration.length - declaration.trimStart().length);
    at += declaration.length + 1;
    const d = declaration.replace(/\/\*[\s\S]*?\*\//g, "").trim();
    if (d && !/^-?[a-z][a-z-]*\s*:\s*\S/.test(d)) report(line, "not 'property: value': '" + d + "'");
  }
}

const kVoid = new Set(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                       "source", "track", "wbr"]);
// End tags HTML lets a document omit: a fragment may open the document that the page closes.
const kMayStayOpen = new Set(["html", "head", "body"]);
const kAttribute = /^\s+([a-z][a-z0-9-]*)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?/i;

// Tags nest and close, attributes are well formed and not repeated, '&' starts an entity, and
// {{name}} placeholders (filled by src/gallery/page_parts.cpp) are well formed.
function lintHtml(text, report) {
  const placeholders = text.replace(/\{\{[a-z_]+\}\}/g, "");
  for (const m of placeholders.matchAll(/\{\{|\}\}/g)) report(lineAt(placeholders, m.index), "malformed {{placeholder}}");
  const open = [];
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    for (const m of chunk.matchAll(/&(?![a-z]+;|#[0-9]+;|#x[0-9a-f]+;)/gi)) {
      report(lineAt(text, i + m.index), "'&' that starts no entity");
    }
    if (lt < 0) break;
    const line = lineAt(text, lt);
    if (text.startsWith("<!--", lt)) {
      const end = text.indexOf("-->", lt);
      if (end < 0) return report(line, "comment never closed");
      i = end + 3;
      continue;
    }
    const gt = text.indexOf(">", lt);
    if (gt < 0) return report(line, "'<' never closed with '>'");
    const tag = text.slice(lt + 1, gt);
    i = gt + 1;
    if (/^!doctype html$/i.test(tag)) continue;
    const end = /^\/([a-z][a-z0-9]*)\s*$/.exec(tag);
    if (end) {
      const top = open.pop();
      if (!top) report(line, "</" + end[1] + "> closes nothing");
      else if (top.name !== end[1]) report(line, "</" + end[1] + "> closes <" + top.name + "> of line " + top.line);
      continue;
    }
    const start = /^([a-z][a-z0-9]*)/.exec(tag);
    if (!start) {
      report(line, "not a tag: <" + tag + ">");
      continue;
    }
    let rest = tag.slice(start[1].length);
    const names = new Set();
    for (let m; (m = kAttribute.exec(rest));) {
      if (names.has(m[1])) report(line, "attribute " + m[1] + " twice in <" + start[1] + ">");
      names.add(m[1]);
      rest = rest.slice(m[0].length);
    }
    if (rest.trim() !== "" && rest.trim() !== "/") report(line, "malformed attributes in <" + start[1] + ">: '" + rest.trim() + "'");
    if (!kVoid.has(start[1])) open.push({name: start[1], line});
  }
  for (const element of open) {
    if (!kMayStayOpen.has(element.name)) report(element.line, "<" + element.name + "> never closed");
  }
}

let problems = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, "utf8");
  const report = (line, message) => {
    console.log(file + ":" + line + ": " + message);
    ++problems;
  };
  const ext = path.extname(file);
  if (ext === ".css") lintCss(text, report);
  else if (ext === ".html") lintHtml(text, report);
  else report(1, "neither .css nor .html");
}
if (problems > 0) {
  console.log(problems + " problem(s)");
  process.exit(1);
}
console.log("ok: " + process.argv.slice(2).join(" "));
