// Edit this text, save, and reload the page normally: the import map names
// this file's new ?v=, so the browser loads the new module.
export function greeting() {
  return "main.js imported greeting.js through the import map.";
}
