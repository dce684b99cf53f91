// Shows that the script ran, and which URL it was loaded from.
const script = document.currentScript;
document.querySelector(".script").textContent = `app.js loaded from ${script.getAttribute("src")}`;
